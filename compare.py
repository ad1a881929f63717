"""Train several models on one split, evaluate them the same way, and write one table and one plot.

    python compare.py CONFIG.json [--only NAME ...] [-d DEVICE]

CONFIG names the split, the protocol and the models (recsys_core.compare, docs/compare.md); the
bundled comparisons are in comparisons/. Running the same command again reads the finished runs,
resumes an interrupted one and trains the rest; OUT/table.md, OUT/table.csv and OUT/plot.png are
written at the end.
"""
import argparse

from recsys_core.cli import add_shared_arguments, run_main


def build_parser():
    p = argparse.ArgumentParser(description='Train and evaluate several models on one split: one table, one plot.')
    p.add_argument('config', metavar='CONFIG', help='the comparison (JSON): split, protocol, models')
    p.add_argument('--only', metavar='NAME', nargs='+', help='run only these models (the table keeps the finished '
                                                             'runs of the others)')
    add_shared_arguments(p, 'device')
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from recsys_core import backend
    from recsys_core.compare import Comparison, run
    backend.configure(args.device, verbose=True)
    comparison = Comparison(args.config)
    rows = run(comparison, args.only)
    print('{} models; table: {}/table.md, plot: {}/plot.png'.format(len(rows), comparison.out, comparison.out))
    return 0


if __name__ == '__main__':
    run_main(main)
