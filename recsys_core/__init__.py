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
    """
    system = '-lopenblas' if ctypes.util.find_library('openblas') else ''
    try:
        import scipy_openblas32
    except ImportError:
        return system
    lib_dir = scipy_openblas32.get_lib_dir()
    if ',' in lib_dir or ' ' in lib_dir:  # PYTENSOR_FLAGS splits on commas, the flags on spaces
        return system
    renames = ' '.join('-D{0}=scipy_{0}'.format(name) for name in _BLAS_ROUTINES)
    return '-L{} -l{} {}'.format(lib_dir, scipy_openblas32.get_library(), renames)


def _link_blas():
    """Point PyTensor at a BLAS before PyTensor is imported (it reads this at import).
    An explicit blas__ldflags in PYTENSOR_FLAGS wins."""
    flags = os.environ.get('PYTENSOR_FLAGS', '')
    ldflags = blas_ldflags()
    if 'blas__ldflags' in flags or 'blas.ldflags' in flags or not ldflags:
        return
    os.environ['PYTENSOR_FLAGS'] = ','.join(f for f in (flags, 'blas__ldflags=' + ldflags) if f)


_link_blas()
