"""How PyTensor's C code is compiled and linked: the BLAS it links, the GEMM wrapper, the gcc flags.

This is the bottom of the project (gpu_ops imports nothing of the project), so everything that
compiles C (the generated graphs and the custom Ops) finds its settings here.

Nothing is compiled when this module is imported. :func:`link_blas` (run by ``import gpu_ops``)
makes :func:`blas_ldflags` PyTensor's default for ``config.blas__ldflags``. PyTensor evaluates a
callable default lazily, at the first read of the flag, and the first read is the first graph
compilation (its BLAS rewrites and Ops ask for the flag; importing PyTensor does not): that is
when the GEMM wrapper is built, or found in its on-disk cache. A value the user gives
(``PYTENSOR_FLAGS=blas__ldflags=...`` or ``.pytensorrc``) is read by PyTensor at its own import
and wins, as always; ``RECSYS_PARALLEL_GEMM=0`` or a compiler that fails gives the wheel's plain
flags; with no BLAS of ours at all PyTensor's own default search runs.
"""
import ctypes.util
import os

CXXFLAGS = '-O3 -ffast-math -fno-finite-math-only -D__FAST_MATH__ --param=vect-max-version-for-alias-checks=100'
"""gcc flags for all C code PyTensor compiles (the generated graphs and the custom Ops), set by
``recsys_core.backend.configure``.

- ``-ffast-math`` lets gcc vectorise the loops of exp, sigmoid and tanh: glibc declares its vector
  math functions (libmvec) only when ``__FAST_MATH__`` is defined (measured 7x on exp).
- ``-fno-finite-math-only`` keeps infinities meaningful. Without it sigmoid(x) returned NaN for every
  x below -88.7 (where exp(-x) overflows), and a GRU gate that saturated that far turned the whole
  training step into NaN (issue 16: layers=96/96, momentum, dropout, learning_rate 0.1-0.2). With
  it gcc no longer defines ``__FAST_MATH__``, so ``-D__FAST_MATH__`` asks glibc for the vector
  functions again; in glibc's headers that macro only selects those declarations and sets
  ``math_errhandling`` to 0, and libmvec's functions handle overflow (exp gives inf, sigmoid 0).
  tests/test_backend_numerics.py checks sigmoid, tanh and the GRU step on extreme inputs.
- gcc vectorises a loop over several arrays only with runtime overlap checks, at most 10 by default:
  PyTensor's generic elementwise loop over 3 inputs and 3 outputs (64 x 128) stayed scalar, 21.7 us
  against 3.5 us with the limit raised (that loop still runs where gpu_ops.flat_loops does not apply).
"""

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
    Ops run their loops on OpenMP threads too: :func:`parallel_ops`); calling this builds it.
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
    """Path of the built GEMM/GEMV wrapper (gpu_ops/c/parallel_gemm.cpp: products split between
    OpenMP threads over the wheel's single-threaded OpenBLAS), building it on first use (cached
    under $XDG_CACHE_HOME/recsys_pytensor); None when it cannot be built (no C++ compiler or no
    OpenMP) or RECSYS_PARALLEL_GEMM=0."""
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
    run loops on OpenMP threads (with OpenBLAS's own threads spinning beside them they must not).
    Reads PyTensor's flag, so the first call builds the wrapper (see the module's docstring)."""
    import pytensor
    return 'recsys_sgemm_' in pytensor.config.blas__ldflags


def link_blas():
    """Make :func:`blas_ldflags` the default of PyTensor's ``blas__ldflags``, evaluated at its first read.

    Does nothing when the user set the flag (PyTensor has read it at its import: the param is no
    longer a default) or when it has been read already. PyTensor has no public way to change a
    default, so this replaces the callable its ConfigParam keeps (``_default``, as of PyTensor 3.0);
    tests/test_blas_link.py notices if that stops working. Safe to call more than once.
    """
    import pytensor
    param = pytensor.config._config_var_dict.get('blas__ldflags')
    pytensor_default = getattr(param, '_default', None)
    if (not callable(pytensor_default) or getattr(pytensor_default, 'recsys_blas', False)
            or not param.is_default or hasattr(param, 'val')):
        return

    def default():
        return blas_ldflags() or pytensor_default()  # nothing of ours: PyTensor's own search (and its warning)

    default.recsys_blas = True
    param._default = default
