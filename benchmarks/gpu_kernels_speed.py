"""Speed of gpu_ops' CUDA kernels against the same computation written with PyTorch on the same GPU.

Run on a GPU machine (benchmarks/gpu_check.sh does, after building pycuda):
    python benchmarks/gpu_kernels_speed.py
It needs pycuda and PyTorch with CUDA (the GEMMs that produce score matrices are PyTorch's; the
kernels read its tensors in place). ``--smoke`` runs tiny sizes through the host emulation and numpy
instead, to check the script itself on a machine without a GPU (its timings mean nothing).

Measured, each as a ratio in one run:
1. evaluation: ranking the targets of a 512-event batch among 1M items (scores = H W^T, then the
   fused rank_metrics kernel vs PyTorch's gather + compare + sum), events/s including the GEMM;
2. training: sampled scoring forward + backward for batch 80, 2048 negatives, d=112 over 30k items
   (gathered tiled products vs PyTorch's index_select + matmul + index_add_);
3. the sample store: 10M popularity^0.5 samples by binary search (kernel vs torch.searchsorted).
"""
import argparse
import time

import numpy as np

from gpu_ops import cuda_kernels as ck


def timed(fn, sync, repeat):
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - start) / repeat


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--smoke', action='store_true', help='tiny sizes, host emulation, numpy (no GPU)')
    args = parser.parse_args()
    if args.smoke:
        ex, repeat = ck.EmulatedExecutor(), 1
        n_items, batch, d, n_train_items, train_batch, n_sample, store = 3000, 8, 32, 500, 16, 48, 4000
        sync = lambda: None  # noqa: E731
        rng = np.random.default_rng(0)
        tensor = lambda a: np.ascontiguousarray(a)  # noqa: E731
        matmul_t = lambda a, b: a @ b.T  # noqa: E731
        baseline = None
    else:
        import torch
        ex, repeat = ck.PycudaExecutor(), 20
        n_items, batch, d, n_train_items, train_batch, n_sample, store = 1_000_000, 512, 112, 30_000, 80, 2048, 10_000_000
        sync = torch.cuda.synchronize
        rng = np.random.default_rng(0)
        tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).cuda()  # noqa: E731
        matmul_t = lambda a, b: a @ b.T  # noqa: E731
        baseline = torch
        print('GPU:', torch.cuda.get_device_name(), '| executor:', ex.name)

    # 1. evaluation ranking
    W = tensor(rng.standard_normal((n_items, d), dtype=np.float32) * 0.1)
    H = tensor(rng.standard_normal((batch, d), dtype=np.float32))
    targets = tensor(rng.integers(0, n_items, batch).astype(np.int64))
    cutoffs = [1, 5, 10, 20]

    def ours():
        return ck.rank_metrics(ex, matmul_t(H, W), targets, cutoffs, counts=False)

    t_ours = timed(ours, sync, repeat)
    line = 'evaluation, {} items, batch {}: fused rank_metrics {:.0f} events/s'.format(n_items, batch, batch / t_ours)
    if baseline is not None:
        cut = baseline.tensor(cutoffs, device='cuda', dtype=baseline.float64)

        def theirs():
            scores = matmul_t(H, W)
            t = scores.gather(1, targets[:, None])
            rank = (scores > t).sum(1).double() + 1
            hit = rank[None, :] <= cut[:, None]
            return hit.sum(1), (hit / rank[None, :]).sum(1)

        t_theirs = timed(theirs, sync, repeat)
        line += ' | PyTorch {:.0f} events/s | ratio {:.2f}x'.format(batch / t_theirs, t_theirs / t_ours)
    print(line)

    # 2. sampled scoring, forward + backward
    E = tensor(rng.standard_normal((n_train_items, d), dtype=np.float32) * 0.1)
    bias = tensor(np.zeros(n_train_items, dtype=np.float32))
    Ht = tensor(rng.standard_normal((train_batch, d), dtype=np.float32))
    idx = tensor(rng.integers(0, n_train_items, train_batch + n_sample).astype(np.int64))
    grad = tensor(rng.standard_normal((train_batch, train_batch + n_sample), dtype=np.float32))
    dense = ex.zeros((n_train_items, d), np.float32)

    def ours_train():
        ck.sampled_scores(ex, Ht, E, bias, idx)
        return ck.sampled_scores_grad(ex, grad, Ht, E, idx, dense_items=dense)

    t_ours = timed(ours_train, sync, repeat)
    line = 'sampled scoring fwd+bwd, B={} K={} d={}: {:.3f} ms'.format(train_batch, train_batch + n_sample, d, t_ours * 1e3)
    if baseline is not None:
        dense_t = baseline.zeros((n_train_items, d), device='cuda')

        def theirs_train():
            rows = E.index_select(0, idx)
            scores = Ht @ rows.T + bias.index_select(0, idx)
            grad_h = grad @ rows
            dense_t.index_add_(0, idx, grad.T @ Ht)
            return scores, grad_h

        t_theirs = timed(theirs_train, sync, repeat)
        line += ' | PyTorch {:.3f} ms | ratio {:.2f}x'.format(t_theirs * 1e3, t_theirs / t_ours)
    print(line)

    # 3. sample store generation
    support = rng.zipf(1.3, n_train_items).astype(np.float64)
    cdf_host = np.cumsum(support ** 0.5)
    cdf_host = (cdf_host / cdf_host[-1]).astype(np.float32)
    cdf_host[-1] = 1
    cdf = tensor(cdf_host)
    out = ex.empty(store, np.int64)
    t_ours = timed(lambda: ck.sample_from_cdf(ex, cdf, 42, 0, store, out=out), sync, repeat)
    line = 'sample store, {} samples from {} items: {:.2f} ms'.format(store, n_train_items, t_ours * 1e3)
    if baseline is not None:
        t_theirs = timed(lambda: baseline.searchsorted(cdf, baseline.rand(store, device='cuda')), sync, repeat)
        line += ' | PyTorch {:.2f} ms | ratio {:.2f}x'.format(t_theirs * 1e3, t_theirs / t_ours)
    print(line)


if __name__ == '__main__':
    main()
