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
the rows: the training step gathers about 2,100 rows of 128 floats twice).
"""
import numba
import numpy as np
from pytensor.compile import optdb
from pytensor.graph.basic import Apply
from pytensor.gradient import DisconnectedType
from pytensor.link.c.op import COp
from pytensor.graph.rewriting.basic import in2out, node_rewriter
from pytensor.tensor.math import Sum
import pytensor.tensor as pt
from pytensor.tensor.subtensor import AdvancedIncSubtensor1, AdvancedSubtensor1

from .c_code import alias_or_copy, element_stride, require_dims, source_version
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


class RowGather(COp):
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
        (z,) = outputs
        fail = sub['fail']
        return require_dims(x, 2, fail, 'RowGather x') + require_dims(idx, 1, fail, 'RowGather idx') + \
            '''
        {{
            const npy_intp n = PyArray_DIMS({x})[0], m = PyArray_DIMS({x})[1], k = PyArray_DIMS({idx})[0];
            if (!{z} || PyArray_DIMS({z})[0] != k || PyArray_DIMS({z})[1] != m || !PyArray_IS_C_CONTIGUOUS({z})) {{
                Py_XDECREF({z});
                npy_intp dims[2] = {{k, m}};
                {z} = (PyArrayObject*) PyArray_EMPTY(2, dims, PyArray_TYPE({x}), 0);
                if (!{z}) {{ {fail} }}
            }}
            const npy_intp xs0 = PyArray_STRIDES({x})[0] / sizeof(dtype_{x}), xs1 = PyArray_STRIDES({x})[1] / sizeof(dtype_{x});
            const npy_intp is0 = PyArray_STRIDES({idx})[0] / sizeof(dtype_{idx});
            const dtype_{x}* xd = (const dtype_{x}*) PyArray_DATA({x});
            const dtype_{idx}* id = (const dtype_{idx}*) PyArray_DATA({idx});
            dtype_{z}* zd = (dtype_{z}*) PyArray_DATA({z});
            for (npy_intp i = 0; i < k; ++i) {{
                npy_intp r = (npy_intp) id[i * is0];
                if (r < 0) r += n;
                if (r < 0 || r >= n) {{
                    PyErr_Format(PyExc_IndexError, "index %ld is out of bounds for axis 0 with size %ld", (long) id[i * is0], (long) n);
                    {fail}
                }}
                const dtype_{x}* xr = xd + r * xs0;
                dtype_{z}* zr = zd + i * m;
                if (xs1 == 1 && i + 8 < k) {{  // rows of a large table are cache misses: ask for one 8 rows ahead
                    npy_intp p = (npy_intp) id[(i + 8) * is0];
                    if (p < 0) p += n;
                    if (p >= 0 && p < n)
                        for (npy_intp j = 0; j < m; j += 64 / sizeof(dtype_{x})) __builtin_prefetch(xd + p * xs0 + j);
                }}
                if (xs1 == 1) {{
                    memcpy(zr, xr, m * sizeof(dtype_{x}));
                }} else {{
                    for (npy_intp j = 0; j < m; ++j) zr[j] = xr[j * xs1];
                }}
            }}
        }}
        '''.format(x=x, idx=idx, z=z, fail=fail)

    def c_headers(self, **kwargs):
        return ['<cstring>']

    def c_code_cache_version(self):
        return source_version(RowGather.c_code, require_dims)


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


optdb.register('gpu_ops_row_scatter', in2out(use_row_scatter, use_row_gather, use_row_sum, ignore_newtrees=True), 'row_scatter',
               position=70.7)
