"""Row-sparse adagrad (+momentum, +L2) update of item-indexed weights in one pass per row.

The composed update gathers the optimizer-state rows, computes the step, then scatters the state
and the weight rows back: four passes over rows that are scattered across a large matrix, which
measured as a quarter of a GRU4Rec CPU training step on real data (cache and TLB misses per row).
:class:`SparseAdagrad` touches each used row once and updates weight, accumulator and velocity in
place. Same arithmetic as ``recsys_core.optim.Optimizer`` with adapt='adagrad' (the reference, used
when custom ops are switched off and for the other optimizers).
"""
import math

import numba
import numpy as np
from pytensor.graph.basic import Apply
from pytensor.compile import optdb
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import in2out, node_rewriter


@numba.njit(cache=True, nogil=True)
def _adagrad_rows(W, acc, vel, rows, g, lr, momentum, lmbd, eps):
    n = W.shape[0]
    for r in range(rows.shape[0]):
        w = rows[r]
        if w < 0 or w >= n:
            return r
        for j in range(W.shape[1]):
            gj = g[r, j]
            a = acc[w, j] + gj * gj
            acc[w, j] = a
            delta = lr * (gj / math.sqrt(a + eps) + lmbd * W[w, j])
            if momentum > 0:
                v = momentum * vel[w, j] - delta
                vel[w, j] = v
                W[w, j] += v
            else:
                W[w, j] -= delta
    return -1


def _as_matrix(x):
    return x.reshape(x.shape[0], -1)


class SparseAdagrad(Op):
    """W, acc (and vel with momentum) updated at ``rows`` (unique) with gradient rows ``g``.

    Built out of place (PyTensor only accepts destructive Ops from its rewrites); the rewrite
    :func:`make_sparse_adagrad_inplace` switches it to in place once PyTensor has checked that the
    state variables may be overwritten (they are shared variables updated by this Op).
    """
    __props__ = ('learning_rate', 'momentum', 'lmbd', 'epsilon', 'inplace')

    def __init__(self, learning_rate, momentum=0.0, lmbd=0.0, epsilon=1e-6, inplace=False):
        self.learning_rate, self.momentum = float(learning_rate), float(momentum)
        self.lmbd, self.epsilon, self.inplace = float(lmbd), float(epsilon), inplace
        n_state = 3 if self.momentum > 0 else 2
        if inplace:
            self.destroy_map = {i: [i] for i in range(n_state)}

    def make_node(self, W, acc, *rest):
        state = [W, acc] + (list(rest[:1]) if self.momentum > 0 else [])
        rows, g = rest[-2:]
        return Apply(self, state + [rows, g], [s.type() for s in state])

    def perform(self, node, inputs, outputs):
        n_state = len(outputs)
        state, (rows, g) = list(inputs[:n_state]), inputs[n_state:]
        if not self.inplace:
            state = [x.copy() for x in state]
        W, acc = state[0], state[1]
        vel = state[2] if n_state == 3 else acc
        bad = _adagrad_rows(_as_matrix(W), _as_matrix(acc), _as_matrix(vel), rows.astype(np.int64, copy=False),
                            np.ascontiguousarray(_as_matrix(g)), self.learning_rate, self.momentum, self.lmbd,
                            self.epsilon)
        if bad >= 0:
            raise IndexError('row index {} out of bounds for {} rows'.format(rows[bad], W.shape[0]))
        for out, value in zip(outputs, state):
            out[0] = value

    def infer_shape(self, fgraph, node, shapes):
        return shapes[:len(node.outputs)]


@node_rewriter([SparseAdagrad])
def make_sparse_adagrad_inplace(fgraph, node):
    op = node.op
    if op.inplace:
        return None
    new = SparseAdagrad(op.learning_rate, op.momentum, op.lmbd, op.epsilon, inplace=True)(*node.inputs)
    return new if isinstance(new, list) else [new]


optdb.register('gpu_ops_sparse_adagrad_inplace', in2out(make_sparse_adagrad_inplace, ignore_newtrees=True),
               'row_scatter', 'inplace', position=70.8)
