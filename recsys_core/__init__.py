"""Shared core of the project: what every model package needs, written once.

data loading and sorting (data), sequence files, padding and the released split (sequences),
session-parallel mini-batches (batching), negative sampling (sampling), optimizers with row-sparse
updates and TF's Adam (optim), activation strings (activations), parameter parsing and echoing
(params), evaluation with tie modes (evaluation) and on the last item (last_item_eval), backend
and device selection (backend), atomic model files (persistence), synthetic session data
(synthetic), dataset preprocessing steps (preprocessing), hyperparameter search (tuning).

How PyTensor's C code is compiled and linked (the BLAS flags, the parallel GEMM wrapper, the gcc
flags) lives one layer down, in gpu_ops.toolchain, because the custom Ops need it too and gpu_ops
imports nothing of this package; ``recsys_core.blas_ldflags``, ``parallel_gemm_library`` and
``parallel_ops`` name those functions. Importing recsys_core compiles nothing and does not import
PyTensor: the wrapper is built at the first graph compilation.
"""

_TOOLCHAIN = ('blas_ldflags', 'parallel_gemm_library', 'parallel_ops')


def __getattr__(name):
    """gpu_ops.toolchain's functions under their old names, imported on first access (so that
    ``import recsys_core`` stays light for the scripts that only read and write data)."""
    if name in _TOOLCHAIN:
        from gpu_ops import toolchain
        return getattr(toolchain, name)
    raise AttributeError('module {!r} has no attribute {!r}'.format(__name__, name))


def __dir__():
    return sorted(list(globals()) + list(_TOOLCHAIN))
