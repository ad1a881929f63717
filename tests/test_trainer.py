"""The shared trainer on a toy model: progress, NaN handling, caps, validation every N steps, early
stopping with the best weights restored, checkpoints, resume after an interruption, warm start."""
import os

import numpy as np
import pandas as pd
import pytensor.tensor as pt
import pytest

from conftest import fit_interrupted_then_resumed
from gpu_ops.ranking import rank_counts
from recsys_core.backend import compile_function
from recsys_core.data import TrainingEvents
from recsys_core.errors import UserError
from recsys_core.model import NeuralRecommender
from recsys_core.optim import DenseAdam
from recsys_core.params import KEY_PARAMS, Param
from recsys_core.randomness import RandomSource, dropout
from recsys_core.synthetic import generate_sessions, split_by_time
from recsys_core.trainer import BEST, LAST, TrainingOptions, TrainingPlan, WarmStart


class Bigram(NeuralRecommender):
    """Next item from the current one: softmax(E[x] W). Dropout (graph random state) and a numpy
    generator (host state) that orders each epoch's pairs and jitters each step's loss make resuming
    non-trivial."""

    PARAMS = [Param('n_epochs', 3), Param('batch_size', 64), Param('factors', 8), Param('learning_rate', 0.05),
              Param('lr_init', 0.05), Param('nan_at', 0, doc='the step whose loss is NaN (0: none)')] + KEY_PARAMS

    def _init_weights(self):
        rng = np.random.default_rng(0)
        n = self.n_items
        return {'E': (rng.standard_normal((n, self.factors)) * 0.1).astype('float32'),
                'W': (rng.standard_normal((self.factors, n)) * 0.1).astype('float32')}

    def _training_plan(self, request):
        events = TrainingEvents(request.data, self.session_key, self.item_key, self.time_key, verbose=False)
        self.itemidmap = events.itemidmap
        starts = np.zeros(len(events.items), dtype=bool)
        starts[events.offsets[:-1]] = True
        same = ~starts[1:]
        pairs = np.stack([events.items[:-1][same], events.items[1:][same]], axis=1).astype(np.int32)
        self.weights = self._init_weights()
        self._make_shared()
        X, Y, noise = pt.ivector('X'), pt.ivector('Y'), pt.fscalar('noise')
        srng = RandomSource(5)
        h = dropout(self.shared['E'][X], 0.2, srng)
        logits = pt.dot(h, self.shared['W'])
        logits = logits - logits.max(axis=1, keepdims=True)
        cost = (pt.log(pt.exp(logits).sum(axis=1)) - logits[pt.arange(Y.shape[0]), Y]).mean() * (1 + noise)
        updates = DenseAdam(self.learning_rate).updates(cost, list(self.shared.values()))
        updates.update(srng.updates())
        fn = compile_function([X, Y, noise], cost, updates=updates)
        host = {'rng': np.random.default_rng(1)}
        calls = [0]

        def step(batch):
            calls[0] += 1
            if calls[0] == self.nan_at:
                return float('nan')
            return float(fn(batch[:, 0], batch[:, 1], np.float32(host['rng'].random() * 0.1)))

        def batches(epoch):  # a fresh order each epoch, drawn from the host generator
            order = pairs[host['rng'].permutation(len(pairs))]
            for s in range(0, len(order) - self.batch_size + 1, self.batch_size):
                yield order[s:s + self.batch_size], self.batch_size

        return TrainingPlan(self.n_epochs, step, batches, step_function=fn, host_state=lambda: host,
                            set_host_state=lambda s: host.update(s), finish=self._sync_weights)

    def session_ranker(self, batch_size, mode='standard', items=None):
        def build():
            X, Y = pt.ivector('X'), pt.ivector('Y')
            scores = pt.dot(self.shared['E'][X], self.shared['W'])
            return compile_function([X, Y], rank_counts(scores, scores[pt.arange(X.shape[0]), Y]))
        fn = self._function('rank', build)

        class Ranker:
            def step(self, inp, out, last):
                return fn(inp.astype(np.int32), out.astype(np.int32))

            def shrink(self, keep):
                pass
        return Ranker()

    def _model_state(self):
        return {'item_ids': self.itemidmap.index.values, 'weights': dict(self.weights)}

    def _restore_state(self, state):
        self.itemidmap = pd.Series(np.arange(len(state['item_ids']), dtype=np.int32), index=state['item_ids'])
        self.weights = dict(state['weights'])


@pytest.fixture(scope='module')
def split():
    return split_by_time(generate_sessions(n_items=80, n_sessions=400, seed=4), 0.2)


def trained(split, **options):
    train, valid = split
    if options.pop('with_valid', False):
        options['valid'] = valid
    return Bigram().fit(train, verbose=False, training=TrainingOptions(**options))


def test_epochs_give_one_progress_line_each_and_losses_fall(split, capsys):
    Bigram().fit(split[0], training=TrainingOptions())
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('Epoch')]
    assert len(lines) == 3 and 'mb/s' in lines[0]
    m = trained(split)
    losses = [s['loss'] for s in m.epoch_stats]
    assert losses[0] > losses[1] > losses[2]
    assert m.shared is not None and m.is_trained()


def test_a_nan_loss_stops_training_and_marks_the_model(split, capsys):
    m = Bigram(nan_at=4).fit(split[0])
    assert 'NaN error!' in capsys.readouterr().out
    assert m.error_during_train
    with pytest.raises(UserError, match='NaN'):
        m.check_trained()


def test_step_cap_and_batches_per_epoch(split):
    assert sum(s['minibatches'] for s in trained(split, max_steps=7).epoch_stats) == 7
    assert [s['minibatches'] for s in trained(split, max_batches_per_epoch=2).epoch_stats] == [2, 2, 2]


def test_validation_every_n_steps_early_stopping_and_best_restored(split, capsys):
    train, valid = split
    m = Bigram(learning_rate=0.5, n_epochs=30)  # a learning rate that overfits: the metric peaks, then falls
    m.fit(train, training=TrainingOptions(valid=valid, eval_every=5, patience=3, metric='mrr', cut_off=5))
    out = capsys.readouterr().out
    assert 'valid mrr@5' in out and 'stopping' in out
    values = [h['value'] for h in m.training_history]
    assert len([line for line in out.splitlines() if line.startswith('Step ')]) == len(values)
    best = max(values)
    assert values[-1] < best and len(values) > 3
    assert sum(s['minibatches'] for s in m.epoch_stats) == 5 * len(values)  # stopped at an evaluation
    from recsys_core.evaluation import evaluate
    assert evaluate(m, valid, cut_off=[5], verbose=False).value('mrr', 5) == pytest.approx(best, abs=1e-9)


def test_checkpoints_written_atomically_and_best_model_loads(split, tmp_path):
    m = trained(split, with_valid=True, eval_every=4, checkpoint=str(tmp_path / 'ck'))
    files = sorted(os.listdir(tmp_path / 'ck'))
    assert files == sorted([LAST, BEST])  # no temporary left behind
    best = Bigram.loadmodel(str(tmp_path / 'ck' / BEST))
    for k, v in best.weights.items():
        np.testing.assert_array_equal(v, m.weights[k])  # the model ends with the best weights


# interrupted inside an epoch (last checkpoint at the evaluation of step 6), or in the third epoch
# with checkpoints at the epochs' ends only (evaluation at each epoch's end)
@pytest.mark.parametrize('stop_at,eval_every', [(7, 3), (40, 0)])
def test_an_interrupted_run_resumes_to_the_same_weights(split, tmp_path, monkeypatch, stop_at, eval_every):
    train, valid = split
    options = dict(valid=valid, eval_every=eval_every, cut_off=5)
    whole = Bigram().fit(train, verbose=False, training=TrainingOptions(**options))
    resumed = fit_interrupted_then_resumed(monkeypatch, Bigram, {}, train, str(tmp_path / 'ck'), stop_at,
                                           dict(verbose=False), **options)
    for k in whole.weights:
        np.testing.assert_array_equal(resumed.weights[k], whole.weights[k])
    assert [s['loss'] for s in resumed.epoch_stats] == pytest.approx([s['loss'] for s in whole.epoch_stats], rel=1e-6)


def test_an_evaluator_s_named_metrics_are_kept_in_the_history_and_resumed(split, tmp_path, monkeypatch):
    """A task's own evaluator may measure several metrics: the trainer keeps best by metric@cut_off
    and every evaluation's metrics are in the checkpointed history, also after a resume."""
    from recsys_core.evaluation import evaluate
    train, valid = split

    def both(model):
        res = evaluate(model, valid, cut_off=[5], verbose=False)
        return {'mrr@5': res.value('mrr', 5), 'recall@5': res.value('recall', 5)}

    options = dict(evaluator=both, eval_every=4, metric='recall', cut_off=5)
    whole = Bigram().fit(train, verbose=False, training=TrainingOptions(**options))
    assert all(h['value'] == h['metrics']['recall@5'] >= h['metrics']['mrr@5'] > 0 for h in whole.training_history)
    resumed = fit_interrupted_then_resumed(monkeypatch, Bigram, {}, train, str(tmp_path / 'ck'), 10,
                                           dict(verbose=False), **options)
    assert [h['metrics'] for h in resumed.training_history] == [h['metrics'] for h in whole.training_history]
    with pytest.raises(ValueError, match='not ndcg@5'):
        Bigram().fit(train, verbose=False, training=TrainingOptions(evaluator=both, protocol='last', metric='ndcg',
                                                                   cut_off=5))


def test_a_checkpoint_of_another_run_is_refused_and_kept(split, tmp_path):
    folder = str(tmp_path / 'ck')
    trained(split, checkpoint=folder)
    before = open(os.path.join(folder, LAST), 'rb').read()
    with pytest.raises(UserError, match='another run.*parameters'):
        Bigram(factors=4).fit(split[0], verbose=False, training=TrainingOptions(checkpoint=folder))
    assert open(os.path.join(folder, LAST), 'rb').read() == before


def test_options_are_checked_before_training():
    with pytest.raises(UserError, match='validation data'):
        TrainingOptions(patience=3).check()
    with pytest.raises(UserError, match='not measured'):
        TrainingOptions(valid=pd.DataFrame(), metric='ndcg').check()


def test_warm_start_copies_weights_by_name(split, capsys):
    source = trained(split)
    target = Bigram(n_epochs=0).fit(split[0], training=TrainingOptions(warm_start=WarmStart(source)))
    assert 'Warm start: 2 of 2 weights' in capsys.readouterr().out
    for k in source.weights:
        np.testing.assert_array_equal(target.weights[k], source.weights[k])
    only_e = Bigram(n_epochs=0).fit(split[0], verbose=False, training=TrainingOptions(
        warm_start=WarmStart(source, mapping=lambda old, new: {'E': old['E']})))
    np.testing.assert_array_equal(only_e.weights['E'], source.weights['E'])
    assert not np.array_equal(only_e.weights['W'], source.weights['W'])
    with pytest.raises(UserError, match='does not fit'):
        Bigram(factors=4, n_epochs=0).fit(split[0], verbose=False, training=TrainingOptions(
            warm_start=WarmStart(source, mapping=lambda old, new: {'E': old['E']})))
