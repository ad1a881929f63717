"""BPR matrix factorisation with sessions as users (the original's BPR baseline).

Trained by SGD over the training events in random order, one uniformly drawn negative item per
event; item biases exist but, as in the original, are never updated. At prediction time a session
is the mean of the factors of its items so far.
"""
import numba
import numpy as np

from recsys_core.params import KEY_PARAMS, Param, positive

from .base import SessionBaseline, non_negative


@numba.njit(cache=True)
def _sgd_epoch(U, I, bI, sessions, items, order, negatives, lr, lambda_session, lambda_item):
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
    return total / max(len(order), 1)


class BPR(SessionBaseline):
    """BPR-MF; new sessions are folded in as the average of their item factors."""

    PARAMS = [Param('n_factors', 100, positive), Param('n_iterations', 10, non_negative),
              Param('learning_rate', 0.01, positive), Param('lambda_session', 0.0, non_negative),
              Param('lambda_item', 0.0, non_negative), Param('sigma', 0.05, non_negative),
              Param('init_normal', False), Param('seed', 42)] + KEY_PARAMS

    def _fit(self, events, verbose):
        rng = np.random.RandomState(self.seed)
        lengths = np.diff(events.offsets)
        sessions = np.repeat(np.arange(len(lengths)), lengths)
        n_items, f = events.n_items, self.n_factors
        if self.init_normal:
            U, I = rng.randn(len(lengths), f) * self.sigma, rng.randn(n_items, f) * self.sigma
        else:
            U = rng.rand(len(lengths), f) * 2 * self.sigma - self.sigma
            I = rng.rand(n_items, f) * 2 * self.sigma - self.sigma
        bI = np.zeros(n_items)
        for it in range(self.n_iterations):
            order = rng.permutation(len(events.items))
            negatives = rng.randint(n_items, size=len(order))
            loss = _sgd_epoch(U, I, bI, sessions, events.items, order, negatives, self.learning_rate,
                              self.lambda_session, self.lambda_item)
            if verbose:
                print('Iteration{} --> mean log-sigmoid: {:.6f}'.format(it + 1, loss))
        return {'I': I, 'bI': bI}

    def _scores(self, histories, inp):
        I = self.stats['I']
        sessions = np.stack([I[h].mean(axis=0) for h in histories])
        return sessions @ I.T + self.stats['bI']


MODEL_CLASS = BPR
