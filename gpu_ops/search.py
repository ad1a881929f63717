"""Binary-search sampling: indices of uniform randoms in a cumulative distribution."""
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.tensor.extra_ops import searchsorted as pt_searchsorted


class SearchSorted(Op):
    """out[j] = number of cdf entries < u[j] (numpy's side='left'), as int64."""
    __props__ = ()

    def make_node(self, cdf, u):
        cdf, u = pt.as_tensor_variable(cdf), pt.as_tensor_variable(u)
        return Apply(self, [cdf, u], [pt.TensorType('int64', shape=(None,) * u.ndim)()])

    def perform(self, node, inputs, outputs):
        cdf, u = inputs
        outputs[0][0] = np.searchsorted(cdf, u).astype(np.int64, copy=False)

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[1]]

    def pullback(self, inputs, outputs, cotangents):
        return [inputs[0].zeros_like(), inputs[1].zeros_like()]


_searchsorted = SearchSorted()


def searchsorted_reference(cdf, u):
    return pt.cast(pt_searchsorted(cdf, u), 'int64')


def searchsorted(cdf, u):
    from . import custom_ops_enabled
    return _searchsorted(cdf, u) if custom_ops_enabled() else searchsorted_reference(cdf, u)
