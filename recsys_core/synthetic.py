"""Synthetic session data with sequential structure and long-tailed item popularity.

Each item has a few preferred successors; a session starts at a popularity-sampled item and moves to
one of the current item's successors with probability ``p_follow`` (otherwise to a
popularity-sampled item). Popularity is Zipf-like, so a few items dominate as in real logs. Sessions
get increasing start times; the last ``test_fraction`` of sessions (by time) form the test set,
whose events on items unseen in training are dropped and whose sessions keep at least two events,
as the original preprocessing does. Deterministic given the seed.

    python -m recsys_core.synthetic OUTDIR [--items 2000] [--sessions 20000] [--seed 0]

writes OUTDIR/train.tsv and OUTDIR/test.tsv in run.py's format (SessionId, ItemId, Time).
"""
import argparse
import os
import sys

import numpy as np
import pandas as pd

from .atomic import write_tsv_atomic


def generate_sessions(n_items=2000, n_sessions=20000, seed=0, mean_length=5.0, p_follow=0.6, n_successors=8,
                      zipf=1.1):
    """Return a DataFrame of events (SessionId, ItemId, Time) sorted by session and time."""
    rng = np.random.RandomState(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** zipf
    popularity = popularity[rng.permutation(n_items)]
    cdf = np.cumsum(popularity) / popularity.sum()
    successors = np.searchsorted(cdf, rng.rand(n_items, n_successors))
    succ_weights = np.cumsum(rng.dirichlet(np.ones(n_successors), size=n_items), axis=1)
    lengths = np.minimum(2 + rng.geometric(1.0 / max(mean_length - 1.0, 1.0), size=n_sessions) - 1, 50)
    total = lengths.sum()
    items = np.empty(total, dtype=np.int64)
    follow = rng.rand(total) < p_follow
    jumps = np.searchsorted(cdf, rng.rand(total))
    pick = rng.rand(total)
    pos = 0
    for length in lengths:
        cur = jumps[pos]
        items[pos] = cur
        for j in range(pos + 1, pos + length):
            if follow[j]:
                cur = successors[cur, min(np.searchsorted(succ_weights[cur], pick[j]), n_successors - 1)]
            else:
                cur = jumps[j]
            items[j] = cur
        pos += length
    session = np.repeat(np.arange(1, n_sessions + 1), lengths)
    start = np.cumsum(rng.randint(1, 120, size=n_sessions)) + 1_500_000_000
    offset = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    times = np.repeat(start, lengths) + offset * 30
    return pd.DataFrame({'SessionId': session, 'ItemId': items + 1, 'Time': times})


def split_by_time(data, test_fraction=0.1):
    """Sessions starting in the last ``test_fraction`` of sessions go to test (known items, length >= 2)."""
    first = data.groupby('SessionId').Time.min().sort_values(kind='mergesort')
    n_test = max(1, int(len(first) * test_fraction))
    test_ids = set(first.index[-n_test:])
    is_test = data.SessionId.isin(test_ids)
    train, test = data[~is_test], data[is_test]
    test = test[test.ItemId.isin(set(train.ItemId))]
    test = test[test.groupby('SessionId').SessionId.transform('size') >= 2]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description='Generate synthetic session data in run.py format.')
    parser.add_argument('outdir')
    parser.add_argument('--items', type=int, default=2000)
    parser.add_argument('--sessions', type=int, default=20000)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--test-fraction', type=float, default=0.1)
    args = parser.parse_args(argv)
    if args.items < 2 or args.sessions < 10 or not 0 < args.test_fraction < 1:
        print('ERROR: need --items >= 2, --sessions >= 10 and 0 < --test-fraction < 1', file=sys.stderr)
        return 1
    os.makedirs(args.outdir, exist_ok=True)
    train, test = split_by_time(generate_sessions(args.items, args.sessions, args.seed), args.test_fraction)
    for name, frame in (('train', train), ('test', test)):
        write_tsv_atomic(frame, os.path.join(args.outdir, name + '.tsv'))
        print('{}: {} events, {} sessions, {} items'.format(name, len(frame), frame.SessionId.nunique(),
                                                              frame.ItemId.nunique()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
