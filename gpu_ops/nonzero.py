"""Indices of the nonzero entries of a vector, in C.

PyTensor's ``nonzero`` has only a Python ``perform``: in a training step that gathers rows by a
data-dependent condition (the real targets under padding_loss=skip, the rows of each CpRec tail)
it is a Python call per step. :class:`FlatNonzero` is the same result (int64, ascending) as C.
"""
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp

from .c_code import source_version


class FlatNonzero(COp):
    """y = the ascending indices i with x[i] != 0 (``np.flatnonzero`` of a vector)."""
    __props__ = ()

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim != 1:
            raise TypeError('FlatNonzero needs a vector')
        return Apply(self, [x], [pt.TensorType('int64', shape=(None,))()])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.flatnonzero(inputs[0]).astype(np.int64)

    def connection_pattern(self, node):
        return [[False]]  # an index computation: nothing flows back

    def pullback(self, inputs, outputs, cotangents):
        return [DisconnectedType()()]

    def c_code(self, node, name, inputs, outputs, sub):
        (x,), (y,) = inputs, outputs
        return '''
        {{
            const npy_intp n = PyArray_DIMS({x})[0];
            const npy_intp stride = PyArray_STRIDES({x})[0] / (npy_intp) PyArray_ITEMSIZE({x});
            const dtype_{x}* X = (const dtype_{x}*) PyArray_DATA({x});
            npy_intp count = 0;
            for (npy_intp i = 0; i < n; ++i) count += X[i * stride] != 0;
            if (!({y} && PyArray_DIMS({y})[0] == count)) {{
                Py_XDECREF({y});
                npy_intp dims[1] = {{count}};
                {y} = (PyArrayObject*) PyArray_EMPTY(1, dims, NPY_INT64, 0);
                if (!{y}) {{ {fail} }}
            }}
            npy_int64* Y = (npy_int64*) PyArray_DATA({y});
            for (npy_intp i = 0, k = 0; i < n; ++i) if (X[i * stride] != 0) Y[k++] = i;
        }}
        '''.format(x=x, y=y, fail=sub['fail'])

    def c_code_cache_version(self):
        return source_version(FlatNonzero.c_code)


_flat_nonzero = FlatNonzero()


def flat_nonzero(x):
    """Indices where the vector ``x`` is nonzero: the C Op, or ``pt.nonzero`` with custom Ops off."""
    from . import custom_ops_enabled
    return _flat_nonzero(x) if custom_ops_enabled() else pt.nonzero(x)[0]
