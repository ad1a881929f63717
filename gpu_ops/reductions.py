"""Row reductions of score matrices: sum and a max used only as a stabilising shift.

PyTensor's C reductions along rows run scalar loops (about 20x slower than numpy on a
64 x 2112 score matrix, the GRU4Rec training shape); these Ops use numba-compiled loops.
``row_max`` has a zero gradient on purpose: it is only subtracted before exp (softmax, log-sum-exp,
the negative-only softmax of bpr-max), where the shift cancels exactly, so its gradient is zero in
exact arithmetic and computing it would be wasted work.
"""
import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op


@numba.njit(cache=True, nogil=True)
def _row_sum(x):
    out = np.empty(x.shape[0], dtype=x.dtype)
    for i in range(x.shape[0]):
        acc = 0.0
        for j in range(x.shape[1]):
            acc += x[i, j]
        out[i] = acc
    return out


@numba.njit(cache=True, nogil=True)
def _row_max(x):
    out = np.empty(x.shape[0], dtype=x.dtype)
    for i in range(x.shape[0]):
        m = x[i, 0]
        for j in range(1, x.shape[1]):
            if x[i, j] > m:
                m = x[i, j]
        out[i] = m
    return out


class _RowReduce(Op):
    __props__ = ()

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim != 2:
            raise TypeError('{} needs a matrix'.format(type(self).__name__))
        return Apply(self, [x], [pt.TensorType(x.dtype, shape=(x.type.shape[0],))()])

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[0][0],)]


class RowSum(_RowReduce):
    """y[i] = sum_j x[i, j] (float64 accumulation)."""

    def perform(self, node, inputs, outputs):
        outputs[0][0] = _row_sum(np.ascontiguousarray(inputs[0]))

    def pullback(self, inputs, outputs, cotangents):
        (x,), (g,) = inputs, cotangents
        return [pt.ones_like(x) * g[:, None]]


class RowMax(_RowReduce):
    """y[i] = max_j x[i, j], with a zero gradient (a stabilising shift only; see module doc)."""

    def perform(self, node, inputs, outputs):
        x = inputs[0]
        if x.shape[1] == 0:
            raise ValueError('row_max of an empty row')
        outputs[0][0] = _row_max(np.ascontiguousarray(x))

    def pullback(self, inputs, outputs, cotangents):
        return [pt.zeros_like(inputs[0])]


_row_sum_op, _row_max_op = RowSum(), RowMax()


def row_sum(x, keepdims=False):
    from . import custom_ops_enabled
    y = _row_sum_op(x) if custom_ops_enabled() else x.sum(axis=1)
    return y[:, None] if keepdims else y


def row_max_shift(x, keepdims=False):
    """Row max for stabilising exp; not differentiated (the shift cancels in every use)."""
    from . import custom_ops_enabled
    y = _row_max_op(x) if custom_ops_enabled() else pt.max(x, axis=1)
    return y[:, None] if keepdims else y
