"""Item-to-item k-nearest neighbours (the original's ItemKNN).

s(i, j) = cooc(i, j) / ((supp_i + lmbd)^alpha * (supp_j + lmbd)^(1 - alpha)), where cooc sums, over
sessions, (events of i) x (events of j) and supp counts events; only the n_sims most similar items
of each item keep a score. The next item is scored by its similarity to the current item.
"""
import numpy as np
import scipy.sparse as sp

from recsys_core.params import KEY_PARAMS, Param, positive, unit_interval

from .base import SessionBaseline, non_negative

BLOCK_BYTES = 256 * 2 ** 20  # dense co-occurrence rows computed at a time


def item_similarities(events, n_sims, lmbd, alpha):
    """(indices, values) of the n_sims most similar items of every item, most similar first."""
    n_items = events.n_items
    lengths = np.diff(events.offsets)
    sessions = np.repeat(np.arange(len(lengths)), lengths)
    counts = sp.csr_matrix((np.ones(len(sessions)), (sessions, events.items)), shape=(len(lengths), n_items))
    counts_t = counts.T.tocsr()
    supp = np.bincount(events.items, minlength=n_items).astype(np.float64)
    k = min(n_sims, n_items)
    top_idx = np.zeros((n_items, k), dtype=np.int32)
    top_val = np.zeros((n_items, k))
    block = max(1, BLOCK_BYTES // (8 * n_items))
    for lo in range(0, n_items, block):
        rows = np.arange(lo, min(lo + block, n_items))
        cooc = (counts_t[rows] @ counts).toarray()
        cooc[np.arange(len(rows)), rows] = 0
        norm = np.power(supp[rows, None] + lmbd, alpha) * np.power(supp[None, :] + lmbd, 1.0 - alpha)
        norm[norm == 0] = 1
        sims = cooc / norm
        # stable descending order: equal similarities keep the lower (earlier-seen) item index
        order = np.argsort(-sims, axis=1, kind='stable')[:, :k]
        top_idx[rows] = order
        top_val[rows] = np.take_along_axis(sims, order, axis=1)
    return top_idx, top_val


class ItemKNN(SessionBaseline):
    """Recommends the items that co-occur most with the current item in training sessions."""

    PARAMS = [Param('n_sims', 100, positive), Param('lmbd', 20.0, non_negative), Param('alpha', 0.5, unit_interval)] \
        + KEY_PARAMS

    def _statistics(self, events, verbose):
        idx, val = item_similarities(events, self.n_sims, self.lmbd, self.alpha)
        return {'sim_idx': idx, 'sim_val': val}

    def _scores(self, histories, inp):
        scores = np.zeros((len(inp), self.n_items))
        rows = np.arange(len(inp))[:, None]
        scores[rows, self.stats['sim_idx'][inp]] = self.stats['sim_val'][inp]
        return scores


MODEL_CLASS = ItemKNN
