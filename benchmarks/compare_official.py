"""Run this project's GRU4Rec and the official PyTorch port on the same data and parameters.

The official port (github hidasib/GRU4Rec_PyTorch_Official) is not part of this repository: check
it out and give a Python that can run it (it needs numpy<2, pandas<2.3, torch). Example:

    python benchmarks/compare_official.py --official /path/to/GRU4Rec_PyTorch_Official \
        --official-python /path/to/venv/bin/python --train data/demo/train.tsv --test data/demo/test.tsv

Prints one table row per setting and implementation (Recall@20, MRR@20, relative differences).
The port names things differently: it has no final_act (cross-entropy implies softmax; bpr-max
applies ELU with elu_param) and always uses adagrad, so each setting lists both spellings.
"""
import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMON = 'layers=100,batch_size=32,n_sample=512,sample_alpha=0.5,learning_rate=0.05,n_epochs=5'
SETTINGS = [
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
METRIC = re.compile(r'Recall@(\d+): ([0-9.]+) MRR@\d+: ([0-9.]+)')
EPOCH = re.compile(r'\[([0-9.]+) mb/s')


def run(cmd, cwd):
    t0 = time.time()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError('{} failed:\n{}\n{}'.format(' '.join(cmd), out.stdout[-3000:], out.stderr[-3000:]))
    metrics = {int(c): (float(r), float(m)) for c, r, m in METRIC.findall(out.stdout)}
    speeds = [float(s) for s in EPOCH.findall(out.stdout)]
    return metrics, speeds, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--official', required=True, help='checkout of GRU4Rec_PyTorch_Official')
    ap.add_argument('--official-python', default=sys.executable)
    ap.add_argument('--train', default=os.path.join(ROOT, 'data/demo/train.tsv'))
    ap.add_argument('--test', default=os.path.join(ROOT, 'data/demo/test.tsv'))
    ap.add_argument('--common', default=COMMON, help='parameters shared by every setting')
    ap.add_argument('--only', type=int, nargs='*', help='indices of the settings to run')
    args = ap.parse_args()
    train, test = os.path.abspath(args.train), os.path.abspath(args.test)
    print('| setting | implementation | Recall@20 | MRR@20 | mb/s (mean over epochs) | wall (s) |')
    print('|---|---|---|---|---|---|')
    for i, (name, ours, theirs) in enumerate(SETTINGS):
        if args.only and i not in args.only:
            continue
        res = {}
        for impl, python, script, params, cwd in (
                ('this project', sys.executable, os.path.join(ROOT, 'run.py'), ours, ROOT),
                ('official PyTorch', args.official_python, 'run.py', theirs, args.official)):
            cmd = [python, script, train, '-t', test, '-m', '20', '-ps', args.common + ',' + params, '-d', 'cpu']
            metrics, speeds, wall = run(cmd, cwd)
            res[impl] = metrics[20]
            print('| {} | {} | {:.4f} | {:.4f} | {:.1f} | {:.0f} |'.format(
                name, impl, metrics[20][0], metrics[20][1], sum(speeds) / max(len(speeds), 1), wall), flush=True)
        a, b = res['this project'], res['official PyTorch']
        print('| {} | relative difference | {:+.2%} | {:+.2%} | | |'.format(name, a[0] / b[0] - 1, a[1] / b[1] - 1),
              flush=True)


if __name__ == '__main__':
    main()
