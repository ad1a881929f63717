"""Item popularity (the original's Pop): score supp / (supp + 1) for the top_n items, 0 otherwise."""
import numpy as np

from recsys_core.errors import UserError
from recsys_core.params import KEY_PARAMS, Param, positive

from .base import SessionBaseline


def popularity_scores(events, top_n, support_by_key, model):
    """supp/(supp+1) of the top_n items by support (events, or distinct values of a key column)."""
    if support_by_key is None or support_by_key in ('', 'None'):
        supp = np.bincount(events.items, minlength=events.n_items).astype(np.float64)
    else:
        if support_by_key not in (model.session_key, model.time_key):
            raise UserError('support_by_key must be None or the session or time column ({} or {}), not {!r}'.format(
                model.session_key, model.time_key, support_by_key))
        column = events.data[support_by_key].values
        pairs = np.unique(np.stack([events.items.astype(np.int64), np.unique(column, return_inverse=True)[1]]), axis=1)
        supp = np.bincount(pairs[0], minlength=events.n_items).astype(np.float64)
    pop = supp / (supp + 1)
    keep = np.argsort(-pop, kind='mergesort')[:top_n]
    scores = np.zeros(events.n_items)
    scores[keep] = pop[keep]
    return scores


class Pop(SessionBaseline):
    """Recommends the most popular items to everyone."""

    PARAMS = [Param('top_n', 100, positive), Param('support_by_key', None)] + KEY_PARAMS

    def _statistics(self, events, verbose):
        return {'pop': popularity_scores(events, self.top_n, self.support_by_key, self)}

    def _scores(self, histories, inp):
        return np.tile(self.stats['pop'], (len(inp), 1))


MODEL_CLASS = Pop
