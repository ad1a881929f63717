"""CpRec's block-wise adaptive input embedding and softmax over a frequency-ranked vocabulary.

Clusters by id (= frequency rank): head [0, b0), tail j = [b_{j-1}, b_j) for j = 1..n, b_n = V.
Input: the head has a full-width table; tail j a narrow table (d_j columns) projected up to d.
Output: a 2-level tree. The head softmax covers the b0 head items plus one token per tail;
p(y in tail j) = p_head(token j) * softmax((h U_j) O_j)[y - b_{j-1}]. Training costs one head
product for every position and a tail product only for the positions whose label is in that tail.
"""
import numpy as np
import pytensor.tensor as pt

from gpu_ops.nonzero import flat_nonzero
from recsys_core.errors import UserError
from recsys_core.softmax import linear_cross_entropy, linear_cross_entropy_sum, log_softmax, softmax

DEFAULT_BLOCK = [7000, 15000]
AUTO_SHARES = (0.8, 0.95)


def resolve_boundaries(block, counts):
    """Cluster boundaries [b0, ..., V] for a vocabulary whose ids are frequency ranks.

    counts: the occurrences of each id, in id order (the caller gives padding ids a count of 0, so
    they hold no share but keep their rank). block: 'default' (the released [7000, 15000, V], or
    'auto' when V <= 15000), 'auto' (head = the first ids up to the one where 80% of the
    occurrences are reached, first tail up to 95%, second tail the rest), or a list of increasing
    boundaries (V is appended when missing).
    """
    V = len(counts)
    if block == 'default':
        block = DEFAULT_BLOCK if V > DEFAULT_BLOCK[-1] else 'auto'
    if block == 'auto':
        share = np.cumsum(counts) / max(counts.sum(), 1)
        bounds = [int(np.searchsorted(share, s) + 1) for s in AUTO_SHARES]
        b, out = 0, []
        for x in bounds:  # strictly increasing, every cluster non-empty, room left for the last tail
            b = min(max(x, b + 1), V - (len(AUTO_SHARES) - len(out)))
            out.append(b)
        block = out
    bounds = [int(b) for b in block]
    if bounds and bounds[-1] == V:
        bounds = bounds[:-1]
    if not bounds or bounds[0] < 1 or any(b2 <= b1 for b1, b2 in zip(bounds, bounds[1:])) or bounds[-1] >= V:
        raise UserError('block={} does not fit a vocabulary of {}: boundaries must increase, start at 1 or more '
                        'and stay below {} (use block=auto for frequency quantiles)'.format(
                            '/'.join(map(str, block)), V, V))
    return bounds + [V]


def tail_dims(d, n_tails, factor, explicit, softmax):
    """Tail widths: explicit dims, or d/f^j (input) and d/f^(2^(j-1)) (softmax: the release
    squares its factor each step, d/4, d/16, d/256 for f = 4), integer division, at least 1."""
    if explicit:
        if len(explicit) != n_tails + 1:
            raise UserError('block_dims has {} sizes but there are {} clusters'.format(len(explicit), n_tails + 1))
        if explicit[0] != d:
            raise UserError('block_dims starts with the head width {}, which must equal dilated_channels={}'.format(
                explicit[0], d))
        return list(explicit[1:])
    exps = [2 ** (j - 1) for j in range(1, n_tails + 1)] if softmax else list(range(1, n_tails + 1))
    return [max(1, d // factor ** e) for e in exps]


def block_embedding(X, head, tails, projections, bounds):
    """(B, L) ids -> (B, L, d): head rows directly, tail rows through their up-projection."""
    b0 = bounds[0]
    e = head[pt.clip(X, 0, b0 - 1)] * pt.cast(pt.lt(X, b0), head.dtype)[:, :, None]
    for j, (A, P) in enumerate(zip(tails, projections)):
        lo, hi = bounds[j], bounds[j + 1]
        rows = A[pt.clip(X - lo, 0, hi - lo - 1)]
        up = pt.dot(rows.reshape((-1, rows.shape[2])), P).reshape((X.shape[0], X.shape[1], P.shape[1]))
        e = e + up * pt.cast(pt.ge(X, lo) & pt.lt(X, hi), head.dtype)[:, :, None]
    return e


def cluster_of(y, bounds):
    """0 for head ids, j for ids in tail j."""
    c = pt.zeros_like(y)
    for b in bounds[:-1]:
        c = c + pt.cast(pt.ge(y, b), y.dtype)
    return c


def block_softmax_loss(h, y, head, downs, outs, bounds, static_shapes=False, mask=None):
    """Mean over rows of -log p(y|h) under the 2-level tree; tails see only their own rows.

    Each tail scores only the rows whose target is in it (a data-dependent gather, as in the
    original). ``static_shapes`` (backends that compile for fixed shapes, e.g. JAX) scores every row
    in every tail instead and masks the other rows' terms out: the same loss and gradients, with
    more arithmetic. ``mask`` (N,): 1 = the row counts (the mean is over those), None = every row.
    """
    b0 = bounds[0]
    c = cluster_of(y, bounds)
    y_head = pt.switch(pt.eq(c, 0), y, b0 + c - 1)
    if mask is None:
        n = pt.cast(y.shape[0], h.dtype)
        total = linear_cross_entropy_sum(h, head, None, y_head)
    else:
        mask = pt.cast(mask, h.dtype)
        n = pt.maximum(mask.sum(), 1)
        total = linear_cross_entropy(h, head, None, y_head, mask) * n
    for j, (U, O) in enumerate(zip(downs, outs)):
        in_tail = pt.eq(c, j + 1)
        if mask is not None:
            in_tail = in_tail & pt.gt(mask, 0)
        if static_shapes:
            y_tail = pt.clip(y - bounds[j], 0, bounds[j + 1] - bounds[j] - 1)
            logp = log_softmax(pt.dot(pt.dot(h, U), O))[pt.arange(y.shape[0]), y_tail]
            total = total - (logp * pt.cast(in_tail, h.dtype)).sum()
            continue
        rows = flat_nonzero(in_tail)
        total = total + linear_cross_entropy_sum(pt.dot(h[rows], U), O, None, y[rows] - bounds[j])
    return total / n


def block_log_probs(h, head, downs, outs, bounds):
    """(N, V) log-probabilities of every id under the 2-level tree."""
    b0 = bounds[0]
    log_head = log_softmax(pt.dot(h, head))
    parts = [log_head[:, :b0]]
    for j, (U, O) in enumerate(zip(downs, outs)):
        parts.append(log_head[:, b0 + j][:, None] + log_softmax(pt.dot(pt.dot(h, U), O)))
    return pt.concatenate(parts, axis=1)


def head_probs(h, head):
    return softmax(pt.dot(h, head))


def tail_probs(h, U, O):
    return softmax(pt.dot(pt.dot(h, U), O))


def _top_k(scores, k):
    """Column indices of each row's k largest scores, best first (k <= columns)."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind='stable')
    return np.take_along_axis(part, order, axis=1)


def fast_top_k(p_head, tail_fn, bounds, k, rule, pad_index):
    """Top-k ids and probabilities with CpRec's early stop: a tail is computed only when needed.

    p_head: (B, b0 + n) head-softmax probabilities; tail_fn(j, rows) -> tail j's softmax for those
    rows. rule 'released': a tail is computed when its cluster token is among the k largest head
    entries (items and tokens; ties count as in), the paper's rule, which can miss items. 'exact':
    a tail is skipped only when the k-th best head item is at least its token's probability, which
    bounds every item in that tail, so the result is the exact top-k.
    Returns (ids, probs, evaluated) with ``evaluated[j]`` the number of rows that computed tail j.
    """
    B, b0, n = p_head.shape[0], bounds[0], len(bounds) - 1
    p_head = p_head.astype(np.float64).copy()
    if pad_index < b0:
        p_head[:, pad_index] = -1.0  # never recommended
    kh = min(k, b0)
    head_ids = _top_k(p_head[:, :b0], kh)
    cand_ids, cand_p = [head_ids], [np.take_along_axis(p_head, head_ids, axis=1)]
    kth_item = cand_p[0][:, -1] if kh == k else np.full(B, -np.inf)
    evaluated = []
    for j in range(1, n + 1):
        token = p_head[:, b0 + j - 1]
        if rule == 'released':
            need = (p_head > token[:, None]).sum(axis=1) < k
        else:
            need = kth_item < token
        rows = np.flatnonzero(need)
        evaluated.append(len(rows))
        ids = np.full((B, k), -1, dtype=np.int64)
        probs = np.full((B, k), -1.0)
        if len(rows):
            p = np.asarray(tail_fn(j, rows), dtype=np.float64) * token[rows, None]
            lo = bounds[j - 1]
            if lo <= pad_index < bounds[j]:
                p[:, pad_index - lo] = -1.0
            kt = min(k, p.shape[1])
            local = _top_k(p, kt)
            ids[rows, :kt] = local + lo
            probs[rows, :kt] = np.take_along_axis(p, local, axis=1)
        cand_ids.append(ids)
        cand_p.append(probs)
    ids, probs = np.concatenate(cand_ids, axis=1), np.concatenate(cand_p, axis=1)
    best = _top_k(probs, k)
    return np.take_along_axis(ids, best, axis=1), np.take_along_axis(probs, best, axis=1), evaluated
