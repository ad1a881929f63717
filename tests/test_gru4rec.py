"""GRU4Rec behaviour: training modes, evaluation against brute force, prediction, model files."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import gpu_ops
from gru4rec import GRU4Rec
from recsys_core.errors import UserError
from recsys_core.evaluation import evaluate_sessions

BASE = dict(layers=[32], batch_size=16, n_sample=32, n_epochs=1, learning_rate=0.05)


def train(data, **params):
    p = dict(BASE)
    p.update(params)
    return GRU4Rec(**p).fit(data[0], verbose=False)


def popularity_recall(data, k=20):
    train_df, test_df = data
    top = set(train_df.ItemId.astype(str).value_counts().index[:k])
    nxt = test_df.groupby('SessionId').ItemId.shift(-1).dropna().astype(str)
    return np.mean([i in top for i in nxt])


@pytest.fixture(scope='module')
def xe_model(tiny_data):
    return train(tiny_data, loss='cross-entropy', final_act='softmax', constrained_embedding=True, logq=1.0,
                 n_epochs=3, dropout_p_embed=0.1)


def _uniform_draws():
    rng = np.random.RandomState(42)

    def mat(a, b):
        s = np.sqrt(6.0 / (a + b))
        return (rng.rand(a, b) * s * 2 - s).astype('float32')
    return mat


def test_initial_weights_follow_original_order():
    m = GRU4Rec(layers=[4, 3], embedding=5, gru_cell='theano')
    m.itemidmap = pd.Series(np.arange(7), index=[str(i) for i in range(7)])
    w = m._init_weights()
    mat = _uniform_draws()
    np.testing.assert_array_equal(w['E'], mat(7, 5))
    np.testing.assert_array_equal(w['Wx0'], np.hstack([mat(5, 4) for _ in range(3)]))
    np.testing.assert_array_equal(w['Wh0'], mat(4, 4))
    assert list(w) == ['E', 'Wx0', 'Wh0', 'Wrz0', 'Bh0', 'Wx1', 'Wh1', 'Wrz1', 'Bh1', 'Wy', 'By']
    assert w['Wx1'].shape == (4, 9) and w['Wy'].shape == (7, 3) and not w['By'].any()


def test_initial_weights_follow_the_pytorch_ports_compatibility_order():
    """gru_cell='pytorch' draws like the port's _reset_weights_to_compatibility_mode: per GRUCell layer
    the (r, z, n) input matrices, then the (r, z, n) hidden ones, each (out x in); stored here as
    Wx = [n | r | z] (in x 3h), Wrz = [r | z], Wh = n, plus a zero hidden-side bias Bhh."""
    m = GRU4Rec(layers=[4, 4], embedding=4, gru_cell='pytorch')
    m.itemidmap = pd.Series(np.arange(7), index=[str(i) for i in range(7)])
    w = m._init_weights()
    mat = _uniform_draws()
    np.testing.assert_array_equal(w['E'], mat(7, 4))
    for i in range(2):
        r, z, n = (mat(4, 4) for _ in range(3))
        hr, hz, hn = (mat(4, 4) for _ in range(3))
        np.testing.assert_array_equal(w['Wx{}'.format(i)], np.hstack([n.T, r.T, z.T]))
        np.testing.assert_array_equal(w['Wrz{}'.format(i)], np.hstack([hr.T, hz.T]))
        np.testing.assert_array_equal(w['Wh{}'.format(i)], hn.T)
        assert not w['Bhh{}'.format(i)].any() and w['Bhh{}'.format(i)].shape == (12,)
    np.testing.assert_array_equal(w['Wy'], mat(7, 4))
    assert all(v.flags.c_contiguous for v in w.values())
    onehot = GRU4Rec(layers=[3], gru_cell='pytorch')  # the port's GRUEmbedding: Wx0, then Wrz0, then Wh0; no Bhh
    onehot.itemidmap = m.itemidmap
    w = onehot._init_weights()
    mat = _uniform_draws()
    np.testing.assert_array_equal(w['Wx0'], np.hstack([mat(7, 3) for _ in range(3)]))
    np.testing.assert_array_equal(w['Wrz0'], np.hstack([mat(3, 3) for _ in range(2)]))
    np.testing.assert_array_equal(w['Wh0'], mat(3, 3))
    assert list(w) == ['Wx0', 'Wh0', 'Wrz0', 'Bh0', 'Wy', 'By']


def test_no_negatives_is_one_clear_error():
    """n_sample=0 takes its negatives from the mini-batch: one session per batch leaves none (the
    loss Op raised a ValueError)."""
    with pytest.raises(UserError, match=r'n_sample=0 .*\(batch_size=1\)'):
        GRU4Rec(batch_size=1, n_sample=0)
    model = GRU4Rec(batch_size=1)
    with pytest.raises(UserError, match='batch_size >= 2'):
        model.set_params(n_sample=0)
    one_session = pd.DataFrame({'SessionId': [1, 1, 1], 'ItemId': ['a', 'b', 'c'], 'Time': [1, 2, 3]})
    with pytest.raises(UserError, match='has 1 session'):
        GRU4Rec(batch_size=8, n_sample=0, layers=[4]).fit(one_session, verbose=False)


def test_time_sort_orders_equal_start_times_as_the_original(monkeypatch):
    """The original argsorts the per-session start times (sessions in session-id order) with
    numpy's default, unstable sort: sessions that start together keep that order, not a stable one."""
    import gru4rec.model as model_module
    rng = np.random.RandomState(1)
    sessions = rng.permutation(np.arange(1000, 1200))
    starts = 1500000000 + rng.randint(0, 5, size=200) * 60  # five start times for 200 sessions
    rows = [(s, str(rng.randint(20)), t + 10 * j) for s, t in zip(sessions, starts) for j in range(rng.randint(2, 4))]
    data = pd.DataFrame(rows, columns=['SessionId', 'ItemId', 'Time']).sample(frac=1, random_state=0)
    expected = np.argsort(data.groupby('SessionId').Time.min().values)  # the original's array and sort
    assert not np.array_equal(expected, np.argsort(data.groupby('SessionId').Time.min().values, kind='stable'))
    orders, session_parallel = [], model_module.session_parallel

    def spy(items, offsets, order, *args, **kwargs):
        orders.append(np.array(order))
        return session_parallel(items, offsets, order, *args, **kwargs)
    monkeypatch.setattr(model_module, 'session_parallel', spy)
    GRU4Rec(layers=[8], batch_size=4, n_sample=0, n_epochs=1, loss='cross-entropy', final_act='softmax').fit(
        data, verbose=False)
    np.testing.assert_array_equal(orders[0], expected)


@pytest.mark.parametrize('params', [
    dict(loss='cross-entropy', final_act='softmax', constrained_embedding=True, logq=1.0),
    dict(loss='bpr-max', final_act='elu-0.5', constrained_embedding=True, bpreg=1.0, momentum=0.3),
    dict(loss='bpr-max', final_act='linear', embedding=24, dropout_p_embed=0.2),
    dict(loss='cross-entropy', final_act='softmax', embedding=0, dropout_p_hidden=0.2),
    dict(loss='xe_logit', final_act='softmax_logit', constrained_embedding=True, smoothing=0.1),
    dict(loss='top1', final_act='tanh', layers=[16, 16], embedding='layersize'),
    dict(loss='bpr', final_act='leaky-0.1', constrained_embedding=True, adapt='rmsprop', adapt_params=[0.9]),
    dict(loss='top1-max', final_act='selu-1.05-1.67', constrained_embedding=True, hidden_act='relu', grad_cap=1.0),
    dict(loss='cross-entropy', final_act='softmax', n_sample=0, smoothing=0.05, adapt='adam', adapt_params=[0.9, 0.999]),
    dict(loss='bpr-max', final_act='relu', constrained_embedding=True, adapt=None, lmbd=0.001, sample_alpha=0.0,
         train_random_order=True, init_as_normal=True, sigma=0.1),
])
@pytest.mark.slow
def test_every_mode_trains_and_evaluates(tiny_data, params):
    m = train(tiny_data, **params)
    assert not m.error_during_train
    rec, mrr = evaluate_sessions(m, tiny_data[1], cut_off=[1, 20], batch_size=50, verbose=False)
    assert 0 <= mrr[0] <= mrr[1] <= rec[1] <= 1 and rec[0] == pytest.approx(mrr[0])


@pytest.mark.parametrize('params', [
    dict(loss='cross-entropy', final_act='softmax', constrained_embedding=True, logq=1.0),
    dict(loss='bpr-max', final_act='elu-1', constrained_embedding=True, bpreg=0.5),
    dict(loss='bpr-max', final_act='elu-1', embedding=32),
    dict(loss='cross-entropy', final_act='softmax'),
])
def test_main_settings_beat_popularity(tiny_data, params):
    m = train(tiny_data, n_epochs=3, **params)
    rec, _ = evaluate_sessions(m, tiny_data[1], cut_off=[20], verbose=False)
    assert rec[0] > popularity_recall(tiny_data) + 0.05


@pytest.mark.slow
def test_custom_ops_and_reference_train_identically(tiny_data):
    params = dict(loss='bpr-max', final_act='elu-0.5', constrained_embedding=True, n_epochs=1)
    a = train(tiny_data, **params)
    gpu_ops.set_custom_ops(False)
    try:
        b = train(tiny_data, **params)
    finally:
        gpu_ops.set_custom_ops(True)
    for k in a.weights:
        np.testing.assert_allclose(a.weights[k], b.weights[k], rtol=1e-3, atol=1e-5)


def brute_force_metrics(model, test_df, cut_offs, mode, items=None):
    """Score every event with predict_next_batch one session at a time and rank by full comparison."""
    known = test_df[test_df.ItemId.astype(str).isin(model.itemidmap.index)].sort_values(['SessionId', 'Time', 'ItemId'])
    ranks = []
    for sid, sess in known.groupby('SessionId', sort=True):
        ids = sess.ItemId.astype(str).values
        for i in range(len(ids) - 1):
            cand = None if items is None else np.concatenate([[ids[i + 1]], items])
            scores = model.predict_next_batch(np.array([sid]), np.array([ids[i]]), cand, batch=1)[0]
            if items is None:
                target, others = scores[ids[i + 1]], scores.values
            else:
                target, others = scores.values[0], scores.values[1:]
            better, ties = (others > target).sum(), (others == target).sum()
            ranks.append({'standard': better + 1, 'conservative': better + ties,
                          'median': better + 0.5 * (ties - 1) + 1}[mode])
        model._predict_state = None
    ranks = np.array(ranks, dtype=float)
    return [np.mean(ranks <= c) for c in cut_offs], [np.mean((ranks <= c) / ranks) for c in cut_offs]


@pytest.mark.parametrize('mode', ['standard', 'conservative', 'median'])
def test_evaluation_equals_brute_force_ranking(tiny_data, mode):
    m = train(tiny_data, loss='bpr-max', final_act='relu', constrained_embedding=True)  # relu makes real ties
    test_df = tiny_data[1][tiny_data[1].SessionId.isin(tiny_data[1].SessionId.unique()[:40])]
    got = evaluate_sessions(m, test_df, cut_off=[1, 5, 20], batch_size=7, mode=mode, verbose=False)
    expected = brute_force_metrics(m, test_df, [1, 5, 20], mode)
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_evaluation_on_item_subset_equals_brute_force(xe_model, tiny_data):
    test_df = tiny_data[1][tiny_data[1].SessionId.isin(tiny_data[1].SessionId.unique()[:30])]
    items = xe_model.itemidmap.index.values[::3]
    got = evaluate_sessions(xe_model, test_df, items=items, cut_off=[5], batch_size=8, verbose=False)
    np.testing.assert_allclose(got, brute_force_metrics(xe_model, test_df, [5], 'standard', items), rtol=1e-5)


def test_unknown_test_items_are_dropped_and_batch_size_does_not_matter(xe_model, tiny_data):
    test_df = tiny_data[1].copy()
    a = evaluate_sessions(xe_model, test_df, cut_off=[10], batch_size=512, verbose=False)
    noisy = pd.concat([test_df, pd.DataFrame({'SessionId': test_df.SessionId.iloc[:5].values, 'ItemId': 'unknown-item',
                                              'Time': test_df.Time.iloc[:5].values + 0.5})])
    b = evaluate_sessions(xe_model, noisy, cut_off=[10], batch_size=3, verbose=False)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(UserError, match='None of the test items'):
        evaluate_sessions(xe_model, test_df.assign(ItemId='nope'), verbose=False)


def test_predict_next_batch_keeps_and_resets_state(xe_model):
    items = xe_model.itemidmap.index.values
    first = xe_model.predict_next_batch(np.array([1, 2]), items[[0, 1]], batch=2)
    assert first.shape == (len(items), 2) and list(first.index[:3]) == list(items[:3])
    np.testing.assert_allclose(first.sum(axis=0), 1.0, rtol=1e-4)  # softmax scores
    cont = xe_model.predict_next_batch(np.array([1, 3]), items[[5, 5]], batch=2)
    assert not np.allclose(cont[0], cont[1])  # slot 0 remembers item 0, slot 1 was reset
    xe_model._predict_state = None
    fresh = xe_model.predict_next_batch(np.array([9, 3]), items[[5, 5]], batch=2)
    np.testing.assert_allclose(fresh[1], cont[1], rtol=1e-5)
    subset = xe_model.predict_next_batch(np.array([9, 3]), items[[5, 5]], predict_for_item_ids=items[:4], batch=2)
    assert subset.shape == (4, 2)


def test_recommend_returns_top_k_of_session_scores(xe_model):
    items = xe_model.itemidmap.index.values
    history = list(items[[3, 8, 2]])
    ids, scores = xe_model.recommend(history, k=5)
    xe_model._predict_state = None
    for it in history:
        s = xe_model.predict_next_batch(np.array([1]), np.array([it]), batch=1)[0]
    np.testing.assert_array_equal(ids, s.sort_values(ascending=False, kind='stable').index[:5])
    np.testing.assert_allclose(scores, np.sort(s.values)[::-1][:5], rtol=1e-5)
    batch = xe_model.recommend([history, history[:1]], k=3, exclude_seen=True)
    assert len(batch) == 2 and not set(batch[0][0]) & set(history)
    with pytest.raises(UserError, match='Unknown item'):
        xe_model.recommend(['no-such-item'])


@pytest.mark.slow
def test_save_load_in_fresh_process(xe_model, tiny_data, tmp_path, root):
    path = str(tmp_path / 'model.pickle')
    xe_model.savemodel(path)
    test_path = str(tmp_path / 'test.tsv')
    tiny_data[1].to_csv(test_path, sep='\t', index=False)
    expected = evaluate_sessions(xe_model, tiny_data[1], cut_off=[5, 20], verbose=False)
    code = ('import sys; sys.path.insert(0, {!r}); from recsys_core import backend; backend.configure("cpu");'
            'from recsys_core.persistence import load_model; from recsys_core.data import load_events;'
            'from recsys_core.evaluation import evaluate_sessions;'
            'm = load_model({!r}); print(evaluate_sessions(m, load_events({!r}, verbose=False), cut_off=[5, 20], verbose=False))'
            ).format(root, path, test_path)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    got = eval(out.stdout.strip().splitlines()[-1].replace('np.float64', ''))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_bad_model_files_give_one_clear_error(tmp_path, xe_model):
    from recsys_core.persistence import load_model
    garbage = tmp_path / 'garbage.pickle'
    garbage.write_bytes(b'not a pickle at all')
    with pytest.raises(UserError, match='corrupt or not a model file'):
        load_model(str(garbage))
    foreign = tmp_path / 'foreign.pickle'
    foreign.write_bytes(pickle.dumps({'some': 'dict'}))
    with pytest.raises(UserError, match='not a model file of this project'):
        load_model(str(foreign))
    good = tmp_path / 'good.pickle'
    xe_model.savemodel(str(good))
    truncated = tmp_path / 'truncated.pickle'
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(UserError):
        load_model(str(truncated))


def test_failed_save_leaves_existing_file_intact(tmp_path, xe_model, monkeypatch):
    path = tmp_path / 'model.pickle'
    path.write_bytes(b'previous contents')
    import recsys_core.persistence as persistence

    def boom(*a, **k):  # fails after the temporary file has been written
        raise OSError('disk full')
    monkeypatch.setattr(persistence.os, 'fsync', boom)
    with pytest.raises(OSError):
        xe_model.savemodel(str(path))
    assert path.read_bytes() == b'previous contents'
    assert os.listdir(tmp_path) == ['model.pickle']


def test_nan_loss_marks_model_failed(tiny_data):
    m = train(tiny_data, loss='cross-entropy', final_act='softmax', sigma=1e38, constrained_embedding=True)  # products overflow to inf: NaN loss
    assert m.error_during_train
    with pytest.raises(UserError, match='NaN'):
        evaluate_sessions(m, tiny_data[1], verbose=False)


def test_tiebreaking_mode_lies_between_standard_and_conservative(tiny_data):
    m = train(tiny_data, loss='bpr-max', final_act='relu', constrained_embedding=True)  # relu ties at zero
    res = {mode: evaluate_sessions(m, tiny_data[1], cut_off=[20], mode=mode, verbose=False)[0][0]
           for mode in ('standard', 'conservative', 'tiebreaking')}
    assert res['conservative'] <= res['tiebreaking'] <= res['standard']


def test_collector_paused_restores_the_previous_state_even_on_errors():
    import gc
    from recsys_core.backend import collector_paused
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with collector_paused():
            assert not gc.isenabled()
            raise RuntimeError('boom')
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()


@pytest.mark.parametrize('sigma', [0.0, 1e38])  # a normal run and one that returns early on a NaN loss
def test_training_steps_run_with_the_collector_off_and_restore_it(tiny_data, monkeypatch, sigma):
    import gc
    import gru4rec.model as model_module
    seen, batches = [], model_module.session_parallel

    def recording(*args, **kwargs):
        for rec in batches(*args, **kwargs):
            seen.append(gc.isenabled())
            yield rec
    monkeypatch.setattr(model_module, 'session_parallel', recording)
    m = train(tiny_data, loss='cross-entropy', final_act='softmax', sigma=sigma, constrained_embedding=True)
    assert m.error_during_train == (sigma > 0)
    assert seen and not any(seen)
    assert gc.isenabled()


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize('cell', ['pytorch', 'theano'])
def test_gru_step_is_the_reference_implementations_cell(cell):
    """One GRU step of both layers against numpy: 'pytorch' is torch.nn.GRUCell in its own weight layout
    (weight_ih / weight_hh rows r, z, n; bias_ih, bias_hh), 'theano' the original's formula."""
    m = GRU4Rec(layers=[5, 4], constrained_embedding=True, gru_cell=cell)
    m.itemidmap = pd.Series(np.arange(9, dtype=np.int32), index=[str(i) for i in range(9)])
    rng = np.random.RandomState(0)
    m.weights = {k: (rng.randn(*v.shape) * 0.7).astype('float32') for k, v in m._init_weights().items()}
    m._make_shared()
    X = np.array([3, 0, 8], dtype=np.int32)
    H = [rng.randn(3, h).astype('float32') for h in m.layers]
    new = [np.asarray(h) for h in m._build_advance()(X, *H)]
    y = m.weights['Wy'][X]
    for i, h in enumerate(m.layers):
        Wx, Wh, Wrz, Bh = (m.weights[n + str(i)] for n in ('Wx', 'Wh', 'Wrz', 'Bh'))
        if cell == 'pytorch':  # torch's layout: rows (r, z, n)
            weight_ih = np.vstack([Wx[:, h:2 * h].T, Wx[:, 2 * h:].T, Wx[:, :h].T])
            weight_hh = np.vstack([Wrz[:, :h].T, Wrz[:, h:].T, Wh.T])
            Bhh = m.weights['Bhh' + str(i)]
            bias_ih, bias_hh = np.concatenate([Bh[h:], Bh[:h]]), np.concatenate([Bhh[h:], Bhh[:h]])
            gi, gh = y @ weight_ih.T + bias_ih, H[i] @ weight_hh.T + bias_hh
            r, z = _sigmoid(gi[:, :h] + gh[:, :h]), _sigmoid(gi[:, h:2 * h] + gh[:, h:2 * h])
            n = np.tanh(gi[:, 2 * h:] + r * gh[:, 2 * h:])
            y = (1 - z) * n + z * H[i]
        else:
            vec = y @ Wx + Bh
            rz = _sigmoid(vec[:, h:] + H[i] @ Wrz)
            c = np.tanh((H[i] * rz[:, :h]) @ Wh + vec[:, :h])
            y = (1 - rz[:, h:]) * H[i] + rz[:, h:] * c
        np.testing.assert_allclose(new[i], y, rtol=1e-4, atol=1e-5)


def test_model_files_keep_the_step_they_were_trained_with(xe_model):
    """A file records gru_cell and sparse_update and loads with them; a file saved before those
    parameters existed was trained with the original's cell and rows updated once, and loads so."""
    state = xe_model.get_state()
    assert (xe_model.gru_cell, xe_model.sparse_update) == ('theano', 'per_occurrence')
    assert (GRU4Rec.from_state(state).gru_cell, GRU4Rec.from_state(state).sparse_update) == ('theano', 'per_occurrence')
    state['params'].update(gru_cell='pytorch', sparse_update='per_row')
    state['weights'] = dict(state['weights'], **{'Bhh0': np.zeros(3 * xe_model.layers[0], dtype='float32')})
    loaded = GRU4Rec.from_state(state)
    assert (loaded.gru_cell, loaded.sparse_update) == ('pytorch', 'per_row')
    old = xe_model.get_state()
    old['params'].pop('gru_cell')
    old['params'].pop('sparse_update')
    loaded = GRU4Rec.from_state(old)
    assert (loaded.gru_cell, loaded.sparse_update) == ('theano', 'per_row')
    assert set(loaded.weights) == set(loaded._init_weight_names())


def test_seed_draws_other_negatives_and_dropout_but_the_same_initial_weights(tiny_data):
    """seed chooses the random streams (negatives, dropout); the weights start from the original's draw."""
    p = dict(BASE, n_sample=16, dropout_p_embed=0.2, constrained_embedding=True, n_epochs=1)
    a, b, c = (GRU4Rec(seed=s, **p) for s in (42, 42, 7))
    losses = [m.fit(tiny_data[0], verbose=False).epoch_stats[-1]['loss'] for m in (a, b, c)]
    assert losses[0] == losses[1] and losses[0] != losses[2]
    assert a.seed == 42 and GRU4Rec().seed == 42
    init = [m._init_weights()['Wy'] for m in (a, c)]
    np.testing.assert_array_equal(*init)
