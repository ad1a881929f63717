"""What the shared trainer's loop costs GRU4Rec per step, measured without the VM's noise between
processes: one compiled step, epochs driven alternately by the trainer and by a bare loop.

    python benchmarks/trainer_overhead.py [--rounds 8] [--sessions 20000]

The bare loop is what GRU4Rec's fit() did before the trainer (session-parallel batches, one call
of the compiled step, the loss kept per step, the thread tuner and the paused collector around
the loop); the trainer adds its bookkeeping (caps, NaN check,
evaluation and checkpoint tests, the thread tuner's tick, the progress statistics). Both drive the
same plan of the same model in the same process, alternating epoch by epoch, so a slower host
slows both alike. Prints each round's mb/s of both and the median ratio trainer / bare loop.
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=8)
    ap.add_argument('--items', type=int, default=30000)
    ap.add_argument('--sessions', type=int, default=20000)
    args = ap.parse_args()
    from recsys_core import backend
    backend.configure('cpu')
    from gru4rec import GRU4Rec
    from recsys_core.synthetic import generate_sessions
    from recsys_core.backend import collector_paused
    from recsys_core.threads import ThreadTuner
    from recsys_core.model import FitRequest
    from recsys_core.trainer import Trainer, TrainingOptions
    data = generate_sessions(n_items=args.items, n_sessions=args.sessions, seed=3)
    model = GRU4Rec(loss='cross-entropy', final_act='softmax', constrained_embedding=True, logq=1.0, layers=[128],
                    batch_size=64, n_sample=2048, sample_alpha=0.5, learning_rate=0.05, n_epochs=1)
    plan = model._training_plan(FitRequest(data, verbose=False))

    def bare_epoch():
        with collector_paused(), ThreadTuner() as tuner:  # as GRU4Rec's fit() ran its epochs before
            t0, costs = time.time(), []
            for batch, weight in plan.batches(0):
                costs.append(plan.step(batch))
                tuner.tick()
            return len(costs) / (time.time() - t0)

    def trainer_epoch():
        Trainer(TrainingOptions(), verbose=False).run(model, plan, None)
        st = model.epoch_stats[-1]
        return st['minibatches'] / st['seconds']

    bare_epoch()  # warm-up
    ratios = []
    for r in range(args.rounds):
        first, second = (bare_epoch, trainer_epoch) if r % 2 == 0 else (trainer_epoch, bare_epoch)
        a = first()
        b = second()
        bare, trained = (a, b) if first is bare_epoch else (b, a)
        ratios.append(trained / bare)
        print('round {}: bare loop {:.1f} mb/s, trainer {:.1f} mb/s, ratio {:.3f}'.format(r + 1, bare, trained,
                                                                                          ratios[-1]))
    print('median trainer / bare loop: {:.3f} (min {:.3f}, max {:.3f})'.format(
        float(np.median(ratios)), min(ratios), max(ratios)))


if __name__ == '__main__':
    main()
