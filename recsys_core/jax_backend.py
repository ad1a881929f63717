"""``RECSYS_BACKEND=jax`` and ``-d cuda``: the models' graphs compiled with PyTensor's JAX backend.

``-d cuda`` is this backend with JAX's default device set to the first CUDA GPU
(:func:`place_on_device`). What stays on the device, read off PyTensor 3.0's JAX linker
(pytensor/link/jax/linker.py and JITLinker in pytensor/link/basic.py) and checked on JAX's CPU
device (tests/test_cuda_route.py): the jitted graph's outputs are stored as returned, JAX arrays,
with no conversion to numpy, and the updates of shared variables are written into their containers
as those JAX arrays. So after the first step (which uploads the numpy initial values once) the
weights, the optimizer's accumulators and the sample store are device arrays held by the shared
variables, fed back to the next call without a host copy, and GRU4Rec's hidden states come back
as device arrays too. Shared values a function only reads (never updated: GRU4Rec's item prior,
the sampling CDF) would stay numpy and be uploaded at every call; the linker below places them on
the device once, when the function is made. What does cross to the host per step: the step's inputs (a few int32
vectors), and the loss, which the trainer reads (``np.isnan``) and so waits for the step to end.
Changing that would be the trainer's step loop (read the losses every N steps), not the linker.
Random generators are the exception PyTensor warns about: the JAX graph gets a copy of each shared
generator, kept and advanced in the compiled function.

``RECSYS_CUDA_DRY_RUN=cpu`` runs the very same route on JAX's CPU device instead (no GPU needed),
so that a GPU run can only fail for GPU reasons (benchmarks/gpu_run.sh --dry-run).

Evaluation under ``-d cuda``: the models rank with :func:`gpu_ops.rank_counts_at`, and
recsys_core.backend.compile_function compiles such a function to return the score matrix and the
target columns instead of the counts, then counts with :func:`device_rank_counter`: the pycuda
kernel ``rank_metrics`` on the JAX array in place on a GPU (the matrix never leaves the GPU; only
the per-row counts come back), the CPU counting (gpu_ops.ranking) on a host copy in the dry run.

On the CPU: GRU4Rec, NextItNet and CpRec train and evaluate to the C backend's numbers
(tests/test_jax_backend.py). CpRec's
block softmax scores every row in every tail and masks, instead of gathering each tail's rows with a
data-dependent ``nonzero`` (``recsys_core.backend.needs_static_shapes``).
The project's custom Ops have no JAX versions, so their reference compositions are used.
PyTensor 3.0's JAX dispatch needs the overrides below for these graphs; they are registered when
the mode is first built and then apply to PyTensor's JAX mode in this process.
"""
import inspect
import os

import numpy as np
from pytensor.compile.mode import Mode, get_mode

from .errors import UserError

_cache = {}

DRY_RUN_VARIABLE = 'RECSYS_CUDA_DRY_RUN'
RANKING_VARIABLE = 'RECSYS_CUDA_RANKING'


def dry_run_requested():
    """True when ``RECSYS_CUDA_DRY_RUN=cpu``: ``-d cuda`` then runs on JAX's CPU device."""
    value = os.environ.get(DRY_RUN_VARIABLE, '').strip().lower()
    if value in ('', '0', 'no'):
        return False
    if value != 'cpu':
        raise UserError('{}={!r}: the only dry-run device is cpu'.format(DRY_RUN_VARIABLE, value))
    return True


def place_on_device():
    """For ``-d cuda``: make the first CUDA GPU JAX's default device (JAX's CPU device in the dry
    run); returns (a phrase for the start-up line, whether it is a real GPU). One clear UserError
    when the driver, a GPU or JAX's CUDA plugin is missing."""
    try:
        import jax
    except ImportError:
        raise UserError('-d cuda runs the JAX backend and needs JAX with its CUDA plugin: '
                        'pip install "jax[cuda13]" (or jax[cuda12])') from None
    if dry_run_requested():
        device = jax.devices('cpu')[0]
        jax.config.update('jax_default_device', device)
        return 'DRY RUN on JAX\'s CPU device {} ({}=cpu)'.format(device, DRY_RUN_VARIABLE), False
    from .cuda_device import require_gpu
    gpu = require_gpu()  # one clear error when the driver or a GPU is missing
    try:
        device = jax.devices('cuda')[0]
    except RuntimeError as error:
        raise UserError('-d cuda: the driver finds {}, but JAX has no CUDA backend ({}); install JAX\'s '
                        'CUDA plugin: pip install "jax[cuda13]" (or jax[cuda12])'.format(gpu, error)) from None
    jax.config.update('jax_default_device', device)
    return 'JAX device {} ({})'.format(device, getattr(device, 'device_kind', gpu)), True


def device_rank_counter(real_gpu):
    """(name, count) where ``count(scores, targets)`` -> host (greater, equal) int64 counts of each
    row of the score matrix against its column ``targets[row]``.

    On a GPU: the pycuda kernel (gpu_ops/cuda/ranking.cu) on the JAX arrays in place, unless
    ``RECSYS_CUDA_RANKING=graph`` (then None: the counts are computed inside the jitted graph, by
    XLA; the matrix also stays on the GPU). In the dry run: the CPU counting on a host copy."""
    choice = os.environ.get(RANKING_VARIABLE, 'kernel' if real_gpu else 'host').strip().lower()
    if choice not in ('kernel', 'graph', 'host'):
        raise UserError('{}={!r}: use kernel, graph or host'.format(RANKING_VARIABLE, choice))
    if choice == 'graph':
        return 'in the jitted graph', None
    if choice == 'host':
        from gpu_ops.ranking import rank_counts_numpy

        def count_on_host(scores, targets):
            scores, targets = np.asarray(scores), np.asarray(targets)
            return rank_counts_numpy(scores, scores[np.arange(len(targets)), targets])
        return 'CPU counts on a host copy of the scores', count_on_host
    if not real_gpu:
        raise UserError('{}=kernel needs a GPU (the dry run counts on the host)'.format(RANKING_VARIABLE))
    import importlib.util
    if importlib.util.find_spec('pycuda') is None:
        raise UserError('-d cuda ranks with the pycuda kernel: pip install "pytensor-recsys[cuda]" (or set '
                        '{}=graph to count inside the jitted graph)'.format(RANKING_VARIABLE))
    from gpu_ops import cuda_kernels
    executor = []

    def count_with_kernel(scores, targets):
        if not executor:  # compiled with nvcc at the first evaluation, never at start-up
            executor.append(cuda_kernels.PycudaExecutor())
        # JAX runs asynchronously on its own stream: the kernel (pycuda's stream) must see the
        # finished arrays; the host copy of the counts then waits for the kernel.
        scores.block_until_ready()
        targets.block_until_ready()
        if scores.dtype != np.float32 or targets.dtype != np.int64:
            raise TypeError('rank kernel: float32 scores and int64 targets, got {} and {}'.format(
                scores.dtype, targets.dtype))
        return cuda_kernels.rank_counts(executor[0], scores, targets)
    return 'pycuda kernel rank_metrics', count_with_kernel


def jax_mode():
    """PyTensor's JAX mode, with shape arithmetic evaluated at trace time.

    PyTensor's JAX ARange only accepts constants or a bare Shape_i as arguments, but shape
    inference rewrites ``x.shape[0]`` into broadcast-shape expressions, and gradients of advanced
    indexing build such aranges. Under jit the shapes are static, so the jitted function runs
    inside ``jax.ensure_compile_time_eval``: arithmetic on shapes stays concrete.
    """
    if 'mode' not in _cache:
        _register_overrides()
        _cache['mode'] = Mode(linker=_shape_eval_linker(), optimizer=get_mode('JAX').provided_optimizer)
    return _cache['mode']


def _shape_eval_linker():
    import jax
    from pytensor.link.jax.linker import JAXLinker

    class ShapeEvalJAXLinker(JAXLinker):
        def create_thunk_inputs(self, storage_map):
            # Shared values the function only reads (GRU4Rec's item prior P0, the sampling CDF) would
            # otherwise stay numpy and be uploaded at every call: place them on the device once. The
            # storage is the shared variable's own container, so every function sees the device copy.
            from pytensor.compile.sharedvalue import SharedVariable
            for var in self.fgraph.inputs:
                value = storage_map[var][0]
                if isinstance(var, SharedVariable) and isinstance(value, np.ndarray):
                    storage_map[var][0] = jax.device_put(value)
            return super().create_thunk_inputs(storage_map)

        def jit_compile(self, fn):
            def traced(*args):
                with jax.ensure_compile_time_eval():
                    return fn(*args)
            traced.__signature__ = inspect.signature(fn)
            return super().jit_compile(traced)

    return ShapeEvalJAXLinker()


def _register_overrides():
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.tensor.basic import ARange
    from pytensor.tensor.extra_ops import Unique
    from pytensor.tensor.shape import Shape_i
    from pytensor.tensor.subtensor import AdvancedIncSubtensor1, AdvancedSubtensor1

    @jax_funcify.register(ARange)
    def _arange(op, node=None, **kwargs):
        def arange(start, stop, step):
            return jnp.arange(int(start), int(stop), int(step), dtype=op.dtype)
        return arange

    @jax_funcify.register(Shape_i)
    def _shape_i(op, node=None, **kwargs):
        # A plain Python int is weakly typed in JAX: shape arithmetic with an int8 constant would
        # come out int8 and overflow (160 -> -96). Keep the declared dtype.
        i, dtype = op.i, node.outputs[0].dtype

        def shape_i(x):
            return np.asarray(jnp.shape(x)[i], dtype=dtype)
        return shape_i

    @jax_funcify.register(AdvancedIncSubtensor1)
    def _inc_rows(op, node=None, **kwargs):
        # PyTensor's version checks y's first dimension against x's, rejecting a one-row update
        # (the last mini-batch of an epoch can hold a single session).
        def inc_rows(x, y, idx):
            return x.at[idx].set(y) if op.set_instead_of_inc else x.at[idx].add(y)
        return inc_rows

    @jax_funcify.register(AdvancedSubtensor1)
    def _take_rows(op, node=None, **kwargs):
        # Clamp, never fill: the static-size Unique below pads with an out-of-range index, and
        # JAX's default fill would put NaNs into rows whose updates are dropped anyway.
        def take_rows(x, idx):
            return jnp.take(x, idx, axis=0, mode='clip')
        return take_rows

    @jax_funcify.register(Unique)
    def _unique(op, node=None, **kwargs):
        # Static size (jit needs it): padded to the input's length with the dtype's largest value,
        # an out-of-range row index. The row-sparse updates only gather rows with it (clamped,
        # above) and scatter to them (JAX drops out-of-range scatters); ``inverse`` points at real
        # entries only, so padding rows get zero gradient and are never written.
        if op.axis is not None or op.return_counts:
            raise NotImplementedError('jax backend: Unique with axis or counts')

        def unique(x):
            x = jnp.ravel(x)
            fill = jnp.iinfo(x.dtype).max if jnp.issubdtype(x.dtype, jnp.integer) else jnp.inf
            uniq, index, inverse = jnp.unique(x, return_index=True, return_inverse=True,
                                              size=x.shape[0], fill_value=fill)
            out = [uniq]
            if op.return_index:
                out.append(index)
            if op.return_inverse:
                out.append(jnp.reshape(inverse, (-1,)))
            return out if len(out) > 1 else out[0]
        return unique
