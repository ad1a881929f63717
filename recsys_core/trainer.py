"""One training loop for every gradient-trained model: epochs, step caps, progress lines, NaN
handling, evaluation every N steps, early stopping, the best checkpoint, resume and warm start.

A model hands the trainer a :class:`TrainingPlan` (its compiled step, its batches, the state that
changes while it trains) and the trainer does the rest, the same way for GRU4Rec, NextItNet, CpRec
and what builds on them (StackRec stacks by warm-starting a deep model from a shallow one).

Checkpoints (``TrainingOptions.checkpoint``, run.py ``--checkpoint DIR``):
- ``DIR/last.ckpt``: everything a resumed run needs to end in the same weights as an uninterrupted
  one: every shared variable the step updates (weights, optimizer slots, the graph's random
  generators), the plan's host state (hidden states carried between steps, sample-store and numpy
  generators), the position (epoch, batch, step), the epoch's running loss sums and the early
  stopping counters. Written at every evaluation and at the end of every epoch (and every
  ``checkpoint_every`` steps), always atomically.
- ``DIR/best.model``: the model at its best validation metric, a normal model file (run.py -l
  loads it), written atomically when the metric improves and restored at the end of training.
Running the same command again resumes from ``last.ckpt``; a checkpoint of another model, other
parameters or other training data is refused with one clear error and left as it is.
"""
import copy
import hashlib
import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from .backend import collector_paused
from .errors import UserError
from .eval_result import PROTOCOLS
from .persistence import read_tagged_pickle, write_atomic
from .threads import ThreadTuner

CHECKPOINT_TAG = 'pytensor-recsys-checkpoint'
CHECKPOINT_VERSION = 1
LAST = 'last.ckpt'
BEST = 'best.model'


def updated_shared(fn):
    """The shared variables a compiled function updates (weights, optimizer slots, random state),
    in the function's fixed input order: what a checkpoint must hold to resume its training."""
    return [i.variable for i in fn.maker.inputs if getattr(i, 'update', None) is not None]


class CompileOnFirstUse:
    """A compiled function built the first time it is called or read (``function``): a fit that takes
    no step (``n_epochs=0``: a model's weights and vocabulary only, a stacking target before its warm
    start) compiles nothing, and a training step compiles once, when it first runs."""

    def __init__(self, build):
        self._build, self._function = build, None

    @property
    def function(self):
        if self._function is None:
            self._function = self._build()
        return self._function

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)


class TrainingPlan:
    """What a model hands the trainer.

    step(batch) -> loss of one mini-batch (a float); batches(epoch) -> iterator of (batch, weight)
    where weight (events or target positions) weighs the batch in the epoch's average loss;
    state: shared variables to checkpoint (default: those ``step_function`` updates);
    host_state()/set_host_state(s): host-side state that changes between steps; finish(): called
    once after the last step (the model copies its trained values out of the shared variables).
    ``step_function``: the compiled step (or a :class:`CompileOnFirstUse` of it), kept for
    inspection (profiles, benchmarks, the test that no Op of a training step runs in Python).
    """

    def __init__(self, n_epochs, step, batches, state=(), host_state=None, set_host_state=None, finish=None,
                 step_function=None):
        self.n_epochs, self.step, self.batches, self._step_function = n_epochs, step, batches, step_function
        self._state = list(state) if state else None
        self._host_state, self._set_host_state, self._finish = host_state, set_host_state, finish

    @property
    def step_function(self):
        f = self._step_function
        return f.function if isinstance(f, CompileOnFirstUse) else f

    @property
    def state(self):
        """The shared variables a checkpoint holds (reading it compiles a step not compiled yet)."""
        if self._state is None:
            self._state = updated_shared(self.step_function) if self._step_function is not None else []
        return self._state

    def host_state(self):
        return copy.deepcopy(self._host_state()) if self._host_state else None

    def set_host_state(self, state):
        if self._set_host_state:
            self._set_host_state(copy.deepcopy(state))

    def finish(self):
        if self._finish:
            self._finish()


@dataclass
class WarmStart:
    """Initial weights taken from another trained model (e.g. StackRec's shallow model).

    source: a model object or a model file path. mapping(source_weights, target_weights) returns the
    dict of target weights to overwrite; the default copies every weight present in both with the
    same name and shape (the two models must then share one item index).
    """
    source: Any
    mapping: Optional[Callable] = None


@dataclass
class TrainingOptions:
    """What run.py's training flags set (docs/command-line.md); every field has a no-op default."""
    max_steps: int = 0                 # 0: no cap beyond the model's n_epochs
    max_batches_per_epoch: int = 0     # 0: every batch (benchmarks time a fixed number of steps)
    valid: Any = None                  # a DataFrame of validation events
    protocol: str = 'next'             # 'next' (every next event) or 'last' (last item)
    metric: str = 'mrr'                # 'recall' ('hr' is the same under protocol last), 'mrr', 'ndcg'
    cut_off: int = 20
    eval_every: int = 0                # steps; 0: at the end of each epoch when valid is given
    patience: int = 0                  # evaluations without improvement before stopping; 0: never stop early
    restore_best: bool = True          # end with the best validation weights
    checkpoint: Optional[str] = None   # folder for last.ckpt and best.model
    checkpoint_every: int = 0          # extra checkpoints every N steps
    warm_start: Optional[WarmStart] = None
    eval_mode: str = 'standard'
    evaluator: Optional[Callable] = None  # a task's own protocol instead of evaluate(valid): see Trainer._evaluate
    report_cut_offs: tuple = ()        # also measure every metric at these cut-offs (kept in the history's 'metrics')
    keys: dict = field(default_factory=lambda: dict(session_key='SessionId', item_key='ItemId', time_key='Time'))

    def validates(self):
        return self.valid is not None or self.evaluator is not None

    def check(self):
        for name in ('max_steps', 'max_batches_per_epoch', 'eval_every', 'patience', 'checkpoint_every'):
            if getattr(self, name) < 0:
                raise UserError('{} must be >= 0'.format(name))
        if self.cut_off < 1:
            raise UserError('The validation cut-off must be a positive integer')
        if self.protocol not in PROTOCOLS:
            raise UserError('Unknown protocol {!r}; use one of: {}'.format(self.protocol, ', '.join(PROTOCOLS)))
        metrics = ('recall', 'hr', 'mrr', 'ndcg') if self.protocol == 'last' else ('recall', 'mrr')
        if self.metric not in metrics:
            raise UserError('Validation metric {} is not measured under protocol {} (use one of: {})'.format(
                self.metric, self.protocol, ', '.join(metrics)))
        if self.valid is None and self.evaluator is None and (self.eval_every or self.patience):
            raise UserError('Evaluation every N steps and early stopping need validation data (--valid FILE)')
        if self.checkpoint is not None and os.path.exists(self.checkpoint) and not os.path.isdir(self.checkpoint):
            raise UserError('Checkpoint folder {} is a file'.format(self.checkpoint))


def data_fingerprint(data, columns):
    """A short hash of the training events, so a checkpoint is only resumed on the same data."""
    import pandas as pd
    rows = pd.util.hash_pandas_object(data[list(columns)].astype(str), index=False).values  # fixed hash key
    return hashlib.md5(np.ascontiguousarray(rows).tobytes()).hexdigest()


class Trainer:
    """Runs a :class:`TrainingPlan` under :class:`TrainingOptions` for ``model``."""

    def __init__(self, options=None, verbose=True):
        self.options = options or TrainingOptions()
        self.options.check()
        self.verbose = verbose

    # ----------------------------------------------------------------- the loop
    def run(self, model, plan, fingerprint):
        """Train; returns the history (one dict per evaluation). Sets model.epoch_stats,
        model.training_history and model.error_during_train."""
        opt = self.options
        self.model, self.plan, self.fingerprint = model, plan, fingerprint
        model.error_during_train = False
        model.epoch_stats = []
        self.history, self.best, self.best_step, self.bad = [], -np.inf, None, 0
        self.best_values = None
        self.started, self.seconds_before = time.time(), 0.0
        start = {'epoch': 0, 'batch': 0, 'step': 0, 'costs': [], 'weights': [], 'seconds': 0.0}
        resumed = self._resume()
        if resumed is not None:
            start = resumed
        elif opt.warm_start is not None:
            self._warm_start(opt.warm_start)
        model.training_history = self.history  # grows while training (an evaluator may read the earlier ones)
        # fewer threads while another process takes the cores (recsys_core.threads); the collector off
        with collector_paused(), ThreadTuner() as tuner:
            self._loop(start, tuner)
        self._finish()
        return self.history

    def _loop(self, start, tuner):
        """The epoch and step loop of :meth:`run` from position ``start``."""
        opt, plan, model = self.options, self.plan, self.model
        step = start['step']
        stopped = False
        if start['epoch'] < plan.n_epochs:
            plan.step_function  # compiled here, so that no epoch's time (its mb/s) includes the compilation
        for epoch in range(start['epoch'], plan.n_epochs):
            t0 = time.time()
            skip = start['batch'] if epoch == start['epoch'] else 0
            costs = list(start['costs']) if skip else []
            weights = list(start['weights']) if skip else []
            earlier = start['seconds'] if skip else 0.0
            n_batch = 0
            if skip:  # resuming inside an epoch: replay its batch order from the epoch's start state
                plan.set_host_state(start['epoch_host'])
            self.epoch_host = plan.host_state()
            batches = plan.batches(epoch)
            if opt.max_batches_per_epoch:  # the batch after the cap is never drawn (nor its host state advanced)
                batches = itertools.islice(batches, opt.max_batches_per_epoch)
            for batch, weight in batches:
                if n_batch < skip:  # ... without running the steps, then take the state of the checkpoint
                    n_batch += 1
                    if n_batch == skip:
                        plan.set_host_state(start['host'])
                    continue
                cost = plan.step(batch)
                tuner.tick()
                n_batch += 1
                step += 1
                costs.append(cost)
                weights.append(weight)
                if np.isnan(cost):
                    print(str(epoch) + ': NaN error!')
                    model.error_during_train = True
                    stopped = True
                    break
                evaluate = opt.validates() and opt.eval_every and step % opt.eval_every == 0
                if evaluate and self._evaluate(step, epoch):
                    stopped = True
                capped = opt.max_steps and step >= opt.max_steps
                if stopped or capped:
                    stopped = True
                    break
                if evaluate or (opt.checkpoint_every and step % opt.checkpoint_every == 0):
                    self._save_last(epoch, n_batch, step, costs, weights, earlier + time.time() - t0)
            if model.error_during_train:
                break
            self._epoch_line(epoch, costs, weights, earlier + time.time() - t0)
            if model.error_during_train:
                break
            if opt.validates() and not opt.eval_every and self._evaluate(step, epoch):
                stopped = True
            if stopped:
                break
            self._save_last(epoch + 1, 0, step, [], [], 0.0)
        if stopped and not model.error_during_train:
            self._save_last(plan.n_epochs, 0, step, [], [], 0.0)  # a resumed run of a finished one trains no more

    def _epoch_line(self, epoch, costs, weights, seconds):
        if not costs:
            return
        costs, weights = np.asarray(costs, dtype=np.float64), np.asarray(weights)
        avgc = np.sum(costs * weights) / max(np.sum(weights), 1)
        if np.isnan(avgc):
            print('Epoch {}: NaN error!'.format(epoch))
            self.model.error_during_train = True
            return
        dt = max(seconds, 1e-9)
        self.model.epoch_stats.append({'loss': avgc, 'seconds': seconds, 'minibatches': len(costs),
                                       'events': int(np.sum(weights))})
        if self.verbose:
            print('Epoch{} --> loss: {:.6f} \t({:.2f}s) \t[{:.2f} mb/s | {:.0f} e/s]'.format(
                epoch + 1, avgc, seconds, len(costs) / dt, np.sum(weights) / dt))

    def _finish(self):
        self.plan.finish()
        opt = self.options
        if opt.validates() and opt.restore_best and self.best_values is not None \
                and not self.model.error_during_train:
            self.model.set_weight_values(self.best_values)
            if self.verbose:
                print('Restored the weights of step {} (best {}@{}: {:.6f})'.format(
                    self.best_step, opt.metric, opt.cut_off, self.best))

    # ----------------------------------------------------------------- validation and early stopping
    def _evaluate(self, step, epoch):
        """Evaluate on the validation data; True when early stopping says stop.

        ``options.evaluator(model)`` (a task's own protocol) returns the metric, or a dict of named
        metrics from which ``'{metric}@{cut_off}'`` is the one kept best by; the dict goes into the
        history entry (``metrics``), so it is checkpointed and a resumed run reports it too."""
        from .evaluation import evaluate
        opt = self.options
        metrics = None
        if opt.evaluator is not None:
            value = opt.evaluator(self.model)
            if isinstance(value, dict):
                metrics = {k: float(v) for k, v in value.items()}
                name = '{}@{}'.format(opt.metric, opt.cut_off)
                if name not in metrics:
                    raise ValueError('The evaluator measured {} but not {}'.format(', '.join(metrics), name))
                value = metrics[name]
            value = float(value)
        else:
            cut_offs = sorted(set([opt.cut_off]) | set(opt.report_cut_offs))
            result = evaluate(self.model, opt.valid, protocol=opt.protocol, cut_off=cut_offs, mode=opt.eval_mode,
                              verbose=False, **opt.keys)
            value = result.value(opt.metric, opt.cut_off)
            if opt.report_cut_offs:
                metrics = {'{}@{}'.format(name, c): float(result.value(name, c))
                           for name in result.metrics for c in cut_offs}
        improved = value > self.best
        if improved:
            self.best, self.best_step, self.bad = value, step, 0
            self.best_values = self.model.weight_values()
            if opt.checkpoint:
                os.makedirs(opt.checkpoint, exist_ok=True)
                self.model._sync_weights()  # the model file holds the current values
                self.model.savemodel(os.path.join(opt.checkpoint, BEST))
        else:
            self.bad += 1
        self.history.append({'step': step, 'epoch': epoch + 1, 'value': value, 'best': self.best,
                             'seconds': self.seconds_before + time.time() - self.started})
        if metrics is not None:
            self.history[-1]['metrics'] = metrics
        stop = bool(opt.patience) and self.bad >= opt.patience
        if self.verbose:
            print('Step {} (epoch {}): valid {}@{}: {:.6f}{}{}'.format(
                step, epoch + 1, opt.metric, opt.cut_off, value,
                ' (best)' if improved else ' (best {:.6f} at step {})'.format(self.best, self.best_step),
                '; no improvement in {} evaluations: stopping'.format(self.bad) if stop else ''))
        return stop

    # ----------------------------------------------------------------- checkpoints
    def _save_last(self, epoch, batch, step, costs, weights, seconds):
        opt = self.options
        if not opt.checkpoint:
            return
        os.makedirs(opt.checkpoint, exist_ok=True)
        payload = {'format': CHECKPOINT_TAG, 'version': CHECKPOINT_VERSION, 'fingerprint': self.fingerprint,
                   'epoch': epoch, 'batch': batch, 'step': step, 'costs': list(costs), 'weights': list(weights),
                   'seconds': seconds, 'state': [v.get_value() for v in self.plan.state],
                   'host': self.plan.host_state(), 'epoch_host': self.epoch_host if batch else None,
                   'history': self.history, 'best': self.best, 'best_step': self.best_step, 'bad': self.bad, 'epoch_stats': self.model.epoch_stats,
                   'training_seconds': self.seconds_before + time.time() - self.started}
        write_atomic(os.path.join(opt.checkpoint, LAST), payload)

    def _resume(self):
        opt = self.options
        path = os.path.join(opt.checkpoint, LAST) if opt.checkpoint else None
        if not path or not os.path.isfile(path):
            return None
        ck = read_tagged_pickle(path, CHECKPOINT_TAG, CHECKPOINT_VERSION, 'checkpoint')
        if ck['fingerprint'] != self.fingerprint:
            mine, theirs = self.fingerprint, ck['fingerprint']
            what = [k for k in mine if mine.get(k) != theirs.get(k)]
            raise UserError('Checkpoint folder {} holds another run (different {}); use another --checkpoint folder '
                            'or delete it to start afresh'.format(opt.checkpoint, ', '.join(what) or 'settings'))
        if len(ck['state']) != len(self.plan.state):
            raise UserError('Checkpoint {} does not match the training graph'.format(path))
        for var, value in zip(self.plan.state, ck['state']):
            var.set_value(value)
        self.history, self.best, self.best_step, self.bad = ck['history'], ck['best'], ck['best_step'], ck['bad']
        self.model.epoch_stats = ck['epoch_stats']
        self.seconds_before = ck['training_seconds']
        best_path = os.path.join(opt.checkpoint, BEST)
        if self.best_step is not None and os.path.isfile(best_path):
            from .persistence import load_model
            self.best_values = load_model(best_path).weight_values()
        if ck['batch'] == 0:
            self.plan.set_host_state(ck['host'])
        if self.verbose:
            print('Resuming from {}: epoch {}, step {}'.format(path, ck['epoch'] + 1, ck['step']))
        return ck

    def _warm_start(self, warm):
        from .persistence import load_model
        source = load_model(warm.source) if isinstance(warm.source, str) else warm.source
        source.check_trained()
        old = source.weight_values()
        new = self.model.weight_values()
        if warm.mapping is not None:
            copied = warm.mapping(old, new)
        else:
            if not np.array_equal(np.asarray(source.index_ids(), dtype=object),
                                  np.asarray(self.model.index_ids(), dtype=object)):
                raise UserError('Warm start: the two models index items differently (other training data); '
                                'copying weights by name needs the same item index')
            copied = {k: v for k, v in old.items() if k in new and np.shape(v) == np.shape(new[k])}
        if not copied:
            raise UserError('Warm start: no weight of the source model fits this model')
        self.model.set_weight_values(copied)
        if self.verbose:
            print('Warm start: {} of {} weights copied from the source model'.format(len(copied), len(new)))
