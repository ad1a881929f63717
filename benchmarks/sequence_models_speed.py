"""CpRec's compression claims on this machine: parameters, training throughput and inference
latency of FullSoftmax, Block_Input_Softmax and Block_Input_Softmax_Inference, one run.

    python benchmarks/sequence_models_speed.py [--items 70000] [--channels 128] [--batches 12]

Data: synthetic sessions over a Zipf(0.8) catalogue (about 55k distinct items appear), sequence
length 20, the released block boundaries 7000/15000/V, factor 4, dilations 1/4/1/4, batch 128.
Training: mean seconds per batch over ``--batches`` steps of each of 2 epochs (the second epoch is
reported; compilation is excluded). Inference: the last-item ranking of 1024 test windows, at batch
256 and at batch 1 (per-sequence latency); Block_Input_Softmax ranks against the whole block
distribution, the _Inference variant computes only the fast top-20 (released pruning rule, and the
exact rule). Also the float32 GEMM rate, to relate throughput to the hardware.

    python benchmarks/sequence_models_speed.py --bound [--threads 1,2] [--batches 30]

runs instead the step-time-against-GEMM-bound measurement of NextItNet and CpRec
(benchmarks/step_bound.py says what it counts).
"""
import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def gemm_gflops(n=1024, repeats=20):
    a, b = np.random.rand(n, n).astype('float32'), np.random.rand(n, n).astype('float32')
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t0) / 1e9


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--bound', action='store_true', help='step time against the GEMM bound (benchmarks/step_bound.py)')
    p.add_argument('--threads', default='1,2', help='with --bound: thread counts, comma-separated')
    p.add_argument('--items', type=int, default=70000)
    p.add_argument('--channels', type=int, default=128)
    p.add_argument('--batches', type=int, default=12)
    p.add_argument('--sessions', type=int, default=40000)
    p.add_argument('--zipf', type=float, default=0.8)
    args = p.parse_args()
    if args.bound:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import step_bound
        step_bound.main([int(t) for t in args.threads.split(',')], args.batches)
        return
    from recsys_core import backend
    backend.configure('cpu')
    from cprec import CpRec
    from recsys_core.last_item_eval import last_item_cases
    from recsys_core.trainer import TrainingOptions
    from recsys_core.synthetic import generate_sessions
    data = generate_sessions(n_items=args.items, n_sessions=args.sessions, seed=1, mean_length=12, zipf=args.zipf)
    test_ids = data['SessionId'].unique()[-1024:]
    train, test = data[~data['SessionId'].isin(test_ids)], data[data['SessionId'].isin(test_ids)]
    print('GEMM float32: {:.1f} GFLOP/s'.format(gemm_gflops()))
    common = dict(dilated_channels=args.channels, dilations=[1, 4, 1, 4], batch_size=128, max_len=20, n_epochs=2,
                  block='default', use_embedding_type_factor=4, top_k=20)
    rows = []
    for softmax in ('FullSoftmax', 'Block_Input_Softmax', 'Block_Input_Softmax_Inference'):
        model = CpRec(use_softmax_type=softmax, **common)
        model.fit(train, verbose=False, training=TrainingOptions(max_batches_per_epoch=args.batches))
        counts = model.parameter_counts()
        sec = model.epoch_stats[-1]['seconds'] / model.epoch_stats[-1]['minibatches']
        histories, targets = last_item_cases(model, test, 'SessionId', 'ItemId', 'Time')
        keep = (targets >= 0) & np.array([len(h) > 0 for h in histories])
        histories, targets = [h for h, k in zip(histories, keep) if k], targets[keep]
        rules = ['released', 'exact'] if softmax.endswith('Inference') else [None]
        for rule in rules:
            if rule:
                model.inference_rule = rule
            t0 = time.perf_counter()
            model.rank_last_items(histories[:8], targets[:8], 'standard', 20)  # compiles the ranking function
            compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            ranks = model.rank_last_items(histories, targets, 'standard', 20)
            batch_ms = (time.perf_counter() - t0) / len(histories) * 1e3
            tails = model.last_inference_stats['tails_evaluated'] if rule else None
            t0 = time.perf_counter()
            for h, t in zip(histories[:100], targets[:100]):
                model.rank_last_items([h], t[None], 'standard', 20)
            single_ms = (time.perf_counter() - t0) / 100 * 1e3
            rows.append((softmax + ('/' + rule if rule else ''), counts['total'], model.uncompressed_parameters(),
                         sec, 128 / sec, batch_ms, single_ms, np.mean(ranks <= 20), tails, model.n_vocab, compile_s,
                         len(histories)))
    print('vocabulary {} ids, boundaries {}'.format(rows[-1][9], model.bounds))
    print('{:<40} {:>12} {:>8} {:>10} {:>10} {:>12} {:>12} {:>8}'.format(
        'softmax', 'parameters', 'compr.', 's/batch', 'seq/s', 'ms/seq@256', 'ms/seq@1', 'HR@20'))
    base = rows[0]
    for r in rows:
        print('{:<40} {:>12,} {:>7.2f}x {:>10.3f} {:>10.0f} {:>12.3f} {:>12.2f} {:>8.4f}{}'.format(
            r[0], r[1], r[2] / r[1], r[3], r[4], r[5], r[6], r[7],
            '' if r[8] is None else '  rows of {} that computed each tail: {}'.format(len(histories), r[8])))
    for r in rows:
        print('{}: last-item evaluation {:.0f} test sequences/s at batch 256 against {} items (one compiled '
              'function streams the batches; its compilation, {:.1f} s, not included)'.format(
                  r[0], 1e3 / r[5], r[9], r[10]))
    for r in rows[1:]:
        print('{} vs FullSoftmax: training {:.2f}x faster, inference {:.2f}x (batch 256) / {:.2f}x (batch 1)'.format(
            r[0], base[3] / r[3], base[5] / r[5], base[6] / r[6]))


if __name__ == '__main__':
    main()
