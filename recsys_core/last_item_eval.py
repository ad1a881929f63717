"""The NextItNet/CpRec protocol: predict the last item of each test sequence from the items before it.

Metrics at each cut-off k, from the 1-based rank r of the target (tie modes as in
:mod:`recsys_core.evaluation`): HR@k = [r <= k], MRR@k = 1/r and NDCG@k = 1/log2(r + 1) when
r <= k, else 0 (the released code's 1/(r0+1) and 1/log2(r0+2) with a 0-based rank r0).

Every test session with at least two events is one case. History items the model does not know are
left out of the history; a target it does not know counts as a miss (in the released code such an
item is in the vocabulary but never a training target, so it is practically never ranked in the top
k). Models may provide ``rank_last_items(histories, targets, mode, max_cut, cut_offs)`` (a batched
pass returning one row of ranks per cut-off) and ``pruned_cut_offs(cut_offs)`` (the cut-offs whose
ranks came from a pruned list);
any other model is driven through its ``session_ranker``, keeping only each session's last step.
A model whose histories carry more than items (SSE-PT: the user first) provides
``last_item_cases(test_data, session_key, item_key, time_key)`` -> (histories, targets) in the form
its ``rank_last_items`` takes (a history of length 0 counts as a miss).
"""
import numpy as np

from gpu_ops.ranking import ranks_from_counts

from .batching import Shrink, session_parallel
from .data import session_offsets
from .errors import UserError
from .eval_result import EvalResult


def evaluate_last_items_result(model, test_data, cut_off, mode, batch_size, session_key, item_key, time_key,
                               verbose):
    """The pass behind :func:`recsys_core.evaluation.evaluate` for protocol 'last'."""
    cuts = np.asarray(cut_off)
    model.check_trained()
    if hasattr(model, 'last_item_cases'):
        histories, targets = model.last_item_cases(test_data, session_key, item_key, time_key)
    else:
        histories, targets = last_item_cases(model, test_data, session_key, item_key, time_key)
    known = (targets >= 0) & np.array([len(h) > 0 for h in histories], dtype=bool)
    ranks = np.full((len(cuts), len(targets)), np.inf)  # one row per cut-off
    pruned = ()
    if known.any():
        cases = [h for h, k in zip(histories, known) if k]
        if hasattr(model, 'rank_last_items'):
            ranks[:, known] = model.rank_last_items(cases, targets[known], mode, int(cuts.max()),
                                                    cut_offs=list(cut_off))
            pruned = getattr(model, 'pruned_cut_offs', lambda cuts: ())(list(cut_off))
        else:
            ranks[:, known] = _ranks_through_session_ranker(model, cases, targets[known], mode, batch_size)
    if verbose:
        print('Measuring HR, MRR and NDCG @{} on the last item of {} test sequences ({} with an unknown '
              'target or no known history: counted as misses)'.format(','.join(map(str, cuts)), len(targets),
                                                                     int((~known).sum())))
    hit = ranks <= cuts[:, None]
    with np.errstate(divide='ignore'):
        metrics = {'hr': hit.mean(axis=1), 'mrr': (hit / ranks).mean(axis=1),
                   'ndcg': (hit / np.log2(ranks + 1)).mean(axis=1)}
    return EvalResult('last', list(cut_off), metrics, len(targets), int((~known).sum()), pruned,
                      model.evaluation_notes() if hasattr(model, 'evaluation_notes') else [])


def last_item_cases(model, test_data, session_key, item_key, time_key):
    """(histories, targets) in model indices; unknown history items dropped, unknown targets -1."""
    for key in (session_key, item_key, time_key):
        if key not in test_data.columns:
            raise UserError('Test data has no column "{}"'.format(key))
    data = test_data.sort_values([session_key, time_key], kind='mergesort')
    idx = model.itemidmap.reindex(data[item_key].astype(str).values).values
    idx = np.where(np.isnan(idx), -1, idx).astype(np.int64)
    offsets = session_offsets(data[session_key].values)
    histories, targets = [], []
    for start, end in zip(offsets[:-1], offsets[1:]):
        if end - start < 2:
            continue
        h = idx[start:end - 1]
        histories.append(h[h >= 0].astype(np.int32))
        targets.append(idx[end - 1])
    if not targets:
        raise UserError('The test data has no sequence with two or more events')
    return histories, np.asarray(targets, dtype=np.int64)


def _ranks_through_session_ranker(model, histories, targets, mode, batch_size):
    """Ranks of every case's last step, stepping any model through its session ranker.

    The ranks come in the order sessions finish, not in case order; callers only average them.
    """
    lengths = np.array([len(h) + 1 for h in histories])
    items = np.concatenate([np.append(h, t) for h, t in zip(histories, targets)]).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    batch_size = min(batch_size, len(histories))
    ranker = model.session_ranker(batch_size, mode, None)
    ranks = []
    for rec in session_parallel(items, offsets, np.arange(len(histories)), batch_size):
        if isinstance(rec, Shrink):
            ranker.shrink(rec.keep)
            continue
        greater, equal = ranker.step(rec.inp, rec.out, rec.last)
        r = ranks_from_counts(np.asarray(greater, dtype=np.float64), np.asarray(equal, dtype=np.float64), mode)
        ranks.append(r[rec.last])
    return np.concatenate(ranks)
