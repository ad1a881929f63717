"""Session-parallel mini-batches, the scheme GRU4Rec trains and evaluates with.

``batch_size`` slots each hold one session. Every step feeds the current event of each slot and
targets its next event. A slot whose session ends takes the next session (its state must be zeroed:
``last`` marks the step after which that happens); when no sessions are left the batch shrinks
(``Shrink`` tells which rows stay). The loop ends when fewer than ``min_valid`` slots remain.
"""
from collections import namedtuple

import numpy as np

Step = namedtuple('Step', 'inp out last')
Shrink = namedtuple('Shrink', 'keep')


def session_parallel(items, offsets, order, batch_size, min_valid=1):
    """Yield :class:`Step` and :class:`Shrink` records over sessions taken in ``order``.

    items: item index per event (session-sorted); offsets: session start offsets plus the end;
    order: the order in which sessions are taken (indices into offsets[:-1]).
    """
    n_sessions = len(order)
    if n_sessions == 0:
        return
    batch_size = min(batch_size, n_sessions)
    iters = np.arange(batch_size)
    maxiter = batch_size - 1
    start = offsets[order[iters]]
    end = offsets[order[iters] + 1]
    while True:
        minlen = (end - start).min()
        out = items[start]
        for i in range(minlen - 1):
            inp = out
            out = items[start + i + 1]
            yield Step(inp, out, start + i + 1 == end - 1)
        start = start + minlen - 1
        finished = end - start <= 1
        n_finished = finished.sum()
        iters[finished] = maxiter + np.arange(1, n_finished + 1)
        maxiter += n_finished
        valid = iters < n_sessions
        n_valid = valid.sum()
        if n_valid == 0 or n_valid < min_valid:
            return
        refill = finished & valid
        sessions = order[iters[refill]]
        start[refill] = offsets[sessions]
        end[refill] = offsets[sessions + 1]
        if n_valid < len(valid):
            iters, start, end = iters[valid], start[valid], end[valid]
            yield Shrink(valid)
