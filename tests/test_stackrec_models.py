"""StackRec's base models and pipeline on the shared core: the ReZero scales make stacked blocks
start as the identity, the pipeline's stages resume after an interruption, bad input leaves the
checkpoints as they were."""
import os

import numpy as np
import pytensor.tensor as pt
import pytest

from conftest import Interrupt
from recsys_core.backend import compile_function
from recsys_core.errors import UserError
from recsys_core.trainer import TrainingOptions, WarmStart
from stackrec import pipeline
from stackrec.nextitnet import StackNextItNet
from stackrec.sasrec import SASRec
from stackrec.stacking import stacking_mapping

pytestmark = pytest.mark.slow  # trains a dozen small models (about 3 minutes on 2 cores)

NEXTITNET = dict(dilated_channels=8, max_len=8, batch_size=32, n_epochs=2)
SASREC = dict(hidden=8, max_len=8, batch_size=32, n_epochs=2)


def hidden_of(model, windows):
    X = pt.imatrix('X')
    return compile_function([X], model._hidden(X))(windows)


def stacked(source, cls, params, method, rule, train, top=None):
    """The deep model right after the warm start (no training step)."""
    deep = cls(**dict(params, n_epochs=0))
    family = 'sasrec' if cls is SASRec else 'nextitnet'
    old = len(source.dilations) if family == 'nextitnet' else source.num_blocks
    new = len(deep.dilations) if family == 'nextitnet' else deep.num_blocks
    deep.fit(train, verbose=False, vocabulary_of=source, training=TrainingOptions(
        warm_start=WarmStart(source, stacking_mapping(method, family, old, new, rule, top))))
    return deep


@pytest.fixture(scope='module')
def shallow(tiny_data):
    train = tiny_data[0]
    return {'nextitnet': StackNextItNet(dilations=[1, 4], **NEXTITNET).fit(train, verbose=False),
            'sasrec': SASRec(num_blocks=2, **SASREC).fit(train, verbose=False)}


def test_scales_start_at_zero_and_training_opens_them(shallow, tiny_data):
    fresh = StackNextItNet(dilations=[1, 4], **dict(NEXTITNET, n_epochs=0)).fit(tiny_data[0], verbose=False)
    assert [fresh.weights['alpha{}'.format(i)][0] for i in range(2)] == [0, 0]
    nxt, sas = shallow['nextitnet'], shallow['sasrec']
    assert all(nxt.weights['alpha{}'.format(i)].shape == (1,) for i in range(2))
    assert any(nxt.weights['alpha{}'.format(i)][0] != 0 for i in range(2))
    assert any(sas.weights['b{}_{}'.format(i, s)][0] != 0 for i in range(2) for s in ('sa', 'sf'))


def test_stackr_keeps_the_trained_function_and_stacka_starts_as_the_identity(shallow, tiny_data):
    train = tiny_data[0]
    source = shallow['nextitnet']
    windows = source.windows_of([np.arange(1, 6), np.arange(3, 10)])
    deep_r = stacked(source, StackNextItNet, dict(NEXTITNET, dilations=[1, 4] * 2), 'stackR', 'double', train)
    np.testing.assert_allclose(hidden_of(deep_r, windows), hidden_of(source, windows), rtol=1e-6, atol=1e-6)
    deep_a = stacked(source, StackNextItNet, dict(NEXTITNET, dilations=[1, 4] * 2), 'STACKA', 'double', train)
    embedded = deep_a.weights['E'][windows]
    np.testing.assert_array_equal(hidden_of(deep_a, windows), embedded)  # every alpha 0: blocks are the identity
    np.testing.assert_array_equal(deep_a.weights['E'], source.weights['E'])
    assert not np.array_equal(deep_a.weights['Ws'], source.weights['Ws'])  # the softmax restarts [P11]


def test_sasrec_stacking_copies_attention_only(shallow, tiny_data):
    source = shallow['sasrec']
    deep = stacked(source, SASRec, dict(SASREC, num_blocks=4), 'stackC', 'modules', tiny_data[0], top=2)
    for i, j in enumerate([0, 1, 0, 1]):  # modules rule, top 2 -> [0, 1, 0, 1]
        np.testing.assert_array_equal(deep.weights['b{}_q_W'.format(i)], source.weights['b{}_q_W'.format(j)])
        assert deep.weights['b{}_sa'.format(i)][0] == 0
    np.testing.assert_array_equal(deep.weights['pos_emb'], source.weights['pos_emb'])


def write_sequences(path, tiny_data):
    train = tiny_data[0]
    with open(path, 'w') as f:
        for _, g in train.groupby('SessionId'):
            f.write(','.join(map(str, g.ItemId)) + '\n')
    return str(path)


def test_pipeline_resumes_an_interrupted_stage_and_skips_finished_ones(tiny_data, tmp_path, monkeypatch, capsys):
    data = write_sequences(tmp_path / 'seq.csv', tiny_data)
    args = ['cl', data, '--out', str(tmp_path / 'run'), '--blocks', '2', '--step_cap', '30', '--eval_every', '10',
            '--patience', '3', '-ps', 'dilated_channels=8,max_len=8,batch_size=32']
    assert pipeline.main(['cl', data, '--out', str(tmp_path / 'whole')] + args[4:]) == 0
    original, plans = StackNextItNet._training_plan, []

    def second_stage_interrupted(self, *a, **kw):  # stage 2 is killed after 25 of its 30 steps
        plan = original(self, *a, **kw)
        plans.append(plan)
        if len(plans) == 2:
            step = plan.step

            def failing(batch, calls=[0]):
                calls[0] += 1
                if calls[0] > 25:
                    raise Interrupt()
                return step(batch)
            plan.step = failing
        return plan
    monkeypatch.setattr(StackNextItNet, '_training_plan', second_stage_interrupted)
    with pytest.raises(Interrupt):
        pipeline.main(args)
    monkeypatch.setattr(StackNextItNet, '_training_plan', original)
    assert os.path.isfile(tmp_path / 'run' / 'stage1' / 'model.pkl')
    assert not os.path.isfile(tmp_path / 'run' / 'stage2' / 'model.pkl')
    capsys.readouterr()
    assert pipeline.main(args) == 0
    out = capsys.readouterr().out
    assert 'stage1: done earlier' in out and 'Resuming from' in out
    resumed = StackNextItNet.loadmodel(str(tmp_path / 'run' / 'stage2' / 'model.pkl'))
    whole = StackNextItNet.loadmodel(str(tmp_path / 'whole' / 'stage2' / 'model.pkl'))
    assert len(resumed.dilations) == 4
    for k in whole.weights:  # the interrupted pipeline ends where the uninterrupted one did
        np.testing.assert_allclose(resumed.weights[k], whole.weights[k], rtol=1e-5, atol=1e-6)


def test_pipeline_bad_input_leaves_checkpoints_alone(tiny_data, tmp_path, shallow):
    data = write_sequences(tmp_path / 'seq.csv', tiny_data)
    with pytest.raises(UserError, match='not found'):
        pipeline.main(['stack', data, '--out', str(tmp_path / 'o'), '--from', str(tmp_path / 'missing.pkl'),
                       '--blocks', '4'])
    model = str(tmp_path / 'shallow.pkl')
    shallow['nextitnet'].savemodel(model)
    with pytest.raises(UserError, match='2 x|2\\*|twice|double|must be'):
        pipeline.main(['stack', data, '--out', str(tmp_path / 'o'), '--from', model, '--blocks', '6',
                       '-ps', 'dilated_channels=8,max_len=8,batch_size=32'])
    assert not os.path.exists(tmp_path / 'o' / 'stage1')
    with pytest.raises(UserError, match='Unknown stacking method'):
        pipeline.main(['cl', data, '--out', str(tmp_path / 'o'), '--method', 'stackZ'])


def test_a_killed_pipeline_resumes_with_the_same_command(tiny_data, tmp_path):
    """SIGKILL the pipeline's process in its second stage; the same command again skips stage 1,
    resumes stage 2 from its last checkpoint (the best checkpoint written before the kill is kept)
    and ends in the uninterrupted pipeline's weights."""
    from conftest import cli, kill_at_step
    from recsys_core.trainer import BEST, LAST
    data = write_sequences(tmp_path / 'seq.csv', tiny_data)

    def command(out):
        return ['-m', 'stackrec.pipeline', 'cl', data, '--out', out, '--blocks', '2', '--step_cap', '160',
                '--eval_every', '20', '--patience', '100', '-ps', 'dilated_channels=8,max_len=8,batch_size=32']
    env = dict(os.environ, RECSYS_THREAD_TUNING='0')
    whole = cli(*command(str(tmp_path / 'whole')), env=env)
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = str(tmp_path / 'killed')
    stage2 = os.path.join(out, 'stage2')
    step = kill_at_step(command(out), os.path.join(stage2, LAST), 60, env)
    assert 60 <= step < 160 and not os.path.exists(os.path.join(stage2, 'model.pkl'))  # killed inside stage 2
    best_before = open(os.path.join(stage2, BEST), 'rb').read()
    stage1_model = open(os.path.join(out, 'stage1', 'model.pkl'), 'rb').read()
    again = cli(*command(out), env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert 'done earlier' in again.stdout and 'Resuming from' in again.stdout
    assert open(os.path.join(out, 'stage1', 'model.pkl'), 'rb').read() == stage1_model
    assert os.path.getsize(os.path.join(stage2, BEST)) > 0 and best_before  # the kill left a whole best checkpoint
    a = StackNextItNet.loadmodel(os.path.join(str(tmp_path / 'whole'), 'stage2', 'model.pkl'))
    b = StackNextItNet.loadmodel(os.path.join(stage2, 'model.pkl'))
    for k in a.weights:
        np.testing.assert_allclose(b.weights[k], a.weights[k], rtol=1e-5, atol=1e-6)


def test_continual_learning_in_more_steps_reports_the_release_metrics_and_writes_the_split(tiny_data, tmp_path,
                                                                                           capsys):
    """cl over ratios 0.4 0.8 1 stacks twice (2 -> 4 -> 8 blocks, blocks without alpha as in
    ops_original.py); each stage has HR/MRR/NDCG@5,10 at its best checkpoint, equal to what run.py
    gets from its model and test file, and its split beside it."""
    import json
    from recsys_core.evaluation import evaluate
    data = write_sequences(tmp_path / 'seq.csv', tiny_data)
    out = tmp_path / 'cl'
    assert pipeline.main(['cl', data, '--out', str(out), '--blocks', '2', '--ratios', '0.4', '0.8', '1',
                          '--step_cap', '12', '--eval_every', '6', '-ps',
                          'dilated_channels=8,max_len=8,batch_size=32,rezero=False']) == 0
    seen = []
    for k, (blocks, ratio) in enumerate([(2, 0.4), (4, 0.8), (8, 1.0)], 1):
        summary = json.loads((out / 'stage{}'.format(k) / 'summary.json').read_text())
        split = json.loads((out / 'stage{}'.format(k) / 'split.json').read_text())
        assert summary['blocks'] == blocks and split['data_ratio'] == ratio
        assert sorted(summary['at_best']) == sorted('{}@{}'.format(m, c) for m in ('hr', 'mrr', 'ndcg') for c in (5, 10))
        model = StackNextItNet.loadmodel(str(out / 'stage{}'.format(k) / 'model.pkl'))
        assert not any(n.startswith('alpha') for n in model.weights)
        import pandas as pd
        test = pd.read_csv(split['test'], sep='\t', dtype={'ItemId': str})
        again = evaluate(model, test, protocol='last', cut_off=[5, 10], verbose=False)
        assert again.value('mrr', 10) == pytest.approx(summary['at_best']['mrr@10'], abs=1e-9)
        assert summary['at_best']['mrr@5'] == pytest.approx(summary['best_mrr5'], abs=1e-9)
        seen.append(set(split['train_sequences']))
    assert seen[0] < seen[1] < seen[2]  # nested data ratios (0.6 is not, as released: stackrec.data)
    assert 'at the best checkpoint: HR@5 ' in capsys.readouterr().out
    with pytest.raises(UserError, match='increasing'):
        pipeline.main(['cl', data, '--out', str(tmp_path / 'x'), '--ratios', '0.8', '0.4'])
    assert not os.path.exists(tmp_path / 'x')


def test_ts_reaches_64_blocks_each_stage_a_loop(tiny_data, tmp_path):
    """TS with four stages: 8 -> 16 -> 32 -> 64 blocks, each stacked (stackA) from the last; the deep
    stages compile one loop step, not 64 blocks."""
    import json
    data = write_sequences(tmp_path / 'seq.csv', tiny_data)
    out = tmp_path / 'ts'
    assert pipeline.main(['ts', data, '--out', str(out), '--stages', '4', '--step_cap', '2', '--eval_every', '2',
                          '-ps', 'dilated_channels=8,max_len=8,batch_size=32']) == 0
    depths = [json.loads((out / 'stage{}'.format(k) / 'summary.json').read_text())['blocks'] for k in (1, 2, 3, 4)]
    assert depths == [8, 16, 32, 64]
    deep = StackNextItNet.loadmodel(str(out / 'stage4' / 'model.pkl'))
    assert len(deep.dilations) == 64 and 'conv63b_W' in deep.weights
    deep._make_shared()
    assert [(layout.period, layout.repeats) for layout in deep._layouts] == [(2, 32)]
    assert json.loads((out / 'stage4' / 'summary.json').read_text())['steps'] == 2


@pytest.mark.slow
def test_sasrec_bce_loss_is_sasrecs_with_negatives_outside_the_row(tiny_data):
    """loss=bce: the mean over real targets of -log sig(s_pos) - log sig(-s_neg), each negative a
    uniform item that is none of the row's targets; the padding positions are left out."""
    from recsys_core.model import FitRequest
    model = SASRec(**dict(SASREC, loss='bce', n_epochs=1))
    plan = model._training_plan(FitRequest(tiny_data[0], verbose=False))
    rows = next(iter(plan.batches(0)))[0].rows
    (X,), labels = model._batch_values(rows)
    (negatives,) = model._loss_feed(labels)
    assert not (negatives[:, :, None] == labels[:, None, :]).any() and (negatives != model.pad_index).all()
    import pytensor.tensor as pt
    from recsys_core.backend import compile_function
    Xv, neg = pt.imatrix(), pt.imatrix()
    loss = compile_function([Xv, neg], model._train_loss(model._hidden(Xv[:, :-1]), Xv[:, 1:], [neg]))
    w = model.weight_values()
    h = compile_function([Xv], model._hidden(Xv[:, :-1]))(X)
    s = lambda items: np.einsum('bld,dbl->bl', h, w['final_W'][:, items]) + w['final_b'][items]
    softplus = lambda x: np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)
    real = labels != model.pad_index
    expected = ((softplus(-s(labels)) + softplus(s(negatives))) * real).sum() / real.sum()
    assert float(loss(X, negatives)) == pytest.approx(expected, rel=1e-4)
    batch = next(iter(plan.batches(0)))[0]
    losses = [plan.step(batch) for _ in range(5)]
    assert losses[-1] < losses[0]  # the compiled step descends this loss
