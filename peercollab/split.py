"""The release's leave-one-out split of a user-sequence file (reference sections 1.2 and 5).

    python -m peercollab.split DATA.csv OUTDIR [--max_len 100] [--min_distinct N] [--model bpr]

DATA.csv has one user per line, the user's items comma-separated in time order. Users with fewer
than 5 items are dropped (and, as released for a path containing 'retail', users with 3 or fewer
distinct items: ``--min_distinct 4``). For each user s: the test row is the last max_len items of
s (its last item is the target, the items before it the history), the validation row the last
max_len items of s[:-1] (built by the release and never used), and the training sequence s[:-2],
so the validation and test items are never trained on. Written atomically as STEM_train.txt,
STEM_valid.txt and STEM_test.txt (sequence-per-line files run.py reads); run.py with
--protocol last -m 5 20 then measures the release's HR/MRR/NDCG@5,20 on the test file. The model
cuts training sequences longer than max_len into the release's windows itself.

``--model bpr`` is the BPR loader's split: users with 5 or more items of which more than 3 are
distinct, each sequence reduced to each item's last occurrence, then the same three parts (the
test row's last item is the target; BPR ranks for the line's user).
"""
import argparse
import os
from collections import OrderedDict

import numpy as np
import pandas as pd

from recsys_core.cli import run_main
from recsys_core.errors import UserError
from recsys_core.persistence import write_bytes_atomic

MIN_LENGTH = 5


def read_user_sequences(path):
    """Token lists of a user-sequence file (blank lines skipped; an empty item is an error)."""
    if not os.path.isfile(path):
        raise UserError('Data file not found: {}'.format(path))
    sequences = []
    with open(path, 'rt', errors='replace') as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            if '\t' in line:
                raise UserError('{} line {}: a TAB; the release\'s file has one user per line, items separated by '
                                'commas'.format(path, number))
            tokens = [t.strip() for t in line.strip().split(',')]
            if '' in tokens:
                raise UserError('{} line {}: an empty item ({!r})'.format(path, number, line.strip()[:80]))
            sequences.append(tokens)
    if not sequences:
        raise UserError('{} contains no sequences'.format(path))
    return sequences


def default_min_distinct(path, model='sasrec'):
    """The release requires more than 3 distinct items for BPR, and for SASRec and YouTubeDNN only
    when the path contains 'retail'."""
    return BPR_MIN_DISTINCT if model == 'bpr' or 'retail' in path else 0


BPR_MIN_DISTINCT = 4


def last_occurrences(sequence):
    """The sequence with each item only at its last occurrence (BPR's loader)."""
    return list(reversed(OrderedDict.fromkeys(reversed(sequence))))


def leave_one_out(sequences, max_len, min_distinct=0, dedupe=False):
    """(training sequences, validation rows, test rows) as the release's split_data builds them
    (``dedupe``: BPR's, on each user's last occurrences after the length filter)."""
    if max_len < 2:
        raise UserError('max_len must be at least 2, not {}'.format(max_len))
    train, valid, test = [], [], []
    for s in sequences:
        if len(s) >= MIN_LENGTH and len(set(s)) >= min_distinct:
            if dedupe:
                s = last_occurrences(s)
            test.append(s[max(len(s) - max_len, 0):])
            valid.append(s[max(len(s) - 1 - max_len, 0):-1])
            train.append(s[:-2])
    if not train:
        raise UserError('No user has {} or more items{}: nothing to split'.format(
            MIN_LENGTH, ' and {} distinct ones'.format(min_distinct) if min_distinct else ''))
    return train, valid, test


def sequence_events(sequences):
    """Sequences as run.py's events: SessionId = position in the list, Time = position in the sequence."""
    lengths = [len(s) for s in sequences]
    return pd.DataFrame({'SessionId': np.repeat(np.arange(len(sequences), dtype=np.int64), lengths),
                         'ItemId': [t for s in sequences for t in s],
                         'Time': np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])})


def main(argv=None):
    p = argparse.ArgumentParser(description="PeerCollab's leave-one-out split of a user-sequence file.")
    p.add_argument('path', metavar='DATA')
    p.add_argument('out_dir', metavar='OUTDIR')
    p.add_argument('--max_len', type=int, default=100, help='T: rows of the last T items (Default: 100)')
    p.add_argument('--min_distinct', type=int, default=None,
                   help="users need this many distinct items (Default: 4 for bpr or when the path contains 'retail', "
                        "else 0)")
    p.add_argument('--model', choices=('sasrec', 'youtubednn', 'bpr'), default='sasrec',
                   help="whose loader: sasrec and youtubednn share one; bpr's keeps each item's last occurrence "
                        "(Default: sasrec)")
    args = p.parse_args(argv)
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise UserError('Output folder is a file: {}'.format(args.out_dir))
    min_distinct = default_min_distinct(args.path, args.model) if args.min_distinct is None else args.min_distinct
    parts = leave_one_out(read_user_sequences(args.path), args.max_len, min_distinct, dedupe=args.model == 'bpr')
    try:
        os.makedirs(args.out_dir, exist_ok=True)
    except OSError as e:
        raise UserError('Cannot create the output folder {}: {}'.format(args.out_dir, e.strerror)) from None
    stem = os.path.splitext(os.path.basename(args.path))[0]
    for name, rows in zip(('train', 'valid', 'test'), parts):
        path = os.path.join(args.out_dir, '{}_{}.txt'.format(stem, name))
        write_bytes_atomic(path, ''.join(','.join(r) + '\n' for r in rows).encode())
        print('{}: {} sequences'.format(path, len(rows)))
    return 0


if __name__ == '__main__':
    run_main(main)
