"""Training speed alone and beside one busy process (another CPU-bound program on the same cores).

    python benchmarks/contention.py [--rounds 3] [--models gru4rec nextitnet cprec] [--policies ...]

Each measurement runs in a fresh process (OpenMP reads its settings when it loads) and times whole
training epochs through the models' own ``fit`` (so the thread tuner, recsys_core.threads, runs as
it does for users; compilation is outside the epoch timer), alone and then beside a busy process
(``python -c 'while True: pass'``, one core's worth of load, started before and stopped after).
Rounds alternate every policy and condition, since this shared VM's speed drifts (``--against REV``:
also every policy on the project at git revision REV, in the same rounds). Policies:

- ``project``: the project's default (libgomp's default waiting, the thread tuner on);
- ``fixed``: RECSYS_THREAD_TUNING=0, i.e. the behaviour before issue 16 (libgomp's default
  waiting, about 3 ms of spinning per wait, one thread per core throughout);
- ``passive``: fixed threads with OMP_WAIT_POLICY=PASSIVE (sleep at once);
  ``spin10k``: fixed threads with GOMP_SPINCOUNT=10000; ``1thread``: OMP_NUM_THREADS=1.

Models: GRU4Rec with the issue-16 setting (layers 96, momentum 0.1, n_sample 2048, batch 48,
cross-entropy, shared embedding; one epoch over about 270k events, 13k items), NextItNet and CpRec
(Block_Input_Softmax, default blocks, factor 4), channels 64, dilations 1/4/1/4, batch 80, windows
of 20, on generated data with about 5k items (``--seq-batches`` steps per epoch, 2 epochs, the mean
of both; a step takes 0.04-0.2 s here). Prints mb/s per round, the
medians, the contended/alone ratio per policy and the alone ratio against the first policy.
"""
import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

POLICIES = {
    'project': {},
    'fixed': {'RECSYS_THREAD_TUNING': '0'},
    'passive': {'RECSYS_THREAD_TUNING': '0', 'OMP_WAIT_POLICY': 'PASSIVE'},
    'spin10k': {'RECSYS_THREAD_TUNING': '0', 'GOMP_SPINCOUNT': '10000'},
    '1thread': {'RECSYS_THREAD_TUNING': '0', 'OMP_NUM_THREADS': '1'},
}
OMP_VARIABLES = ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT', 'OMP_NUM_THREADS', 'RECSYS_THREAD_TUNING')

GRU4REC_PARAMS = dict(loss='cross-entropy', final_act='softmax', constrained_embedding=True, layers=[96],
                      batch_size=48, n_sample=2048, sample_alpha=0.5, learning_rate=0.05, momentum=0.1, n_epochs=1)

# One epoch of fit() with the project at {root} first on the path; prints RESULT mb/s e/s.
GRU4REC_EPOCH = '''
import sys, pandas as pd
sys.path.insert(0, {root!r})
from recsys_core import backend; backend.configure('cpu')
from gru4rec import GRU4Rec
data = pd.read_csv({path!r}, sep='\\t', dtype={{'ItemId': str}})
st = GRU4Rec(**{params!r}).fit(data, verbose=False).epoch_stats[-1]
print('RESULT', st['minibatches'] / st['seconds'], st['events'] / st['seconds'])
'''

SEQUENCE_STEPS = '''
import sys, pandas as pd
sys.path.insert(0, {root!r})
from recsys_core import backend; backend.configure('cpu')
from {package} import {cls}
from recsys_core.trainer import TrainingOptions
data = pd.read_csv({path!r}, sep='\\t', dtype={{'ItemId': str}})
m = {cls}(**{params!r}).fit(data, verbose=False, training=TrainingOptions(max_batches_per_epoch={steps}))
print('RESULT', sum(s['minibatches'] for s in m.epoch_stats) / sum(s['seconds'] for s in m.epoch_stats))
'''

SEQUENCE_COMMON = dict(dilated_channels=64, dilations=[1, 4, 1, 4], batch_size=80, max_len=20, n_epochs=2)
MODELS = {
    'gru4rec': lambda path, steps, root: GRU4REC_EPOCH.format(root=root, path=path, params=GRU4REC_PARAMS),
    'nextitnet': lambda path, steps, root: SEQUENCE_STEPS.format(root=root, path=path, package='nextitnet',
                                                                 cls='NextItNet', params=SEQUENCE_COMMON, steps=steps),
    'cprec': lambda path, steps, root: SEQUENCE_STEPS.format(root=root, path=path, package='cprec', cls='CpRec',
                                                             steps=steps, params=dict(
                                                                 SEQUENCE_COMMON, use_softmax_type='Block_Input_Softmax',
                                                                 block='default', use_embedding_type_factor=4)),
}


@contextlib.contextmanager
def busy_process(active):
    """One CPU-bound process beside the measurement while the block runs (nothing when not active)."""
    proc = subprocess.Popen([sys.executable, '-c', 'while True: pass']) if active else None
    try:
        if proc:
            time.sleep(0.5)
        yield
    finally:
        if proc:
            proc.kill()
            proc.wait()


def measure(code, policy, contended):
    env = {k: v for k, v in os.environ.items() if k not in OMP_VARIABLES}
    env.update(POLICIES[policy])
    with busy_process(contended):
        out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env)
    line = [l for l in out.stdout.splitlines() if l.startswith('RESULT')]
    if not line:
        raise RuntimeError(out.stderr[-3000:])
    return float(line[0].split()[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--seq-batches', type=int, default=40, help='NextItNet/CpRec training steps per epoch')
    ap.add_argument('--models', nargs='+', choices=sorted(MODELS), default=['gru4rec', 'nextitnet', 'cprec'])
    ap.add_argument('--policies', nargs='+', choices=sorted(POLICIES), default=['project', 'fixed'])
    ap.add_argument('--against', metavar='REV', help='also run every policy on the project as of git revision REV '
                    '(a temporary worktree), alternated in the same rounds')
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from recsys_core.synthetic import generate_sessions, split_by_time
    workdir = tempfile.mkdtemp(prefix='contention_')
    paths = {}
    for name, items, sessions in (('gru4rec', 20000, 60000), ('sequence', 5000, 20000)):
        paths[name] = os.path.join(workdir, name + '.tsv')
        split_by_time(generate_sessions(items, sessions, seed=3), 0.1)[0].to_csv(paths[name], sep='\t', index=False)
    print('cores: {}; policies: {}'.format(os.cpu_count(), ', '.join(
        '{} ({})'.format(p, ' '.join('{}={}'.format(*kv) for kv in POLICIES[p].items()) or 'no variable set')
        for p in args.policies)))
    trees = [('', ROOT)]
    if args.against:
        from cpu_training_speed import worktree
        trees.append(('@' + args.against, worktree(args.against)))
    for model in args.models:
        codes = {tag: MODELS[model](paths['gru4rec' if model == 'gru4rec' else 'sequence'], args.seq_batches, root)
                 for tag, root in trees}
        runs = [(p, tag) for tag, _ in trees for p in args.policies]
        results = {(p, tag, c): [] for p, tag in runs for c in (False, True)}
        for r in range(args.rounds):
            for p, tag in runs:
                for contended in (False, True):
                    results[p, tag, contended].append(measure(codes[tag], p, contended))
            print('{} round {}: '.format(model, r + 1) + '; '.join('{}{} {:.1f} alone / {:.1f} busy'.format(
                p, tag, results[p, tag, False][-1], results[p, tag, True][-1]) for p, tag in runs), flush=True)
        for p, tag in runs:
            alone, busy = np.median(results[p, tag, False]), np.median(results[p, tag, True])
            print('{} {:8s}: median {:.1f} mb/s alone, {:.1f} mb/s beside a busy process = {:.0%}'.format(
                model, p + tag, alone, busy, busy / alone))
        base = args.policies[0]
        for tag, _ in trees:
            for p in args.policies[1:]:
                print('{} alone, {} / {}: {:.2f}x (median of per-round ratios)'.format(
                    model, base + tag, p + tag, float(np.median([a / b for a, b in zip(
                        results[base, tag, False], results[p, tag, False])]))))


if __name__ == '__main__':
    main()
