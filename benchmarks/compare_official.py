"""Run this project's GRU4Rec and the official PyTorch port on the same data and parameters.

The official port (github hidasib/GRU4Rec_PyTorch_Official) is not part of this repository: check
it out and give a Python that can run it (it needs numpy<2, pandas<2.3, torch). Example:

    python benchmarks/compare_official.py --official /path/to/GRU4Rec_PyTorch_Official \
        --official-python /path/to/venv/bin/python --train data/demo/train.tsv --test data/demo/test.tsv

Prints one table row per setting and implementation (Recall@1, Recall@20, MRR@20, the epoch
losses), and the relative differences against the mean of the port's runs. The port names things
differently: it has no final_act (cross-entropy implies softmax; bpr-max applies ELU with elu_param)
and always uses adagrad, so each setting lists both spellings (None where the port has no such
setting). This project runs with the port's update of repeated item rows (``--sparse-update
per_row``). ``--cells`` runs this project with each GRU step (gru_cell), ``--port-runs`` repeats the
port (its random streams are unseeded: the spread of its runs is its noise), ``--settings multilayer``
runs the two-layer settings with momentum of issue 16 instead of the four single-layer ones.
"""
import argparse
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMON = 'layers=100,batch_size=32,n_sample=512,sample_alpha=0.5,learning_rate=0.05,n_epochs=5'
SINGLE_LAYER = [
    ('cross-entropy, logq, shared embedding',
     'loss=cross-entropy,final_act=softmax,constrained_embedding=True,embedding=0,logq=1.0,dropout_p_embed=0.1',
     'loss=cross-entropy,constrained_embedding=True,embedding=0,logq=1.0,dropout_p_embed=0.1'),
    ('bpr-max, elu-0.5, shared embedding',
     'loss=bpr-max,final_act=elu-0.5,constrained_embedding=True,embedding=0,bpreg=1.0,momentum=0.3',
     'loss=bpr-max,elu_param=0.5,constrained_embedding=True,embedding=0,bpreg=1.0,momentum=0.3'),
    ('bpr-max, elu-1, separate embedding (=layer size)',
     'loss=bpr-max,final_act=elu-1,constrained_embedding=False,embedding=layersize,bpreg=0.5,dropout_p_embed=0.1',
     'loss=bpr-max,elu_param=1.0,constrained_embedding=False,embedding=layersize,bpreg=0.5,dropout_p_embed=0.1'),
    ('cross-entropy, no embedding (one-hot input)',
     'loss=cross-entropy,final_act=softmax,constrained_embedding=False,embedding=0,logq=0.0,dropout_p_hidden=0.1',
     'loss=cross-entropy,constrained_embedding=False,embedding=0,logq=0.0,dropout_p_hidden=0.1'),
]
MULTI = 'layers=96/96,momentum=0.1,dropout_p_hidden=0.2,learning_rate=0.1,batch_size=48,'
MULTI_LAYER = [
    ('2 layers, cross-entropy, shared embedding, n_sample=0 (the issue-16 setting)',
     MULTI + 'loss=cross-entropy,final_act=softmax,constrained_embedding=True,n_sample=0',
     MULTI + 'loss=cross-entropy,constrained_embedding=True,n_sample=0'),
    ('2 layers, bpr-max, elu-0.5, shared embedding',
     MULTI + 'loss=bpr-max,final_act=elu-0.5,bpreg=1.0,constrained_embedding=True',
     MULTI + 'loss=bpr-max,elu_param=0.5,bpreg=1.0,constrained_embedding=True'),
    ('2 layers, cross-entropy, separate embedding (=layer size)',
     MULTI + 'loss=cross-entropy,final_act=softmax,constrained_embedding=False,embedding=layersize',
     MULTI + 'loss=cross-entropy,constrained_embedding=False,embedding=layersize'),
    ('2 layers, cross-entropy, one-hot input',
     MULTI + 'loss=cross-entropy,final_act=softmax,constrained_embedding=False,embedding=0',
     MULTI + 'loss=cross-entropy,constrained_embedding=False,embedding=0'),
    ('2 layers, top1-max, shared embedding (not in the port)',
     MULTI + 'loss=top1-max,final_act=linear,constrained_embedding=True', None),
]
METRIC = re.compile(r'Recall@(\d+): ([0-9.]+) MRR@\d+: ([0-9.]+)')
EPOCH = re.compile(r'\[([0-9.]+) mb/s')
LOSS = re.compile(r'loss: ([0-9.]+)')


def run(cmd, cwd):
    """Metrics {cut-off: (recall, mrr)}, epoch losses and mb/s of one run; None and the error's last line on failure."""
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0 or 'NaN' in out.stdout:
        lines = (out.stdout + out.stderr).strip().splitlines()
        return None, ([l for l in lines if 'NaN' in l] or lines or ['no output'])[-1]
    metrics = {int(c): (float(r), float(m)) for c, r, m in METRIC.findall(out.stdout)}
    return (metrics, [float(x) for x in LOSS.findall(out.stdout)], [float(x) for x in EPOCH.findall(out.stdout)]), None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--official', required=True, help='checkout of GRU4Rec_PyTorch_Official')
    ap.add_argument('--official-python', default=sys.executable)
    ap.add_argument('--train', default=os.path.join(ROOT, 'data/demo/train.tsv'))
    ap.add_argument('--test', default=os.path.join(ROOT, 'data/demo/test.tsv'))
    ap.add_argument('--common', default=COMMON, help='parameters shared by every setting (a setting overrides them)')
    ap.add_argument('--settings', choices=['single', 'multilayer'], default='single')
    ap.add_argument('--only', type=int, nargs='*', help='indices of the settings to run')
    ap.add_argument('--cells', nargs='+', default=['pytorch'], choices=['pytorch', 'theano'])
    ap.add_argument('--sparse-update', default='per_row', choices=['per_row', 'per_occurrence'],
                    help="this project's update of repeated item rows (per_row: the port's; per_occurrence: the original's)")
    ap.add_argument('--port-runs', type=int, default=1)
    args = ap.parse_args()
    train, test = os.path.abspath(args.train), os.path.abspath(args.test)
    settings = SINGLE_LAYER if args.settings == 'single' else MULTI_LAYER
    print('| setting | implementation | Recall@1 | Recall@20 | MRR@20 | epoch losses | mb/s |')
    print('|---|---|---|---|---|---|---|')
    for i, (name, ours, theirs) in enumerate(settings):
        if args.only and i not in args.only:
            continue
        runs = [('this project, gru_cell=' + cell, sys.executable, os.path.join(ROOT, 'run.py'),
                 ours + ',gru_cell={},sparse_update={}'.format(cell, args.sparse_update), ROOT) for cell in args.cells]
        if theirs is not None:
            runs += [('official PyTorch port, run {}'.format(r + 1), args.official_python, 'run.py', theirs, args.official)
                     for r in range(args.port_runs)]
        res = {}
        for impl, python, script, params, cwd in runs:
            cmd = [python, script, train, '-t', test, '-m', '1', '20', '-ps', args.common + ',' + params, '-d', 'cpu']
            result, error = run(cmd, cwd)
            if result is None:
                print('| {} | {} | fails: {} | | | | |'.format(name, impl, error[:120]), flush=True)
                continue
            metrics, losses, speeds = result
            res[impl] = (metrics[1][0], metrics[20][0], metrics[20][1])
            print('| {} | {} | {:.4f} | {:.4f} | {:.4f} | {} | {:.0f} |'.format(
                name, impl, *res[impl], ' / '.join('{:.4f}'.format(x) for x in losses),
                sum(speeds) / max(len(speeds), 1)), flush=True)
        port = [v for k, v in res.items() if k.startswith('official')]
        if not port:
            continue
        mean = [sum(x) / len(x) for x in zip(*port)]
        if len(port) > 1:
            print('| {} | port: range of its runs around their mean | {} | | |'.format(name, ' | '.join(
                '{:+.1%} .. {:+.1%}'.format(min(x) / m - 1, max(x) / m - 1) for x, m in zip(zip(*port), mean))), flush=True)
        for impl, v in res.items():
            if not impl.startswith('official'):
                print('| {} | {} against the port\'s mean | {} | | |'.format(name, impl.split(', ')[1], ' | '.join(
                    '{:+.2%}'.format(a / b - 1) for a, b in zip(v, mean))), flush=True)


if __name__ == '__main__':
    main()
