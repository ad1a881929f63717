"""Turn a public dataset's raw files into the GRU4Rec papers' splits, in run.py's TSV format.

    python -m gru4rec.preprocess DATASET RAWDIR OUTDIR

DATASET is one of rsc15, yoochoose, rees46, coveo, retailrocket, diginetica. Writes
OUTDIR/DATASET_{train_full,test,train_tr,train_valid}.tsv (the scripts' four files) and
OUTDIR/DATASET_stats.tsv, and prints events, sessions and items per file for comparison with the
papers. Every file is written atomically; a raw-file problem stops with one message naming the file
and line before anything is written.
"""
import argparse
import os
import sys
import time

from recsys_core.cli import run_main
from recsys_core.errors import UserError
from recsys_core.preprocessing import drop_consecutive_repeats, statistics, write_tsv_atomic

from .raw_datasets import RECIPES

SPLITS = ('train_full', 'test', 'train_tr', 'train_valid')


def preprocess(dataset, rawdir, outdir, verbose=True):
    """Run one dataset's recipe; returns {split name: DataFrame} and writes the files."""
    recipe = RECIPES[dataset]
    if not os.path.isdir(rawdir):
        raise UserError('Raw data folder not found: {}'.format(rawdir))
    t0 = time.time()
    events = recipe.read(rawdir)
    if verbose:
        print('Read {} events, {} sessions, {} items ({:.1f}s)'.format(
            len(events), events.SessionId.nunique(), events.ItemId.nunique(), time.time() - t0))
    if recipe.dedup:
        events = drop_consecutive_repeats(events)
        if verbose:
            print('Without consecutive repeats: {} events'.format(len(events)))
    events = recipe.filter(events, verbose=verbose)
    if len(events) == 0:
        raise UserError('No events are left after filtering short sessions and rare items')
    frames = dict(zip(SPLITS, recipe.split(events)))
    empty = [k for k in ('train_full', 'test') if len(frames[k]) == 0]
    if empty:
        raise UserError('The {} split is empty: the raw data cover too short a period for this dataset\'s split'.format(
            ' and '.join(empty)))
    os.makedirs(outdir, exist_ok=True)
    stats = statistics({'{}_{}.tsv'.format(dataset, k): v for k, v in frames.items()})
    for name, df in frames.items():
        write_tsv_atomic(df[['SessionId', 'ItemId', 'Time']], os.path.join(outdir, '{}_{}.tsv'.format(dataset, name)))
    write_tsv_atomic(stats, os.path.join(outdir, '{}_stats.tsv'.format(dataset)))
    if verbose:
        print(stats.to_string(index=False))
    return frames


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m gru4rec.preprocess', description=__doc__.split('\n\n')[0])
    p.add_argument('dataset', choices=sorted(RECIPES), metavar='DATASET',
                   help='one of: ' + ', '.join(sorted(RECIPES)))
    p.add_argument('rawdir', metavar='RAWDIR', help='folder with the raw files ({})'.format(
        '; '.join('{}: {}'.format(k, r.raw_files) for k, r in sorted(RECIPES.items()))))
    p.add_argument('outdir', metavar='OUTDIR', help='folder for the TSV files (created if needed)')
    args = p.parse_args(argv)
    preprocess(args.dataset, args.rawdir, args.outdir)
    sys.stdout.flush()
    return 0


if __name__ == '__main__':
    run_main(main)
