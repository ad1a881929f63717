"""PeerCollab (issue 20): the LW criteria and gate on known tensors, PW's replaced fraction, the
learning-rate schedule, parameters, the split, the folder exchange, lockstep training and its
resumption, the multi-process exchange against lockstep, a killed peer, and a small comparison of
cooperating peers with the single model (reported, not asserted to win)."""
import math
import os
import signal
import subprocess
import sys
import time
from collections import OrderedDict

import numpy as np
import pytest

from conftest import ROOT, cli, fit_interrupted_then_resumed
from peercollab import cooperation
from peercollab.exchange import DirectoryExchange
from peercollab.model import PeerCollab
from recsys_core.errors import UserError
from recsys_core.trainer import TrainingOptions

TINY = dict(hidden=16, num_blocks=2, max_len=12, batch_size=64, n_epochs=3)
TINY_PS = 'hidden=16,num_blocks=2,max_len=12,batch_size=64,n_epochs=3'


def errors_of(out):
    return [line for line in out.stderr.splitlines() if line.startswith('ERROR: ')]


def sasrec_weights(rng, d=4, V=6, T=5, blocks=1):
    """Random weights with the peers' names, in the release's order."""
    w = OrderedDict([('item_emb', rng.standard_normal((V, d))), ('pos_emb', rng.standard_normal((T, d)))])
    for b in range(blocks):
        for part in ('q', 'k', 'v', 'na', 'f1', 'f2', 'nf'):
            if part in ('na', 'nf'):
                w['b{}_{}_g'.format(b, part)] = 1 + 0.1 * rng.standard_normal(d)
            else:
                w['b{}_{}_W'.format(b, part)] = rng.standard_normal((d, d))
            w['b{}_{}_b'.format(b, part)] = rng.standard_normal(d)
    w['final_W'], w['final_b'] = rng.standard_normal((d, V)), rng.standard_normal(V)
    return OrderedDict((k, v.astype(np.float32)) for k, v in w.items())


# ----------------------------------------------------------------- the LW criteria and the gate
def test_entropy_uses_ten_half_open_bins_and_drops_the_maximum():
    x = np.arange(11, dtype=np.float32)            # bins of width 1; the maximum 10 is in none of them
    assert cooperation.entropy(x) == pytest.approx(-10 * (1 / 11) * math.log(1 / 11), rel=1e-6)
    y = np.array([0, 0, 0, 1], dtype=np.float32)   # 3 of 4 in the first bin, the maximum left out
    assert cooperation.entropy(y) == pytest.approx(-0.75 * math.log(0.75), rel=1e-6)
    z = np.array([[0.0, 0.05], [0.95, 0.96]], dtype=np.float32).T  # shape does not matter
    assert cooperation.entropy(z) == pytest.approx(-2 * 0.25 * math.log(0.25), rel=1e-6)
    assert cooperation.entropy(np.full((3, 3), 2.5, dtype=np.float32)) == 0.0  # constant: the release crashes


def test_l1_contrast_and_the_sigmoid_gate():
    assert cooperation.l1_contrast(np.array([3.0, -1.0]), np.array([1.0, 1.0])) == pytest.approx(2 / 6)
    assert cooperation.l1_contrast(np.zeros(3), np.zeros(3)) == 0.0
    assert cooperation.gate(0.0, 30) == 0.5
    assert cooperation.gate(0.1, 30) == pytest.approx(1 / (1 + math.exp(-3)))
    assert cooperation.gate(0.1, 30, b=2) == pytest.approx(2 / (1 + math.exp(-3)))
    assert cooperation.gate(-100, 30) == pytest.approx(0.0, abs=1e-300)


def test_lw_mixing_formula_and_the_carried_gate():
    rng = np.random.default_rng(0)
    own, peer = sasrec_weights(rng), sasrec_weights(rng)
    new, gates = cooperation.lw_merge(own, peer, 'alllayer_entropy', a=3.0)
    for name in own:
        w = gates[name]
        assert np.allclose(new[name], w * own[name] + (1 - w) * peer[name], atol=1e-6)
    w_item = cooperation.gate(cooperation.entropy(own['item_emb']) - cooperation.entropy(peer['item_emb']), 3.0)
    assert gates['item_emb'] == pytest.approx(w_item)
    assert gates['b0_q_b'] == gates['b0_q_W'] != gates['b0_k_W']        # a bias borrows its weight's gate
    assert gates['b0_nf_g'] == gates['b0_nf_b'] == gates['b0_f2_W']     # the FFN LayerNorm borrows readout's
    assert gates['final_b'] == gates['final_W']
    l1, l1_gates = cooperation.lw_merge(own, peer, 'alllayer_eL1norm', a=3.0)   # the README's spelling
    assert l1_gates['b0_nf_g'] == pytest.approx(cooperation.gate(cooperation.l1_contrast(own['b0_nf_g'],
                                                                                         peer['b0_nf_g']), 3.0))
    assert l1_gates['b0_nf_b'] == l1_gates['b0_nf_g']
    # two peers merging with each other's snapshot end with the same tensors (gates w and 1 - w)
    back, _ = cooperation.lw_merge(peer, own, 'alllayer_entropy', a=3.0)
    for name in own:
        assert np.allclose(new[name], back[name], atol=1e-6)


@pytest.mark.parametrize('kind, merged', [
    ('onlyembed', {'item_emb', 'pos_emb'}),
    ('onlyfinal', {'final_W', 'final_b'}),
    ('onlymiddle', {'b0_q_W', 'b0_q_b', 'b0_k_W', 'b0_k_b', 'b0_v_W', 'b0_v_b', 'b0_na_g', 'b0_na_b', 'b0_f1_W',
                    'b0_f1_b', 'b0_f2_W', 'b0_f2_b', 'b0_nf_g', 'b0_nf_b'}),
])
def test_lw_types_merge_their_scope_only(kind, merged):
    rng = np.random.default_rng(1)
    own, peer = sasrec_weights(rng), sasrec_weights(rng)
    new, gates = cooperation.lw_merge(own, peer, kind, a=1.0)
    assert set(gates) == merged
    for name in own:
        assert np.array_equal(new[name], own[name]) == (name not in merged)


def test_unknown_lw_type_is_a_user_error():
    with pytest.raises(UserError, match='Unknown cooperation_type'):
        cooperation.canonical_type('alllayer')


# ----------------------------------------------------------------- PW
@pytest.mark.parametrize('percent', [10, 30, 50, 75])
def test_pw_replaces_exactly_the_weakest_fraction_and_only_it(percent):
    rng = np.random.default_rng(percent)
    own, peer = sasrec_weights(rng, d=8, V=25), sasrec_weights(rng, d=8, V=25)
    new = cooperation.pw_merge(own, peer, percent)
    for name, value in own.items():
        if value.ndim < 2:
            assert np.array_equal(new[name], value)      # biases and LayerNorms are kept
            continue
        replaced = new[name] != value
        assert np.array_equal(new[name][replaced], peer[name][replaced])
        n_weak = int(np.floor((value.size - 1) * percent / 100)) + 1   # |w| <= the interpolated percentile
        weakest = np.argsort(np.abs(value).ravel(), kind='stable')[:n_weak]
        expected = np.zeros(value.size, dtype=bool)
        expected[weakest] = True
        # the n_weak smallest magnitudes, and no other entry (values are distinct: ties have probability 0)
        assert np.array_equal(replaced.ravel(), expected), name
        assert abs(replaced.sum() - value.size * percent / 100) <= 1


def test_pw_replaces_ties_at_the_threshold():
    own = OrderedDict(w=np.array([[1.0, 1.0], [1.0, 2.0]], dtype=np.float32))
    peer = OrderedDict(w=np.full((2, 2), 9.0, dtype=np.float32))
    assert np.array_equal(cooperation.pw_merge(own, peer, 50)['w'], [[9, 9], [9, 2]])  # |w| <= t is replaced


# ----------------------------------------------------------------- learning rates, parameters
def test_difflr_and_the_cosine_schedule():
    m = PeerCollab(n_peers=2, learning_rate=0.001)
    assert [m.initial_rate(k) for k in (1, 2)] == pytest.approx([0.0005, 0.001])
    assert m.scheduled_rate(2, 0, 100) == pytest.approx(0.001)
    assert m.scheduled_rate(1, 50, 100) == pytest.approx(0.00025)
    assert m.scheduled_rate(2, 100, 100) == pytest.approx(0.0, abs=1e-12)
    m.set_params(verbose=False, cos=False, difflr=False)
    assert m.scheduled_rate(1, 50, 100) == 0.001
    assert PeerCollab(n_peers=1).initial_rate(1) == pytest.approx(0.001)   # the baseline keeps the base rate
    assert [PeerCollab(n_peers=3).initial_rate(k) for k in (1, 2, 3)] == pytest.approx([0.00025, 0.00075, 0.001])
    assert [PeerCollab().seed_of(k) for k in (1, 2)] == [10, 11]
    assert PeerCollab(peer_seeds='3/7').seed_of(2) == 7
    assert PeerCollab(n_peers=3).source_of(1) == 3


@pytest.mark.parametrize('params, message', [
    (dict(cooperation='both'), 'must be one of lw, pw, none'),
    (dict(cooperation_type='alllayer'), 'must be one of'),
    (dict(deploy=3), 'deploy=3 but there are n_peers=2'),
    (dict(peer_seeds='1/2/3'), 'one seed per peer'),
    (dict(exchange='/tmp/x'), 'give peer=k'),
    (dict(peer=1), 'give exchange=FOLDER'),
    (dict(exchange='/tmp/x', peer=1, cooperation='none'), 'peers that cooperate'),
    (dict(percent=120), 'must be in [0, 100]'),
    (dict(hidden=10, num_heads=3), 'divisible'),
])
def test_bad_parameters_give_one_clear_error(params, message):
    with pytest.raises(UserError) as e:
        PeerCollab(**params)
    assert message in str(e.value)


@pytest.mark.parametrize('name', ['peercollab_ml20m_lw.py', 'peercollab_ml20m_pw.py'])
def test_bundled_parameter_files_are_the_readme_runs(root, name):
    from recsys_core.params import load_param_file
    model = PeerCollab(**load_param_file(os.path.join(root, 'paramfiles', name)))
    assert (model.n_peers, model.hidden, model.max_len, model.cos, model.difflr) == (2, 256, 100, True, True)
    assert model.cooperation == name.split('_')[-1][:2]


def test_bundled_parameter_space_is_valid_for_the_model(root):
    from paropt import check_parameters
    from recsys_core.cli import model_class
    from recsys_core.tuning.space import load_space
    space = load_space(os.path.join(root, 'paramspaces', 'peercollab_parspace.json'))
    assert {p.name for p in space} >= {'cooperation', 'cooperation_type', 'a', 'percent'}
    check_parameters(model_class('peercollab'), {}, space)


# ----------------------------------------------------------------- the split
def test_leave_one_out_split_as_released(tmp_path):
    from peercollab.split import leave_one_out, main
    seqs = [list('abcdefg'), list('abcd'), list('xyzxyz'), list('aaaab')]
    train, valid, test = leave_one_out(seqs, max_len=4)
    assert train == [list('abcde'), list('xyzx'), list('aaa')]         # s[:-2]; users under 5 items dropped
    assert test == [list('defg'), list('zxyz'), list('aaab')]          # the last T items
    assert valid == [list('cdef'), list('yzxy'), list('aaaa')]         # the last T of s[:-1]
    assert leave_one_out(seqs, 4, min_distinct=4)[0] == [list('abcde')]  # the release's rule for 'retail'
    data = tmp_path / 'retail_users.csv'
    data.write_text('1,2,3,4,5,6\n1,1,1,2,2\n\n7,8\n')
    assert main([str(data), str(tmp_path / 'out'), '--max_len', '3']) == 0
    assert (tmp_path / 'out' / 'retail_users_test.txt').read_text() == '4,5,6\n'   # 'retail': > 3 distinct
    assert (tmp_path / 'out' / 'retail_users_train.txt').read_text() == '1,2,3,4\n'
    data.write_text('1,,2\n')
    with pytest.raises(UserError, match='empty item'):
        main([str(data), str(tmp_path / 'out2')])
    assert not (tmp_path / 'out2').exists()


# ----------------------------------------------------------------- the folder exchange
def test_exchange_reads_only_its_run_and_epoch_and_times_out_clearly(tmp_path):
    ex = DirectoryExchange(str(tmp_path), 'run-a', timeout=0.3, poll=0.01)
    weights = {'w': np.arange(3, dtype=np.float32)}
    ex.publish(2, 0, weights)
    assert np.array_equal(ex.receive(2, 0, 1)['w'], weights['w'])
    other = DirectoryExchange(str(tmp_path), 'run-b', timeout=0.3, poll=0.01)
    t0 = time.monotonic()
    with pytest.raises(UserError) as e:   # run-a's file of the same peer and epoch is stale for run-b
        other.receive(2, 0, 1)
    assert time.monotonic() - t0 >= 0.3
    assert 'Peer 1 waited 0.3 s for the weights of peer 2 after epoch 1' in str(e.value)
    os.replace(ex.path(2, 0), other.path(2, 0))   # a file renamed into another run's name is still not read
    with pytest.raises(UserError, match='peer 2 has stopped'):
        other.receive(2, 0, 1)
    ex.publish(1, 0, weights)
    ex.publish(1, 1, weights)
    ex.discard(1, 1)
    assert not os.path.exists(ex.path(1, 0)) and os.path.exists(ex.path(1, 1))
    assert not [f for f in os.listdir(tmp_path) if '.tmp-' in f]
    with pytest.raises(UserError, match='run_id'):
        DirectoryExchange(str(tmp_path), '../x', 1)
    # the same run_id used again by a run with other parameters or data: one clear error, not a merge
    DirectoryExchange(str(tmp_path), 'again', 0.2, fingerprint='first').publish(2, 0, weights)
    with pytest.raises(UserError, match='other parameters or training data'):
        DirectoryExchange(str(tmp_path), 'again', 0.2, fingerprint='second').receive(2, 0, 1)
    assert DirectoryExchange(str(tmp_path), 'again', 0.2, fingerprint='first').receive(2, 0, 1) is not None


# ----------------------------------------------------------------- training in lockstep
@pytest.fixture(scope='module')
def lockstep(tiny_data):
    """Cooperating peers (LW) and independent ones (none) with the same seeds, trained in lockstep."""
    train, _ = tiny_data
    return {c: PeerCollab(cooperation=c, **TINY).fit(train, verbose=False) for c in ('lw', 'none')}


def test_lockstep_peers_differ_and_merge(lockstep):
    lw, none = lockstep['lw'].weight_values(), lockstep['none'].weight_values()
    assert len(lockstep['lw'].epoch_stats) == 3
    assert not np.array_equal(none['p1.final_W'], none['p2.final_W'])   # own seeds, rates and data orders
    # independent peers match their cooperating twins until the first merge only
    assert not np.allclose(lw['p2.final_W'], none['p2.final_W'], atol=1e-4)
    assert lockstep['lw'].peer_model(2).seed == 11 and lockstep['lw'].deployed_peer() == 2


def test_one_merge_per_epoch_after_the_epochs_evaluation(tiny_data, monkeypatch):
    """Both peers merge once after every epoch but the last, and the weights the epoch's evaluation
    saw are the deployed peer's pre-merge snapshot (the release evaluates, then merges)."""
    train, _ = tiny_data
    merged, evaluated = [], []
    real = PeerCollab.merge

    def merge(self, own, peer):
        merged.append({n: np.array(v) for n, v in own.items()})
        return real(self, own, peer)
    monkeypatch.setattr(PeerCollab, 'merge', merge)

    def evaluator(model):
        evaluated.append(model.peer_model(model.deployed_peer()).weight_values())
        return 0.0
    model = PeerCollab(cooperation='lw', **TINY)
    model.fit(train, verbose=False, training=TrainingOptions(evaluator=evaluator, restore_best=False))
    epochs = TINY['n_epochs']
    assert len(evaluated) == epochs and len(merged) == 2 * (epochs - 1)
    assert model.deployed_peer() == 2
    for e in range(epochs - 1):  # merges after epoch e: peer 1's, then peer 2's own snapshot
        for name, value in evaluated[e].items():
            assert np.array_equal(merged[2 * e + 1][name], value), (e, name)
    assert not np.array_equal(evaluated[1]['final_W'], evaluated[0]['final_W'])


def test_the_padding_row_is_frozen_as_released(lockstep):
    """Without merges a peer's padding embedding stays its (random, non-zero) initial vector; the
    item rows train."""
    for k in (1, 2):
        peer = lockstep['none'].peer_model(k)
        init = peer._init_weights()['item_emb']
        trained = lockstep['none'].weight_values()['p{}.item_emb'.format(k)]
        pad = peer.pad_index
        assert np.abs(init[pad]).max() > 0 and np.array_equal(trained[pad], init[pad])
        items = np.arange(len(init)) != pad
        assert not np.allclose(trained[items], init[items], atol=1e-4)


@pytest.mark.slow
def test_lockstep_single_peer_equals_the_deployed_peer_of_independent_peers(tiny_data, lockstep):
    """n_peers=1 under the peers' schedule with peer 2's seed is peer 2 of cooperation=none: the same
    schedule and budget."""
    train, _ = tiny_data
    single = PeerCollab(n_peers=1, seed=11, single_schedule='peers', **TINY).fit(train, verbose=False)
    a, b = single.weight_values(), lockstep['none'].weight_values()
    for name, value in a.items():
        assert np.allclose(value, b['p2.' + name[3:]], atol=1e-6), name
    assert [s['minibatches'] for s in single.epoch_stats] == [s['minibatches'] for s in lockstep['none'].epoch_stats]


def test_saved_model_scores_with_the_deployed_peer(tmp_path, tiny_data, lockstep):
    from recsys_core.evaluation import evaluate
    from recsys_core.persistence import load_model
    _, test = tiny_data
    model = lockstep['lw']
    model.savemodel(str(tmp_path / 'm.pkl'))
    loaded = load_model(str(tmp_path / 'm.pkl'))
    a = evaluate(model, test, 'last', [5, 20], verbose=False)
    b = evaluate(loaded, test, 'last', [5, 20], verbose=False)
    c = evaluate(model.peer_model(2), test, 'last', [5, 20], verbose=False)
    assert a.metrics == b.metrics == c.metrics
    assert evaluate(model.peer_model(1), test, 'last', [5, 20], verbose=False).metrics != a.metrics
    items, _scores = loaded.recommend([test.ItemId.astype(str).iloc[0]], k=5)
    assert len(items) == 5


@pytest.mark.slow
def test_interrupted_lockstep_run_resumes_to_the_same_weights(monkeypatch, tmp_path, tiny_data, lockstep):
    """The merge runs at the first step of an epoch, after the epoch's checkpoint: resuming replays it once."""
    train, _ = tiny_data
    resumed = fit_interrupted_then_resumed(monkeypatch, PeerCollab, dict(cooperation='lw', **TINY), train,
                                           str(tmp_path / 'ck'), 30, checkpoint_every=4)
    for name, value in lockstep['lw'].weight_values().items():
        assert np.allclose(resumed.weight_values()[name], value, atol=1e-6), name


# ----------------------------------------------------------------- peers in separate processes
def peer_command(train_file, folder, k, run_id, timeout=120, extra=''):
    return [sys.executable, 'run.py', train_file, '-g', 'peercollab', '-ps',
            '{},cooperation=pw,exchange={},peer={},run_id={},exchange_timeout={}{}'.format(
                TINY_PS, os.path.join(folder, 'exchange'), k, run_id, timeout, extra),
            '--checkpoint', os.path.join(folder, 'peer{}'.format(k)), '-s', os.path.join(folder, 'peer{}.model'.format(k))]


def start(cmd, folder, name):
    log = open(os.path.join(folder, name), 'w')
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.PIPE, text=True), log


def peer_weights(folder, k):
    from recsys_core.persistence import load_model
    return load_model(os.path.join(folder, 'peer{}.model'.format(k))).weight_values()


@pytest.fixture(scope='module')
def lockstep_pw(tiny_data):
    return PeerCollab(cooperation='pw', **TINY).fit(tiny_data[0], verbose=False).weight_values()


@pytest.mark.slow
def test_peer_processes_end_in_the_lockstep_weights(tiny_files, tmp_path, lockstep_pw):
    procs = [start(peer_command(tiny_files['train'], str(tmp_path), k, 'eq'), str(tmp_path), 'p{}.log'.format(k))
             for k in (1, 2)]
    for p, log in procs:
        _, err = p.communicate(timeout=600)
        log.close()
        assert p.returncode == 0, err[-3000:]
    for k in (1, 2):
        mine = peer_weights(str(tmp_path), k)
        assert set(mine) == {n for n in lockstep_pw if n.startswith('p{}.'.format(k))}
        for name, value in mine.items():
            assert np.allclose(value, lockstep_pw[name], atol=1e-6), name
    snapshots = sorted(os.listdir(tmp_path / 'exchange'))
    assert len(snapshots) <= 4 and all(s.startswith('eq.') for s in snapshots)  # old snapshots removed


@pytest.mark.slow
def test_a_killed_peer_gives_the_timeout_error_and_the_survivor_resumes(tiny_files, tmp_path, lockstep_pw):
    from recsys_core.persistence import load_model, read_tagged_pickle
    from recsys_core.trainer import CHECKPOINT_TAG, CHECKPOINT_VERSION
    folder = str(tmp_path)
    p1, log1 = start(peer_command(tiny_files['train'], folder, 1, 'kill', timeout=15), folder, 'p1.log')
    p2, log2 = start(peer_command(tiny_files['train'], folder, 2, 'kill', timeout=15), folder, 'p2.log')
    first = os.path.join(folder, 'exchange', 'kill.peer2.epoch0.snapshot')
    deadline = time.time() + 400
    while not os.path.exists(first) and time.time() < deadline and p2.poll() is None:
        time.sleep(0.02)
    assert os.path.exists(first), p2.stderr.read()[-3000:] if p2.poll() is not None else 'peer 2 too slow'
    os.kill(p2.pid, signal.SIGKILL)
    p2.wait()
    _, err = p1.communicate(timeout=300)
    log1.close(), log2.close()
    assert p1.returncode == 1 and 'Traceback' not in err
    assert len(errors_of(subprocess.CompletedProcess([], 1, '', err))) == 1
    assert 'peer 2 has stopped or is far behind' in err and 'The checkpoints are intact' in err
    ck = read_tagged_pickle(os.path.join(folder, 'peer1', 'last.ckpt'), CHECKPOINT_TAG, CHECKPOINT_VERSION, 'checkpoint')
    assert ck['epoch'] >= 1 and ck['batch'] == 0
    with open(os.path.join(folder, 'exchange', 'kill.peer1.epoch0.snapshot'), 'rb') as f:
        assert sorted(__import__('pickle').load(f)['weights']) == sorted(n[3:] for n in lockstep_pw if n[:3] == 'p1.')
    assert not os.path.exists(os.path.join(folder, 'peer1.model'))
    assert not [f for f in os.listdir(os.path.join(folder, 'peer1')) if '.tmp-' in f]
    # again with a longer wait (exchange_timeout is not part of the run): both resume from their checkpoints
    # and end in the lockstep weights
    procs = [start(peer_command(tiny_files['train'], folder, k, 'kill', timeout=120), folder, 'r{}.log'.format(k))
             for k in (1, 2)]
    for p, log in procs:
        _, err = p.communicate(timeout=600)
        log.close()
        assert p.returncode == 0, err[-3000:]
    assert 'Resuming from' in open(os.path.join(folder, 'r1.log')).read()
    for k in (1, 2):
        for name, value in load_model(os.path.join(folder, 'peer{}.model'.format(k))).weight_values().items():
            assert np.allclose(value, lockstep_pw[name], atol=1e-6), name


# ----------------------------------------------------------------- front ends
@pytest.mark.slow
def test_run_py_trains_peers_with_a_parameter_file_under_both_protocols(tiny_files, tmp_path):
    params = tmp_path / 'peers.py'
    params.write_text("from collections import OrderedDict\ngru4rec_params = OrderedDict([('hidden', 16), "
                      "('max_len', 12), ('batch_size', 64), ('n_epochs', 2), ('cooperation', 'lw'), "
                      "('cooperation_type', 'alllayer_eL1norm')])\n")
    out = cli('run.py', tiny_files['train'], '-g', 'peercollab', '-pf', str(params), '-t', tiny_files['test'],
              '--protocol', 'last', '-m', '5', '20', '-s', str(tmp_path / 'm.pkl'))
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'Creating PeerCollab model' in out.stdout and 'cooperation lw alllayer_L1norm (a 30)' in out.stdout
    assert [line.split(':')[0] for line in out.stdout.splitlines() if line.startswith('HR@')] == ['HR@5', 'HR@20']
    loaded = cli('run.py', str(tmp_path / 'm.pkl'), '-l', '-t', tiny_files['test'], '-m', '20')
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert any(line.startswith('Recall@20: ') for line in loaded.stdout.splitlines())


@pytest.mark.parametrize('ps, message', [('cooperation=lw,cooperation_type=bad', 'Invalid value'),
                                         ('peer=1', 'give exchange=FOLDER')])
def test_run_py_bad_peer_parameters_give_one_error(tiny_files, ps, message):
    out = cli('run.py', tiny_files['train'], '-g', 'peercollab', '-ps', ps)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert len(errors_of(out)) == 1 and message in errors_of(out)[0]


@pytest.mark.slow
def test_release_command_reports_every_peer_and_the_best_per_metric(tmp_path, capsys):
    """In this process (its --processes run, one process per peer, is tested with BPR peers in
    tests/test_peercollab_models.py, and SASRec peers' processes through run.py above)."""
    import json
    from peercollab import release
    from recsys_core.synthetic import generate_sessions
    events = generate_sessions(n_items=200, n_sessions=600, seed=5, mean_length=9)
    data = tmp_path / 'users.csv'
    data.write_text(''.join(','.join(g.ItemId.astype(str)) + '\n' for _, g in events.groupby('SessionId')))
    assert release.main([str(data), '--out', str(tmp_path / 'run'), '-ps',
                         'hidden=16,max_len=10,batch_size=64,n_epochs=2,cooperation=pw']) == 0
    summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
    assert sorted(summary) == ['peer 1', 'peer 2']
    for entry in summary.values():
        assert sorted(entry['epochs']) == ['1', '2']
        for name, best in entry['best'].items():
            assert best == max(e[name] for e in entry['epochs'].values())
    assert sum(line.startswith('peer 2 Best MRR_5: ') for line in capsys.readouterr().out.splitlines()) >= 2


@pytest.mark.slow
def test_single_model_and_cooperating_peers_get_the_same_budget(tmp_path, tiny_data):
    """The release's single model and the cooperating peers train for the same epochs and batches
    (which of them wins is measured by benchmarks/peercollab_compare.py)."""
    from peercollab.release import train
    train_events, test_events = tiny_data
    base = dict(hidden=8, num_blocks=1, max_len=8, batch_size=64, n_epochs=2)
    runs = {'single': dict(n_peers=1), 'lw': dict(cooperation='lw'), 'pw': dict(cooperation='pw')}
    results = {}
    for name, params in runs.items():
        model, summary = train(dict(base, **params), train_events, test_events, str(tmp_path / name), verbose=False)
        results[name] = (summary['peer {}'.format(model.deployed_peer())]['best'],
                         [s['minibatches'] for s in model.epoch_stats])
    assert len({tuple(b) for _, b in results.values()}) == 1 and len(results['single'][1]) == 2
    assert all(0 <= best['mrr@5'] <= best['hr@5'] <= 1 for best, _ in results.values())
