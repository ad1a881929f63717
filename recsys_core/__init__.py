"""Shared core of the project: what every model package needs, written once.

data loading and sorting (data), sequence files, padding and the released split (sequences),
session-parallel mini-batches (batching), negative sampling (sampling), optimizers with row-sparse
updates and TF's Adam (optim), activation strings (activations), parameter parsing and echoing
(params), evaluation with tie modes (evaluation) and on the last item (last_item_eval), backend
and device selection (backend), atomic model files (persistence), synthetic session data
(synthetic), dataset preprocessing steps (preprocessing), hyperparameter search (tuning).
"""
import ctypes.util
import os


# The Fortran BLAS routines PyTensor's C code declares (s = float32, d = float64).
_BLAS_ROUTINES = [p + name + '_' for p in 'sd' for name in (
    'gemm', 'gemv', 'ger', 'dot', 'axpy', 'copy', 'scal', 'swap', 'rot', 'symm', 'syrk', 'trsm')]


def blas_ldflags():
    """The BLAS link flags for PyTensor's C code: pip's OpenBLAS wheel, else the system OpenBLAS, else ''.

    pip-installed PyTensor finds no BLAS to link its C code against and then runs matrix products
    through numpy from Python and small GEMMs in plain C loops. Linking the system libopenblas
    (Debian's 0.3.21) made GRU4Rec training steps 1.4x faster; the `scipy-openblas32` wheel
    (OpenBLAS 0.3.34, a dependency) is faster again on this project's GEMM shapes (benchmarks/RESULTS.md)
    and needs no system package. Its routines carry a `scipy_` prefix, so the flags include `-D`
    renames of the names PyTensor's C code calls (PyTensor passes such flags to the compiler).
    GEMMs and GEMVs go through :func:`parallel_gemm_library` when it can be built (then the custom
    Ops run their loops on OpenMP threads too: :func:`parallel_ops`).
    """
    system = '-lopenblas' if ctypes.util.find_library('openblas') else ''
    try:
        import scipy_openblas32
    except ImportError:
        return system
    lib_dir = scipy_openblas32.get_lib_dir()
    if ',' in lib_dir or ' ' in lib_dir:  # PYTENSOR_FLAGS splits on commas, the flags on spaces
        return system
    flags = '-L{} -l{}'.format(lib_dir, scipy_openblas32.get_library())
    wrapper = parallel_gemm_library(lib_dir, scipy_openblas32.get_library())
    gemm_renames = {}
    if wrapper and not (',' in wrapper or ' ' in wrapper):
        folder, name = os.path.split(wrapper)
        flags = '-L{} -l{} {}'.format(folder, name[len('lib'):-len('.so')], flags)
        gemm_renames = {name: 'recsys_' + name for name in ('sgemm_', 'dgemm_', 'sgemv_', 'dgemv_')}
    renames = ' '.join('-D{}={}'.format(name, gemm_renames.get(name, 'scipy_' + name)) for name in _BLAS_ROUTINES)
    return flags + ' ' + renames


_PARALLEL_GEMM_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'c', 'parallel_gemm.cpp')


def parallel_gemm_library(blas_dir, blas_lib):
    """Path of the built GEMM/GEMV wrapper (recsys_core/c/parallel_gemm.cpp: products split between
    OpenMP threads over the wheel's single-threaded OpenBLAS), building it on first use; None when
    it cannot be built (no C++ compiler or no OpenMP) or RECSYS_PARALLEL_GEMM=0."""
    import hashlib
    import subprocess
    import tempfile
    if os.environ.get('RECSYS_PARALLEL_GEMM', '1') in ('0', 'false', 'False') or not os.path.isfile(_PARALLEL_GEMM_SOURCE):
        return None
    cxx = os.environ.get('CXX', 'g++')
    with open(_PARALLEL_GEMM_SOURCE, 'rb') as f:
        key = hashlib.md5(f.read() + (cxx + blas_dir + blas_lib).encode()).hexdigest()[:16]
    cache = os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'),
                         'recsys_pytensor', 'parallel_gemm-' + key)
    path = os.path.join(cache, 'librecsys_parallel_gemm.so')
    if os.path.isfile(path):
        return path
    tmp = None
    try:
        os.makedirs(cache, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix='.so', dir=cache)  # built aside, then renamed: concurrent builds are safe
        os.close(fd)
        cmd = [cxx, '-O2', '-fPIC', '-shared', '-fopenmp', _PARALLEL_GEMM_SOURCE, '-o', tmp,
               '-L' + blas_dir, '-l' + blas_lib, '-Wl,-rpath,' + blas_dir]
        if subprocess.run(cmd, capture_output=True, timeout=120).returncode != 0:
            return None
        os.replace(tmp, path)
        tmp = None
        return path
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def parallel_ops():
    """True when PyTensor's BLAS calls go through the parallel GEMM wrapper, so the custom Ops may
    run loops on OpenMP threads (with OpenBLAS's own threads spinning beside them they must not)."""
    import pytensor
    return 'recsys_sgemm_' in pytensor.config.blas__ldflags


def _link_blas():
    """Point PyTensor at a BLAS before PyTensor is imported (it reads this at import).
    An explicit blas__ldflags in PYTENSOR_FLAGS wins."""
    flags = os.environ.get('PYTENSOR_FLAGS', '')
    ldflags = blas_ldflags()
    if 'blas__ldflags' in flags or 'blas.ldflags' in flags or not ldflags:
        return
    os.environ['PYTENSOR_FLAGS'] = ','.join(f for f in (flags, 'blas__ldflags=' + ldflags) if f)


_link_blas()
