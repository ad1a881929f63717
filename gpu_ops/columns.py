"""Scores of distinct sampled items, expanded to the sampled columns.

A GRU4Rec training step scores its M inputs against the M targets and n_sample negatives. With
popularity sampling many of those items repeat: on the benchmark data about 1,760 of 2,112 are
distinct at sample_alpha=0.5, 1,270 at 0.75. The step therefore scores each distinct item once (the
score GEMM and both of its gradient GEMMs get that many fewer columns), as rows ``a`` (distinct
items x M), and expands them to the sampled columns: ``out = a[cols].T + offset`` (``offset``
carries the item bias and the logQ correction of each sampled column), :class:`ScoreColumns`.
Its gradient, :class:`ScoreColumnsGrad`, sums the columns of each distinct item into its row and
the rows for the offset, in one pass. The result is the same sum as scoring every sampled column;
only the order of float additions differs.

The scores of the distinct items are rows, not columns, because the expansion then reads and
writes whole rows: as a column gather it ran at 61 us (forward) and 100 us (gradient) for 64 x 2,112
on the development machine, as rows through 8 x 8 in-register transposes at 17 and 26 us
(gpu_ops/c/columns.h). With custom ops off, :func:`score_columns` is the reference composition.
"""
import os

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp

from .c_code import PARALLEL_C, ParallelLoops, require_dims, source_version

C_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'c', 'columns.h')


def _normalized(cols, n):
    """Indices with negatives counted from the end, as numpy does; IndexError when outside."""
    cols = np.asarray(cols, dtype=np.int64)
    norm = np.where(cols < 0, cols + n, cols)
    bad = (norm < 0) | (norm >= n)
    if bad.any():
        raise IndexError('index {} is out of bounds for {} rows'.format(cols[bad][0], n))
    return norm


def _index_c(cols, n, fail, what):
    """C filling ``ci`` (int32, thread-local buffer) with the checked, normalized indices ``cols``."""
    return require_dims(cols, 1, fail, what + ' cols') + '''
            const npy_intp K = PyArray_DIMS({cols})[0], cs0 = PyArray_STRIDES({cols})[0] / sizeof(dtype_{cols});
            const dtype_{cols}* cd = (const dtype_{cols}*) PyArray_DATA({cols});
            static thread_local std::vector<npy_int32> ci_buffer;
            if ((npy_intp) ci_buffer.size() < K) ci_buffer.resize((size_t) K);
            npy_int32* ci = ci_buffer.data();
            if ({n} > 2147483647) {{
                PyErr_SetString(PyExc_ValueError, "{what}: more than 2^31 - 1 rows");
                {fail}
            }}
            for (npy_intp j = 0; j < K; ++j) {{
                npy_intp c = (npy_intp) cd[j * cs0];
                if (c < 0) c += {n};
                if (c < 0 || c >= {n}) {{
                    PyErr_Format(PyExc_IndexError, "{what}: index %ld is out of bounds for %ld rows",
                                 (long) cd[j * cs0], (long) ({n}));
                    {fail}
                }}
                ci[j] = (npy_int32) c;
            }}
    '''.format(cols=cols, n=n, fail=fail, what=what)


def _output_c(z, dims, typenum, fail):
    """C (re)allocating output ``z`` as a C-contiguous array of ``dims`` unless it already is one."""
    same = ' || '.join('PyArray_DIMS({z})[{k}] != {d}'.format(z=z, k=k, d=d) for k, d in enumerate(dims))
    return '''
            if (!{z} || PyArray_NDIM({z}) != {nd} || {same} || !PyArray_IS_C_CONTIGUOUS({z})) {{
                Py_XDECREF({z});
                npy_intp zdims[{nd}] = {{{dims}}};
                {z} = (PyArrayObject*) PyArray_EMPTY({nd}, zdims, {t}, 0);
                if (!{z}) {{ {fail} }}
            }}
    '''.format(z=z, nd=len(dims), same=same, dims=', '.join(dims), t=typenum, fail=fail)


class _ColumnsCOp(ParallelLoops, COp):
    __props__ = ()

    def loop_support_code(self):
        with open(C_SOURCE) as f:
            return '#include <vector>\n' + f.read()

    def c_code_cache_version(self):
        return source_version(type(self).c_code, _index_c, _output_c, require_dims, C_SOURCE, PARALLEL_C)


class ScoreColumns(_ColumnsCOp):
    """out[i, j] = a[cols[j], i] + offset[j]: rows of ``a`` as the columns of ``out``, plus an offset
    per column (negative indices count from the end)."""

    def make_node(self, a, cols, offset):
        a, cols, offset = pt.as_tensor_variable(a), pt.as_tensor_variable(cols), pt.as_tensor_variable(offset)
        if a.ndim != 2 or cols.ndim != 1 or offset.ndim != 1 or not cols.dtype.startswith(('int', 'uint')):
            raise TypeError('ScoreColumns: a matrix, a vector of integer row indices and an offset vector needed')
        if a.dtype not in ('float32', 'float64') or offset.dtype != a.dtype:
            raise TypeError('ScoreColumns: a and offset must share a float dtype, got {} and {}'.format(a.dtype, offset.dtype))
        return Apply(self, [a, cols, offset], [pt.matrix(dtype=a.dtype, shape=(a.type.shape[1], cols.type.shape[0]))])

    def perform(self, node, inputs, outputs):
        a, cols, offset = inputs
        if offset.shape[0] != cols.shape[0]:
            raise ValueError('ScoreColumns: {} indices and {} offsets'.format(cols.shape[0], offset.shape[0]))
        outputs[0][0] = np.ascontiguousarray(np.take(a, _normalized(cols, a.shape[0]), axis=0).T + offset)

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[0][1], shapes[1][0])]

    def connection_pattern(self, node):
        return [[True], [False], [True]]

    def pullback(self, inputs, outputs, cotangents):
        a, cols, offset = inputs
        ga, goffset = ScoreColumnsGrad()(cotangents[0], cols, a.shape[0])
        return [ga, DisconnectedType()(), goffset]

    def c_code(self, node, name, inputs, outputs, sub):
        a, cols, offset = inputs
        (z,) = outputs
        fail = sub['fail']
        return require_dims(a, 2, fail, 'ScoreColumns a') + require_dims(offset, 1, fail, 'ScoreColumns offset') + '''
        {{
            const npy_intp U = PyArray_DIMS({a})[0], M = PyArray_DIMS({a})[1];
            {index}
            if (PyArray_DIMS({offset})[0] != K) {{
                PyErr_Format(PyExc_ValueError, "ScoreColumns: %ld indices and %ld offsets", (long) K, (long) PyArray_DIMS({offset})[0]);
                {fail}
            }}
            {alloc}
            PyArrayObject* ac = PyArray_GETCONTIGUOUS({a});
            PyArrayObject* oc = PyArray_GETCONTIGUOUS({offset});
            if (ac && oc) {{
                sc_forward<dtype_{a}>((const dtype_{a}*) PyArray_DATA(ac), ci, (const dtype_{a}*) PyArray_DATA(oc),
                                      (dtype_{a}*) PyArray_DATA({z}), M, K);
            }}
            Py_XDECREF(ac);
            Py_XDECREF(oc);
            if (!ac || !oc) {{ {fail} }}
        }}
        '''.format(a=a, offset=offset, z=z, fail=fail, index=_index_c(cols, 'U', fail, 'ScoreColumns'),
                   alloc=_output_c(z, ('M', 'K'), 'PyArray_TYPE({})'.format(a), fail))


class ScoreColumnsGrad(_ColumnsCOp):
    """(ga, goffset) from g (M x K): row u of ga (``n`` x M) sums the columns j of g with
    cols[j] == u, goffset[j] sums column j. The gradient of :class:`ScoreColumns`."""

    def make_node(self, g, cols, n):
        g, cols, n = pt.as_tensor_variable(g), pt.as_tensor_variable(cols), pt.as_tensor_variable(n)
        if g.ndim != 2 or cols.ndim != 1 or n.ndim != 0 or not cols.dtype.startswith(('int', 'uint')) \
                or not n.dtype.startswith(('int', 'uint')):
            raise TypeError('ScoreColumnsGrad: a matrix, a vector of integer row indices and an integer row count needed')
        if g.dtype not in ('float32', 'float64'):
            raise TypeError('ScoreColumnsGrad: float matrix needed, got {}'.format(g.dtype))
        n = pt.cast(n, 'int64')
        return Apply(self, [g, cols, n], [pt.matrix(dtype=g.dtype, shape=(None, g.type.shape[0])),
                                          pt.vector(dtype=g.dtype, shape=(g.type.shape[1],))])

    def perform(self, node, inputs, outputs):
        g, cols, n = inputs
        if g.shape[1] != cols.shape[0]:
            raise ValueError('ScoreColumnsGrad: {} columns and {} indices'.format(g.shape[1], cols.shape[0]))
        ga = np.zeros((int(n), g.shape[0]), dtype=g.dtype)
        np.add.at(ga, _normalized(cols, int(n)), g.T)
        outputs[0][0] = ga
        outputs[1][0] = g.sum(axis=0).astype(g.dtype, copy=False)

    def infer_shape(self, fgraph, node, shapes):
        return [(node.inputs[2], shapes[0][0]), (shapes[0][1],)]

    def connection_pattern(self, node):
        return [[True, True], [False, False], [False, False]]

    def pullback(self, inputs, outputs, cotangents):
        g, cols, n = inputs
        cga, cgoffset = [pt.zeros_like(out) if isinstance(cot.type, DisconnectedType) else cot
                         for out, cot in zip(outputs, cotangents)]
        return [ScoreColumns()(cga, cols, cgoffset), DisconnectedType()(), DisconnectedType()()]

    def c_code(self, node, name, inputs, outputs, sub):
        g, cols, n = inputs
        ga, goffset = outputs
        fail = sub['fail']
        return require_dims(g, 2, fail, 'ScoreColumnsGrad g') + '''
        {{
            const npy_intp M = PyArray_DIMS({g})[0], N = (npy_intp) *(dtype_{n}*) PyArray_DATA({n});
            if (N < 0) {{
                PyErr_SetString(PyExc_ValueError, "ScoreColumnsGrad: negative row count");
                {fail}
            }}
            {index}
            if (PyArray_DIMS({g})[1] != K) {{
                PyErr_Format(PyExc_ValueError, "ScoreColumnsGrad: %ld columns and %ld indices", (long) PyArray_DIMS({g})[1], (long) K);
                {fail}
            }}
            {alloc_ga}
            {alloc_goffset}
            PyArrayObject* gc = PyArray_GETCONTIGUOUS({g});
            if (!gc) {{ {fail} }}
            dtype_{g}* gad = (dtype_{g}*) PyArray_DATA({ga});
            dtype_{g}* od = (dtype_{g}*) PyArray_DATA({goffset});
            sc_backward<dtype_{g}>((const dtype_{g}*) PyArray_DATA(gc), ci, gad, od, M, K, N);
            Py_DECREF(gc);
        }}
        '''.format(g=g, n=n, ga=ga, goffset=goffset, fail=fail, index=_index_c(cols, 'N', fail, 'ScoreColumnsGrad'),
                   alloc_ga=_output_c(ga, ('N', 'M'), 'PyArray_TYPE({})'.format(g), fail),
                   alloc_goffset=_output_c(goffset, ('K',), 'PyArray_TYPE({})'.format(g), fail))


_score_columns = ScoreColumns()


def score_columns(a, cols, offset):
    """a[cols].T + offset: the custom Op, or the reference composition with custom ops off."""
    from . import custom_ops_enabled
    if custom_ops_enabled():
        return _score_columns(a, cols, offset)
    return a[cols].T + offset
