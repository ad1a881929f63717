"""Uniform random scores (the original's RandomPred): the floor every model must clear."""
import numpy as np

from recsys_core.params import Param

from .base import KEY_PARAMS, SessionBaseline


class RandomPred(SessionBaseline):
    """Scores every item uniformly at random (seeded)."""

    PARAMS = [Param('seed', 42)] + KEY_PARAMS

    def _fit(self, events, verbose):
        return {}

    def check_trained(self):
        super().check_trained()
        if not hasattr(self, '_rng'):
            self._rng = np.random.RandomState(self.seed)

    def _scores(self, histories, inp):
        return self._rng.rand(len(inp), self.n_items)


MODEL_CLASS = RandomPred
