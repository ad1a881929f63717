"""The BLAS that PyTensor's C code links: pip's scipy-openblas32 with its `scipy_` names renamed."""
import os
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt

import recsys_core
from recsys_core.backend import compile_function


def test_flags_link_the_wheel_and_rename_the_routines():
    flags = recsys_core.blas_ldflags()
    assert '-lscipy_openblas' in flags.split()
    for name in ('sger_', 'sdot_', 'dger_'):
        assert '-D{0}=scipy_{0}'.format(name) in flags.split()
    products = ('sgemm_', 'dgemm_', 'sgemv_', 'dgemv_')
    if recsys_core.parallel_ops():  # GEMMs and GEMVs through the parallel wrapper, which is linked first
        assert '-lrecsys_parallel_gemm' in flags.split()
        assert {'-D{0}=recsys_{0}'.format(name) for name in products} <= set(flags.split())
    else:
        assert {'-D{0}=scipy_{0}'.format(name) for name in products} <= set(flags.split())
    assert pytensor.config.blas__ldflags == flags


def test_gemm_wrapper_is_built_once_and_optional(monkeypatch, tmp_path):
    import scipy_openblas32
    blas = (scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library())
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path))
    built = recsys_core.parallel_gemm_library(*blas)
    assert built and built.startswith(str(tmp_path))
    stamp = os.stat(built).st_mtime_ns
    assert recsys_core.parallel_gemm_library(*blas) == built and os.stat(built).st_mtime_ns == stamp
    assert [f for f in os.listdir(os.path.dirname(built))] == [os.path.basename(built)]  # no temporary left
    monkeypatch.setenv('RECSYS_PARALLEL_GEMM', '0')
    assert recsys_core.parallel_gemm_library(*blas) is None
    assert '-Dsgemm_=scipy_sgemm_' in recsys_core.blas_ldflags().split()
    monkeypatch.setenv('RECSYS_PARALLEL_GEMM', '1')
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'other'))
    monkeypatch.setenv('CXX', 'false')  # a compiler that fails: no wrapper, plain wheel names
    assert recsys_core.parallel_gemm_library(*blas) is None
    assert not os.listdir(next(p for p in (tmp_path / 'other').rglob('parallel_gemm-*')))


def test_without_the_wheel_falls_back_to_a_system_openblas_or_none(monkeypatch):
    monkeypatch.setitem(sys.modules, 'scipy_openblas32', None)  # import now raises ImportError
    assert recsys_core.blas_ldflags() in ('-lopenblas', '')


def _compiled_ops(f):
    return {type(node.op).__name__ for node in f.maker.fgraph.toposort()}


def test_gemm_gemv_and_ger_run_in_the_linked_blas_and_agree_with_numpy():
    rng = np.random.default_rng(3)
    for dtype, tol in (('float32', 1e-4), ('float64', 1e-10)):
        A = pt.matrix('A', dtype=dtype)
        B = pt.matrix('B', dtype=dtype)
        v = pt.vector('v', dtype=dtype)
        u = pt.vector('u', dtype=dtype)
        f = compile_function([A, B, v, u], [pt.dot(A, B), pt.dot(A, v), A + pt.outer(u, v)])
        ops = _compiled_ops(f)
        assert 'Dot22' in ops and ({'CGemv', 'Gemv'} & ops) and ({'CGer', 'Ger'} & ops), ops
        a = rng.standard_normal((37, 53)).astype(dtype)
        b = rng.standard_normal((53, 29)).astype(dtype)
        x = rng.standard_normal(53).astype(dtype)
        y = rng.standard_normal(37).astype(dtype)
        got_ab, got_av, got_ger = f(a, b, x, y)
        np.testing.assert_allclose(got_ab, a @ b, rtol=tol, atol=tol)
        np.testing.assert_allclose(got_av, a @ x, rtol=tol, atol=tol)
        np.testing.assert_allclose(got_ger, a + np.outer(y, x), rtol=tol, atol=tol)
