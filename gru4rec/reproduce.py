"""Reproduce a published GRU4Rec result and say, metric by metric, whether it was reproduced.

    python -m gru4rec.reproduce DATASET DATADIR [--tolerance 0.03]

Trains GRU4Rec with the dataset's published best parameters (paramfiles/) on
DATADIR/DATASET_train_full.tsv (made by ``python -m gru4rec.preprocess``), evaluates on
DATADIR/DATASET_test.tsv at 1, 5, 10 and 20, and prints our numbers beside the published table
(gru4rec/published_results.tsv, from the GRU4Rec README) with the relative difference. Popularity
and item-kNN are shown below as sanity floors. Exit status: 0 reproduced, 2 some metric is outside
the tolerance, 1 bad input.
"""
import argparse
import json
import os
import sys
import time

import pandas as pd

from recsys_core import backend
from recsys_core.cli import run_main
from recsys_core.errors import UserError

HERE = os.path.dirname(os.path.abspath(__file__))
PUBLISHED = os.path.join(HERE, 'published_results.tsv')
PARAMFILES = os.path.join(HERE, 'paramfiles')  # the project's paramfiles/ (a link in a checkout, a copy in the wheel)
CUT_OFFS = (1, 5, 10, 20)
METRICS = ['{}@{}'.format(m, c) for c in CUT_OFFS for m in ('Recall', 'MRR')]
NOT_REPRODUCED = 2


def published_row(path, dataset):
    try:
        table = pd.read_csv(path, sep='\t', dtype={'dataset': str, 'paramfile': str})
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise UserError('Cannot read the published results table {}: {}'.format(path, e)) from None
    missing = [c for c in ['dataset', 'paramfile'] + METRICS if c not in table.columns]
    if missing:
        raise UserError('Published results table {} lacks column(s): {}'.format(path, ', '.join(missing)))
    rows = table[table.dataset == dataset]
    if len(rows) != 1:
        raise UserError('Published results table {} has no row for {!r} (it has: {})'.format(
            path, dataset, ', '.join(table.dataset)))
    return rows.iloc[0]


def evaluate_model(model, train, test, mode):
    from recsys_core.evaluation import evaluate_sessions
    t0 = time.time()
    model.fit(train)
    recall, mrr = evaluate_sessions(model, test, cut_off=list(CUT_OFFS), batch_size=512, mode=mode)
    values = {}
    for i, c in enumerate(CUT_OFFS):
        values['Recall@{}'.format(c)], values['MRR@{}'.format(c)] = recall[i], mrr[i]
    return values, time.time() - t0


def compare(published, ours, tolerance):
    """Rows (metric, published, ours, relative difference, within tolerance)."""
    rows = []
    for m in METRICS:
        ref = float(published[m])
        diff = (ours[m] - ref) / ref if ref else float('inf')
        rows.append((m, ref, ours[m], diff, abs(diff) <= tolerance))
    return rows


def format_report(dataset, rows, baselines, tolerance):
    lines = ['', 'REPRODUCTION REPORT: GRU4Rec on {} (tolerance {:.1%})'.format(dataset, tolerance),
             '{:<10} {:>10} {:>10} {:>9}  {}'.format('metric', 'published', 'ours', 'rel.diff', 'within')]
    for m, ref, got, diff, ok in rows:
        lines.append('{:<10} {:>10.4f} {:>10.4f} {:>+8.2%}  {}'.format(m, ref, got, diff, 'yes' if ok else 'NO'))
    if baselines:
        lines.append('Sanity floors (same evaluation): ' + '; '.join(
            '{} Recall@20 {:.4f} MRR@20 {:.4f}'.format(name, v['Recall@20'], v['MRR@20']) for name, v in baselines.items()))
    bad = [r[0] for r in rows if not r[4]]
    lines.append('RESULT: REPRODUCED (all {} metrics within {:.1%})'.format(len(rows), tolerance) if not bad else
                 'RESULT: NOT REPRODUCED ({} of {} metrics outside {:.1%}: {})'.format(len(bad), len(rows), tolerance,
                                                                                   ', '.join(bad)))
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog='python -m gru4rec.reproduce', description=__doc__.split('\n\n')[0])
    p.add_argument('dataset', metavar='DATASET', help='rsc15, yoochoose, rees46, coveo, retailrocket or diginetica')
    p.add_argument('datadir', metavar='DATADIR', help='folder with DATASET_train_full.tsv and DATASET_test.tsv')
    p.add_argument('--tolerance', type=float, default=0.03, help='largest accepted relative difference (default 0.03)')
    p.add_argument('-pf', '--parameter_file', default=None, help='parameter file (default: the published one)')
    p.add_argument('--published', default=PUBLISHED, help='published results table (default: gru4rec/published_results.tsv)')
    p.add_argument('-e', '--eval_type', default='standard', choices=['standard', 'conservative', 'median', 'tiebreaking'])
    p.add_argument('-d', '--device', default=None, help='cpu or cuda (default: $RECSYS_DEVICE or cpu)')
    p.add_argument('--no-baselines', action='store_true', help='skip the popularity and item-kNN floors')
    p.add_argument('--report', default=None, help='also write the comparison as JSON to this file')
    args = p.parse_args(argv)
    if not 0 <= args.tolerance < 1:
        raise UserError('--tolerance must be in [0, 1)')
    published = published_row(args.published, args.dataset)
    paramfile = args.parameter_file or os.path.join(PARAMFILES, published['paramfile'])
    train_path, test_path = [os.path.join(args.datadir, '{}_{}.tsv'.format(args.dataset, s)) for s in ('train_full', 'test')]
    for path in (train_path, test_path):
        if not os.path.isfile(path):
            raise UserError('{} not found; make it with: python -m gru4rec.preprocess {} RAWDIR {}'.format(
                path, args.dataset, args.datadir))
    backend.configure(args.device, verbose=True)
    from baselines.item_knn import ItemKNN
    from baselines.pop import Pop
    from recsys_core.data import load_events
    from recsys_core.params import load_param_file

    from .model import GRU4Rec
    params = load_param_file(paramfile)
    print('Parameters from {}'.format(paramfile))
    train, test = load_events(train_path), load_events(test_path)
    model = GRU4Rec()
    model.set_params(**params)
    ours, seconds = evaluate_model(model, train, test, args.eval_type)
    print('GRU4Rec trained and evaluated in {:.1f}s'.format(seconds))
    if model.error_during_train:
        raise UserError('GRU4Rec failed during training (NaN loss)')
    baselines = {}
    if not args.no_baselines:
        for name, cls in (('Pop', Pop), ('ItemKNN', ItemKNN)):
            baselines[name] = evaluate_model(cls(), train, test, args.eval_type)[0]
    rows = compare(published, ours, args.tolerance)
    print(format_report(args.dataset, rows, baselines, args.tolerance))
    if args.report:
        from recsys_core.persistence import write_bytes_atomic
        payload = {'dataset': args.dataset, 'tolerance': args.tolerance, 'paramfile': paramfile,
                   'metrics': [{'metric': m, 'published': float(r), 'ours': float(g), 'rel_diff': float(d),
                                'within': bool(ok)} for m, r, g, d, ok in rows],
                   'baselines': {k: {m: float(v) for m, v in vals.items()} for k, vals in baselines.items()},
                   'reproduced': bool(all(r[4] for r in rows))}
        write_bytes_atomic(args.report, json.dumps(payload, indent=2).encode())
    sys.stdout.flush()
    return 0 if all(r[4] for r in rows) else NOT_REPRODUCED


if __name__ == '__main__':
    run_main(main)
