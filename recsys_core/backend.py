"""Device and backend selection, one place for the whole project.

``-d/--device`` in the front ends, or the environment variable ``RECSYS_DEVICE`` (cpu or cuda),
chooses the device; ``RECSYS_BACKEND`` (c, numba, or the experimental jax: recsys_core.jax_backend) overrides the compiled backend for the CPU.
``-d cuda`` is the JAX backend on the first CUDA GPU (recsys_core.jax_backend: what stays on the
GPU, and ``RECSYS_CUDA_DRY_RUN=cpu``, the same route on JAX's CPU device).
The default CPU backend is chosen by measurement (see benchmarks/RESULTS.md).
All graphs are float32 (the original's floatX), and every function is compiled through
:func:`compile_function` so the choice applies everywhere.

Compilation: the C backend's modules are compiled with the project's gcc flags
(``gpu_ops.toolchain.CXXFLAGS``) into the project's own folder (``gpu_ops.toolchain.compile_dir``:
``$RECSYS_COMPILEDIR``, else ``<base_compiledir>/recsys_pytensor/...`` when the user set PyTensor's
``base_compiledir``, else ``~/.cache/recsys_pytensor/...``), only while a project function is built
(:func:`compile_mode`'s linkers and :func:`compile_function` enter
``gpu_ops.toolchain.project_compilation``). PyTensor's ``gcc__cxxflags``, ``compiledir`` and module
cache are PyTensor's again afterwards, so other code in the process, and other programs using the
same PyTensor cache, never see our flags or modules; none of them changes the floating-point mode
(no ``-ffast-math``: crtfastmath would set flush-to-zero for the whole process).

What the project does change in PyTensor for the whole process, and why:

- ``config.floatX = 'float32'`` (:func:`configure`): the models build their graphs and shared
  variables from it, as the original did.
- the default of ``config.blas__ldflags`` (``import gpu_ops``, ``gpu_ops.toolchain.link_blas``): the
  OpenBLAS wheel and the GEMM wrapper, because pip's PyTensor finds no BLAS; a user's value wins.
- a warnings filter that hides PyTensor's warnings about BLAS (:func:`configure`).
- gpu_ops' rewrites are registered in PyTensor's rewrite database under the project's own tag
  (``row_scatter``), which only :func:`compile_mode` includes.
- PyTensor's CVM and cutils modules (one per process, the first time any function is linked) come
  from the project's folder when a project function is the first linked in the process.
"""
import contextlib
import gc
import os
import warnings

import pytensor
import pytensor.tensor as pt
from pytensor.compile.mode import Mode, get_mode
from pytensor.link.numba.linker import NumbaLinker
from pytensor.link.vm import VMLinker

from gpu_ops import rewrites, toolchain

from .errors import UserError

DEVICES = ('cpu', 'cuda')
BACKENDS = ('c', 'numba', 'jax')
DEFAULT_CPU_BACKEND = 'c'

_state = {'device': None, 'backend': None, 'rank_counter': None}

CXXFLAGS = toolchain.CXXFLAGS  # gcc flags for the project's C code (why each: gpu_ops.toolchain)


def configure(device=None, backend=None, verbose=False):
    """Select the device and backend; returns (device, backend). Safe to call more than once."""
    device = (device or os.environ.get('RECSYS_DEVICE') or 'cpu').lower()
    if device not in DEVICES:
        raise UserError('Unknown device {!r}; use one of: {}'.format(device, ', '.join(DEVICES)))
    backend = (backend or os.environ.get('RECSYS_BACKEND') or ('jax' if device == 'cuda' else DEFAULT_CPU_BACKEND)).lower()
    if backend not in BACKENDS:
        raise UserError('Unknown backend {!r}; use one of: {}'.format(backend, ', '.join(BACKENDS)))
    placement, rank_counter = '', None
    if device == 'cuda':
        if backend != 'jax':
            raise UserError('-d cuda runs the JAX backend; RECSYS_BACKEND={} is a CPU backend'.format(backend))
        from .jax_backend import device_rank_counter, place_on_device
        placement, real_gpu = place_on_device()  # one clear error when the driver, a GPU or JAX's CUDA build is missing
        ranking, rank_counter = device_rank_counter(real_gpu)
        placement = ', {}, ranking: {}'.format(placement, ranking)
    pytensor.config.floatX = 'float32'  # PyTensor's gcc flags and compiledir stay as they are (module docstring)
    # PyTensor warns when it finds no BLAS to link its C code against; gpu_ops.toolchain links the
    # OpenBLAS wheel or the system OpenBLAS when present and otherwise the C backend falls back to numpy's BLAS.
    warnings.filterwarnings('ignore', message='.*BLAS.*')
    if backend == 'jax':
        try:
            import jax  # noqa: F401
        except ImportError:
            raise UserError('RECSYS_BACKEND=jax needs JAX: pip install "pytensor-recsys[jax]"') from None
        import gpu_ops
        gpu_ops.set_custom_ops(False)  # the custom Ops have no JAX versions: use the reference compositions
    _state.update(device=device, backend=backend, rank_counter=rank_counter)
    if verbose:
        print('Using device: {} (backend: {}{}{})'.format(device, backend, ', ' + blas_summary() if backend == 'c' else '',
                                                        placement))
    return device, backend


def blas_summary():
    """One short phrase for the start-up line: which BLAS the C code links and on how many threads
    (the full link flags are ``pytensor.config.blas__ldflags``)."""
    flags = pytensor.config.blas__ldflags
    if 'scipy_openblas' in flags:
        try:
            import scipy_openblas32
            blas = 'OpenBLAS {} (scipy-openblas32)'.format('.'.join(scipy_openblas32.__version__.split('.')[:3]))
        except ImportError:
            blas = 'OpenBLAS (scipy-openblas32)'
    elif '-lopenblas' in flags:
        blas = 'system OpenBLAS'
    elif flags:
        blas = 'custom ({})'.format(flags if len(flags) <= 40 else flags[:37] + '...')
    else:
        return 'BLAS: none found (matrix products through numpy)'
    if 'recsys_sgemm_' in flags:
        from .threads import openmp_threads
        n = openmp_threads()
        return 'BLAS: {}, {} OpenMP thread{}'.format(blas, n, '' if n == 1 else 's') if n else 'BLAS: ' + blas
    return 'BLAS: {}, its own threads'.format(blas)


def current():
    if _state['device'] is None:
        configure()
    return _state['device'], _state['backend']


def needs_static_shapes():
    """True for backends that compile each graph for fixed array shapes (JAX): graphs then avoid
    data-dependent sizes such as ``nonzero`` gathers."""
    return current()[1] == 'jax'


def compile_function(inputs, outputs, updates=None, **kwargs):
    """pytensor.function with the selected backend's mode.

    Under ``-d cuda``, outputs made by :func:`gpu_ops.rank_counts_at` are counted outside the
    jitted graph (see :class:`_CountedOnDevice`)."""
    current()
    counter = _state['rank_counter']
    if counter is not None and isinstance(outputs, (list, tuple)) and \
            any(getattr(o.tag, 'rank_source', None) is not None for o in outputs):
        return _CountedOnDevice(inputs, outputs, updates, counter, kwargs)
    with toolchain.project_compilation():  # the rewrites too: constant folding may compile a C thunk
        return pytensor.function(inputs, outputs, updates=updates, mode=compile_mode(),
                                 on_unused_input='ignore', **kwargs)


class _CountedOnDevice:
    """A compiled function whose rank counts (a pair of outputs of :func:`gpu_ops.rank_counts_at`)
    are computed by the device's rank counter: the jitted graph returns the score matrix and the
    int64 target columns in their place, and the counter turns them into (greater, equal). Called
    like the pytensor function; its other outputs and updates are untouched."""

    def __init__(self, inputs, outputs, updates, counter, kwargs):
        outputs = list(outputs)
        self.pairs = []
        for i, out in enumerate(outputs[:-1]):
            source = getattr(out.tag, 'rank_source', None)
            if source is not None and getattr(outputs[i + 1].tag, 'rank_source', None) is source:
                scores, index = source
                outputs[i], outputs[i + 1] = scores, pt.cast(index, 'int64')
                self.pairs.append(i)
        self.counter = counter
        with toolchain.project_compilation():
            self.function = pytensor.function(inputs, outputs, updates=updates, mode=compile_mode(),
                                              on_unused_input='ignore', **kwargs)

    def __call__(self, *args):
        out = list(self.function(*args))
        for i in self.pairs:
            out[i], out[i + 1] = self.counter(out[i], out[i + 1])
        return out

    def __getattr__(self, name):
        return getattr(self.function, name)


def compile_mode():
    """The PyTensor mode of the selected backend.

    For the C backend, PyTensor's recognition of softmax patterns is excluded: it replaces our
    exp/sum compositions by a Softmax op that the C backend runs in Python (measured 4x slower).
    gpu_ops' row scatter replaces the matrix row increments PyTensor runs in Python.
    The C and Numba linkers are PyTensor's (``cvm``, ``NUMBA``) linking inside
    ``gpu_ops.toolchain.project_compilation``, so any function built with this mode, through
    :func:`compile_function` or ``pytensor.function(..., mode=compile_mode())`` directly (tests), or
    rebuilt later (``Function.copy``, unpickling), compiles with the project's flags into its folder.
    """
    _, backend = current()
    if backend == 'numba':
        return Mode(linker=ProjectNumbaLinker(), optimizer=get_mode('NUMBA').provided_optimizer)
    if backend == 'jax':
        from .jax_backend import jax_mode
        return jax_mode()
    return Mode(linker=ProjectCVMLinker(use_cloop=True), optimizer='fast_run').excluding(
        'symbolic_op_recognition', 'local_dot22_to_dot22scalar').including(rewrites.register())


class _ProjectCompilation:
    """Mixin: a PyTensor linker whose ``make_all`` (where each node's C module is compiled or loaded)
    runs inside ``gpu_ops.toolchain.project_compilation``."""

    def make_all(self, *args, **kwargs):
        with toolchain.project_compilation():
            return super().make_all(*args, **kwargs)


class ProjectCVMLinker(_ProjectCompilation, VMLinker):
    """PyTensor's ``cvm`` linker (VMLinker with the C loop) compiling into the project's folder."""


class ProjectNumbaLinker(_ProjectCompilation, NumbaLinker):
    """PyTensor's Numba linker, its jitted functions cached in the project's folder (``numba``).

    PyTensor's Numba cache module is imported first, so that project_compilation finds it to
    redirect; importing it creates PyTensor's (empty) ``<base_compiledir>/numba`` folder."""

    def make_all(self, *args, **kwargs):
        import pytensor.link.numba.dispatch.basic  # noqa: F401  (imports pytensor.link.numba.cache)
        return super().make_all(*args, **kwargs)


@contextlib.contextmanager
def collector_paused():
    """Run a training loop with Python's cyclic garbage collector off, restoring it afterwards.

    The collector's periodic passes over the compiled graph's objects cost about 2.5% of a CPU
    GRU4Rec epoch (0.2 s of 8 s, measured with gc.callbacks), and the step loop creates no
    reference cycles (gc.collect() after a full epoch with the collector off found 0), so nothing
    accumulates while it is off. Reference counting still frees everything else immediately.
    """
    was_enabled = gc.isenabled()
    gc.collect()  # garbage from graph compilation, once, before the loop
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
