"""StackRec's claim, measured: a deep NextItNet stacked from a trained shallow one reaches the
from-scratch deep model's accuracy in less training time (CL scenario, reference section 7.4).

    python benchmarks/stacking_speedup.py [--blocks 16] [--channels 32] [--sequences 8000] [--steps 1500]

Generated sessions with sequential structure (recsys_core.synthetic) are written as a sequence file
and split as released. The shallow model (``--blocks``) trains from scratch on the 0.8 data ratio;
then, on all the data, the deep model (twice the blocks) trains three ways for the same step
budget: from scratch, stackA and stackC from the shallow model. Each evaluates MRR@5 on the test
split every ``--eval_every`` steps. The target is the from-scratch deep model's best MRR@5 (times
``--target``); the script prints, for each way, the steps and seconds until it first reaches the
target, and the speed-up against from scratch. In the CL scenario the shallow model exists
already (it was trained on the older data), so its time is not counted; it is printed.
"""
import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def first_reaching(history, target):
    for h in history:
        if h['value'] >= target:
            return h
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--blocks', type=int, default=16, help='blocks of the shallow model (the deep one has twice)')
    ap.add_argument('--channels', type=int, default=32)
    ap.add_argument('--items', type=int, default=2000)
    ap.add_argument('--sequences', type=int, default=8000)
    ap.add_argument('--max_len', type=int, default=20)
    ap.add_argument('--batch_size', type=int, default=128)
    ap.add_argument('--steps', type=int, default=1500, help='step budget of every deep run')
    ap.add_argument('--shallow_steps', type=int, default=1500)
    ap.add_argument('--eval_every', type=int, default=100)
    ap.add_argument('--target', type=float, default=1.0, help='fraction of the from-scratch best MRR@5 to reach')
    ap.add_argument('--out', default=None, help='folder for the runs (default: a temporary one)')
    args = ap.parse_args()
    from recsys_core import backend
    backend.configure('cpu', verbose=True)
    from recsys_core.synthetic import generate_sessions
    from stackrec import pipeline
    from stackrec.nextitnet import StackNextItNet
    out = args.out or tempfile.mkdtemp(prefix='stacking_speedup_')
    os.makedirs(out, exist_ok=True)
    data_path = os.path.join(out, 'sequences.csv')
    if not os.path.isfile(data_path):
        sessions = generate_sessions(n_items=args.items, n_sessions=args.sequences, seed=7)
        with open(data_path, 'w') as f:
            for _, g in sessions.groupby('SessionId'):
                f.write(','.join(map(str, g.ItemId)) + '\n')
    events, test, train_lines = pipeline.split_events(data_path)
    params = dict(dilated_channels=args.channels, max_len=args.max_len, batch_size=args.batch_size)
    common = dict(all_events=events, test=test, eval_every=args.eval_every, patience=0, verbose=False)
    shallow = pipeline.run_stage(os.path.join(out, 'shallow'), StackNextItNet,
                                 dict(params, **pipeline.depth_params('nextitnet', args.blocks)),
                                 pipeline.ratio_events(events, train_lines, 0.8), source=None, method='from_scratch',
                                 rule=None, cap=args.shallow_steps, **common)
    full = pipeline.ratio_events(events, train_lines, 1.0)
    deep_params = dict(params, **pipeline.depth_params('nextitnet', 2 * args.blocks))
    runs = {}
    for method in ('from_scratch', 'stackA', 'stackC'):
        model = pipeline.run_stage(os.path.join(out, 'deep_' + method), StackNextItNet, deep_params, full,
                                   source=shallow if method != 'from_scratch' else None, method=method, rule='double',
                                   cap=args.steps, **common)
        runs[method] = model.training_history
    best = max(h['value'] for h in runs['from_scratch'])
    target = args.target * best
    print('\nshallow ({} blocks, ratio 0.8): best MRR@5 {:.4f} after {:.1f} s (not counted, CL)'.format(
        args.blocks, max(h['value'] for h in shallow.training_history), shallow.training_history[-1]['seconds']))
    print('deep ({} blocks, ratio 1), target MRR@5 {:.4f} ({} x the from-scratch best):'.format(
        2 * args.blocks, target, args.target))
    reached = {m: first_reaching(h, target) for m, h in runs.items()}
    for method, hit in reached.items():
        if hit is None:
            print('  {:12s} best {:.4f}, target not reached in {} steps'.format(
                method, max(h['value'] for h in runs[method]), args.steps))
            continue
        speedup = ''
        if method != 'from_scratch' and reached['from_scratch']:
            speedup = '   speed-up {:.2f}x (time), {:.2f}x (steps)'.format(
                reached['from_scratch']['seconds'] / hit['seconds'], reached['from_scratch']['step'] / hit['step'])
        print('  {:12s} best {:.4f}; target at step {} after {:.1f} s{}'.format(
            method, max(h['value'] for h in runs[method]), hit['step'], hit['seconds'], speedup))


if __name__ == '__main__':
    main()
