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

With ``negatives=N`` (SASRec's protocol, N = 100) the target is ranked against N items drawn
uniformly, with replacement, from the items the test sequence never has (its history and its
target), by one generator seeded with ``negatives_seed`` over the cases in order, instead of
against every item. The model scores histories through ``_history_scores``. SASRec's own code
excludes only the training items of the user (its validation item may be drawn); here every item
of the test sequence is excluded, which is the protocol as its paper states it.
"""
import numpy as np

from gpu_ops.ranking import ranks_from_counts

from .batching import Shrink, session_parallel
from .data import session_offsets
from .errors import UserError
from .eval_result import EvalResult


def evaluate_last_items_result(model, test_data, cut_off, mode, batch_size, session_key, item_key, time_key,
                               verbose, negatives=0, negatives_seed=42):
    """The pass behind :func:`recsys_core.evaluation.evaluate` for protocol 'last'."""
    cuts = np.asarray(cut_off)
    model.check_trained()
    if negatives and hasattr(model, 'last_item_cases'):
        raise UserError('{} ranks with more than the items of a history; sampled negatives need a model that scores '
                        'item histories'.format(type(model).__name__))
    if hasattr(model, 'last_item_cases'):
        histories, targets = model.last_item_cases(test_data, session_key, item_key, time_key)
    else:
        histories, targets = last_item_cases(model, test_data, session_key, item_key, time_key)
    known = (targets >= 0) & np.array([len(h) > 0 for h in histories], dtype=bool)
    ranks = np.full((len(cuts), len(targets)), np.inf)  # one row per cut-off
    pruned, tied = (), 0
    if known.any():
        cases = [h for h, k in zip(histories, known) if k]
        if negatives:
            candidates = sample_negatives(model, cases, targets[known], negatives, negatives_seed)
            ranks[:, known], tied = sampled_ranks(model, cases, targets[known], candidates, mode)
        elif hasattr(model, 'rank_last_items'):
            ranks[:, known] = model.rank_last_items(cases, targets[known], mode, int(cuts.max()),
                                                    cut_offs=list(cut_off))
            pruned = getattr(model, 'pruned_cut_offs', lambda cuts: ())(list(cut_off))
        else:
            ranks[:, known] = _ranks_through_session_ranker(model, cases, targets[known], mode, batch_size)
    against = ' against {} sampled negatives each (seed {})'.format(negatives, negatives_seed) if negatives else ''
    if verbose:
        print('Measuring HR, MRR and NDCG @{} on the last item of {} test sequences{} ({} with an unknown '
              'target or no known history: counted as misses)'.format(','.join(map(str, cuts)), len(targets), against,
                                                                     int((~known).sum())))
    hit = ranks <= cuts[:, None]
    with np.errstate(divide='ignore'):
        metrics = {'hr': hit.mean(axis=1), 'mrr': (hit / ranks).mean(axis=1),
                   'ndcg': (hit / np.log2(ranks + 1)).mean(axis=1)}
    notes = model.evaluation_notes() if hasattr(model, 'evaluation_notes') else []
    if negatives:
        notes = ['(last-item protocol: each target ranked{}, not against every item)'.format(against)] + notes
        if tied > TIE_NOTE_SHARE * len(targets):
            notes.append(tie_note(tied, len(targets), mode))
    return EvalResult('last', list(cut_off), metrics, len(targets), int((~known).sum()), pruned, notes,
                      negatives=negatives)


def sample_negatives(model, histories, targets, n, seed):
    """(cases, n) model indices: per case n items drawn uniformly with replacement from the model's
    items that are neither in the history nor the target, one generator over the cases in order."""
    items = np.asarray(model.itemidmap.values, dtype=np.int64)
    rng = np.random.default_rng(seed)
    out = np.empty((len(targets), n), dtype=np.int64)
    for c, (h, t) in enumerate(zip(histories, targets)):
        seen = np.union1d(np.asarray(h, dtype=np.int64), [t])
        if len(np.setdiff1d(items, seen)) == 0:
            raise UserError('A test sequence has every item: no negative item to sample')
        draw = items[rng.integers(0, len(items), n)]
        bad = np.isin(draw, seen)
        while bad.any():
            draw[bad] = items[rng.integers(0, len(items), int(bad.sum()))]
            bad = np.isin(draw, seen)
        out[c] = draw
    return out


TIE_NOTE_SHARE = 0.01


def tie_note(tied, cases, mode):
    """The line under a sampled result whose targets often tie with a negative: a model that gives
    many items one score (popularity's top_n) otherwise looks far better than it is."""
    effect = {'standard': 'counts a tie in the target\'s favour', 'tiebreaking': 'counts a tie in the target\'s favour',
              'conservative': 'counts a tie against the target', 'median': 'counts half of a tie for the target'}
    return ('(tied scores: {} of {} targets ({:.1%}) score the same as a sampled negative; the {} tie mode {})'
            .format(tied, cases, tied / cases, mode, effect[mode]))


def sampled_ranks(model, histories, targets, candidates, mode, batch=256):
    """Rank of each target among itself and its sampled candidates (the model's scores; tie modes
    as everywhere), and how many targets tie with one of their candidates."""
    ranks, tied = [], 0
    for s in range(0, len(targets), batch):
        scores = np.asarray(model._history_scores(histories[s:s + batch]), dtype=np.float64)
        rows = np.arange(len(scores))[:, None]
        target = scores[rows[:, 0], targets[s:s + batch]][:, None]
        against = scores[rows, candidates[s:s + batch]]
        greater, equal = (against > target).sum(axis=1), (against == target).sum(axis=1) + 1
        tied += int((equal > 1).sum())
        ranks.append(ranks_from_counts(greater.astype(np.float64), equal.astype(np.float64), mode))
    return np.concatenate(ranks), tied


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
