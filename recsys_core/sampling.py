"""Negative-sample store: popularity^alpha sampling by binary search, generated ahead in bulk.

The store holds ``store_size // n_sample`` batches of ``n_sample`` item indices and is regenerated
when used up, as in the original (run.py -ss). Generation is a compiled graph (uniform randoms,
then :func:`gpu_ops.searchsorted` into the cumulative distribution) so it runs where the model runs.
"""
import copy

import numpy as np
import pytensor

import gpu_ops

from .backend import compile_function, current
from .randomness import RandomSource


def cumulative_distribution(support, alpha):
    """Cumulative distribution of support**alpha (uniform when alpha == 0); the last entry is exactly 1."""
    weights = np.asarray(support, dtype=np.float64) ** alpha
    cdf = weights.cumsum() / weights.sum()
    cdf[-1] = 1.0
    return cdf


class SampleStore:
    """Batches of negative samples held in a shared variable, indexed by the training graph."""

    def __init__(self, support, alpha, n_sample, store_size, seed=42, verbose=True):
        self.n_sample = n_sample
        self.length = store_size // n_sample if n_sample else 0
        if self.length <= 1:
            self.length = 1
        floatx = pytensor.config.floatX
        self.cdf = pytensor.shared(cumulative_distribution(support, alpha).astype(floatx), name='sample_cdf')
        self.store = pytensor.shared(np.zeros((self.length, n_sample), dtype='int64'), name='sample_store')
        source = RandomSource(seed)
        self._rng = source.rng
        u = source.uniform((self.length * n_sample,), dtype=floatx)
        fresh = gpu_ops.searchsorted(self.cdf, u).reshape((self.length, n_sample))
        self._generate = compile_function([], [], updates=[(self.store, fresh)] + source.updates())
        # filled now, before training starts (and outside its epoch timer), as the original does
        self._refill()
        self.pointer = 0
        if verbose:
            print('No example store was used' if self.length == 1 else
                  'Created sample store with {} batches of samples (type={})'.format(self.length, current()[0].upper()))

    def batch(self, index):
        """Symbolic samples of batch ``index`` (an int scalar input of the training function)."""
        return self.store[index]

    def _refill(self):
        self._rng_before_fill = copy.deepcopy(self._rng.get_value(borrow=True))
        self._generate()

    def next_index(self):
        """Host side: index of the next batch, regenerating the store when it is used up."""
        if self.pointer >= self.length:
            self._refill()
            self.pointer = 0
        self.pointer += 1
        return self.pointer - 1

    def get_state(self):
        """What a training checkpoint needs (the generator state of the current fill, not the
        samples: a store of 10M ids would make every checkpoint 80 MB)."""
        return {'pointer': self.pointer, 'rng_before_fill': copy.deepcopy(self._rng_before_fill)}

    def set_state(self, state):
        """Refill the store exactly as it was when ``state`` was taken."""
        self._rng.set_value(copy.deepcopy(state['rng_before_fill']))
        self._refill()
        self.pointer = state['pointer']
