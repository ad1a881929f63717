"""Run this project's GRU4Rec and the original Theano GRU4Rec on the same files, several seeds each.

The original (github hidasib/GRU4Rec) is not part of this repository. It runs unmodified on this
machine's CPU through ../shared/tools/theano_original (a Theano compatibility package on PyTensor;
its README says what is replaced). Give a bare git directory or a plain folder of the original:

    python benchmarks/compare_original.py --orig-git-dir /path/to/GRU4Rec.git [--seeds 3] \
        [--settings xe-1layer bprmax-1layer ...] [--train T --test T | --items 20000 --sessions 60000]

Both sides run their own ``run.py`` (the same flags; the original's in a pristine export of its
code, with the shim's two replaced files) on the same training and test files, in fresh processes,
alternating ours and the original seed by seed. Seeds: ours ``seed=42+k`` (its streams of
negatives and dropout), the original's generator of dropout masks and negatives seeded 12345+k
by a driver that replaces the module's generator before the original's run.py starts (12345 is
the original's own seed). Both draw the initial weights from numpy's seed 42, so the weights start
equal and the seeds vary what the original varies. Without --train/--test the data are generated
sessions (recsys_core.synthetic), split by time.

Prints per setting and implementation the Recall@20 and MRR@20 of every seed, their mean and range,
the epoch losses of the first seed and the training speed (mini-batches per second, the mean
over the epochs as each run.py prints it), then our means against the original's.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from step_compare import ROOT, add_original_arguments, export_original, original_env

COMMON = 'n_epochs=3,'
# name: (parameters, evaluation mode); the same parameter string runs both (this project takes the original's)
SETTINGS = {
    'xe-1layer': ('layers=100,batch_size=64,loss=cross-entropy,final_act=softmax,constrained_embedding=True,'
                  'n_sample=2048,sample_alpha=0.5,logq=1.0,learning_rate=0.05,momentum=0.0,dropout_p_embed=0.1', 'standard'),
    'xe-2layer-momentum': ('layers=96/96,batch_size=48,loss=cross-entropy,final_act=softmax,constrained_embedding=True,'
                           'n_sample=0,learning_rate=0.1,momentum=0.1,dropout_p_hidden=0.2', 'conservative'),
    'bprmax-1layer': ('layers=100,batch_size=64,loss=bpr-max,final_act=elu-0.5,constrained_embedding=True,n_sample=2048,'
                      'sample_alpha=0.5,bpreg=1.9,learning_rate=0.05,momentum=0.3,dropout_p_embed=0.3', 'standard'),
    'bprmax-separate': ('layers=100,batch_size=64,loss=bpr-max,final_act=elu-1,constrained_embedding=False,'
                        'embedding=layersize,n_sample=2048,sample_alpha=0.5,bpreg=1.0,learning_rate=0.05,momentum=0.2',
                        'standard'),
    'xe-onehot': ('layers=100,batch_size=64,loss=cross-entropy,final_act=softmax,constrained_embedding=False,embedding=0,'
                  'n_sample=512,sample_alpha=0.5,learning_rate=0.05,dropout_p_hidden=0.1', 'standard'),
}
METRIC = re.compile(r'Recall@(\d+): ([0-9.]+) MRR@\d+: ([0-9.]+)')
EPOCH = re.compile(r'loss: ([0-9.]+).*?\[([0-9.]+) mb/s')

# Runs the original's run.py with its generator of random streams seeded: argv[1] the seed, the rest run.py's argv.
ORIGINAL_DRIVER = r'''
import runpy, sys
seed = int(sys.argv[1])
import gru4rec
from theano.sandbox.rng_mrg import MRG_RandomStreams
gru4rec.mrng = MRG_RandomStreams(seed)
sys.argv = ['run.py'] + sys.argv[2:]
runpy.run_path('run.py', run_name='__main__')
'''


def prepare_original(args, run_dir):
    """A pristine export of the original with the shim's replacements and the seeded driver; its environment."""
    if os.path.exists(run_dir):
        shutil.rmtree(run_dir)
    os.makedirs(run_dir)
    export_original(args, run_dir)
    with open(os.path.join(run_dir, 'seeded_run.py'), 'w') as f:
        f.write(ORIGINAL_DRIVER)
    env = original_env(args)
    if not args.threads:  # each side as a user runs it
        env.pop('OMP_NUM_THREADS', None)
        if 'OMP_NUM_THREADS' in os.environ:
            env['OMP_NUM_THREADS'] = os.environ['OMP_NUM_THREADS']
    return env


def parse(out):
    """(Recall@20, MRR@20), epoch losses, mean mb/s of one run's output; None when it failed."""
    metrics = {int(c): (float(r), float(m)) for c, r, m in METRIC.findall(out)}
    epochs = [(float(loss), float(speed)) for loss, speed in EPOCH.findall(out)]
    if 20 not in metrics or not epochs or 'NaN' in out:
        return None
    return metrics[20], [e[0] for e in epochs], sum(e[1] for e in epochs) / len(epochs)


def with_threads(env, threads):
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
    return env


def run_ours(params, mode, seed, train, test, threads):
    env = with_threads(dict(os.environ), threads)
    cmd = [sys.executable, os.path.join(ROOT, 'run.py'), train, '-t', test, '-m', '20', '-e', mode,
           '-ps', params + ',seed={}'.format(42 + seed)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)


def run_original(params, mode, seed, train, test, run_dir, env, python, threads):
    env = with_threads(dict(env), threads)
    cmd = [python, '-u', 'seeded_run.py', str(12345 + seed), train, '-t', test, '-m', '20', '-e', mode,
           '-ps', params]
    return subprocess.run(cmd, cwd=run_dir, capture_output=True, text=True, env=env)


def summary(values):
    mean = sum(values) / len(values)
    return mean, min(values) / mean - 1, max(values) / mean - 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_original_arguments(ap)
    ap.add_argument('--train')
    ap.add_argument('--test')
    ap.add_argument('--items', type=int, default=20000, help='generated data: catalogue size')
    ap.add_argument('--sessions', type=int, default=60000, help='generated data: number of sessions')
    ap.add_argument('--seeds', type=int, default=3)
    ap.add_argument('--first-seed', type=int, default=0, help='seed index to start from (more seeds for an earlier run)')
    ap.add_argument('--settings', nargs='+', choices=sorted(SETTINGS), default=list(SETTINGS))
    ap.add_argument('--common', default=COMMON, help='parameters put before every setting\'s')
    ap.add_argument('--ours-params', default='', help='extra parameters for this project only (e.g. sparse_update=per_row)')
    ap.add_argument('--threads', type=int, default=None,
                    help='OMP_NUM_THREADS for both sides (default: unset, each side as a user runs it; the original '
                         'under the shim computes on one core)')
    ap.add_argument('--workdir', default=None)
    args = ap.parse_args()
    if not (args.orig_git_dir or args.orig_src_dir):
        ap.error('give --orig-git-dir or --orig-src-dir')
    workdir = args.workdir or tempfile.mkdtemp(prefix='compare_original_')
    os.makedirs(workdir, exist_ok=True)
    if args.train and args.test:
        train, test = os.path.abspath(args.train), os.path.abspath(args.test)
    else:
        sys.path.insert(0, ROOT)
        from recsys_core.synthetic import generate_sessions, split_by_time
        train, test = os.path.join(workdir, 'train.tsv'), os.path.join(workdir, 'test.tsv')
        tr, te = split_by_time(generate_sessions(args.items, args.sessions, seed=3), 0.1)
        tr.to_csv(train, sep='\t', index=False)
        te.to_csv(test, sep='\t', index=False)
        print('generated data: {} training events, {} items; {} test events'.format(len(tr), tr.ItemId.nunique(), len(te)))
    run_dir = os.path.join(workdir, 'original')
    env = prepare_original(args, run_dir)
    extra = (',' + args.ours_params) if args.ours_params else ''
    print('| setting | implementation | Recall@20 per seed | MRR@20 per seed | mean Recall@20 (range) | '
          'mean MRR@20 (range) | epoch losses (first seed) | mb/s |')
    print('|---|---|---|---|---|---|---|---|')
    for name in args.settings:
        params, mode = SETTINGS[name]
        params = args.common + params
        res = {'ours': [], 'original': []}
        for seed in range(args.first_seed, args.first_seed + args.seeds):  # alternated, so drift of the machine's speed hits both
            for impl in ('ours', 'original'):
                t0 = time.time()
                out = run_ours(params + extra, mode, seed, train, test, args.threads) if impl == 'ours' else \
                    run_original(params, mode, seed, train, test, run_dir, env, args.python, args.threads)
                parsed = parse(out.stdout)
                if parsed is None:
                    tail = (out.stdout + out.stderr).strip().splitlines()[-3:]
                    print('| {} | {} seed {} | fails: {} |'.format(name, impl, seed, ' / '.join(tail)[:300]), flush=True)
                    continue
                res[impl].append(parsed)
                print('  {} {} seed {}: Recall@20 {:.4f} MRR@20 {:.4f} losses {} {:.1f} mb/s ({:.0f} s)'.format(
                    name, impl, seed, *parsed[0], ' / '.join('{:.4f}'.format(x) for x in parsed[1]), parsed[2],
                    time.time() - t0), flush=True)
        for impl in ('original', 'ours'):
            runs = res[impl]
            if not runs:
                continue
            recall, mrr = [r[0][0] for r in runs], [r[0][1] for r in runs]
            print('| {} | {} | {} | {} | {:.4f} ({:+.1%} .. {:+.1%}) | {:.4f} ({:+.1%} .. {:+.1%}) | {} | {:.1f} |'.format(
                name, 'original (Theano, shim)' if impl == 'original' else 'this project' + extra,
                ' '.join('{:.4f}'.format(x) for x in recall), ' '.join('{:.4f}'.format(x) for x in mrr),
                *summary(recall), *summary(mrr), ' / '.join('{:.4f}'.format(x) for x in runs[0][1]),
                sum(r[2] for r in runs) / len(runs)), flush=True)
        if res['ours'] and res['original']:
            mean = {impl: [sum(r[0][i] for r in res[impl]) / len(res[impl]) for i in (0, 1)] for impl in res}
            speed = {impl: sum(r[2] for r in res[impl]) / len(res[impl]) for impl in res}
            print('| {} | this project against the original\'s mean | | | {:+.2%} | {:+.2%} | | {:.2f}x |'.format(
                name, mean['ours'][0] / mean['original'][0] - 1, mean['ours'][1] / mean['original'][1] - 1,
                speed['ours'] / speed['original']), flush=True)


if __name__ == '__main__':
    main()
