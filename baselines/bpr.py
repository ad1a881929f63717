"""BPR matrix factorisation with sessions as users (the original's BPR baseline).

Trained by SGD over the training events in random order, one uniformly drawn negative item per
event; item biases exist but, as in the original, are never updated. At prediction time a session
is the mean of the factors of its items so far.

It trains through the shared trainer (:mod:`recsys_core.trainer`) like the neural models: an epoch
is one of the original's iterations over the events, cut into steps of ``EVENTS_PER_STEP`` events
(the same SGD, in the same order), so validation every N steps, early stopping, the NaN check,
checkpoints and resume apply to it. The printed loss is the mean of -log sigmoid(x_pos - x_neg)
(the original printed its negation). The session factors are training state only (checkpointed,
never in the model file); the model file holds the item factors and biases.
"""
from collections import OrderedDict

import numba
import numpy as np
import pandas as pd
import pytensor

from recsys_core.data import TrainingEvents
from recsys_core.model import NeuralRecommender
from recsys_core.params import KEY_PARAMS, Param, positive
from recsys_core.trainer import TrainingPlan

from .base import SessionScoring, non_negative

EVENTS_PER_STEP = 4096


@numba.njit(cache=True)
def _sgd_steps(U, I, bI, sessions, items, order, negatives, lr, lambda_session, lambda_item):
    """SGD over the events ``order`` (with their ``negatives``) in place; the summed log sigmoid."""
    total = 0.0
    for k in range(len(order)):
        e = order[k]
        u, p, n = sessions[e], items[e], negatives[k]
        uf, f1, f2 = U[u].copy(), I[p].copy(), I[n].copy()
        x = np.dot(f1, uf) - np.dot(f2, uf) + bI[p] - bI[n]
        sig = 1.0 / (1.0 + np.exp(-x))
        c = 1.0 - sig
        U[u] += lr * (c * (f1 - f2) - lambda_session * uf)
        I[p] += lr * (c * uf - lambda_item * f1)
        I[n] += lr * (-c * uf - lambda_item * f2)
        total += np.log(sig)
    return total


class BPR(SessionScoring, NeuralRecommender):
    """BPR-MF; new sessions are folded in as the average of their item factors."""

    PARAMS = [Param('n_factors', 100, positive), Param('n_iterations', 10, non_negative),
              Param('learning_rate', 0.01, positive), Param('lambda_session', 0.0, non_negative),
              Param('lambda_item', 0.0, non_negative), Param('sigma', 0.05, non_negative),
              Param('init_normal', False), Param('seed', 42)] + KEY_PARAMS

    def _training_plan(self, request):
        verbose = request.verbose
        events = TrainingEvents(request.data, self.session_key, self.item_key, self.time_key, verbose)
        self.itemidmap = events.itemidmap
        rng = np.random.RandomState(self.seed)
        lengths = np.diff(events.offsets)
        sessions = np.repeat(np.arange(len(lengths)), lengths)
        n_items, f = events.n_items, self.n_factors
        if self.init_normal:
            U, I = rng.randn(len(lengths), f) * self.sigma, rng.randn(n_items, f) * self.sigma
        else:
            U = rng.rand(len(lengths), f) * 2 * self.sigma - self.sigma
            I = rng.rand(n_items, f) * 2 * self.sigma - self.sigma
        self.weights = OrderedDict([('I', I), ('bI', np.zeros(n_items))])
        self._make_shared()
        session_factors = pytensor.shared(U, name='U')  # training state: checkpointed, not saved
        items = events.items

        def batches(epoch):
            order = rng.permutation(len(items))
            negatives = rng.randint(n_items, size=len(order))
            for a in range(0, len(order), EVENTS_PER_STEP):
                yield (order[a:a + EVENTS_PER_STEP], negatives[a:a + EVENTS_PER_STEP]), min(EVENTS_PER_STEP, len(order) - a)

        def step(batch):
            order, negatives = batch
            total = _sgd_steps(session_factors.get_value(borrow=True), self.shared['I'].get_value(borrow=True),
                               self.shared['bI'].get_value(borrow=True), sessions, items, order, negatives,
                               self.learning_rate, self.lambda_session, self.lambda_item)
            return -total / max(len(order), 1)

        return TrainingPlan(self.n_iterations, step, batches,
                            state=[session_factors, self.shared['I'], self.shared['bI']],
                            host_state=lambda: rng.get_state(), set_host_state=rng.set_state,
                            finish=self._sync_weights)

    def _scores(self, histories, inp):
        if self.shared is not None:  # the current values, also while training (validation)
            I, bI = (self.shared[k].get_value(borrow=True) for k in ('I', 'bI'))
        else:
            I, bI = self.weights['I'], self.weights['bI']
        sessions = np.stack([I[h].mean(axis=0) for h in histories])
        return sessions @ I.T + bI

    def _model_state(self):
        return {'item_ids': self.itemidmap.index.values, 'weights': dict(self.weights)}

    def _restore_state(self, state):
        self.itemidmap = pd.Series(np.arange(len(state['item_ids']), dtype=np.int32), index=state['item_ids'],
                                   name='ItemIdx')
        # files written when BPR was fitted outside the trainer keep the two arrays under 'stats'
        self.weights = OrderedDict((k, state.get('weights', state.get('stats'))[k]) for k in ('I', 'bI'))


MODEL_CLASS = BPR
