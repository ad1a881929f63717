"""Uniform random scores (the original's RandomPred): the floor every model must clear."""
import numpy as np

from recsys_core.params import KEY_PARAMS, Param

from .base import SessionBaseline


class RandomPred(SessionBaseline):
    """Scores every item uniformly at random (seeded)."""

    PARAMS = [Param('seed', 42)] + KEY_PARAMS

    def _statistics(self, events, verbose):
        return {}

    def session_ranker(self, batch_size, mode='standard', items=None):
        self._rng = np.random.RandomState(self.seed)  # each evaluation sees the same random scores
        return super().session_ranker(batch_size, mode, items)

    def _history_scores(self, histories):
        self._rng = np.random.RandomState(self.seed)  # each call sees the same random scores
        return super()._history_scores(histories)

    def _scores(self, histories, inp):
        return self._rng.rand(len(inp), self.n_items)


MODEL_CLASS = RandomPred
