"""Row gather and scatter for row-sparse steps, and rewrites that put these fast row Ops in graphs.

``out[idx[i], :] += y[i, :]`` (or ``=``):

PyTensor's C backend runs matrix ``inc_subtensor``/``set_subtensor`` with integer row indices in
Python (numpy ``add.at``), which measured as half the GRU4Rec training step. :class:`RowScatter`
does the same with a compiled loop; the rewrite :func:`use_row_scatter`, registered for the
project's C-backend mode, swaps it in for every matrix AdvancedIncSubtensor1 after the inplace
pass (keeping inplace-ness), and swaps :class:`~gpu_ops.reductions.RowSum` in for matrix sums over
rows. Other shapes keep PyTensor's ops.

``out[i, :] = x[idx[i], :]``: :class:`RowGather` replaces matrix AdvancedSubtensor1, which goes
through numpy's ``take`` with bounds checking into a fresh buffer (about 3x the cost of copying
the rows). ``x[rows][idx]``, where only such regathers read ``x[rows]``, becomes
:class:`RowGatherVia` ``x[rows[idx]]`` (:func:`gather_through`): the input rows of a training step
with a separate embedding or one-hot input are then gathered once, from the table, instead of twice.
(The sampled item rows are not regathered: the step scores the distinct rows, gpu_ops.columns.)
"""
import numba
import numpy as np
from pytensor.graph.basic import Apply
from pytensor.gradient import DisconnectedType
from pytensor.link.c.op import COp
from pytensor.graph.rewriting.basic import node_rewriter
from pytensor.tensor.math import Sum
import pytensor.tensor as pt
from pytensor.tensor.subtensor import AdvancedIncSubtensor1, AdvancedSubtensor1

from .c_code import PARALLEL_C, ParallelLoops, alias_or_copy, element_stride, require_dims, source_version
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


class RowScatter(COp):
    """out = x with rows ``idx`` incremented (or set) by the rows of y; optionally in place.

    C code under the C backend; ``perform`` (numba) under the other linkers.
    """
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

    def c_code(self, node, name, inputs, outputs, sub):
        x, y, idx = inputs
        (z,) = outputs
        fail = sub['fail']
        op = '=' if self.set_instead_of_inc else '+='
        return require_dims(x, 2, fail, 'RowScatter x') + require_dims(y, 2, fail, 'RowScatter y') \
            + alias_or_copy(x, z, self.inplace, fail) + '''
        {{
            const npy_intp n = PyArray_DIMS({z})[0], m = PyArray_DIMS({z})[1], k = PyArray_DIMS({idx})[0];
            if ((PyArray_DIMS({y})[0] != k && PyArray_DIMS({y})[0] != 1) || (PyArray_DIMS({y})[1] != m && PyArray_DIMS({y})[1] != 1)) {{
                PyErr_Format(PyExc_ValueError, "RowScatter: %ld index rows and a (%ld, %ld) matrix of rows for width %ld",
                             (long)k, (long)PyArray_DIMS({y})[0], (long)PyArray_DIMS({y})[1], (long)m);
                {fail}
            }}
            const npy_intp zs0 = PyArray_STRIDES({z})[0] / sizeof(dtype_{z}), zs1 = PyArray_STRIDES({z})[1] / sizeof(dtype_{z});
            const npy_intp ys0 = {ys0}, ys1 = {ys1};
            const npy_intp is0 = PyArray_STRIDES({idx})[0] / sizeof(dtype_{idx});
            dtype_{z}* zd = (dtype_{z}*) PyArray_DATA({z});
            const dtype_{y}* yd = (const dtype_{y}*) PyArray_DATA({y});
            const dtype_{idx}* id = (const dtype_{idx}*) PyArray_DATA({idx});
            for (npy_intp i = 0; i < k; ++i) {{
                npy_intp r = (npy_intp) id[i * is0];
                if (r < 0) r += n;
                if (r < 0 || r >= n) {{
                    PyErr_Format(PyExc_IndexError, "row index %ld out of bounds for %ld rows", (long) id[i * is0], (long) n);
                    {fail}
                }}
                dtype_{z}* __restrict__ zr = zd + r * zs0;
                const dtype_{y}* __restrict__ yr = yd + i * ys0;
                if (zs1 == 1 && ys1 == 1) {{
                    for (npy_intp j = 0; j < m; ++j) zr[j] {op} yr[j];
                }} else {{
                    for (npy_intp j = 0; j < m; ++j) zr[j * zs1] {op} yr[j * ys1];
                }}
            }}
        }}
        '''.format(z=z, y=y, idx=idx, fail=fail, op=op, ys0=element_stride(y, 0), ys1=element_stride(y, 1))

    def c_code_cache_version(self):
        return source_version(RowScatter.c_code, alias_or_copy, element_stride, require_dims)


class RowGather(ParallelLoops, COp):
    """out = x[idx] for a matrix x and a vector of row indices (negative ones count from the end).

    C code under the C backend (a row copy per index, reusing the previous output buffer);
    ``perform`` (numpy) under the other linkers.
    """
    __props__ = ()

    def make_node(self, x, idx):
        x, idx = pt.as_tensor_variable(x), pt.as_tensor_variable(idx)
        if x.ndim != 2 or idx.ndim != 1 or not idx.dtype.startswith(('int', 'uint')):
            raise TypeError('RowGather: a matrix and a vector of integer row indices needed')
        return Apply(self, [x, idx], [pt.matrix(dtype=x.dtype, shape=(idx.type.shape[0], x.type.shape[1]))])

    def perform(self, node, inputs, outputs):
        x, idx = inputs
        outputs[0][0] = np.take(x, idx, axis=0, mode='raise')

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[1][0], shapes[0][1])]

    def connection_pattern(self, node):
        return [[True], [False]]

    def pullback(self, inputs, outputs, cotangents):
        x, idx = inputs
        return [pt.zeros_like(x)[idx].inc(cotangents[0]), DisconnectedType()()]

    def c_code(self, node, name, inputs, outputs, sub):
        x, idx = inputs
        return _gather_c(x, None, idx, outputs[0], sub['fail'])

    def c_headers(self, **kwargs):
        return ['<cstring>']

    def c_code_cache_version(self):
        return source_version(_gather_c, require_dims, PARALLEL_C)


class RowGatherVia(RowGather):
    """out = x[rows[idx]]: a gather of gathered rows, read straight from the table.

    The training graph gathers the unique input rows a step touches and then regathers the per-example
    rows from that copy (so that gradients sum per unique row). When nothing else reads the copy,
    :func:`gather_through` makes the regathers read the table and the copy disappears.
    Both index levels follow numpy's rules (negative indices count from the end).
    """

    def make_node(self, x, rows, idx):
        x, rows, idx = pt.as_tensor_variable(x), pt.as_tensor_variable(rows), pt.as_tensor_variable(idx)
        if x.ndim != 2 or rows.ndim != 1 or idx.ndim != 1 or not (
                rows.dtype.startswith(('int', 'uint')) and idx.dtype.startswith(('int', 'uint'))):
            raise TypeError('RowGatherVia: a matrix and two vectors of integer indices needed')
        return Apply(self, [x, rows, idx], [pt.matrix(dtype=x.dtype, shape=(idx.type.shape[0], x.type.shape[1]))])

    def perform(self, node, inputs, outputs):
        x, rows, idx = inputs
        outputs[0][0] = np.take(x, np.take(rows, idx, mode='raise'), axis=0, mode='raise')

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[2][0], shapes[0][1])]

    def connection_pattern(self, node):
        return [[True], [False], [False]]

    def pullback(self, inputs, outputs, cotangents):
        x, rows, idx = inputs
        return [pt.zeros_like(x)[rows[idx]].inc(cotangents[0]), DisconnectedType()(), DisconnectedType()()]

    def c_code(self, node, name, inputs, outputs, sub):
        x, rows, idx = inputs
        return _gather_c(x, rows, idx, outputs[0], sub['fail'])


def _gather_c(x, rows, idx, z, fail):
    """C for z = x[idx], or z = x[rows[idx]] with ``rows`` (inner indices checked before any row is
    copied, table rows as they are copied)."""
    if rows is None:
        row_of = '(npy_intp) id[({i}) * is0]'
        checks = ''
    else:
        row_of = '(npy_intp) rd[inner((npy_intp) id[({i}) * is0]) * rs0]'
        checks = require_dims(rows, 1, fail, 'RowGatherVia rows') + '''
            const npy_intp nr = PyArray_DIMS({rows})[0], rs0 = PyArray_STRIDES({rows})[0] / sizeof(dtype_{rows});
            const dtype_{rows}* rd = (const dtype_{rows}*) PyArray_DATA({rows});
            auto inner = [nr](npy_intp j) {{ return j < 0 ? j + nr : j; }};
            for (npy_intp i = 0; i < k; ++i) {{
                const npy_intp j = inner((npy_intp) id[i * is0]);
                if (j < 0 || j >= nr) {{
                    PyErr_Format(PyExc_IndexError, "RowGatherVia: inner index %ld is out of bounds for %ld rows", (long) id[i * is0], (long) nr);
                    {fail}
                }}
            }}
        '''.format(rows=rows, fail=fail)
    return require_dims(x, 2, fail, 'RowGather x') + require_dims(idx, 1, fail, 'RowGather idx') + '''
        {{
            const npy_intp n = PyArray_DIMS({x})[0], m = PyArray_DIMS({x})[1], k = PyArray_DIMS({idx})[0];
            const npy_intp is0 = PyArray_STRIDES({idx})[0] / sizeof(dtype_{idx});
            const dtype_{idx}* id = (const dtype_{idx}*) PyArray_DATA({idx});
            {checks}
            if (!{z} || PyArray_DIMS({z})[0] != k || PyArray_DIMS({z})[1] != m || !PyArray_IS_C_CONTIGUOUS({z})) {{
                Py_XDECREF({z});
                npy_intp dims[2] = {{k, m}};
                {z} = (PyArrayObject*) PyArray_EMPTY(2, dims, PyArray_TYPE({x}), 0);
                if (!{z}) {{ {fail} }}
            }}
            const npy_intp xs0 = PyArray_STRIDES({x})[0] / sizeof(dtype_{x}), xs1 = PyArray_STRIDES({x})[1] / sizeof(dtype_{x});
            const dtype_{x}* xd = (const dtype_{x}*) PyArray_DATA({x});
            dtype_{z}* zd = (dtype_{z}*) PyArray_DATA({z});
            for (npy_intp i = 0; i < k; ++i) {{  // every table row checked before any is copied
                const npy_intp given = {row_i};
                if (given < -n || given >= n) {{
                    PyErr_Format(PyExc_IndexError, "index %ld is out of bounds for axis 0 with size %ld", (long) given, (long) n);
                    {fail}
                }}
            }}
            const int nt = rs_threads((double) k * m, 16384.0);
            #pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
            for (npy_intp i = 0; i < k; ++i) {{
                npy_intp r = {row_i};
                if (r < 0) r += n;
                const dtype_{x}* xr = xd + r * xs0;
                dtype_{z}* zr = zd + i * m;
                if (xs1 == 1 && i + 8 < k) {{  // rows of a large table are cache misses: ask for one 8 rows ahead
                    npy_intp p = {row_ahead};
                    if (p < 0) p += n;
                    for (npy_intp j = 0; j < m; j += 64 / sizeof(dtype_{x})) __builtin_prefetch(xd + p * xs0 + j);
                }}
                if (xs1 == 1) {{
                    memcpy(zr, xr, m * sizeof(dtype_{x}));
                }} else {{
                    for (npy_intp j = 0; j < m; ++j) zr[j] = xr[j * xs1];
                }}
            }}
        }}
        '''.format(x=x, idx=idx, z=z, fail=fail, checks=checks,
                  row_i=row_of.format(i='i'), row_ahead=row_of.format(i='i + 8'))


@node_rewriter([AdvancedSubtensor1])
def use_row_gather(fgraph, node):
    x, idx = node.inputs
    if x.ndim != 2 or idx.ndim != 1:
        return None
    return [RowGather()(x, idx)]


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


@node_rewriter([RowGather])
def gather_through(fgraph, node):
    """RowGather(RowGather(table, rows), idx) -> RowGatherVia(table, rows, idx), when every reader of
    the inner gather is such a regather (the inner copy then leaves the graph)."""
    if type(node.op) is not RowGather:
        return None
    inner, idx = node.inputs
    if inner.owner is None or type(inner.owner.op) is not RowGather:
        return None
    if not all(isinstance(client, Apply) and type(client.op) is RowGather and client.inputs[0] is inner
               for client, _ in fgraph.clients[inner]):
        return None
    table, rows = inner.owner.inputs
    return [RowGatherVia()(table, rows, idx)]
