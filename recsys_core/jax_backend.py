"""Experimental ``RECSYS_BACKEND=jax``: the models' graphs compiled with PyTensor's JAX backend.

A candidate route for ``-d cuda`` (XLA compiles the same graphs for a GPU, and weights, optimizer
state and the sample store stay device arrays between steps), verified on the CPU so far: GRU4Rec,
NextItNet and CpRec train and evaluate to the C backend's numbers (tests/test_jax_backend.py). CpRec's
block softmax scores every row in every tail and masks, instead of gathering each tail's rows with a
data-dependent ``nonzero`` (``recsys_core.backend.needs_static_shapes``).
The project's custom Ops have no JAX versions, so their reference compositions are used.
PyTensor 3.0's JAX dispatch needs the overrides below for these graphs; they are registered when
the mode is first built and then apply to PyTensor's JAX mode in this process.
"""
import inspect

import numpy as np
from pytensor.compile.mode import Mode, get_mode

_cache = {}


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
