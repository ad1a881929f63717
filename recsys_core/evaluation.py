"""Evaluation, one entry point for both protocols: :func:`evaluate` returns an :class:`EvalResult`.

Protocol 'next' (GRU4Rec): every next event of the test sessions is ranked, Recall@N and MRR@N.
It follows the original's evaluate_gpu: test events whose item the model does not know are
dropped, events are sorted by (session, time, item), sessions are processed session-parallel with
a fresh state per session, and every event's next item is ranked against all items (or a given
subset). Ranks come from counts of items scoring above/equal to the target (gpu_ops.rank_counts):
no sort. Protocol 'last' (NextItNet/CpRec and their successors): only the last item of each test
sequence, HR/MRR/NDCG (recsys_core.last_item_eval).

Any model works that provides ``check_trained()``, ``itemidmap`` and
``session_ranker(batch_size, mode, items)`` returning an object with ``step(inp, out, last)`` ->
(greater, equal) counts and ``shrink(keep)``.
"""
from collections import OrderedDict

import numpy as np
import pandas as pd

from gpu_ops.ranking import metric_sums

from .batching import Shrink, session_parallel
from .data import session_offsets
from .errors import UserError
from .eval_result import PROTOCOLS, TIE_MODES, EvalResult  # noqa: F401  (EvalResult: the result type, exported here)
from .last_item_eval import evaluate_last_items_result

def evaluate(model, test_data, protocol='next', cut_off=(20,), mode='standard', batch_size=512, items=None,
             session_key='SessionId', item_key='ItemId', time_key='Time', verbose=True, negatives=0, negatives_seed=42):
    """Evaluate ``model`` on test events under ``protocol`` ('next' or 'last'); returns an EvalResult.

    items: rank against this subset of item ids only (protocol next, as the original's evaluate_gpu).
    negatives: protocol last only: rank each target against this many items sampled uniformly from
    those its test sequence never has (SASRec's protocol: 100), drawn with ``negatives_seed``.
    """
    if protocol not in PROTOCOLS:
        raise UserError('Unknown protocol {!r}; use one of: {}'.format(protocol, ', '.join(PROTOCOLS)))
    cut_off = check_cut_offs(cut_off, mode)
    keys = dict(session_key=session_key, item_key=item_key, time_key=time_key)
    if negatives and protocol != 'last':
        raise UserError('Sampled negatives are a variant of the last-item protocol: use protocol last')
    if negatives < 0:
        raise UserError('The number of sampled negatives must be positive (0: rank against every item)')
    if protocol == 'last':
        if items is not None:
            raise UserError('Ranking against an item subset is only offered under protocol next')
        return evaluate_last_items_result(model, test_data, cut_off, mode, batch_size, verbose=verbose,
                                          negatives=int(negatives), negatives_seed=negatives_seed, **keys)
    recall, mrr, n = _next_event_sums(model, test_data, items, cut_off, batch_size, mode, verbose=verbose, **keys)
    return EvalResult('next', cut_off, OrderedDict([('recall', recall), ('mrr', mrr)]), n)


def evaluate_last_items(model, test_data, cut_off=(5, 20), mode='standard', batch_size=512,
                        session_key='SessionId', item_key='ItemId', time_key='Time', verbose=True):
    """The last-item protocol; an EvalResult (``res['hr']``, ``res['mrr']``, ``res['ndcg']`` are the
    per-cut-off lists, ``res['cases']`` and ``res['unknown_targets']`` the counts). Same as
    ``evaluate(..., protocol='last')``."""
    return evaluate(model, test_data, 'last', cut_off, mode, batch_size, None, session_key, item_key, time_key,
                    verbose)


def check_cut_offs(cut_off, mode):
    if mode not in TIE_MODES:
        raise UserError('Unknown evaluation mode {!r}; use one of: {}'.format(mode, ', '.join(TIE_MODES)))
    cut_off = [int(c) for c in (cut_off if isinstance(cut_off, (list, tuple, np.ndarray)) else [cut_off])]
    if not cut_off or min(cut_off) < 1:
        raise UserError('Cut-offs must be positive integers')
    return cut_off


def evaluate_sessions(model, test_data, items=None, cut_off=(20,), batch_size=100, mode='standard',
                      session_key='SessionId', item_key='ItemId', time_key='Time', verbose=True):
    """The original's evaluate_gpu interface: (recalls, mrrs), one value per cut-off (protocol next)."""
    res = evaluate(model, test_data, 'next', cut_off, mode, batch_size, items, session_key, item_key, time_key, verbose)
    return res['recall'], res['mrr']


def _next_event_sums(model, test_data, items, cut_off, batch_size, mode, session_key, item_key, time_key, verbose):
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
    return list(recall_sum / n), list(mrr_sum / n), n


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
