"""Row softmax as one Op, for scoring every item (evaluation, prediction).

Composed from standard ops, a softmax over a 512 x 16k score matrix makes seven passes over it
(bias add, row max, subtract, exp, row sum, divide) and measured as 60% of a GRU4Rec evaluation
step, more than the score GEMM. :class:`RowSoftmax` does a max pass, an exp-and-sum pass and a
scaling pass in C. Its gradient is the usual y * (g - sum(g * y)); with custom ops off the
composition in recsys_core.activations is used instead.
"""
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp

from .c_code import source_version


class RowSoftmax(COp):
    """y[i, :] = exp(x[i, :] - max_j x[i, j]) / sum_j exp(x[i, j] - max_j x[i, j])."""
    __props__ = ()

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim != 2:
            raise TypeError('RowSoftmax needs a matrix')
        return Apply(self, [x], [x.type()])

    def perform(self, node, inputs, outputs):
        (x,) = inputs
        e = np.exp(x - x.max(axis=1, keepdims=True))
        outputs[0][0] = (e / e.sum(axis=1, keepdims=True)).astype(x.dtype, copy=False)

    def infer_shape(self, fgraph, node, shapes):
        return shapes

    def pullback(self, inputs, outputs, cotangents):
        (y,), (g,) = outputs, cotangents
        return [y * (g - pt.sum(g * y, axis=1, keepdims=True))]

    def c_code(self, node, name, inputs, outputs, sub):
        (x,), (y,) = inputs, outputs
        fail = sub['fail']
        return '''
        {{
            PyArrayObject* xc = PyArray_GETCONTIGUOUS({x});
            if (!xc) {{ {fail} }}
            if (!({y} && PyArray_SAMESHAPE({y}, xc) && PyArray_ISCARRAY({y}) && {y} != xc)) {{
                Py_XDECREF({y});
                {y} = (PyArrayObject*) PyArray_EMPTY(2, PyArray_DIMS(xc), PyArray_TYPE(xc), 0);
                if (!{y}) {{ Py_DECREF(xc); {fail} }}
            }}
            const npy_intp M = PyArray_DIMS(xc)[0], K = PyArray_DIMS(xc)[1];
            for (npy_intp i = 0; i < M; ++i) {{
                const dtype_{x}* __restrict__ xr = (const dtype_{x}*) PyArray_DATA(xc) + i * K;
                dtype_{y}* __restrict__ yr = (dtype_{y}*) PyArray_DATA({y}) + i * K;
                if (K == 0) continue;
                dtype_{x} m = xr[0];  // ``omp simd`` (-fopenmp-simd): gcc keeps this reduction scalar
                #pragma omp simd reduction(max:m)  // under -fno-finite-math-only
                for (npy_intp j = 1; j < K; ++j) m = xr[j] > m ? xr[j] : m;
                double s = 0;
                for (npy_intp j = 0; j < K; ++j) {{ yr[j] = std::exp(xr[j] - m); s += yr[j]; }}
                const dtype_{y} inv = (dtype_{y}) (1.0 / s);
                for (npy_intp j = 0; j < K; ++j) yr[j] *= inv;
            }}
            Py_DECREF(xc);
        }}
        '''.format(x=x, y=y, fail=fail)

    def c_headers(self, **kwargs):
        return ['<cmath>']

    def c_compile_args(self, **kwargs):
        return ['-fopenmp-simd']

    def c_code_cache_version(self):
        return source_version(RowSoftmax.c_code)


row_softmax = RowSoftmax()
