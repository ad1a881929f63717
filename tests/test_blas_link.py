"""The BLAS that PyTensor's C code links: pip's scipy-openblas32 with its `scipy_` names renamed."""
import glob
import os
import subprocess
import sys

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

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


@pytest.mark.slow
@pytest.mark.parametrize('case', ['default', 'wrapper off', 'failing compiler', 'explicit flags'])
def test_pytensor_reads_the_flags_at_first_use_with_the_same_rules(case, tmp_path):
    """PyTensor's blas__ldflags, in a fresh process with an empty cache: the wrapper's flags (built at
    the first read), the plain wheel flags with RECSYS_PARALLEL_GEMM=0 or a failing compiler, and a
    user's blas__ldflags unchanged (and nothing built)."""
    env = {k: v for k, v in os.environ.items() if k not in ('PYTENSOR_FLAGS', 'RECSYS_PARALLEL_GEMM', 'CXX')}
    env['XDG_CACHE_HOME'] = str(tmp_path)
    if case == 'wrapper off':
        env['RECSYS_PARALLEL_GEMM'] = '0'
    elif case == 'failing compiler':
        env['CXX'] = 'false'
    elif case == 'explicit flags':
        env['PYTENSOR_FLAGS'] = 'blas__ldflags=-lmyblas'
    code = ('import os, gpu_ops, pytensor; print(os.path.exists({!r})); print(pytensor.config.blas__ldflags); '
            'print(gpu_ops.toolchain.parallel_ops())').format(str(tmp_path / 'recsys_pytensor'))
    out = subprocess.run([sys.executable, '-c', code], cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    built_at_import, flags, parallel = out.stdout.splitlines()[-3:]
    assert built_at_import == 'False'
    if case == 'explicit flags':
        assert (flags, parallel) == ('-lmyblas', 'False')
        assert not os.path.exists(tmp_path / 'recsys_pytensor')
        return
    assert '-lscipy_openblas' in flags.split() and '-Dsger_=scipy_sger_' in flags.split()
    if case == 'default':
        assert parallel == 'True' and '-Dsgemm_=recsys_sgemm_' in flags.split()
        assert glob.glob(str(tmp_path / 'recsys_pytensor' / 'parallel_gemm-*' / 'librecsys_parallel_gemm.so'))
    else:
        assert parallel == 'False' and '-Dsgemm_=scipy_sgemm_' in flags.split()
