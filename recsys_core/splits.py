"""Splits of an events file (TAB-separated SessionId, ItemId, Time) that the comparisons use.

    python -m recsys_core.splits leave-one-out EVENTS.tsv OUTDIR [--min_item_count 5]
    python -m recsys_core.splits last-sessions EVENTS.tsv OUTDIR [--fraction 0.1]

leave-one-out (SASRec's protocol on user histories, e.g. MovieLens-1M): items with fewer than
``--min_item_count`` events are removed (once); then per user (session) of 3 or more events the
last one is the test target and the one before it the validation target. STEM_train.tsv holds each
user's events but the last two (users with fewer than 3 events: all of them), STEM_valid.tsv each
user's events but the last, STEM_test.tsv every event; so under the last-item protocol the valid
file ranks the second-last item after the ones before it and the test file the last item after
all the others.

last-sessions (a validation split cut from a training file, e.g. to tune on Diginetica without
its test week): the last ``--fraction`` of the sessions in the order they first appear in the
file go to STEM_valid.tsv, the rest to STEM_train.tsv (the file order is the time order of
sessions in SR-GNN's Diginetica).

Files are written atomically into OUTDIR (created when missing).
"""
import argparse
import os

from .atomic import write_tsv_atomic
from .cli import run_main
from .errors import UserError

KEYS = ['SessionId', 'ItemId', 'Time']


def leave_one_out(events, min_item_count=5):
    """(train, valid, test) event frames of SASRec's leave-one-out split."""
    counts = events['ItemId'].value_counts()
    events = events[events['ItemId'].isin(counts.index[counts >= min_item_count])]
    events = events.sort_values(['SessionId', 'Time'], kind='mergesort')
    position_from_end = events.groupby('SessionId').cumcount(ascending=False)
    length = events.groupby('SessionId')['ItemId'].transform('size')
    long_enough = length >= 3
    train = events[~long_enough | (position_from_end >= 2)]
    valid = events[long_enough & (position_from_end >= 1)]
    test = events[long_enough]
    return train, valid, test


def last_sessions(events, fraction):
    """(train, valid): the last ``fraction`` of the sessions by first appearance go to valid."""
    if not 0 < fraction < 1:
        raise UserError('--fraction must be between 0 and 1, not {}'.format(fraction))
    order = events['SessionId'].drop_duplicates().values
    cut = len(order) - int(round(fraction * len(order)))
    if cut <= 0 or cut >= len(order):
        raise UserError('{} sessions cannot be cut at fraction {}'.format(len(order), fraction))
    in_valid = events['SessionId'].isin(order[cut:]).values
    return events[~in_valid], events[in_valid]


def main(argv=None):
    p = argparse.ArgumentParser(description='Leave-one-out or last-sessions split of an events file.')
    p.add_argument('kind', choices=('leave-one-out', 'last-sessions'))
    p.add_argument('path', metavar='EVENTS')
    p.add_argument('out_dir', metavar='OUTDIR')
    p.add_argument('--min_item_count', type=int, default=5, help='leave-one-out: items with fewer events are removed '
                                                                 '(Default: 5, as SASRec)')
    p.add_argument('--fraction', type=float, default=0.1, help='last-sessions: the share of sessions for validation '
                                                               '(Default: 0.1)')
    args = p.parse_args(argv)
    from .data import load_events
    if not os.path.isfile(args.path):
        raise UserError('Events file not found: {}'.format(args.path))
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise UserError('Output folder is a file: {}'.format(args.out_dir))
    events = load_events(args.path, verbose=False)[KEYS]
    parts = leave_one_out(events, args.min_item_count) if args.kind == 'leave-one-out' \
        else last_sessions(events, args.fraction)
    names = ('train', 'valid', 'test') if args.kind == 'leave-one-out' else ('train', 'valid')
    if any(len(part) == 0 for part in parts):
        raise UserError('The split of {} leaves an empty part; nothing written'.format(args.path))
    os.makedirs(args.out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(args.path))[0]
    for name, part in zip(names, parts):
        path = os.path.join(args.out_dir, '{}_{}.tsv'.format(stem, name))
        write_tsv_atomic(part, path)
        print('{}: {} events, {} sessions, {} items'.format(path, len(part), part['SessionId'].nunique(),
                                                            part['ItemId'].nunique()))
    return 0


if __name__ == '__main__':
    run_main(main)
