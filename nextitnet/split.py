"""Split a sequence-per-line file into train and test files as the released scripts do.

    python -m nextitnet.split FILE OUTDIR [--test-fraction 0.2] [--seed 10]

Whole sequences go to one side: numpy's legacy generator seeded with 10 permutes the lines, the
first N - int(0.2 N) train and the rest test. Both files keep the permuted order (the order the
released code trains in) and are written atomically as STEM_train.txt and STEM_test.txt in OUTDIR
(created when missing).
"""
import argparse
import os

from recsys_core.cli import run_main
from recsys_core.errors import UserError
from recsys_core.persistence import write_bytes_atomic
from recsys_core.sequences import legacy_split


def main(argv=None):
    p = argparse.ArgumentParser(description='Split a sequence-per-line file by whole sequences (NextItNet/CpRec).')
    p.add_argument('path', metavar='FILE')
    p.add_argument('out_dir', metavar='OUTDIR')
    p.add_argument('--test-fraction', type=float, default=0.2, help='(Default: 0.2, the released tt_percentage)')
    p.add_argument('--seed', type=int, default=10, help='(Default: 10, as released)')
    args = p.parse_args(argv)
    if not os.path.isfile(args.path):
        raise UserError('Sequence file not found: {}'.format(args.path))
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise UserError('Output folder is a file: {}'.format(args.out_dir))
    if not 0 < args.test_fraction < 1:
        raise UserError('--test-fraction must be between 0 and 1')
    with open(args.path, 'rt', errors='replace') as f:
        lines = [line.strip() for line in f if line.strip()]
    if any('\t' in line for line in lines):
        raise UserError('{} contains TABs: it is not a sequence-per-line file'.format(args.path))
    train, test = legacy_split(len(lines), args.test_fraction, args.seed)
    try:
        os.makedirs(args.out_dir, exist_ok=True)  # the README's example names a folder that is not there yet
    except OSError as e:
        raise UserError('Cannot create the output folder {}: {}'.format(args.out_dir, e.strerror)) from None
    stem = os.path.splitext(os.path.basename(args.path))[0]
    for part, rows in (('train', train), ('test', test)):
        path = os.path.join(args.out_dir, '{}_{}.txt'.format(stem, part))
        write_bytes_atomic(path, ''.join(lines[i] + '\n' for i in rows).encode())
        print('{}: {} sequences'.format(path, len(rows)))
    return 0


if __name__ == '__main__':
    run_main(main)
