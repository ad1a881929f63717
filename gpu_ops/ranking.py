"""Argmax-free ranking: per row, the number of scores above and equal to the target's score.

Ranks follow from these counts in every tie mode (standard: greater + 1; conservative: greater +
equal, where the target counts itself; median: greater + (equal - 1) / 2 + 1), so evaluation never
sorts or takes an argmax over the full score matrix. The CPU implementation is a single fused pass
per row compiled with numba (no boolean temporary of the score matrix's size).
"""
import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op


@numba.njit(cache=True, nogil=True)
def _count_rows(scores, target):
    n, m = scores.shape
    greater = np.zeros(n, dtype=np.int64)
    equal = np.zeros(n, dtype=np.int64)
    for i in range(n):
        t = target[i]
        g = 0
        e = 0
        row = scores[i]
        for j in range(m):
            v = row[j]
            g += v > t
            e += v == t
        greater[i] = g
        equal[i] = e
    return greater, equal


def rank_counts_numpy(scores, target):
    """(greater, equal) counts on numpy arrays, for models that score outside a PyTensor graph."""
    scores = np.ascontiguousarray(scores)
    return _count_rows(scores, np.ascontiguousarray(target, dtype=scores.dtype))


class RankCounts(Op):
    """(greater, equal) counts of ``scores[i, :]`` against ``target[i]``."""
    __props__ = ()

    def make_node(self, scores, target):
        scores, target = pt.as_tensor_variable(scores), pt.as_tensor_variable(target)
        if scores.ndim != 2 or target.ndim != 1:
            raise TypeError('rank_counts needs a matrix and a vector')
        target = pt.cast(target, scores.dtype)
        out = pt.TensorType('int64', shape=(None,))
        return Apply(self, [scores, target], [out(), out()])

    def perform(self, node, inputs, outputs):
        scores, target = inputs
        greater, equal = _count_rows(np.ascontiguousarray(scores), np.ascontiguousarray(target))
        outputs[0][0] = greater
        outputs[1][0] = equal

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[0][0],), (shapes[0][0],)]

    def pullback(self, inputs, outputs, cotangents):
        return [grad_undefined(self, 0, inputs[0]), grad_undefined(self, 1, inputs[1])]


_rank_counts = RankCounts()


def rank_counts_reference(scores, target):
    t = pt.cast(target, scores.dtype)[:, None]
    return pt.cast((scores > t).sum(axis=1), 'int64'), pt.cast(pt.eq(scores, t).sum(axis=1), 'int64')


def rank_counts(scores, target):
    from . import custom_ops_enabled
    return _rank_counts(scores, target) if custom_ops_enabled() else rank_counts_reference(scores, target)


def rank_counts_at(scores, index):
    """(greater, equal) counts of ``scores[i, :]`` against the row's own entry ``scores[i, index[i]]``.

    The same graph as ``rank_counts(scores, scores[arange, index])``; its two outputs also carry
    ``tag.rank_source = (scores, index)``, so that a backend holding the score matrix on a GPU can
    count with the CUDA kernel ``rank_metrics`` instead, which takes exactly these two
    (recsys_core.backend.compile_function does for ``-d cuda``)."""
    index = pt.as_tensor_variable(index)
    greater, equal = rank_counts(scores, scores[pt.arange(index.shape[0]), index])
    greater.tag.rank_source = equal.tag.rank_source = (scores, index)
    return greater, equal


def ranks_from_counts(greater, equal, mode):
    """Symbolic or numpy ranks from the counts for the original's tie modes."""
    if mode in ('standard', 'tiebreaking'):
        return greater + 1.0
    if mode == 'conservative':
        return greater + equal + 0.0
    if mode == 'median':
        return greater + 0.5 * (equal - 1) + 1.0
    raise ValueError('unknown tie mode {!r}'.format(mode))


def metric_sums(greater, equal, mode, cutoffs):
    """Per cut-off sums of hits and reciprocal ranks (the numerators of Recall@N and MRR@N) for
    rows with the given counts; the CPU counterpart of the CUDA kernel rank_metrics."""
    ranks = ranks_from_counts(np.asarray(greater, dtype=np.float64), np.asarray(equal, dtype=np.float64), mode)
    hit = ranks[None, :] <= np.asarray(cutoffs, dtype=np.float64)[:, None]
    return hit.sum(axis=1).astype(np.float64), (hit / ranks[None, :]).sum(axis=1)
