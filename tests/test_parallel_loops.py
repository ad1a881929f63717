"""The parallel GEMM wrapper and the custom Ops' OpenMP loops against one thread.

The wrapper (gpu_ops/c/parallel_gemm.cpp) splits each product between OpenMP threads: its
result equals the unsplit product up to rounding (OpenBLAS picks kernels by size, so a share may
sum in another order). The custom Ops split their loops so that their results are the same
whatever the number of threads. The sizes here are large enough for the loops to take two threads.
"""
import ctypes
import ctypes.util

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode

import recsys_core
from gpu_ops.columns import ScoreColumns, ScoreColumnsGrad
from gpu_ops.rows import RowGather
from gpu_ops.sampled_loss import SampledLoss
from gpu_ops.sparse_update import SparseAdagrad
from recsys_core.backend import compile_mode

pytestmark = pytest.mark.skipif(not recsys_core.parallel_ops(), reason='the parallel GEMM wrapper could not be built here')


def _gomp():
    return ctypes.CDLL(ctypes.util.find_library('gomp') or 'libgomp.so.1')


class threads:
    """Run a block with OpenMP's thread count set (the custom Ops and the wrapper read it per call)."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.lib = _gomp()
        self.before = self.lib.omp_get_max_threads()
        self.lib.omp_set_num_threads(self.n)

    def __exit__(self, *exc):
        self.lib.omp_set_num_threads(self.before)


def _blas_libraries():
    flags = pytensor.config.blas__ldflags.split()
    dirs = [f[2:] for f in flags if f.startswith('-L')]
    libs = [f[2:] for f in flags if f.startswith('-l')]
    found = {}
    for lib in libs:
        for d in dirs:
            try:
                found[lib] = ctypes.CDLL('{}/lib{}.so'.format(d, lib))
                break
            except OSError:
                continue
    return found['recsys_parallel_gemm'], found['scipy_openblas']


def _gemm(fn, ctype, ta, tb, alpha, a, b, beta, c):
    """Column-major GEMM through a Fortran-style entry point: c = alpha op(a) op(b) + beta c."""
    m, n = c.shape
    k = a.shape[1] if ta == 'N' else a.shape[0]
    ints = [ctypes.c_int(v) for v in (m, n, k, a.strides[1] // a.itemsize, b.strides[1] // b.itemsize,
                                      c.strides[1] // c.itemsize)]
    p = lambda x: x.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    fn(ctypes.c_char_p(ta.encode()), ctypes.c_char_p(tb.encode()), ctypes.byref(ints[0]), ctypes.byref(ints[1]),
       ctypes.byref(ints[2]), ctypes.byref(ctype(alpha)), p(a), ctypes.byref(ints[3]), p(b), ctypes.byref(ints[4]),
       ctypes.byref(ctype(beta)), p(c), ctypes.byref(ints[5]))


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('m,n,k', [(300, 70, 128), (64, 1773, 128), (33, 500, 40)])
def test_parallel_gemm_matches_the_unsplit_gemm_for_every_transpose(dtype, m, n, k):
    wrapper, openblas = _blas_libraries()
    prefix = 's' if dtype == 'float32' else 'd'
    ctype = ctypes.c_float if dtype == 'float32' else ctypes.c_double
    split, whole = getattr(wrapper, 'recsys_{}gemm_'.format(prefix)), getattr(openblas, 'scipy_{}gemm_'.format(prefix))
    rng = np.random.RandomState(m + n)
    for ta in 'NT':
        for tb in 'NT':
            # Fortran-ordered operands inside larger arrays: leading dimensions beyond the sizes
            a = np.asfortranarray(rng.randn(*((m + 3, k) if ta == 'N' else (k + 3, m))).astype(dtype))
            b = np.asfortranarray(rng.randn(*((k + 2, n) if tb == 'N' else (n + 2, k))).astype(dtype))
            a, b = (a[:m] if ta == 'N' else a[:k]), (b[:k] if tb == 'N' else b[:n])
            c0 = np.asfortranarray(rng.randn(m + 1, n).astype(dtype))[:m]
            got, expected = c0.copy(order='F'), c0.copy(order='F')
            with threads(2):
                _gemm(split, ctype, ta, tb, 0.7, a, b, 0.3, got)
            _gemm(whole, ctype, ta, tb, 0.7, a, b, 0.3, expected)
            np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == 'float32' else 1e-12, atol=1e-5 if dtype == 'float32' else 1e-12)
            opa, opb = (a if ta == 'N' else a.T), (b if tb == 'N' else b.T)
            np.testing.assert_allclose(got, 0.7 * opa.astype('float64') @ opb + 0.3 * c0, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('m,n', [(40000, 128), (128, 30000), (70, 60)])
def test_parallel_gemv_matches_the_unsplit_gemv_for_both_transposes(dtype, m, n):
    wrapper, openblas = _blas_libraries()
    prefix = 's' if dtype == 'float32' else 'd'
    ctype = ctypes.c_float if dtype == 'float32' else ctypes.c_double
    split, whole = getattr(wrapper, 'recsys_{}gemv_'.format(prefix)), getattr(openblas, 'scipy_{}gemv_'.format(prefix))
    rng = np.random.RandomState(m)
    a = np.asfortranarray(rng.randn(m + 5, n).astype(dtype))[:m]  # leading dimension m + 5
    p = lambda v: v.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    for ta in 'NT':
        x = rng.randn(n if ta == 'N' else m).astype(dtype)
        y0 = rng.randn(2 * (m if ta == 'N' else n)).astype(dtype)  # y with increment 2
        results = []
        for fn in (split, whole):
            y = y0.copy()
            ints = [ctypes.c_int(v) for v in (m, n, m + 5, 1, 2)]
            with threads(2):
                fn(ctypes.c_char_p(ta.encode()), ctypes.byref(ints[0]), ctypes.byref(ints[1]), ctypes.byref(ctype(0.7)),
                   p(a), ctypes.byref(ints[2]), p(x), ctypes.byref(ints[3]), ctypes.byref(ctype(0.3)), p(y),
                   ctypes.byref(ints[4]))
            results.append(y)
        tol = 1e-5 if dtype == 'float32' else 1e-12
        np.testing.assert_allclose(results[0], results[1], rtol=tol, atol=tol)
        opa = a if ta == 'N' else a.T
        np.testing.assert_allclose(results[0][::2], 0.7 * opa.astype('float64') @ x + 0.3 * y0[::2], rtol=1e-4, atol=1e-3)
        np.testing.assert_array_equal(results[0][1::2], y0[1::2])  # the skipped elements stay


def _c_function(inputs, outputs, updates=None):
    assert '-fopenmp' in SampledLoss('top1', 'tanh').c_compile_args()
    f = pytensor.function(inputs, outputs, mode=compile_mode(), updates=updates, on_unused_input='ignore')
    assert all(getattr(th, 'cthunk', None) is not None for node, th in zip(f.vm.nodes, f.vm.thunks)
               if isinstance(node.op, (SampledLoss, SparseAdagrad, RowGather, ScoreColumns, ScoreColumnsGrad)))
    return f


def _same_with_one_and_two_threads(f, *args):
    with threads(1):
        one = [np.array(x) for x in f(*args)]
    with threads(2):
        two = [np.array(x) for x in f(*args)]
    for x, y in zip(one, two):
        np.testing.assert_array_equal(x, y)
    return two


@pytest.mark.parametrize('loss,act', [('cross-entropy', 'softmax'), ('bpr-max', 'elu-0.5'), ('top1', 'tanh')])
def test_sampled_loss_threads_match_one_thread_and_perform(loss, act):
    z = pt.matrix('z', dtype='float32')
    outs = SampledLoss(loss, act, 0.0, 0.5)(z)
    f = _c_function([z], outs)
    py = pytensor.function([z], outs, mode=Mode(linker='py', optimizer='fast_run'))
    zv = np.random.RandomState(1).randn(64, 1100).astype('float32')
    value, grad = _same_with_one_and_two_threads(f, zv)
    ref_value, ref_grad = py(zv)
    np.testing.assert_allclose(value, ref_value, rtol=1e-4)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize('m', [64, 37])
def test_row_gather_and_score_columns_threads_match_one_thread_and_numpy(m):
    x, idx = pt.matrix('x', dtype='float32'), pt.lvector('idx')
    off, g = pt.vector('off', dtype='float32'), pt.matrix('g', dtype='float32')
    ga, goff = ScoreColumnsGrad()(g, idx, x.shape[0])
    f = _c_function([x, idx, off, g], [RowGather()(x, idx), ScoreColumns()(x, idx, off), ga, goff])
    rng = np.random.RandomState(2)
    xv, iv = rng.randn(900, m).astype('float32'), rng.randint(-900, 900, size=2000)
    offv, gv = rng.randn(2000).astype('float32'), rng.randn(m, 2000).astype('float32')
    rows, cols, grad_rows, grad_off = _same_with_one_and_two_threads(f, xv, iv, offv, gv)
    np.testing.assert_array_equal(rows, xv[iv])
    np.testing.assert_array_equal(cols, xv[iv].T + offv)
    expected = np.zeros_like(xv)
    np.add.at(expected, iv, gv.T)
    np.testing.assert_allclose(grad_rows, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad_off, gv.sum(axis=0), rtol=1e-5, atol=1e-4)


def test_sparse_adagrad_threads_match_one_thread():
    rng = np.random.RandomState(3)
    start_w, start_acc = rng.randn(5000, 64).astype('float32'), rng.rand(5000, 64).astype('float32')
    rows, g = pt.lvector('rows'), pt.matrix('g', dtype='float32')
    results = []
    for n in (1, 2):
        W, acc = pytensor.shared(start_w.copy()), pytensor.shared(start_acc.copy())
        new_w, new_acc = SparseAdagrad(0.05)(W, acc, rows, g)
        f = _c_function([rows, g], [], updates=[(W, new_w), (acc, new_acc)])
        rv = np.sort(rng.choice(5000, 1200, replace=False)) if n == 1 else results[0][2]
        gv = rng.randn(1200, 64).astype('float32') if n == 1 else results[0][3]
        with threads(n):
            f(rv, gv)
        results.append((W.get_value(), acc.get_value(), rv, gv))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    rv, gv = results[0][2], results[0][3]
    expected_acc = start_acc.copy()
    expected_acc[rv] += gv * gv
    np.testing.assert_allclose(results[1][1], expected_acc, rtol=1e-6)
    untouched = np.setdiff1d(np.arange(5000), rv)
    np.testing.assert_array_equal(results[1][0][untouched], start_w[untouched])
