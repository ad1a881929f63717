"""Next-item evaluation over every event of the test sessions: Recall@N and MRR@N with tie modes.

Follows the original's evaluate_gpu: test events whose item the model does not know are dropped,
events are sorted by (session, time, item), sessions are processed session-parallel with a fresh
state per session, and every event's next item is ranked against all items (or a given subset).
Ranks come from counts of items scoring above/equal to the target (gpu_ops.rank_counts): no sort.

Any model works that provides ``check_trained()``, ``itemidmap`` and
``session_ranker(batch_size, mode, items)`` returning an object with ``step(inp, out, last)`` ->
(greater, equal) counts and ``shrink(keep)``.
"""
import numpy as np
import pandas as pd

from gpu_ops.ranking import metric_sums

from .batching import Shrink, session_parallel
from .data import session_offsets
from .errors import UserError

TIE_MODES = ('standard', 'conservative', 'median', 'tiebreaking')


def evaluate_sessions(model, test_data, items=None, cut_off=(20,), batch_size=100, mode='standard',
                      session_key='SessionId', item_key='ItemId', time_key='Time', verbose=True):
    """Return (recalls, mrrs), one value per cut-off, like the original's evaluate_gpu."""
    if mode not in TIE_MODES:
        raise UserError('Unknown evaluation mode {!r}; use one of: {}'.format(mode, ', '.join(TIE_MODES)))
    cut_off = [int(c) for c in (cut_off if isinstance(cut_off, (list, tuple)) else [cut_off])]
    if not cut_off or min(cut_off) < 1:
        raise UserError('Cut-offs must be positive integers')
    model.check_trained()
    if verbose:
        print('Measuring Recall@{} and MRR@{}'.format(','.join(map(str, cut_off)), ','.join(map(str, cut_off))))
    items_col, offsets = prepare_test_sessions(model, test_data, session_key, item_key, time_key)
    n_sessions = len(offsets) - 1
    batch_size = min(batch_size, n_sessions)
    ranker = model.session_ranker(batch_size, mode, items)
    recall_sum = np.zeros(len(cut_off))
    mrr_sum = np.zeros(len(cut_off))
    n = 0
    for rec in session_parallel(items_col, offsets, np.arange(n_sessions), batch_size):
        if isinstance(rec, Shrink):
            ranker.shrink(rec.keep)
            continue
        greater, equal = ranker.step(rec.inp, rec.out, rec.last)
        hits, reciprocal_ranks = metric_sums(greater, equal, mode, cut_off)
        recall_sum += hits
        mrr_sum += reciprocal_ranks
        n += len(greater)
    if n == 0:
        raise UserError('The test data has no session with two or more events of items known to the model')
    return list(recall_sum / n), list(mrr_sum / n)


def prepare_test_sessions(model, test_data, session_key, item_key, time_key):
    """Drop unknown items, sort by (session, time, item); return item indices and session offsets."""
    for key in (session_key, item_key, time_key):
        if key not in test_data.columns:
            raise UserError('Test data has no column "{}"'.format(key))
    ids = test_data[item_key].astype(str)
    known = pd.DataFrame({session_key: test_data[session_key].values, time_key: test_data[time_key].values,
                          item_key: ids.values, '_idx': model.itemidmap.reindex(ids.values).values})
    known = known[known['_idx'].notna()]
    if len(known) == 0:
        raise UserError('None of the test items is known to the model')
    known = known.sort_values([session_key, time_key, item_key], kind='mergesort')
    return known['_idx'].values.astype(np.int32), session_offsets(known[session_key].values)
