"""Compile time and step time of deep residual stacks: the looped stack (recsys_core.stacked)
against the unrolled one, NextItNet (StackRec's, C=64, dilations [1, 4] * n/2) and SASRec
(StackRec's, d=64).

Each measurement is a fresh process (the compile cache warm from earlier runs, as a user's second
run): the training step's compilation time, then the median of ``--steps`` training steps after
two warm-up steps. Looped and unrolled processes alternate, so the machine's drift falls on both.

    python benchmarks/stack_depth.py                      # compile time 8..128 blocks, looped
    python benchmarks/stack_depth.py --compare 8 16 32    # + step time against the unrolled stack
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = '''
import json, sys, time, warnings
import numpy as np
sys.path.insert(0, {root!r})
warnings.simplefilter('ignore')
from recsys_core import backend, stacked
backend.configure('cpu')
stacked.set_form({form!r})
from recsys_core.model import FitRequest
from recsys_core.synthetic import generate_sessions
data = generate_sessions(n_items=2000, n_sessions=3000, seed=1)
if {model!r} == 'nextitnet':
    from stackrec.nextitnet import StackNextItNet
    m = StackNextItNet(dilated_channels=64, dilations=[1, 4] * ({blocks} // 2), max_len=20, batch_size=64)
else:
    from stackrec.sasrec import SASRec
    m = SASRec(hidden=64, num_blocks={blocks}, max_len=20, batch_size=64)
plan = m._training_plan(FitRequest(data, verbose=False))
t0 = time.perf_counter()
plan.step_function
compile_s = time.perf_counter() - t0
batches = [b for b, _ in plan.batches(0)][:{steps} + 2]
times = []
for b in batches:
    t0 = time.perf_counter()
    plan.step(b)
    times.append(time.perf_counter() - t0)
print('RESULT', json.dumps({{'compile_s': compile_s, 'step_ms': 1000 * float(np.median(times[2:]))}}))
'''


def measure(model, blocks, form, steps):
    code = CHILD.format(root=ROOT, model=model, blocks=blocks, form=form, steps=steps)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=3600)
    line = [x for x in out.stdout.splitlines() if x.startswith('RESULT ')]
    if out.returncode != 0 or not line:
        raise SystemExit('{} {} blocks ({}) failed:\n{}'.format(model, blocks, form, out.stderr[-3000:]))
    return json.loads(line[0][7:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', nargs='+', default=['nextitnet', 'sasrec'], choices=['nextitnet', 'sasrec'])
    ap.add_argument('--depths', nargs='+', type=int, default=[8, 16, 32, 64, 128])
    ap.add_argument('--compare', nargs='*', type=int, default=[], help='depths also measured unrolled (alternated)')
    ap.add_argument('--rounds', type=int, default=3, help='alternations per compared depth')
    ap.add_argument('--steps', type=int, default=10)
    args = ap.parse_args()
    for model in args.models:
        print('\n{}: compile time of the looped stack (fresh process, warm cache)'.format(model))
        print('| blocks | compile s | step ms | ms per block |')
        print('|---|---|---|---|')
        base = None
        for blocks in args.depths:
            r = measure(model, blocks, 'scan', args.steps)
            base = base or r['compile_s']
            print('| {} | {:.1f} ({:.2f}x the {}-block time) | {:.1f} | {:.2f} |'.format(
                blocks, r['compile_s'], r['compile_s'] / base, args.depths[0], r['step_ms'], r['step_ms'] / blocks),
                flush=True)
        if args.compare:
            print('\n{}: step time, looped / unrolled, alternated rounds'.format(model))
            print('| blocks | looped ms | unrolled ms | ratios per round | median ratio | unrolled compile s |')
            print('|---|---|---|---|---|---|')
        for blocks in args.compare:
            ratios, looped, plain = [], [], []
            for _ in range(args.rounds):
                a = measure(model, blocks, 'scan', args.steps)
                b = measure(model, blocks, 'unrolled', args.steps)
                looped.append(a['step_ms'])
                plain.append(b)
                ratios.append(a['step_ms'] / b['step_ms'])
            median = sorted(ratios)[len(ratios) // 2]
            print('| {} | {:.1f} | {:.1f} | {} | {:.3f} | {:.1f} |'.format(
                blocks, sorted(looped)[len(looped) // 2], sorted(p['step_ms'] for p in plain)[len(plain) // 2],
                ' '.join('{:.3f}'.format(r) for r in ratios), median, min(p['compile_s'] for p in plain)), flush=True)


if __name__ == '__main__':
    main()
