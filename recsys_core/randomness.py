"""Random numbers inside compiled graphs, with the generator state advanced by the function itself.

Wraps PyTensor's shared random generators: each draw threads the generator, and
:meth:`RandomSource.updates` gives the update that stores the advanced state, so every call of the
compiled function draws fresh numbers. Seeded, so runs are repeatable.
"""
import numpy as np
import pytensor.tensor as pt


class RandomSource:
    def __init__(self, seed):
        self.rng = pt.random.shared_rng(np.random.default_rng(seed))
        self._current = self.rng

    def uniform(self, size, dtype='float32'):
        self._current, x = self._current.uniform(0.0, 1.0, size=size)
        return pt.cast(x, dtype)

    def updates(self):
        return [(self.rng, self._current)] if self._current is not self.rng else []


def dropout(x, p, source):
    """Inverted dropout with drop probability ``p`` (identity when p == 0)."""
    if p <= 0 or x is None:
        return x
    keep = 1.0 - p
    return x * pt.cast(source.uniform(x.shape) < keep, x.dtype) / np.float32(keep)
