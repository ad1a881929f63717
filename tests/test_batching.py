import numpy as np

from recsys_core.batching import Shrink, session_parallel
from recsys_core.data import session_offsets


def naive_schedule(lengths, order, batch_size, min_valid=1):
    """Straightforward simulation of the original's session-parallel loop on event positions."""
    starts = np.concatenate([[0], np.cumsum(lengths)])
    queue = list(order)
    slots = [[queue.pop(0), 0] for _ in range(min(batch_size, len(queue)))]
    steps = []
    while True:
        minlen = min(lengths[s] - p for s, p in slots)
        for i in range(minlen - 1):
            steps.append(([starts[s] + p + i for s, p in slots], [starts[s] + p + i + 1 for s, p in slots],
                          [p + i + 1 == lengths[s] - 1 for s, p in slots]))
        for sl in slots:
            sl[1] += minlen - 1
        new = []
        for s, p in slots:
            if lengths[s] - p <= 1:
                if queue:
                    new.append([queue.pop(0), 0])
            else:
                new.append([s, p])
        if len(new) == 0 or len(new) < min_valid:
            return steps
        slots = new


def test_schedule_matches_naive_simulation():
    rng = np.random.RandomState(0)
    for trial in range(20):
        lengths = rng.randint(1, 7, size=rng.randint(1, 25))
        order = rng.permutation(len(lengths))
        batch = rng.randint(1, 6)
        positions = np.arange(lengths.sum())
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        got = [(list(r.inp), list(r.out), list(r.last)) for r in
               session_parallel(positions, offsets, order, batch) if not isinstance(r, Shrink)]
        expected = [(list(a), list(b), list(c)) for a, b, c in naive_schedule(lengths, order, batch)]
        assert got == expected


def test_every_transition_is_visited_once():
    lengths = np.array([3, 2, 5, 1, 4, 2])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    pos = np.arange(offsets[-1])
    pairs = [(i, o) for r in session_parallel(pos, offsets, np.arange(6), 2) if not isinstance(r, Shrink)
             for i, o in zip(r.inp, r.out)]
    expected = [(offsets[s] + k, offsets[s] + k + 1) for s in range(6) for k in range(lengths[s] - 1)]
    assert sorted(pairs) == sorted(expected)


def test_min_valid_stops_early_and_shrink_reports_rows():
    lengths = np.array([2, 6, 2])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    recs = list(session_parallel(np.arange(10), offsets, np.arange(3), 3, min_valid=2))
    assert not any(isinstance(r, Shrink) for r in recs)  # stops when only one slot would remain
    recs = list(session_parallel(np.arange(10), offsets, np.arange(3), 3))
    shrinks = [r for r in recs if isinstance(r, Shrink)]
    assert shrinks and list(shrinks[0].keep) == [False, True, False]


def test_session_offsets():
    np.testing.assert_array_equal(session_offsets(np.array([5, 5, 7, 9, 9, 9])), [0, 2, 3, 6])
