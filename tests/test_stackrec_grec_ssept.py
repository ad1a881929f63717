"""StackRec's GRec (the masked gap-filling objective on the NextItNet stack, P9) and SSE-PT (the user
embedding and the SSE regulariser, cumulative in place, P10): masks, input layout, corruption rates,
training, exact resumption from a checkpoint, evaluation with the true users, stacking and the
pipeline's plans."""
import numpy as np
import pandas as pd
import pytensor.tensor as pt
import pytest

from conftest import fit_interrupted_then_resumed
from recsys_core.backend import compile_function
from recsys_core.errors import UserError
from recsys_core.evaluation import evaluate
from recsys_core.trainer import TrainingOptions, WarmStart
from stackrec import pipeline
from stackrec.grec import GRec, mask_rows, n_masked
from stackrec.ssept import SSEPT, SSEPTOnCSV, sse_corrupt
from stackrec.stacking import stacking_mapping

pytestmark = pytest.mark.slow  # trains about ten small models (a few minutes on 2 cores)

GREC = dict(dilated_channels=8, dilations=[1, 4], max_len=8, batch_size=32, n_epochs=2)
SSEPT_PARAMS = dict(hidden=8, num_blocks=2, max_len=8, batch_size=32, n_epochs=2)


def with_users(events, n_users=40):
    """tiny_data's events with a UserId column (several sessions per user)."""
    events = events.copy()
    events['UserId'] = 'u' + (events['SessionId'] % n_users).astype(str)
    return events


# ----------------------------------------------------------------- GRec
def test_grec_mask_counts_are_the_releases():
    assert n_masked(8) == 1          # round(1.4)
    assert n_masked(11) == 2         # round(2.0)
    assert n_masked(2) == 1          # max(1, round(0.2))
    assert n_masked(301) == 50       # min(50, 60)
    assert n_masked(41, 0.5, 50) == 20


def test_grec_masks_distinct_positions_never_zero_and_predicts_the_original_at_q_minus_1():
    rng = np.random.default_rng(0)
    B, L, m, pad = 64, 11, 3, 0
    rows = rng.integers(1, 1000, (B, L)).astype(np.int32)
    rows[:5, :4] = pad                                    # padding positions can be masked too
    keep = rows.copy()
    inputs, prev, labels = mask_rows(rows, m, pad, rng)
    np.testing.assert_array_equal(rows, keep)             # the training rows are not touched
    q = prev + 1
    assert inputs.shape == (B, L) and prev.shape == labels.shape == (B, m)
    assert q.min() >= 1 and q.max() <= L - 1
    assert all(len(set(r)) == m for r in q) and np.all(np.diff(q, axis=1) > 0)
    r = np.arange(B)[:, None]
    np.testing.assert_array_equal(labels, rows[r, q])     # the original items are the labels
    assert np.all(inputs[r, q] == pad)
    untouched = np.ones((B, L), dtype=bool)
    untouched[r, q] = False
    np.testing.assert_array_equal(inputs[untouched], rows[untouched])
    counts = np.bincount(mask_rows(np.ones((20000, L), np.int32), m, pad, rng)[1].ravel() + 1, minlength=L)
    assert counts[0] == 0 and np.allclose(counts[1:] / counts[1:].mean(), 1, atol=0.05)  # uniform over 1..L-1


def test_grec_step_gathers_the_whole_masked_rows_hidden_state_at_q_minus_1(tiny_data):
    model = GRec(**dict(GREC, n_epochs=0)).fit(tiny_data[0], verbose=False)
    variables, inputs, labels, select = model._batch_variables()
    assert inputs is variables[0] and labels is variables[2]   # the full row in, unshifted
    H = pt.tensor3('H')
    f = compile_function([H, variables[1]], select(H))
    h = np.random.default_rng(1).standard_normal((4, model.seq_len, 3)).astype('float32')
    prev = np.array([[0], [3], [6], [2]], dtype=np.int32)
    np.testing.assert_array_equal(f(h, prev), h[np.arange(4)[:, None], prev])
    rows = np.arange(4 * model.seq_len, dtype=np.int32).reshape(4, -1) % model.n_vocab + 1
    (x, p, y), feed_labels = model._batch_values(rows)
    assert x.shape == rows.shape and p.shape == (4, model.n_masked()) and feed_labels is y
    assert model._targets_per_row() == model.n_masked() == 1


def test_grec_trains_and_resumes_to_the_same_weights(tiny_data, tmp_path, monkeypatch):
    train, valid = tiny_data
    options = dict(valid=valid, protocol='last', metric='mrr', cut_off=5, eval_every=10)
    whole = GRec(**GREC).fit(train, verbose=False, training=TrainingOptions(**options))
    losses = [s['loss'] for s in whole.epoch_stats]
    assert len(losses) == 2 and losses[1] < losses[0]
    # 44 batches an epoch: interrupted after step 65, checkpoint at step 60, epoch 2
    resumed = fit_interrupted_then_resumed(monkeypatch, GRec, GREC, train, str(tmp_path / 'ck'), 65,
                                           dict(verbose=False), **options)
    for k in whole.weights:
        np.testing.assert_allclose(resumed.weights[k], whole.weights[k], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose([s['loss'] for s in resumed.epoch_stats], losses, rtol=1e-6)


def test_grec_stacks_with_stacka(tiny_data):
    train = tiny_data[0]
    source = GRec(**dict(GREC, n_epochs=1)).fit(train, verbose=False)
    deep = GRec(**dict(GREC, dilations=[1, 4] * 2, n_epochs=0))
    deep.fit(train, verbose=False, vocabulary_of=source, training=TrainingOptions(
        warm_start=WarmStart(source, stacking_mapping('stackA', 'grec', 2, 4, 'double'))))
    np.testing.assert_array_equal(deep.weights['E'], source.weights['E'])
    for i, j in enumerate([0, 0, 1, 1]):
        np.testing.assert_array_equal(deep.weights['conv{}a_W'.format(i)], source.weights['conv{}a_W'.format(j)])
        assert deep.weights['alpha{}'.format(i)][0] == 0
    assert not np.array_equal(deep.weights['Ws'], source.weights['Ws'])   # the softmax restarts [P11]


# ----------------------------------------------------------------- SSE-PT: the regulariser
def test_sse_corruption_rates_in_place_and_cumulative():
    rng = np.random.default_rng(7)
    N, L, U, V, pad = 20000, 20, 10 ** 9, 10 ** 9, 0
    rows = np.empty((N, 1 + L), dtype=np.int64)
    rows[:, 0] = np.arange(N)
    rows[:, 1:] = rng.integers(1, 1000, (N, L))
    rows[:, 1:6] = np.where(np.arange(N)[:, None] % 2 == 0, pad, rows[:, 1:6])  # half the rows start padded
    clean = rows.copy()
    out = sse_corrupt(rows, rng, U, V, pad, 0.8, 0.01)
    assert out is rows                                            # in place
    assert abs((rows[:, 0] != clean[:, 0]).mean() - 0.8) < 0.01
    changed = rows[:, 1:] != clean[:, 1:]
    candidates = clean[:, 1:-1] != pad
    assert not changed[:, -1].any()                               # never the last item
    assert not changed[:, :-1][~candidates].any()                 # never a padding item
    assert abs(changed[:, :-1][candidates].mean() - 0.01) < 0.001
    sse_corrupt(rows, rng, U, V, pad, 0.8, 0.01)                  # a second epoch on the same rows
    twice = (rows[:, 1:-1] != clean[:, 1:-1])[candidates].mean()
    assert abs(twice - (1 - 0.99 ** 2)) < 0.0015                  # the corruption accumulates
    small = np.ones((100000, 3), dtype=np.int64)
    sse_corrupt(small, rng, 5, 3, pad, 1.0, 1.0)                  # replacements can be padding (id 0)
    assert set(np.unique(small[:, 1])) == {0, 1, 2} and np.all(small[:, 2] == 1) and small[:, 0].max() < 5


def test_ssept_input_is_user_then_item_plus_position(tiny_data):
    train = with_users(tiny_data[0])
    model = SSEPT(**dict(SSEPT_PARAMS, users='UserId', n_epochs=0)).fit(train, verbose=False)
    w = model.weights
    assert w['user_emb'].shape == (40, 4) and w['item_emb'].shape == (model.n_vocab, 4)
    assert w['pos_emb'].shape == (model.seq_len, 8)
    assert 0.005 < w['user_emb'].std() < 0.015 and 0.005 < w['item_emb'].std() < 0.015
    X = pt.imatrix('X')
    f = compile_function([X], model._embed(X))
    windows = model.windows_of([np.array([3, 5, 6, 7]), np.array([model.n_users, 9])])  # the unknown user last
    assert windows.shape == (2, model.seq_len) and list(windows[:, 0]) == [3, model.n_users]
    e = f(windows)
    T = model.seq_len - 1
    for b in range(2):
        user = w['user_emb'][windows[b, 0]] if windows[b, 0] < model.n_users else np.zeros(4, 'float32')
        want = np.concatenate([np.tile(user, (T, 1)), w['item_emb'][windows[b, 1:]]], axis=1) + w['pos_emb'][:T]
        np.testing.assert_allclose(e[b], want, rtol=1e-6, atol=1e-7)


def test_ssept_training_rows_carry_each_windows_user_and_corruption_accumulates(tiny_data):
    train = with_users(tiny_data[0])
    model = SSEPT(**dict(SSEPT_PARAMS, users='UserId', max_len=4, n_epochs=0)).fit(train, verbose=False)
    rows = model._train_rows
    users = train.sort_values(['SessionId', 'Time']).groupby('SessionId').UserId.first()
    sizes = train.groupby('SessionId').size()
    n_windows = [len(range(n, 0, -4)) - (1 if n % 4 == 1 else 0) for n in sizes.values]  # windows of 4, oldest >= 2
    want = np.repeat(model._user_index[users.values].values, n_windows)
    np.testing.assert_array_equal(rows[:, 0], want)
    counts = []
    for epochs in (1, 2):
        m = SSEPT(**dict(SSEPT_PARAMS, users='UserId', max_len=4, n_epochs=epochs)).fit(train, verbose=False)
        counts.append((m._train_rows[:, 1:] != m._clean_items).sum())
    assert 0 < counts[0] < counts[1]                                 # in place, more after the second epoch
    m = SSEPT(**dict(SSEPT_PARAMS, users='UserId', max_len=4, n_epochs=1, sse_cumulative=False)).fit(
        train, verbose=False)
    np.testing.assert_array_equal(m._train_rows[:, 1:], m._clean_items)


# ----------------------------------------------------------------- SSE-PT: training and evaluation
def test_ssept_trains_and_evaluates_with_the_true_users(tiny_data):
    train, test = with_users(tiny_data[0]), with_users(tiny_data[1])
    model = SSEPT(**dict(SSEPT_PARAMS, users='UserId', n_epochs=3)).fit(train, verbose=False)
    losses = [s['loss'] for s in model.epoch_stats]
    assert losses[-1] < losses[0]
    histories, targets = model.last_item_cases(test, 'SessionId', 'ItemId', 'Time')
    last = test.sort_values(['SessionId', 'Time']).groupby('SessionId')
    users = last.UserId.first()[last.size() >= 2]
    assert [h[0] for h in histories] == list(model._user_index[users.values].values)
    res = evaluate(model, test, 'last', [5, 20], verbose=False)
    known = np.array([len(h) > 0 for h in histories]) & (targets >= 0)
    cases = [h for h, k in zip(histories, known) if k]
    true_ranks = model.rank_last_items(cases, targets[known], 'standard', 20)
    hit = true_ranks <= 20
    assert res.value('mrr', 20) == pytest.approx((hit / true_ranks).sum() / len(targets))
    no_user = [np.concatenate([[model.n_users], h[1:]]).astype(np.int32) for h in cases]
    assert np.any(model.rank_last_items(no_user, targets[known], 'standard', 20) != true_ranks)  # users matter
    with pytest.raises(UserError, match='protocol last'):
        evaluate(model, test, 'next', [5], verbose=False)
    with pytest.raises(UserError, match='UserId'):
        evaluate(model, tiny_data[1], 'last', [5], verbose=False)
    ids, _ = model.recommend(list(train.ItemId.unique()[:3]), k=5)  # no user: the unknown user's zero vector
    assert len(ids) == 5


def test_ssept_users_first_reads_the_released_csv_layout(tiny_data):
    train = tiny_data[0]
    first = train.groupby('SessionId').Time.min()
    tokens = pd.DataFrame({'SessionId': first.index, 'ItemId': ['user{}'.format(s % 30) for s in first.index],
                           'Time': first.values - 1})
    csv_like = pd.concat([tokens, train], ignore_index=True)
    model = SSEPTOnCSV(**dict(SSEPT_PARAMS, n_epochs=0)).fit(csv_like, verbose=False)
    assert model.users == 'first' and model.n_users == 30
    assert not any(str(i).startswith('user') for i in model.itemidmap.index)   # the user token is no item
    reference = SSEPT(**dict(SSEPT_PARAMS, n_epochs=0)).fit(train, verbose=False)
    np.testing.assert_array_equal(model._train_rows[:, 1:], reference._train_rows[:, 1:])


def test_ssept_resumes_to_the_same_weights_with_cumulative_corruption(tiny_data, tmp_path, monkeypatch):
    train, valid = with_users(tiny_data[0]), with_users(tiny_data[1])
    params = dict(SSEPT_PARAMS, users='UserId')
    options = dict(valid=valid, protocol='last', metric='mrr', cut_off=5, eval_every=10)
    whole = SSEPT(**params).fit(train, verbose=False, training=TrainingOptions(**options))
    # interrupted inside epoch 2, after epoch 1's corruption
    resumed = fit_interrupted_then_resumed(monkeypatch, SSEPT, params, train, str(tmp_path / 'ck'), 65,
                                           dict(verbose=False), **options)
    for k in whole.weights:
        np.testing.assert_allclose(resumed.weights[k], whole.weights[k], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(resumed._train_rows, whole._train_rows)   # the same corrupted rows


def test_ssept_stacks_with_stackc_and_copies_the_user_embedding(tiny_data):
    train = with_users(tiny_data[0])
    source = SSEPT(**dict(SSEPT_PARAMS, users='UserId', n_epochs=1)).fit(train, verbose=False)
    deep = SSEPT(**dict(SSEPT_PARAMS, users='UserId', num_blocks=4, n_epochs=0))
    deep.fit(train, verbose=False, vocabulary_of=source, training=TrainingOptions(
        warm_start=WarmStart(source, stacking_mapping('stackC', 'ssept', 2, 4, 'modules', top=2))))
    for name in ('user_emb', 'item_emb', 'pos_emb'):
        np.testing.assert_array_equal(deep.weights[name], source.weights[name])
    assert list(deep.user_ids) == list(source.user_ids)
    for i, j in enumerate([0, 1, 0, 1]):
        np.testing.assert_array_equal(deep.weights['b{}_q_W'.format(i)], source.weights['b{}_q_W'.format(j)])
        assert deep.weights['b{}_sa'.format(i)][0] == 0
    assert not np.array_equal(deep.weights['final_W'], source.weights['final_W'])


# ----------------------------------------------------------------- the pipeline's plans
def test_pipeline_plans_of_grec_and_ssept():
    assert pipeline.base_model_class('grec') is GRec and pipeline.base_model_class('ssept') is SSEPTOnCSV
    assert pipeline.FAMILY_OF['grec'] == 'nextitnet' and pipeline.FAMILY_OF['ssept'] == 'sasrec'
    assert pipeline.stages('cl', 'grec', 'stackA', 0) == pipeline.stages('cl', 'nextitnet', 'stackA', 0)
    assert pipeline.stages('cl', 'ssept', None, 0) == [('from_scratch', 18, 0.8, 250000, 2000, 15, None),
                                                       ('stackC', 24, 1.0, 250000, 2000, 15, 'modules')]
    assert pipeline.depth_params('grec', 4) == {'dilations': [1, 4] * 2}
    assert pipeline.depth_params('ssept', 24) == {'num_blocks': 24}
