"""Session popularity (the original's SessionPop): occurrences of the item in the session so far,
ties broken by the item's popularity score."""
import numpy as np

from recsys_core.params import KEY_PARAMS, Param, positive

from .base import SessionBaseline
from .pop import popularity_scores


class SessionPop(SessionBaseline):
    """Recommends what the session has already seen most, then popular items."""

    PARAMS = [Param('top_n', 100, positive), Param('support_by_key', None)] + KEY_PARAMS

    def _statistics(self, events, verbose):
        return {'pop': popularity_scores(events, self.top_n, self.support_by_key, self)}

    def _scores(self, histories, inp):
        scores = np.tile(self.stats['pop'], (len(inp), 1))
        for row, history in enumerate(histories):
            np.add.at(scores[row], history, 1.0)
        return scores


MODEL_CLASS = SessionPop
