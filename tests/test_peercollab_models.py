"""PeerCollab's YouTubeDNN and BPR peers, the noise control and the release's baseline: the merges
against a re-derivation of the release's rules on its own key names, the noise's mask and scale,
the baseline's schedule, the DNN's forward pass, BPR's negatives and its ranking, resumption and the
release command for the new models."""
import os
import re
from collections import OrderedDict

import numpy as np
import pytest

from peercollab import cooperation
from peercollab.bpr import PeerBPR
from peercollab.model import PeerCollab
from peercollab.youtubednn import PeerYouTubeDNN
from recsys_core.errors import UserError

DNN = dict(hidden=8, max_len=8, batch_size=32, n_epochs=2, learning_rate=0.003)
BPR = dict(hidden=8, batch_size=256, n_epochs=2, learning_rate=0.01)


# ----------------------------------------------------------------- the release's rules, on its key names
def release_entropy(x, n=10):
    """The release's entropy: 10 bins [min + i s, min + (i+1) s) in float32, natural log, no renormalisation."""
    x = np.asarray(x, dtype=np.float32).ravel()
    lo, scale = x.min(), (x.max() - x.min()) / np.float32(n)
    h = 0.0
    for i in range(n):
        p = np.float32(np.sum((x >= lo + np.float32(i) * scale) & (x < lo + np.float32(i + 1) * scale))) / np.float32(len(x))
        if p != 0:
            h -= p * np.log(p)
    return float(h)


def release_l1(u, c):
    total = np.abs(u).sum() + np.abs(c).sum()
    return float(np.abs(u).sum() / total - np.abs(c).sum() / total)


def release_dnn_lw(own, peer, kind, a):
    """DNN_LW.py's five cooperation functions, by the substrings of the state dict's keys."""
    sig = lambda x: 1 / (1 + np.exp(-a * x))
    out, w = OrderedDict(), None
    for key, u in own.items():
        c = peer[key]
        mix = lambda: u * w + c * (1 - w)
        criterion = 'embed' in key or ('fc' in key and 'weight' in key) or ('final' in key and 'weight' in key)
        if kind == 'alllayer_entropy':
            if criterion:
                w = sig(release_entropy(u) - release_entropy(c))
            out[key] = mix()
        elif kind == 'alllayer_L1norm':
            if criterion:
                w = sig(release_l1(u, c))
            out[key] = mix()
        elif kind == 'onlyembed':
            if 'embed' in key:
                w = sig(release_entropy(u) - release_entropy(c))
                out[key] = mix()
                continue
            out[key] = u
        elif kind == 'onlymiddle':
            if 'fc' not in key:
                out[key] = u
                continue
            if u.ndim > 1:
                w = sig(release_entropy(u) - release_entropy(c))
            out[key] = mix()
        elif kind == 'onlyfinal':
            if 'final' not in key:
                out[key] = u
                continue
            if 'weight' in key:
                w = sig(release_entropy(u) - release_entropy(c))
            out[key] = mix()
    return out


def release_bpr_lw(own, peer, kind, a):
    """BPR_LW.py's two cooperation functions: every 'weight' key computes its gate, biases carry it."""
    sig = lambda x: 1 / (1 + np.exp(-a * x))
    out, w = OrderedDict(), None
    for key, u in own.items():
        c = peer[key]
        if 'weight' in key:
            w = sig(release_l1(u, c) if kind == 'embed_L1norm' else release_entropy(u) - release_entropy(c))
        out[key] = u * w + c * (1 - w)
    return out


DNN_KEYS = [('embedding.weight', 'item_emb'), ('fcs.mlp.0.weight', 'mlp0_W'), ('fcs.mlp.0.bias', 'mlp0_b'),
            ('fcs.mlp.3.weight', 'mlp1_W'), ('fcs.mlp.3.bias', 'mlp1_b'), ('final.weight', 'final_W'),
            ('final.bias', 'final_b')]
BPR_KEYS = [('W.weight', 'user_emb'), ('W_layer.0.weight', 'user_mlp0_W'), ('W_layer.0.bias', 'user_mlp0_b'),
            ('H.weight', 'item_emb'), ('H_layer.0.weight', 'item_mlp0_W'), ('H_layer.0.bias', 'item_mlp0_b')]


def peer_weights(model_cls, params, data, seed):
    """A model's initial weights (its order), spread differently per seed so the gates differ."""
    model = model_cls(**dict(params, seed=seed))
    model._training_rows(data, verbose=False)
    ours = model._peer_model(1)._init_weights()
    rng = np.random.default_rng(seed)
    ours = OrderedDict((k, (v + rng.standard_normal(v.shape).astype(np.float32) * rng.uniform(0.01, 0.5)))
                       for k, v in ours.items())
    return ours


@pytest.mark.parametrize('kind', cooperation.LW_TYPES)
def test_youtubednn_lw_merge_is_the_releases(tiny_data, kind):
    own, peer = (peer_weights(PeerYouTubeDNN, dict(DNN, layer_num=2), tiny_data[0], s) for s in (1, 2))
    ours = cooperation.lw_merge(own, peer, kind, 3.0, weight_kind=cooperation.layered_weight_kind)[0]
    release = release_dnn_lw(*(OrderedDict((rk, w[k].T if w[k].ndim == 2 and k != 'item_emb' else w[k])
                                           for rk, k in DNN_KEYS) for w in (own, peer)), kind, 3.0)
    for rk, k in DNN_KEYS:
        expected = release[rk].T if release[rk].ndim == 2 and k != 'item_emb' else release[rk]
        np.testing.assert_allclose(ours[k], expected, atol=2e-6, err_msg=k)


@pytest.mark.parametrize('kind', cooperation.BPR_LW_TYPES)
def test_bpr_lw_merge_is_the_releases(tiny_data, kind):
    own, peer = (peer_weights(PeerBPR, dict(BPR, layer_num=1), tiny_data[0], s) for s in (1, 2))
    assert list(own) == [k for _, k in BPR_KEYS]  # the release's state-dict order
    ours = cooperation.lw_merge(own, peer, kind, 3.0, weight_kind=cooperation.layered_weight_kind)[0]
    transpose = lambda k, v: v.T if 'mlp' in k and v.ndim == 2 else v
    release = release_bpr_lw(*(OrderedDict((rk, transpose(k, w[k])) for rk, k in BPR_KEYS) for w in (own, peer)),
                             kind, 3.0)
    for rk, k in BPR_KEYS:
        np.testing.assert_allclose(ours[k], transpose(k, release[rk]), atol=2e-6, err_msg=k)


def test_pw_merge_of_the_new_models_replaces_the_weak_entries_of_matrices_only(tiny_data):
    own, peer = (peer_weights(PeerBPR, dict(BPR, layer_num=1), tiny_data[0], s) for s in (1, 2))
    merged = cooperation.pw_merge(own, peer, 50)
    assert np.array_equal(merged['user_mlp0_b'], own['user_mlp0_b'])
    table = own['item_emb']
    weak = np.abs(table) <= np.float32(np.percentile(np.abs(table), 50))
    assert np.array_equal(merged['item_emb'], np.where(weak, peer['item_emb'], table))


def test_lw_types_are_checked_per_model():
    assert PeerBPR().cooperation_type == 'embed_entropy'
    with pytest.raises(UserError, match='must be one of embed_entropy, embed_L1norm'):
        PeerBPR(cooperation_type='onlyembed')
    with pytest.raises(UserError, match='n_peers=1'):
        PeerYouTubeDNN(cooperation='noise')


# ----------------------------------------------------------------- the noise control, the baseline
def test_noise_hits_the_entries_strictly_below_the_percentile_with_the_released_scale():
    assert [cooperation.noise_sigma(e, 0.05, 30) for e in (0, 29, 30, 60)] == pytest.approx(
        [0.05, 0.05, 0.0025, 0.000125])
    rng = np.random.default_rng(0)
    w = OrderedDict(m=np.round(rng.standard_normal((200, 50)), 1).astype(np.float32),  # ties at the threshold
                    b=rng.standard_normal(50).astype(np.float32))
    out = cooperation.add_noise(w, 30, 0.5, np.random.default_rng(1))
    assert np.array_equal(out['b'], w['b'])  # 1-D tensors are kept
    below = np.abs(w['m']) < np.float32(np.percentile(np.abs(w['m']), 30))
    changed = out['m'] != w['m']
    assert np.array_equal(changed, below) and 0.2 < below.mean() < 0.3
    assert np.std((out['m'] - w['m'])[below]) == pytest.approx(0.5, rel=0.1)


def test_one_model_is_the_releases_baseline_a_constant_rate_from_seed_10():
    single = PeerCollab(n_peers=1)
    assert single.seed_of(1) == 10 and single.release_baseline()
    assert [single.scheduled_rate(1, g, 100) for g in (0, 50, 99)] == [0.001] * 3
    control = PeerCollab(n_peers=1, single_schedule='peers')
    assert control.scheduled_rate(1, 50, 100) == pytest.approx(0.0005)
    assert not PeerCollab(n_peers=2).release_baseline()


def test_noise_runs_after_each_epoch_but_the_last(tiny_data, monkeypatch):
    calls = []
    real = cooperation.add_noise
    monkeypatch.setattr(cooperation, 'add_noise', lambda w, p, sigma, rng: calls.append(sigma) or real(w, p, sigma, rng))
    model = PeerYouTubeDNN(**dict(DNN, n_epochs=3, n_peers=1, cooperation='noise', noise_rate=0.1, noise_period=1))
    model.fit(tiny_data[0], verbose=False)
    assert calls == pytest.approx([0.1, 0.01])  # after the first and the second epoch, none after the last


# ----------------------------------------------------------------- the models
def test_youtubednn_scores_are_the_mlp_mean_over_every_position_padding_included(tiny_data):
    model = PeerYouTubeDNN(**dict(DNN, n_peers=1, layer_num=2, n_epochs=1)).fit(tiny_data[0], verbose=False)
    peer, w = model.peer_model(), model.peer_model().weight_values()
    assert not w['item_emb'][peer.pad_index].any()  # the padding row stays zero
    histories = [np.array([3, 5], dtype=np.int32), np.array([7], dtype=np.int32)]
    X = peer.windows_of(histories)
    h = w['item_emb'][X]
    for layer in range(2):
        h = np.maximum(h @ w['mlp{}_W'.format(layer)] + w['mlp{}_b'.format(layer)], 0)
    scores = h.mean(axis=1) @ w['final_W'] + w['final_b']
    scores[:, peer.pad_index] = -np.inf
    np.testing.assert_allclose(peer._history_scores(histories), scores, rtol=1e-5, atol=1e-5)


def bpr_split(tiny_data):
    from peercollab.split import leave_one_out, sequence_events
    train, test = tiny_data
    events = train.sort_values(['SessionId', 'Time'])
    seqs = [list(g.ItemId.astype(str)) for _, g in events.groupby('SessionId')]
    tr, _, te = leave_one_out(seqs, 100, 4, dedupe=True)
    return sequence_events(tr), sequence_events(te)


def test_bpr_negatives_are_never_the_users_training_items_and_its_ranks_skip_them(tiny_data):
    from recsys_core.evaluation import evaluate
    train, test = bpr_split(tiny_data)
    model = PeerBPR(**dict(BPR, n_peers=1, vocabulary='all')).fit(train, verbose=False, vocab_data=test)
    peer = model.peer_model()
    users = np.repeat(np.arange(peer.n_users, dtype=np.int32), 20)
    negatives = peer.negatives(users, np.random.default_rng(0))
    for u, j in zip(users, negatives):
        assert j not in peer.user_items[peer.user_offsets[u]:peer.user_offsets[u + 1]]
    assert len(set(negatives)) > 0.5 * model.n_items  # uniform over the whole item table
    # ranks against a brute-force count: the user's training items never outrank the target
    w = peer.weight_values()
    histories, targets = model.last_item_cases(test, 'SessionId', 'ItemId', 'Time')
    scores = w['user_emb'] @ w['item_emb'].T
    expected = []
    for (u,), t in zip(histories, targets):
        s = scores[u].copy()
        s[peer.user_items[peer.user_offsets[u]:peer.user_offsets[u + 1]]] = -np.inf
        expected.append(1 + np.sum(s > s[t]))
    ranks = model.rank_last_items(histories, targets, 'standard', 20)
    np.testing.assert_array_equal(ranks, expected)
    result = evaluate(model, test, protocol='last', cut_off=[5], verbose=False)
    assert result.value('hr', 5) == pytest.approx(np.mean(np.array(expected) <= 5))


def test_bpr_split_keeps_each_items_last_occurrence_and_users_with_four_distinct_items():
    from peercollab.split import leave_one_out
    train, valid, test = leave_one_out([list('abacbd'), list('aaaab'), list('abcdd')], 100, 4, dedupe=True)
    assert train == [list('ac'), list('ab')] and valid == [list('acb'), list('abc')]  # 'aaaab': 2 distinct
    assert test == [list('acbd'), list('abcd')]


@pytest.mark.slow
def test_release_command_runs_bpr_peers_in_processes_as_in_lockstep(tmp_path):
    """peercollab.release --model bpr: the BPR split, every peer's per-epoch best, and one process per
    peer (each drawing its own negatives) ending in the lockstep run's numbers."""
    import json
    from peercollab import release
    from recsys_core.synthetic import generate_sessions
    from conftest import cli
    events = generate_sessions(n_items=150, n_sessions=500, seed=5, mean_length=9)
    data = tmp_path / 'users.csv'
    data.write_text(''.join(','.join(g.ItemId.astype(str)) + '\n' for _, g in events.groupby('SessionId')))
    ps = 'hidden=8,batch_size=512,n_epochs=2,learning_rate=0.01,cooperation=lw,cooperation_type=embed_L1norm'
    assert release.main([str(data), '--out', str(tmp_path / 'run'), '--model', 'bpr', '-ps', ps]) == 0
    summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    assert sorted(summary) == ['peer 1', 'peer 2'] and summary['peer 2']['best']['hr@20'] > 0
    out = cli('-m', 'peercollab.release', str(data), '--out', str(tmp_path / 'procs'), '--model', 'bpr',
              '--processes', '-ps', ps)
    assert out.returncode == 0, out.stderr[-3000:] + (tmp_path / 'procs' / 'peer1.log').read_text()[-2000:]
    apart = json.loads((tmp_path / 'procs' / 'summary.json').read_text())
    for peer, entry in summary.items():
        for name, value in entry['best'].items():
            assert apart[peer]['best'][name] == pytest.approx(value, abs=1e-6), (peer, name)
    with pytest.raises(UserError, match='must be one of embed_entropy'):
        release.main([str(data), '--out', str(tmp_path / 'x'), '--model', 'bpr', '-ps', 'cooperation_type=onlyembed'])
    assert not os.path.exists(tmp_path / 'x')


@pytest.mark.slow
def test_run_py_reports_the_deployed_peer_and_the_best_per_metric_as_released(tiny_files, capsys):
    import run
    argv = [tiny_files['train'], '-g', 'peercollab.youtubednn', '-ps',
            'hidden=8,max_len=8,batch_size=64,n_epochs=2,learning_rate=0.003', '--protocol', 'last', '-m', '5', '20']
    with pytest.raises(UserError, match='give -v'):
        run.main(argv + ['--best_per_metric'])
    assert run.main(argv + ['-v', tiny_files['test'], '--best_per_metric', '--valid_metric', 'mrr@5',
                            '-t', tiny_files['test']]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index('Best over 2 evaluations on the validation data, each metric on its own:')
    best = dict(re.findall(r'(\w+@\d+): ([0-9.]+)', ' '.join(lines[at + 1:at + 3])))
    assert sorted(best) == ['HR@20', 'HR@5', 'MRR@20', 'MRR@5', 'NDCG@20', 'NDCG@5']
    evaluated = [float(re.search(r'valid mrr@5: ([0-9.]+)', line).group(1)) for line in lines if line.startswith('Step ')]
    assert len(evaluated) == 2 and float(best['MRR@5']) == pytest.approx(max(evaluated), abs=1e-6)
    assert any(line.startswith('(peer 2 of 2, cooperation lw alllayer_entropy') and 'python -m peercollab.release'
               in line for line in lines)


@pytest.mark.slow
def test_run_py_trains_bpr_on_the_bpr_split_and_refuses_the_next_event_protocol(tmp_path, capsys):
    import run
    from peercollab import split
    from recsys_core.synthetic import generate_sessions
    events = generate_sessions(n_items=100, n_sessions=300, seed=2, mean_length=9)
    data = tmp_path / 'users.csv'
    data.write_text(''.join(','.join(g.ItemId.astype(str)) + '\n' for _, g in events.groupby('SessionId')))
    assert split.main([str(data), str(tmp_path / 's'), '--model', 'bpr']) == 0
    train, test = (str(tmp_path / 's' / 'users_{}.txt'.format(n)) for n in ('train', 'test'))
    for line in open(train):
        assert len(set(line.strip().split(','))) == len(line.strip().split(','))  # each item once per user
    argv = [train, '-g', 'peercollab.bpr', '-ps', 'hidden=8,batch_size=128,n_epochs=2,n_peers=1,cooperation=noise,'
            'vocabulary=all', '-t', test, '-m', '5', '20']
    assert run.main(argv + ['--protocol', 'last']) == 0
    out = capsys.readouterr().out
    assert 'the noise control (percent 50, rate 0.02, period 50)' in out
    hr = [float(line.split()[1]) for line in out.splitlines() if line.startswith('HR@20: ')]
    assert len(hr) == 1 and hr[0] > 0.2  # 100 items: far above chance once the users' items are learnt
    with pytest.raises(UserError, match='--protocol last'):
        run.main(argv)


@pytest.mark.slow
def test_an_interrupted_noise_control_resumes_to_the_same_weights(tiny_data, tmp_path, monkeypatch):
    """The noise is drawn at the first step of an epoch from a generator that is checkpointed: a run
    stopped inside its second epoch (after one noise) ends where the uninterrupted run does."""
    from conftest import fit_interrupted_then_resumed
    params = dict(DNN, n_epochs=3, n_peers=1, cooperation='noise', noise_period=1)
    whole = PeerYouTubeDNN(**params).fit(tiny_data[0], verbose=False)
    inside_second_epoch = whole.epoch_stats[0]['minibatches'] + 5
    resumed = fit_interrupted_then_resumed(monkeypatch, PeerYouTubeDNN, params, tiny_data[0], str(tmp_path / 'ck'),
                                           inside_second_epoch, dict(verbose=False), checkpoint_every=3)
    for name, value in whole.weight_values().items():
        np.testing.assert_allclose(resumed.weight_values()[name], value, rtol=1e-6, atol=1e-7, err_msg=name)
