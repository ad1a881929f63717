"""Row scatter for row-sparse gradients and updates, and rewrites that put fast row Ops in graphs.

``out[idx[i], :] += y[i, :]`` (or ``=``):

PyTensor's C backend runs matrix ``inc_subtensor``/``set_subtensor`` with integer row indices in
Python (numpy ``add.at``), which measured as half the GRU4Rec training step. :class:`RowScatter`
does the same with a compiled loop; the rewrite :func:`use_row_scatter`, registered for the
project's C-backend mode, swaps it in for every matrix AdvancedIncSubtensor1 after the inplace
pass (keeping inplace-ness), and swaps :class:`~gpu_ops.reductions.RowSum` in for matrix sums over
rows. Other shapes keep PyTensor's ops.
"""
import numba
import numpy as np
from pytensor.compile import optdb
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.tensor.math import Sum
from pytensor.tensor.subtensor import AdvancedIncSubtensor1

from .reductions import RowSum


@numba.njit(cache=True, nogil=True)
def _scatter(out, y, idx, set_mode):
    n = out.shape[0]
    for i in range(idx.shape[0]):
        r = idx[i]
        if r < 0:
            r += n
        if r < 0 or r >= n:
            return i
        if set_mode:
            out[r, :] = y[i, :]
        else:
            out[r, :] += y[i, :]
    return -1


class RowScatter(Op):
    """out = x with rows ``idx`` incremented (or set) by the rows of y; optionally in place."""
    __props__ = ('set_instead_of_inc', 'inplace')

    def __init__(self, set_instead_of_inc=False, inplace=False):
        self.set_instead_of_inc, self.inplace = set_instead_of_inc, inplace
        if inplace:
            self.destroy_map = {0: [0]}

    def make_node(self, x, y, idx):
        return Apply(self, [x, y, idx], [x.type()])

    def perform(self, node, inputs, outputs):
        x, y, idx = inputs
        out = x if self.inplace else x.copy()
        y = np.asarray(y, dtype=out.dtype)
        if y.ndim != 2 or y.shape != (idx.shape[0], out.shape[1]):
            y = np.broadcast_to(y, (idx.shape[0], out.shape[1]))
        bad = _scatter(out, np.ascontiguousarray(y), np.ascontiguousarray(idx).astype(np.int64, copy=False),
                       self.set_instead_of_inc)
        if bad >= 0:
            raise IndexError('row index {} out of bounds for {} rows'.format(idx[bad], out.shape[0]))
        outputs[0][0] = out

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]


@node_rewriter([AdvancedIncSubtensor1])
def use_row_scatter(fgraph, node):
    x, y, idx = node.inputs
    if x.ndim != 2 or y.ndim != 2 or x.dtype != y.dtype:
        return None
    return [RowScatter(node.op.set_instead_of_inc, node.op.inplace)(x, y, idx)]


@node_rewriter([Sum])
def use_row_sum(fgraph, node):
    """Matrix sums over axis 1 (e.g. from gradients of row-broadcast divisions) -> RowSum."""
    (x,) = node.inputs
    if x.ndim != 2 or tuple(node.op.axis or ()) != (1,) or node.outputs[0].dtype != x.dtype \
            or not x.dtype.startswith('float'):
        return None
    return [RowSum()(x)]


optdb.register('gpu_ops_row_scatter', in2out(use_row_scatter, use_row_sum, ignore_newtrees=True), 'row_scatter',
               position=70.7)
