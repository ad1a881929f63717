"""The CUDA kernels of gpu_ops: compiled with nvcc for sm_90, and checked against the CPU
implementations on random inputs (float32 relative error < 1e-5, counts and samples exact).

Without a GPU the kernels run under the host emulation (gpu_ops/cuda/host_emulation.h), through
the same launch code; on a machine with pycuda and a GPU the same checks also run on the GPU
(benchmarks/gpu_check.sh runs this file there).
"""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from gpu_ops import cuda_kernels as ck
from gpu_ops.ranking import metric_sums, rank_counts_numpy
from recsys_core.sampling import cumulative_distribution

pytestmark = pytest.mark.slow  # the CUDA kernels under the host emulation, and nvcc


def _executor(kind):
    try:
        return ck.EmulatedExecutor() if kind == 'emulated' else ck.PycudaExecutor()
    except ck.KernelUnavailable as error:
        if kind == 'emulated':
            raise
        pytest.skip('no GPU here: {}'.format(error))


@pytest.fixture(scope='module', params=['emulated', 'pycuda'])
def executor(request):
    return _executor(request.param)


def _relative_error(got, want):
    return float(np.abs(np.asarray(got, dtype=np.float64) - want).max() / np.abs(want).max())


# --- sources ------------------------------------------------------------------------------------

PARAMETER_LETTERS = [(r'\*', 'p'), (r'^(const )?int$', 'i'), (r'^(const )?index_t$', 'l'),
                     (r'^(const )?unsigned long long$', 'u')]


def _declared_signatures():
    found = {}
    for _, text in ck.kernel_sources():
        for name, params in re.findall(r'RECSYS_KERNEL\((\w+),([^)]*)\)', text):
            letters = ''
            for param in params.split(','):
                kind = ' '.join(param.replace('__restrict__', '').split()[:-1])
                letters += next(letter for pattern, letter in PARAMETER_LETTERS if re.search(pattern, kind))
            found[name] = letters
    return found


def test_launch_signatures_match_the_kernel_declarations():
    assert _declared_signatures() == ck.SIGNATURES


@pytest.mark.parametrize('file_name', ck.KERNEL_FILES)
def test_sources_compile_with_nvcc_for_sm90(file_name, tmp_path):
    if shutil.which('nvcc') is None:
        # CI machines carry the CUDA toolkit: there a missing nvcc is a failure, not a skip.
        assert os.environ.get('CI') != 'true', 'nvcc (the CUDA toolkit) is missing on the CI machine'
        pytest.skip('nvcc is not installed (the CUDA toolkit)')
    cubin = tmp_path / 'out.cubin'
    result = subprocess.run(['nvcc', '-arch=sm_90', '-cubin', '-std=c++17', '-Werror', 'all-warnings',
                             '-I', str(ck.SOURCE_DIR), '-o', str(cubin), str(ck.SOURCE_DIR / file_name)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    binary = cubin.read_bytes()
    text = (ck.SOURCE_DIR / file_name).read_text()
    names = [name for name in ck.SIGNATURES if 'RECSYS_KERNEL({},'.format(name) in text]
    assert names
    for name in names:  # extern "C": the kernel is in the cubin under its plain name
        assert name.encode() + b'\0' in binary


# --- ranking ------------------------------------------------------------------------------------

@pytest.mark.parametrize('mode', ['standard', 'conservative', 'median'])
def test_rank_metrics_counts_and_sums_match_the_cpu(executor, mode):
    rng = np.random.default_rng(1)
    n_rows, n_items = 37, 1000  # not a multiple of the block's 256 threads
    scores = rng.integers(0, 40, (n_rows, n_items)).astype(np.float32)  # many ties
    scores[:5] = rng.standard_normal((5, n_items))
    targets = rng.integers(0, n_items, n_rows).astype(np.int64)
    scores[5, :] = scores[5, targets[5]]  # all tied with the target
    target_scores = scores[np.arange(n_rows), targets]
    scores[6, :] = -np.inf
    scores[6, targets[6]] = 3.0  # rank 1
    target_scores[6] = 3.0
    cutoffs = [1, 5, 20, 500]
    greater, equal, recall, mrr = ck.rank_metrics(executor, executor.to_device(scores), executor.to_device(targets),
                                                  cutoffs, mode)
    want_greater, want_equal = rank_counts_numpy(scores, target_scores)
    np.testing.assert_array_equal(greater, want_greater)
    np.testing.assert_array_equal(equal, want_equal)
    want_recall, want_mrr = metric_sums(want_greater, want_equal, mode, cutoffs)
    np.testing.assert_array_equal(recall, want_recall)
    np.testing.assert_allclose(mrr, want_mrr, rtol=1e-12)
    assert recall[-1] > recall[0] > 0  # the data exercises hits at several cut-offs


def test_rank_metrics_without_counts_still_sums(executor):
    rng = np.random.default_rng(2)
    scores = rng.standard_normal((9, 300)).astype(np.float32)
    targets = np.argsort(-scores, axis=1)[:, 2].astype(np.int64)  # every target is third best
    greater, equal, recall, mrr = ck.rank_metrics(executor, executor.to_device(scores), executor.to_device(targets),
                                                  [2, 3], counts=False)
    assert greater is None and equal is None
    np.testing.assert_array_equal(recall, [0, 9])
    np.testing.assert_allclose(mrr, [0, 3.0])


# --- sampling -----------------------------------------------------------------------------------

def test_counter_uniforms_are_uniform_and_reproducible():
    u = ck.counter_uniforms(7, 0, 200000)
    assert u.dtype == np.float32 and u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    np.testing.assert_array_equal(ck.counter_uniforms(7, 1000, 10), u[1000:1010])  # any slice regenerates
    assert not np.array_equal(ck.counter_uniforms(8, 0, 10), u[:10])


def test_sample_from_cdf_matches_binary_search_on_the_cpu(executor):
    rng = np.random.default_rng(3)
    support = rng.zipf(1.5, 500).astype(np.float64)
    cdf = cumulative_distribution(support, 0.75).astype(np.float32)
    n, seed, offset = 5000, 1234, 77
    out = executor.to_host(ck.sample_from_cdf(executor, executor.to_device(cdf), seed, offset, n))
    np.testing.assert_array_equal(out, np.searchsorted(cdf, ck.counter_uniforms(seed, offset, n)))
    assert out.min() >= 0 and out.max() < len(cdf)


def test_sample_from_cdf_fills_a_slice_of_the_store(executor):
    cdf = cumulative_distribution(np.arange(1, 41), 1.0).astype(np.float32)
    store = executor.zeros(3000, np.int64)
    ck.sample_from_cdf(executor, executor.to_device(cdf), 5, 0, 3000, out=store)
    counts = np.bincount(executor.to_host(store), minlength=40)
    expected = np.diff(np.concatenate([[0], cdf])) * 3000
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected.max())  # popularity^alpha, roughly


def test_search_sorted_is_numpys_left_side(executor):
    rng = np.random.default_rng(4)
    cdf = np.sort(rng.random(300)).astype(np.float32)
    cdf[-1] = 1
    u = np.concatenate([rng.random(700), cdf[::7], [0.0]]).astype(np.float32)  # exact hits test the side
    out = executor.to_host(ck.search_sorted(executor, executor.to_device(cdf), executor.to_device(u)))
    np.testing.assert_array_equal(out, np.searchsorted(cdf, u, side='left'))


# --- sampled scoring ----------------------------------------------------------------------------

@pytest.mark.parametrize('with_bias', [True, False])
def test_sampled_scores_forward_and_backward_match_the_cpu(executor, with_bias):
    rng = np.random.default_rng(5)
    B, d, N, n_sample = 45, 70, 400, 51  # no dimension a multiple of the 16 x 16 tile
    hidden = rng.standard_normal((B, d)).astype(np.float32)
    items = rng.standard_normal((N, d)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32) if with_bias else None
    idx = np.concatenate([rng.integers(0, N, B), rng.integers(0, 20, n_sample)]).astype(np.int64)  # repeats
    K = len(idx)
    dev = executor.to_device
    h, e, b, i = dev(hidden), dev(items), None if bias is None else dev(bias), dev(idx)

    scores = executor.to_host(ck.sampled_scores(executor, h, e, b, i))
    h64, e64 = hidden.astype(np.float64), items.astype(np.float64)[idx]
    want = h64 @ e64.T + (bias.astype(np.float64)[idx] if with_bias else 0)
    assert scores.shape == (B, K) and _relative_error(scores, want) < 1e-5
    np.testing.assert_array_equal(executor.to_host(ck.positive_diagonal(executor, dev(scores))),
                                  scores[np.arange(B), np.arange(B)])

    grad = rng.standard_normal((B, K)).astype(np.float32)
    grad_hidden, rows, bias_rows = ck.sampled_scores_grad(executor, dev(grad), h, e, i)
    g64 = grad.astype(np.float64)
    assert _relative_error(executor.to_host(grad_hidden), g64 @ e64) < 1e-5
    assert _relative_error(executor.to_host(rows), g64.T @ h64) < 1e-5
    assert _relative_error(executor.to_host(bias_rows), g64.sum(axis=0)) < 1e-5

    dense_items, dense_bias = executor.zeros((N, d), np.float32), executor.zeros(N, np.float32)
    ck.sampled_scores_grad(executor, dev(grad), h, e, i, dense_items, dense_bias)
    want_items = np.zeros((N, d))
    np.add.at(want_items, idx, g64.T @ h64)
    want_bias = np.zeros(N)
    np.add.at(want_bias, idx, g64.sum(axis=0))
    assert _relative_error(executor.to_host(dense_items), want_items) < 1e-5
    assert _relative_error(executor.to_host(dense_bias), want_bias) < 1e-5
    untouched = np.setdiff1d(np.arange(N), idx)
    assert not executor.to_host(dense_items)[untouched].any()  # row-sparse: only sampled rows change


def test_without_pycuda_the_gpu_executor_says_what_is_missing(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_pycuda(name, *args, **kwargs):
        if name.startswith('pycuda'):
            raise ImportError('No module named {!r}'.format(name))
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', no_pycuda)
    with pytest.raises(ck.KernelUnavailable, match='need pycuda'):
        ck.PycudaExecutor()


def test_rank_counts_launcher_matches_the_cpu_counts(executor):
    """cuda_kernels.rank_counts (what -d cuda's evaluation calls): the rank kernel with its sums off."""
    rng = np.random.default_rng(6)
    scores = rng.integers(0, 30, (23, 700)).astype(np.float32)  # ties
    targets = rng.integers(0, 700, 23).astype(np.int64)
    greater, equal = ck.rank_counts(executor, executor.to_device(scores), executor.to_device(targets))
    want_greater, want_equal = rank_counts_numpy(scores, scores[np.arange(23), targets])
    np.testing.assert_array_equal(greater, want_greater)
    np.testing.assert_array_equal(equal, want_equal)
