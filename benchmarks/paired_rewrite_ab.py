"""Paired A/B timing of a change to the GRU4Rec training step, in one process.

    python benchmarks/paired_rewrite_ab.py REWRITE[,REWRITE...] [--reps 60] [--steps 40]
    python benchmarks/paired_rewrite_ab.py --against REV [--reps 60] [--steps 40]

Compiles the benchmark setting's training step twice: A with the project's mode and the working
tree's graph; B with the named rewrites excluded (e.g. gpu_ops_gather_through,
gpu_ops_join_column_halves), or with the graph that ``gru4rec/model.py`` of git revision REV builds
(a graph change). It alternates them every ``--steps`` steps on the same batches. This shared VM's speed drifts by up to 2x within
minutes, far more than a single rewrite changes; pairing neighbouring chunks cancels the drift,
so the median of the paired ratios (with its quartiles) is the figure to trust.
"""
import argparse
import os
import statistics
import subprocess
import sys
import types
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('rewrites', nargs='?', default='', help='comma-separated names of rewrites to exclude in version B')
    parser.add_argument('--against', metavar='REV', help='version B: the training graph of this git revision')
    parser.add_argument('--reps', type=int, default=60)
    parser.add_argument('--steps', type=int, default=40)
    args = parser.parse_args()

    from recsys_core import backend
    backend.configure('cpu')
    import gru4rec.model as gm
    from gru4rec import GRU4Rec
    from recsys_core.synthetic import generate_sessions, split_by_time
    from cpu_training_speed import PARAMS

    train, _ = split_by_time(generate_sessions(30000, 16000, seed=7), 0.1)
    built = {}
    build = gm.GRU4Rec._build_train

    def capture(self, store):
        built['store'] = store
        return build(self, store)
    gm.GRU4Rec._build_train = capture
    model = GRU4Rec(**dict(PARAMS, n_epochs=0))
    model.fit(train, verbose=False)  # builds the weights, the sample store and version A
    store = built['store']
    with_rewrites = build(model, store)
    project_mode = backend.compile_mode
    if args.rewrites:
        backend.compile_mode = lambda: project_mode().excluding(*args.rewrites.split(','))
    without = (build_at_revision(args.against) if args.against else build)(model, store)
    backend.compile_mode = project_mode
    for f in (with_rewrites, without):
        f.trust_input = True

    rng = np.random.RandomState(0)
    batches = [(rng.randint(0, model.n_items, 64).astype('int32'), rng.randint(0, model.n_items, 64).astype('int32'))
               for _ in range(400)]
    reset = np.zeros(64, 'float32')
    hidden = [np.zeros((64, h), 'float32') for h in PARAMS['layers']]
    store.next_index()

    def run(f, offset):
        start = time.perf_counter()
        for i in range(args.steps):
            X, Y = batches[(offset + i) % len(batches)]
            f(X, Y, reset, np.asarray((offset + i) % store.length, dtype=np.int64), *hidden)
        return (time.perf_counter() - start) / args.steps * 1e6

    a_times, b_times = [], []
    for rep in range(args.reps):  # alternate which version goes first
        offset = rep * args.steps
        if rep % 2:
            b = run(without, offset)
            a = run(with_rewrites, offset)
        else:
            a = run(with_rewrites, offset)
            b = run(without, offset)
        a_times.append(a)
        b_times.append(b)
    ratios = [a / b for a, b in zip(a_times, b_times)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    print('A {:.0f} us/step, B {:.0f} us/step (medians); paired ratio A/B: '
          'median {:.3f}, quartiles {:.3f}-{:.3f}'.format(statistics.median(a_times), statistics.median(b_times),
                                                           statistics.median(ratios), q1, q3))


def build_at_revision(rev):
    """GRU4Rec._build_train as gru4rec/model.py of git revision ``rev`` defines it."""
    source = subprocess.check_output(['git', 'show', rev + ':gru4rec/model.py'], cwd=ROOT)
    module = types.ModuleType('gru4rec.model_at_' + rev)
    module.__package__ = 'gru4rec'
    exec(compile(source, 'gru4rec/model.py@' + rev, 'exec'), module.__dict__)
    return module.GRU4Rec._build_train


if __name__ == '__main__':
    main()
