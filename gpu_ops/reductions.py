"""Row reductions of score matrices: sum and a max used only as a stabilising shift.

PyTensor's C reductions along rows run scalar loops (about 20x slower than numpy on a
64 x 2112 score matrix, the GRU4Rec training shape); these Ops run vectorised C loops under the C
backend (one row at a time, rows on OpenMP threads) and numba-compiled loops under the others.
``row_max`` has a zero gradient on purpose: it is only subtracted before exp (softmax, log-sum-exp,
the negative-only softmax of bpr-max), where the shift cancels exactly, so its gradient is zero in
exact arithmetic and computing it would be wasted work.
"""
import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp

from .c_code import PARALLEL_C, ParallelLoops, source_version


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


class _RowReduce(ParallelLoops, COp):
    __props__ = ()

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim != 2:
            raise TypeError('{} needs a matrix'.format(type(self).__name__))
        return Apply(self, [x], [pt.TensorType(x.dtype, shape=(x.type.shape[0],))()])

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[0][0],)]

    def c_code(self, node, name, inputs, outputs, sub):
        (x,), (y,) = inputs, outputs
        return '''
        {{
            PyArrayObject* xc = PyArray_GETCONTIGUOUS({x});
            if (!xc) {{ {fail} }}
            const npy_intp M = PyArray_DIMS(xc)[0], K = PyArray_DIMS(xc)[1];
            if ({empty_check} && K == 0 && M > 0) {{
                Py_DECREF(xc);
                PyErr_SetString(PyExc_ValueError, "row_max of an empty row");
                {fail}
            }}
            if (!({y} && PyArray_DIMS({y})[0] == M && PyArray_ISCARRAY({y}))) {{
                Py_XDECREF({y});
                {y} = (PyArrayObject*) PyArray_EMPTY(1, PyArray_DIMS(xc), PyArray_TYPE(xc), 0);
                if (!{y}) {{ Py_DECREF(xc); {fail} }}
            }}
            const dtype_{x}* X = (const dtype_{x}*) PyArray_DATA(xc);
            dtype_{y}* Y = (dtype_{y}*) PyArray_DATA({y});
            const int nt = rs_threads((double) M * (double) K, 65536.0);
            #pragma omp parallel for num_threads(nt) schedule(static)
            for (npy_intp i = 0; i < M; ++i) {{
                const dtype_{x}* __restrict__ r = X + i * K;
                {acc_type} acc = {init};
                #pragma omp simd reduction({simd}:acc)
                for (npy_intp j = {start}; j < K; ++j) acc = {step};
                Y[i] = (dtype_{y}) acc;
            }}
            Py_DECREF(xc);
        }}
        '''.format(x=x, y=y, fail=sub['fail'], **self._c_reduction(x))

    def c_headers(self, **kwargs):
        return ['<cmath>']

    def c_compile_args(self, **kwargs):
        return super().c_compile_args(**kwargs) + ['-fopenmp-simd']  # the loops' ``omp simd`` reductions

    def c_code_cache_version(self):
        return source_version(_RowReduce.c_code, type(self)._c_reduction, PARALLEL_C)


class RowSum(_RowReduce):
    """y[i] = sum_j x[i, j] (float64 accumulation)."""

    def _c_reduction(self, x):
        """The C accumulator type, start value, first column and step (acc, r[j])."""
        return dict(acc_type='double', init='0', start=0, step='acc + (double) r[j]', empty_check=0, simd='+')

    def perform(self, node, inputs, outputs):
        outputs[0][0] = _row_sum(np.ascontiguousarray(inputs[0]))

    def pullback(self, inputs, outputs, cotangents):
        (x,), (g,) = inputs, cotangents
        return [pt.ones_like(x) * g[:, None]]


class RowMax(_RowReduce):
    """y[i] = max_j x[i, j], with a zero gradient (a stabilising shift only; see module doc)."""

    def _c_reduction(self, x):
        """The C accumulator type, start value, first column and step (acc, r[j])."""
        return dict(acc_type='dtype_' + x, init='K ? r[0] : 0', start=1, step='r[j] > acc ? r[j] : acc',
                    empty_check=1, simd='max')

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
