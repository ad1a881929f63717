"""CPU training and evaluation throughput of GRU4Rec, against this machine's GEMM rate and the
official PyTorch port, all measured in one run.

    python benchmarks/cpu_training_speed.py [--official DIR --official-python PY] [--backends c numba]
        [--against REV] [--contended]

Setting (issue #2): batch 64, layers 128, n_sample 2048, cross-entropy with logq, shared embedding,
about 16k items (synthetic sessions). Prints: the float32 GEMM rate numpy's BLAS reaches here (the
C backend calls that BLAS for matrix products), training mb/s and e/s for each PyTensor backend
(timed over a fixed number of steps after compilation), the nominal FLOP rate of those steps (the
original's FLOPs, every sampled column scored; this project scores each distinct item once, so it
does fewer) as a fraction of the GEMM rate, full-epoch throughput, evaluation events/s, and the official port's
mb/s on the same data file and parameters.

The full-epoch rounds run every implementation in a fresh process, one after the other in each
round: this tree, with ``--against REV`` the project as of git revision REV (checked out into a
temporary worktree: before/after a change, alternated in one run), and with ``--official`` the
port. ``--contended`` measures each of them a second time per round beside one busy process
(``python -c 'while True: pass'``, see benchmarks/contention.py), and reports contended/alone.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PARAMS = dict(loss='cross-entropy', final_act='softmax', constrained_embedding=True, logq=1.0, layers=[128],
              batch_size=64, n_sample=2048, sample_alpha=0.5, learning_rate=0.05, n_epochs=1)
OFFICIAL_PARAMS = 'loss=cross-entropy,constrained_embedding=True,logq=1.0,layers=128,batch_size=64,n_sample=2048,' \
                  'sample_alpha=0.5,learning_rate=0.05,n_epochs=1'


def gemm_gflops(n=1024, repeats=20):
    a = np.random.rand(n, n).astype('float32')
    b = np.random.rand(n, n).astype('float32')
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e9


def step_flops(batch, hidden, n_out):
    """Multiply-adds of one training step x2 (forward + backward of the GRU and the score matrix)."""
    gru = 3 * (batch * hidden * 3 * hidden + batch * hidden * 2 * hidden + batch * hidden * hidden)
    scores = 3 * batch * hidden * n_out
    return 2 * (gru + scores)


def time_steps(backend_name, data, steps):
    """Train-step throughput of one backend, in a fresh process so backends don't share state."""
    code = '''
import sys, time, numpy as np, pandas as pd
sys.path.insert(0, {root!r})
from recsys_core import backend; backend.configure('cpu', {b!r})
from gru4rec import GRU4Rec
from recsys_core.batching import Shrink, session_parallel
from recsys_core.data import session_offsets
from recsys_core.sampling import SampleStore
import pytensor
data = pd.read_csv({path!r}, sep='\\t', dtype={{'ItemId': str}})
m = GRU4Rec(**{params!r}); m.n_epochs = 0; m.fit(data, verbose=False)
m._make_shared()
idx = m.itemidmap[data.ItemId.values].values.astype('int32')
support = np.bincount(idx, minlength=m.n_items).astype('float32')
m.shared_prior = pytensor.shared(support)
store = SampleStore(support, m.sample_alpha, m.n_sample, 10000000, verbose=False)
t0 = time.time(); train = m._build_train(store); compile_s = time.time() - t0
offsets = session_offsets(data.SessionId.values)
H = m._zero_state(m.batch_size); n = 0; t0 = None
for rec in session_parallel(idx, offsets, np.arange(len(offsets) - 1), m.batch_size):
    if isinstance(rec, Shrink):
        break
    out = train(rec.inp, rec.out, rec.last.astype('float32'), store.next_index(), *H); H = out[1:]
    n += 1
    if n == 20: t0 = time.time()
    if n == 20 + {steps}: break
dt = time.time() - t0
print('RESULT', compile_s, {steps} / dt)
'''.format(root=ROOT, b=backend_name, path=data, params=PARAMS, steps=steps)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    line = [l for l in out.stdout.splitlines() if l.startswith('RESULT')]
    if not line:
        raise RuntimeError(out.stderr[-3000:])
    compile_s, mbs = map(float, line[0].split()[1:])
    return compile_s, mbs


def tree_speed(root, train_path):
    """Full-epoch mb/s and e/s of the project checked out at ``root``, in a fresh process."""
    from contention import GRU4REC_EPOCH
    out = subprocess.run([sys.executable, '-c', GRU4REC_EPOCH.format(root=root, path=train_path, params=PARAMS)],
                         capture_output=True, text=True, cwd=root)
    line = [l for l in out.stdout.splitlines() if l.startswith('RESULT')]
    if not line:
        raise RuntimeError(out.stderr[-3000:])
    return tuple(map(float, line[0].split()[1:]))


def worktree(rev):
    """A temporary git worktree of this repository at ``rev`` (removed at exit)."""
    import atexit
    path = tempfile.mkdtemp(prefix='gru4rec_rev_')
    subprocess.run(['git', 'worktree', 'add', '--detach', path, rev], cwd=ROOT, check=True, capture_output=True)
    atexit.register(lambda: subprocess.run(['git', 'worktree', 'remove', '--force', path], cwd=ROOT, capture_output=True))
    return path


def official_speed(official, python, train_path, test_path):
    cmd = [python, 'run.py', train_path, '-t', test_path, '-m', '20', '-ps', OFFICIAL_PARAMS, '-d', 'cpu']
    out = subprocess.run(cmd, cwd=official, capture_output=True, text=True)
    m = re.search(r'\[([0-9.]+) mb/s \| ([0-9.]+) e/s\]', out.stdout)
    ev = re.search(r'Evaluation took ([0-9.]+)s', out.stdout)
    if not m:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-2000:])
    return float(m.group(1)), float(m.group(2)), float(ev.group(1)) if ev else float('nan')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--official', help='checkout of GRU4Rec_PyTorch_Official (optional)')
    ap.add_argument('--official-python', default=sys.executable)
    ap.add_argument('--backends', nargs='+', default=['c', 'numba'])
    ap.add_argument('--steps', type=int, default=300)
    ap.add_argument('--rounds', type=int, default=3, help='alternating full-epoch runs of both implementations')
    ap.add_argument('--items', type=int, default=30000, help='catalogue size asked of the generator (about 16k occur in training)')
    ap.add_argument('--sessions', type=int, default=60000)
    ap.add_argument('--against', metavar='REV', help='also time the project at this git revision in every round')
    ap.add_argument('--contended', action='store_true', help='also time every implementation beside a busy process')
    args = ap.parse_args()
    if args.official and not os.path.isfile(os.path.join(args.official, 'run.py')):
        ap.error('--official {}: no run.py there (a checkout of GRU4Rec_PyTorch_Official is expected)'.format(args.official))
    if not shutil.which(args.official_python):
        ap.error('--official-python {}: not found'.format(args.official_python))
    from recsys_core import backend
    backend.configure('cpu')
    from gru4rec import GRU4Rec
    from recsys_core.evaluation import evaluate_sessions
    from recsys_core.synthetic import generate_sessions, split_by_time

    workdir = tempfile.mkdtemp(prefix='gru4rec_bench_')
    train_df, test_df = split_by_time(generate_sessions(args.items, args.sessions, seed=7), 0.1)
    train_path, test_path = os.path.join(workdir, 'train.tsv'), os.path.join(workdir, 'test.tsv')
    train_df.to_csv(train_path, sep='\t', index=False)
    test_df.to_csv(test_path, sep='\t', index=False)
    n_items = train_df.ItemId.nunique()
    print('data: {} train events, {} items; {} test events'.format(len(train_df), n_items, len(test_df)))
    import pytensor
    print('numpy BLAS:', np.show_config(mode='dicts')['Build Dependencies']['blas'].get('name'),
          '| PyTensor C backend BLAS flags:', repr(pytensor.config.blas__ldflags))
    gemm = gemm_gflops()
    print('float32 GEMM (1024^3, numpy/BLAS): {:.1f} GFLOP/s'.format(gemm))
    flops = step_flops(PARAMS['batch_size'], PARAMS['layers'][0], PARAMS['batch_size'] + PARAMS['n_sample'])
    for b in args.backends:
        compile_s, mbs = time_steps(b, train_path, args.steps if b == 'c' else max(args.steps // 10, 20))
        print('backend {:6s}: {:8.1f} mb/s {:9.0f} e/s  (compile {:.1f}s)  nominal step GFLOP/s {:.1f} = {:.1%} of GEMM'.format(
            b, mbs, mbs * PARAMS['batch_size'], compile_s, mbs * flops / 1e9, mbs * flops / 1e9 / gemm))
    from contention import busy_process
    impls = [('this tree', lambda: tree_speed(ROOT, train_path))]
    if args.against:
        rev_root = worktree(args.against)
        impls.append((args.against, lambda: tree_speed(rev_root, train_path)))
    port_eval_seconds = []

    def port():
        mbs, eps, ev = official_speed(args.official, args.official_python, train_path, test_path)
        port_eval_seconds.append(ev)
        return mbs, eps
    if args.official:
        impls.append(('official port', port))
    conditions = [False, True] if args.contended else [False]
    speeds = {(name, c): [] for name, _ in impls for c in conditions}
    for r in range(args.rounds):  # alternate the implementations: this machine's speed drifts by +-20% or more
        for contended in conditions:
            for name, measure in impls:
                with busy_process(contended):
                    mbs, eps = measure()
                speeds[name, contended].append(mbs)
                print('round {} {}{}: {:.1f} mb/s {:.0f} e/s'.format(
                    r + 1, name, ' beside a busy process' if contended else '', mbs, eps), flush=True)
    for contended in conditions:
        label = 'beside a busy process' if contended else 'alone'
        for name, _ in impls[1:]:
            ratios = [a / b for a, b in zip(speeds[impls[0][0], contended], speeds[name, contended])]
            print('{}: this tree / {} (full epoch mb/s), per round: {}; median {:.2f}x'.format(
                label, name, ' '.join('{:.2f}x'.format(x) for x in ratios), float(np.median(ratios))))
    if args.contended:
        for name, _ in impls:
            a, b = np.median(speeds[name, False]), np.median(speeds[name, True])
            print('{}: median {:.1f} mb/s alone, {:.1f} beside a busy process = {:.0%}'.format(name, a, b, b / a))
    m = GRU4Rec(**PARAMS)
    m.fit(train_df, verbose=False)
    evaluate_sessions(m, test_df, cut_off=[20], batch_size=512, verbose=False)
    t0 = time.time()
    evaluate_sessions(m, test_df, cut_off=[20], batch_size=512, verbose=False)
    ev_s = time.time() - t0
    n_events = len(test_df) - test_df.SessionId.nunique()
    print('evaluation: {:.0f} events/s ({} ranked events over {} items, batch 512)'.format(n_events / ev_s, n_events, n_items))
    if port_eval_seconds:
        print('official port evaluation: {:.0f} events/s (last run)'.format(n_events / port_eval_seconds[-1]))

if __name__ == '__main__':
    main()
