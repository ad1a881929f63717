"""Positive-score diagonal of a batch x (batch + n_sample) score matrix."""
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op


class PositiveDiag(Op):
    """y[i] = x[i, i] for i < x.shape[0]; x may have more columns than rows."""
    __props__ = ()

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim != 2:
            raise TypeError('positive_diag needs a matrix')
        return Apply(self, [x], [pt.TensorType(x.dtype, shape=(None,))()])

    def perform(self, node, inputs, outputs):
        (x,) = inputs
        n = x.shape[0]
        outputs[0][0] = np.ascontiguousarray(np.diagonal(x[:, :n]))

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[0][0],)]

    def pullback(self, inputs, outputs, cotangents):
        return [PositiveDiagGrad()(inputs[0], cotangents[0])]


class PositiveDiagGrad(Op):
    """Gradient of :class:`PositiveDiag`: zeros shaped like x with g on the diagonal."""
    __props__ = ()

    def make_node(self, x, g):
        x, g = pt.as_tensor_variable(x), pt.as_tensor_variable(g)
        return Apply(self, [x, g], [x.type()])

    def perform(self, node, inputs, outputs):
        x, g = inputs
        out = np.zeros_like(x)
        n = x.shape[0]
        out[np.arange(n), np.arange(n)] = g
        outputs[0][0] = out

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]


_positive_diag = PositiveDiag()


def positive_diag_reference(x):
    idx = pt.arange(x.shape[0])
    return x[idx, idx]


def positive_diag(x):
    from . import custom_ops_enabled
    return _positive_diag(x) if custom_ops_enabled() else positive_diag_reference(x)
