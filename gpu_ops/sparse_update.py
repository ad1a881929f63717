"""Row-sparse adagrad (+momentum, +L2) update of item-indexed weights in one pass per row.

The composed update gathers the optimizer-state rows, computes the step, then scatters the state
and the weight rows back: four passes over rows that are scattered across a large matrix, which
measured as a quarter of a GRU4Rec CPU training step on real data (cache and TLB misses per row).
:class:`SparseAdagrad` touches each used row once and updates weight, accumulator and velocity in
place (the rows' gradients summed first: the official PyTorch port's update);
:class:`SparseAdagradOccurrences` does the Theano original's update, one step per occurrence of a
row, in the same pass. Same arithmetic as ``recsys_core.optim.Optimizer`` with adapt='adagrad' (the
reference, used when custom ops are switched off and for the other optimizers).
"""
import math

import numba
import numpy as np
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp
from pytensor.graph.rewriting.basic import node_rewriter

from .c_code import PARALLEL_C, ParallelLoops, alias_or_copy, source_version


@numba.njit(cache=True, nogil=True)
def _adagrad_rows(W, acc, vel, rows, g, lr, momentum, lmbd, eps):
    n = W.shape[0]
    for r in range(rows.shape[0]):  # every index checked first: no half-applied update on bad input
        if rows[r] < 0 or rows[r] >= n:
            return r
    for r in range(rows.shape[0]):
        w = rows[r]
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


class _AdagradState(ParallelLoops, COp):
    """What the two adagrad Ops share: their parameters, their state (W, acc, and vel with momentum)
    updated in place or on copies, and the C that makes the state outputs."""
    __props__ = ('learning_rate', 'momentum', 'lmbd', 'epsilon', 'inplace')

    def __init__(self, learning_rate, momentum=0.0, lmbd=0.0, epsilon=1e-6, inplace=False):
        self.learning_rate, self.momentum = float(learning_rate), float(momentum)
        self.lmbd, self.epsilon, self.inplace = float(lmbd), float(epsilon), inplace
        self.n_state = 3 if self.momentum > 0 else 2
        if inplace:
            self.destroy_map = {i: [i] for i in range(self.n_state)}

    def infer_shape(self, fgraph, node, shapes):
        return shapes[:len(node.outputs)]

    def _state_c(self, inputs, outputs, g, fail):
        """C making the state outputs (aliases or copies, C-contiguous, as many dimensions as the
        gradient ``g``); returns the code and the names of W, acc and vel (acc when no momentum)."""
        code = ''
        for i, o in zip(inputs[:len(outputs)], outputs):
            code += alias_or_copy(i, o, self.inplace, fail)
            code += """
        if (!PyArray_IS_C_CONTIGUOUS({o}) || PyArray_NDIM({o}) != PyArray_NDIM({g})) {{
            PyErr_SetString(PyExc_ValueError, "{op}: state must be C-contiguous and match the gradient's dimensions");
            {fail}
        }}
        """.format(o=o, g=g, fail=fail, op=type(self).__name__)
        return code, outputs[0], outputs[1], outputs[2] if len(outputs) == 3 else outputs[1]


class SparseAdagrad(_AdagradState):
    """W, acc (and vel with momentum) updated at ``rows`` (unique) with gradient rows ``g``.

    Built out of place (PyTensor only accepts destructive Ops from its rewrites); the rewrite
    :func:`make_sparse_adagrad_inplace` switches it to in place once PyTensor has checked that the
    state variables may be overwritten (they are shared variables updated by this Op).
    """

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

    def c_code(self, node, name, inputs, outputs, sub):
        """The same update as ``perform``, in float32 arithmetic, one pass per used row."""
        fail = sub['fail']
        n_state = len(outputs)
        rows, g = inputs[n_state:]
        code, W, acc, vel = self._state_c(inputs, outputs, g, fail)
        return code + '''
        {{
            const int nd = PyArray_NDIM({W});
            const npy_intp n = nd ? PyArray_DIMS({W})[0] : 1;
            npy_intp m = 1;
            for (int d = 1; d < nd; ++d) {{
                m *= PyArray_DIMS({W})[d];
                if (PyArray_DIMS({g})[d] != PyArray_DIMS({W})[d]) {{
                    PyErr_SetString(PyExc_ValueError, "SparseAdagrad: gradient rows and weight rows differ in shape");
                    {fail}
                }}
            }}
            const npy_intp k = PyArray_DIMS({rows})[0];
            if (nd == 0 || PyArray_DIMS({g})[0] != k) {{
                PyErr_SetString(PyExc_ValueError, "SparseAdagrad: one gradient row per index needed");
                {fail}
            }}
            PyArrayObject* gc = PyArray_GETCONTIGUOUS({g});
            if (!gc) {{ {fail} }}
            const dtype_{g}* gd = (const dtype_{g}*) PyArray_DATA(gc);
            const dtype_{rows}* rd = (const dtype_{rows}*) PyArray_DATA({rows});
            const npy_intp rs = PyArray_STRIDES({rows})[0] / sizeof(dtype_{rows});
            dtype_{W}* Wd = (dtype_{W}*) PyArray_DATA({W});
            dtype_{W}* Ad = (dtype_{W}*) PyArray_DATA({acc});
            dtype_{W}* Vd = (dtype_{W}*) PyArray_DATA({vel});
            const dtype_{W} lr = {lr}, mom = {mom}, lmbd = {lmbd}, eps = {eps};
            // Check every index before touching anything: no half-applied update on bad input.
            npy_intp bad = -1;
            for (npy_intp r = 0; r < k; ++r) {{
                const npy_intp w = (npy_intp) rd[r * rs];
                if (w < 0 || w >= n) {{ bad = w; break; }}
            }}
            if (bad >= 0) {{
                Py_DECREF(gc);
                PyErr_Format(PyExc_IndexError, "row index %ld out of bounds for %ld rows", (long) bad, (long) n);
                {fail}
            }}
            // rows are unique: threads update disjoint rows
            const int nt = rs_threads((double) k * m, 16384.0);
            #pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
            for (npy_intp r = 0; r < k; ++r) {{
                const npy_intp w = (npy_intp) rd[r * rs];
                if (r + 8 < k) {{  // scattered rows of large tables miss the cache: ask for one 8 rows ahead
                    const npy_intp p = (npy_intp) rd[(r + 8) * rs];
                    for (npy_intp j = 0; j < m; j += 64 / sizeof(dtype_{W})) {{
                        __builtin_prefetch(Wd + p * m + j, 1);
                        __builtin_prefetch(Ad + p * m + j, 1);
                    }}
                }}
                dtype_{W}* __restrict__ Wr = Wd + w * m;
                dtype_{W}* __restrict__ Ar = Ad + w * m;
                const dtype_{g}* __restrict__ gr = gd + r * m;
                if ({momentum}) {{
                    dtype_{W}* __restrict__ Vr = Vd + w * m;
                    for (npy_intp j = 0; j < m; ++j) {{
                        const dtype_{W} a = Ar[j] + gr[j] * gr[j];
                        Ar[j] = a;
                        const dtype_{W} v = mom * Vr[j] - lr * (gr[j] / std::sqrt(a + eps) + lmbd * Wr[j]);
                        Vr[j] = v;
                        Wr[j] += v;
                    }}
                }} else {{
                    for (npy_intp j = 0; j < m; ++j) {{
                        const dtype_{W} a = Ar[j] + gr[j] * gr[j];
                        Ar[j] = a;
                        Wr[j] -= lr * (gr[j] / std::sqrt(a + eps) + lmbd * Wr[j]);
                    }}
                }}
            }}
            Py_DECREF(gc);
        }}
        '''.format(W=W, acc=acc, vel=vel, g=g, rows=rows, fail=fail, lr=repr(self.learning_rate),
                   mom=repr(self.momentum), lmbd=repr(self.lmbd), eps=repr(self.epsilon),
                   momentum=int(self.momentum > 0))

    def c_headers(self, **kwargs):
        return ['<cmath>']

    def c_code_cache_version(self):
        return source_version(SparseAdagrad.c_code, _AdagradState._state_c, alias_or_copy, PARALLEL_C)


@numba.njit(cache=True, nogil=True)
def _adagrad_occurrences(W, acc, vel, rows, inv, g, lr, momentum, lmbd, eps):
    n, k = W.shape[0], rows.shape[0]
    for r in range(k):  # every index checked first: no half-applied update on bad input
        if rows[r] < 0 or rows[r] >= n:
            return r
    for o in range(inv.shape[0]):
        if inv[o] < 0 or inv[o] >= k:
            return k + o
    old_w, old_a, old_v = W[rows].copy(), acc[rows].copy(), vel[rows].copy()
    for o in range(inv.shape[0]):  # occurrences in order: the last one's velocity survives
        s = inv[o]
        w = rows[s]
        for j in range(W.shape[1]):
            gj = g[o, j]
            a = old_a[s, j] + gj * gj
            acc[w, j] += gj * gj
            delta = lr * (gj / math.sqrt(a + eps) + lmbd * old_w[s, j])
            if momentum > 0:
                v = momentum * old_v[s, j] - delta
                vel[w, j] = v
                W[w, j] += v
            else:
                W[w, j] -= delta
    return -1


class SparseAdagradOccurrences(_AdagradState):
    """The Theano original's row-sparse adagrad (+momentum, +L2): one update per occurrence of a row.

    Inputs: W, acc (and vel with momentum), the distinct ``rows``, ``inv`` (for every occurrence, its
    position in ``rows``) and the gradient rows, one per occurrence, as one matrix or as two blocks
    whose rows follow each other (the input rows' and the output rows' gradients of a shared
    embedding, without joining them first). Every occurrence's step is computed from the state before
    the update: a = acc + g_o^2, d = lr (g_o / sqrt(a + eps) + lmbd W), v = momentum vel - d; the weight
    row gets every occurrence's v (or -d) added in order, acc every g_o^2, and vel keeps the last
    occurrence's v. That is what the original's graph computes: its ``set_subtensor(acc[i], acc[i] +
    g^2)`` is rewritten by Theano (and PyTensor) into ``inc_subtensor(acc[i], g^2)``
    (local_set_to_inc_subtensor), its velocity ``set_subtensor`` keeps the last of repeated writes (on
    the CPU) and its weight ``inc_subtensor`` adds them all.
    Reference: ``recsys_core.optim.Optimizer``'s per-occurrence composition.
    """
    def make_node(self, *inputs):
        state, (rows, inv), blocks = list(inputs[:self.n_state]), inputs[self.n_state:self.n_state + 2], \
            list(inputs[self.n_state + 2:])
        if len(blocks) not in (1, 2):
            raise TypeError('SparseAdagradOccurrences takes the gradient rows as one or two blocks')
        return Apply(self, state + [rows, inv] + blocks, [x.type() for x in state])

    def perform(self, node, inputs, outputs):
        n_state = len(outputs)
        state, (rows, inv), blocks = list(inputs[:n_state]), inputs[n_state:n_state + 2], inputs[n_state + 2:]
        if not self.inplace:
            state = [x.copy() for x in state]
        W, acc = state[0], state[1]
        vel = state[2] if n_state == 3 else acc
        g = np.concatenate([_as_matrix(b) for b in blocks]) if len(blocks) > 1 else _as_matrix(blocks[0])
        if g.shape[0] != len(inv):
            raise ValueError('SparseAdagradOccurrences: one gradient row per occurrence needed')
        bad = _adagrad_occurrences(_as_matrix(W), _as_matrix(acc), _as_matrix(vel), rows.astype(np.int64, copy=False),
                                   inv.astype(np.int64, copy=False), np.ascontiguousarray(g),
                                   self.learning_rate, self.momentum, self.lmbd, self.epsilon)
        if bad >= len(rows):
            raise IndexError('occurrence {} points outside the {} rows'.format(bad - len(rows), len(rows)))
        if bad >= 0:
            raise IndexError('row index {} out of bounds for {} rows'.format(rows[bad], W.shape[0]))
        for out, value in zip(outputs, state):
            out[0] = value

    def c_code(self, node, name, inputs, outputs, sub):
        """The same update as ``perform``: occurrences grouped by row (a counting sort that keeps their
        order), rows in parallel; a row used once is updated in place like :class:`SparseAdagrad`, a
        repeated row from a copy of its state before the update."""
        fail = sub['fail']
        n_state = len(outputs)
        rows, inv = inputs[n_state:n_state + 2]
        g1 = inputs[n_state + 2]
        g2 = inputs[n_state + 3] if len(inputs) > n_state + 3 else None
        code, W, acc, vel = self._state_c(inputs, outputs, g1, fail)
        blocks = [g1] + ([g2] if g2 else [])
        check_blocks = ''.join("""
            for (int d = 1; d < nd; ++d) {{
                if (PyArray_NDIM({b}) != nd || PyArray_DIMS({b})[d] != PyArray_DIMS({W})[d]) {{
                    PyErr_SetString(PyExc_ValueError, "SparseAdagradOccurrences: gradient rows and weight rows differ in shape");
                    {fail}
                }}
            }}
            n_grad += PyArray_DIMS({b})[0];
            """.format(b=b, W=W, fail=fail) for b in blocks)
        second = """
            PyArrayObject* gc2 = PyArray_GETCONTIGUOUS({g2});
            if (!gc2) {{ Py_DECREF(gc1); {fail} }}
            const dtype_{g1}* g2d = (const dtype_{g1}*) PyArray_DATA(gc2);
            """.format(g1=g1, g2=g2, fail=fail) if g2 else """
            PyArrayObject* gc2 = NULL;
            const dtype_{g1}* g2d = NULL;
            """.format(g1=g1)
        return code + """
        {{
            const int nd = PyArray_NDIM({W});
            npy_intp m = 1;
            for (int d = 1; d < nd; ++d) m *= PyArray_DIMS({W})[d];
            const npy_intp n = nd ? PyArray_DIMS({W})[0] : 1;
            npy_intp n_grad = 0;
            {check_blocks}
            const npy_intp k = PyArray_DIMS({rows})[0], no = PyArray_DIMS({inv})[0];
            if (nd == 0 || n_grad != no) {{
                PyErr_SetString(PyExc_ValueError, "SparseAdagradOccurrences: one gradient row per occurrence needed");
                {fail}
            }}
            const dtype_{rows}* rd = (const dtype_{rows}*) PyArray_DATA({rows});
            const npy_intp rs = PyArray_STRIDES({rows})[0] / sizeof(dtype_{rows});
            const dtype_{inv}* id = (const dtype_{inv}*) PyArray_DATA({inv});
            const npy_intp is = PyArray_STRIDES({inv})[0] / sizeof(dtype_{inv});
            for (npy_intp r = 0; r < k; ++r) {{  // every index checked before anything is touched
                const npy_intp w = (npy_intp) rd[r * rs];
                if (w < 0 || w >= n) {{
                    PyErr_Format(PyExc_IndexError, "row index %ld out of bounds for %ld rows", (long) w, (long) n);
                    {fail}
                }}
            }}
            for (npy_intp o = 0; o < no; ++o) {{
                const npy_intp s = (npy_intp) id[o * is];
                if (s < 0 || s >= k) {{
                    PyErr_Format(PyExc_IndexError, "occurrence %ld points outside the %ld rows", (long) o, (long) k);
                    {fail}
                }}
            }}
            PyArrayObject* gc1 = PyArray_GETCONTIGUOUS({g1});
            if (!gc1) {{ {fail} }}
            const dtype_{g1}* g1d = (const dtype_{g1}*) PyArray_DATA(gc1);
            const npy_intp n1 = PyArray_DIMS({g1})[0];
            {second}
            std::vector<npy_intp> start(k + 1, 0), order(no);
            for (npy_intp o = 0; o < no; ++o) start[(npy_intp) id[o * is] + 1] += 1;
            for (npy_intp s = 0; s < k; ++s) start[s + 1] += start[s];
            {{
                std::vector<npy_intp> fill(start.begin(), start.end() - 1);
                for (npy_intp o = 0; o < no; ++o) order[fill[(npy_intp) id[o * is]]++] = o;
            }}
            dtype_{W}* Wd = (dtype_{W}*) PyArray_DATA({W});
            dtype_{W}* Ad = (dtype_{W}*) PyArray_DATA({acc});
            dtype_{W}* Vd = (dtype_{W}*) PyArray_DATA({vel});
            const dtype_{W} lr = {lr}, mom = {mom}, lmbd = {lmbd}, eps = {eps};
            const int nt = rs_threads((double) no * m, 16384.0);
            #pragma omp parallel num_threads(nt) if (nt > 1)
            {{
                std::vector<dtype_{W}> old(3 * m);  // a repeated row's state before the update
                #pragma omp for schedule(static)
                for (npy_intp s = 0; s < k; ++s) {{
                    const npy_intp w = (npy_intp) rd[s * rs];
                    if (s + 8 < k) {{  // scattered rows of large tables miss the cache, and occurrence
                        const npy_intp p = (npy_intp) rd[(s + 8) * rs];  // order scatters the gradient rows:
                        const npy_intp q = order[start[s + 8]];  // ask for the row 8 ahead and its first gradient
                        const dtype_{g1}* gq = q < n1 ? g1d + q * m : g2d + (q - n1) * m;
                        for (npy_intp j = 0; j < m; j += 64 / sizeof(dtype_{W})) {{
                            __builtin_prefetch(Wd + p * m + j, 1);
                            __builtin_prefetch(Ad + p * m + j, 1);
                            if ({momentum}) __builtin_prefetch(Vd + p * m + j, 1);
                            __builtin_prefetch(gq + j, 0);
                        }}
                    }}
                    dtype_{W}* __restrict__ Wr = Wd + w * m;
                    dtype_{W}* __restrict__ Ar = Ad + w * m;
                    dtype_{W}* __restrict__ Vr = Vd + w * m;
                    if (start[s + 1] - start[s] == 1) {{  // used once (most rows): update in place
                        const npy_intp o = order[start[s]];
                        const dtype_{g1}* __restrict__ gr = o < n1 ? g1d + o * m : g2d + (o - n1) * m;
                        for (npy_intp j = 0; j < m; ++j) {{
                            const dtype_{W} a = Ar[j] + gr[j] * gr[j];
                            Ar[j] = a;
                            const dtype_{W} d = lr * (gr[j] / std::sqrt(a + eps) + lmbd * Wr[j]);
                            if ({momentum}) {{
                                const dtype_{W} v = mom * Vr[j] - d;
                                Vr[j] = v;
                                Wr[j] += v;
                            }} else {{
                                Wr[j] -= d;
                            }}
                        }}
                        continue;
                    }}
                    dtype_{W}* __restrict__ W0 = old.data();
                    dtype_{W}* __restrict__ A0 = W0 + m;
                    dtype_{W}* __restrict__ V0 = A0 + m;
                    for (npy_intp j = 0; j < m; ++j) {{
                        if ({l2}) W0[j] = Wr[j];
                        A0[j] = Ar[j];
                        if ({momentum}) V0[j] = Vr[j];
                    }}
                    for (npy_intp t = start[s]; t < start[s + 1]; ++t) {{
                        const npy_intp o = order[t];
                        const dtype_{g1}* __restrict__ gr = o < n1 ? g1d + o * m : g2d + (o - n1) * m;
                        for (npy_intp j = 0; j < m; ++j) {{
                            const dtype_{W} a = A0[j] + gr[j] * gr[j];
                            Ar[j] += gr[j] * gr[j];
                            const dtype_{W} d = lr * (gr[j] / std::sqrt(a + eps) + ({l2} ? lmbd * W0[j] : (dtype_{W}) 0));
                            if ({momentum}) {{
                                const dtype_{W} v = mom * V0[j] - d;
                                Vr[j] = v;
                                Wr[j] += v;
                            }} else {{
                                Wr[j] -= d;
                            }}
                        }}
                    }}
                }}
            }}
            Py_DECREF(gc1);
            Py_XDECREF(gc2);
        }}
        """.format(W=W, acc=acc, vel=vel, g1=g1, rows=rows, inv=inv, fail=fail, lr=repr(self.learning_rate),
                   mom=repr(self.momentum), lmbd=repr(self.lmbd), eps=repr(self.epsilon), second=second,
                   check_blocks=check_blocks, momentum=int(self.momentum > 0), l2=int(self.lmbd > 0))

    def c_headers(self, **kwargs):
        return ['<cmath>', '<vector>']

    def c_code_cache_version(self):
        return source_version(SparseAdagradOccurrences.c_code, _AdagradState._state_c, alias_or_copy, PARALLEL_C)


@node_rewriter([SparseAdagrad, SparseAdagradOccurrences])
def make_sparse_adagrad_inplace(fgraph, node):
    """Both adagrad Ops in place, once PyTensor has checked their state may be overwritten."""
    op = node.op
    if op.inplace:
        return None
    new = type(op)(op.learning_rate, op.momentum, op.lmbd, op.epsilon, inplace=True)(*node.inputs)
    return new if isinstance(new, list) else [new]
