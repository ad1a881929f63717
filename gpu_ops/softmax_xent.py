"""Full-softmax cross-entropy of integer labels as one Op: loss and d(loss)/d(logits) in one pass.

Composed from standard ops, the cross-entropy over a (N, V) logit matrix is a row max, a subtract,
an exp, a row sum and a log forward, and as many passes again backward (PyTensor's profile of a
NextItNet step: more time than the step's matrix products). :class:`SoftmaxCrossEntropy` walks
each row once while it is in cache (max, exp-and-sum, scale: three passes over a row of a few
kB rather than ten over the matrix), in C on OpenMP threads like the other custom Ops, and hands
the gradient to the backward pass as a constant (the pullback multiplies it by the incoming scalar
cotangent, which the rewrites drop when the loss is the cost).

Rows are weighted by ``w`` (the padding/ignore mask: 1 = counts, 0 = left out; a zero-weight row
is not even exponentiated and its gradient is 0). ``mean``: the loss is sum_i w_i nll_i /
max(sum_i w_i, 1) (the mean over the counted rows), else the plain weighted sum. Stable for any
finite logits (shift by the row maximum). The mask is data, not a parameter: it has no gradient
(declared disconnected).

The reference is the composition in recsys_core.softmax (used when custom Ops are off, e.g. the
JAX backend); tests/test_softmax_xent.py checks values and gradients against it.
"""
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.gradient import DisconnectedType
from pytensor.link.c.op import COp

from .c_code import PARALLEL_C, ParallelLoops, source_version

_ROW_LOOPS = '''
// One row's softmax cross-entropy: returns nll and writes (p - onehot(y)) * scale into g.
template <typename T>
static inline double sx_row(const T* __restrict__ z, T* __restrict__ g, ptrdiff_t V, ptrdiff_t y, T scale) {
    // ``omp simd`` (compiled with -fopenmp-simd): gcc does not vectorise these reductions by
    // itself under -fno-finite-math-only (measured: the max pass alone took 3.5x longer)
    T m = z[0];
    #pragma omp simd reduction(max:m)
    for (ptrdiff_t j = 1; j < V; ++j) m = z[j] > m ? z[j] : m;
    T s = 0;
    #pragma omp simd reduction(+:s)
    for (ptrdiff_t j = 0; j < V; ++j) { const T e = std::exp(z[j] - m); g[j] = e; s += e; }
    const T k = scale / s;
    for (ptrdiff_t j = 0; j < V; ++j) g[j] *= k;
    g[y] -= scale;
    return std::log((double) s) - ((double) z[y] - (double) m);
}

// The whole matrix: returns 0 on success, else 1 + the first row whose label is out of range.
template <typename T>
static ptrdiff_t sx_matrix(const T* z, const npy_int64* y, const T* w, T* g, ptrdiff_t N, ptrdiff_t V,
                           int mean, double* loss) {
    double W = 0;
    for (ptrdiff_t i = 0; i < N; ++i) W += (double) w[i];
    for (ptrdiff_t i = 0; i < N; ++i) if (w[i] != 0 && (y[i] < 0 || y[i] >= V)) return i + 1;
    const double norm = mean ? (W > 1 ? W : 1.0) : 1.0;
    double total = 0;
    const int nt = rs_threads((double) N * (double) V, 65536.0);
    #pragma omp parallel for num_threads(nt) schedule(static) reduction(+:total)
    for (ptrdiff_t i = 0; i < N; ++i) {
        T* gr = g + i * V;
        if (w[i] == 0) {
            for (ptrdiff_t j = 0; j < V; ++j) gr[j] = 0;
            continue;
        }
        total += (double) w[i] * sx_row<T>(z + i * V, gr, V, (ptrdiff_t) y[i], (T) ((double) w[i] / norm));
    }
    *loss = total / norm;
    return 0;
}
'''


def counted_rows_loss(z, y, w, norm):
    """numpy reference of the counted rows (weights w != 0): (sum_i w_i nll_i, d loss / d z) with the
    gradient scaled by w_i / norm; shifted by the row maximum."""
    if not len(z):
        return 0.0, np.zeros_like(z)
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    scale = (w / norm).astype(z.dtype)[:, None]
    g = e * (scale / s)
    at = np.arange(len(z))
    g[at, y] -= scale[:, 0]
    nll = np.log(s[:, 0].astype(np.float64)) - (z[at, y] - m[:, 0]).astype(np.float64)
    return float((w.astype(np.float64) * nll).sum()), g


class SoftmaxCrossEntropy(ParallelLoops, COp):
    """(loss, d loss / d logits) of the softmax cross-entropy of ``labels`` under ``logits`` rows
    weighted by ``weights``: the weighted mean (``mean=True``) or sum."""
    __props__ = ('mean',)

    def __init__(self, mean=True):
        self.mean = bool(mean)

    def make_node(self, logits, labels, weights):
        logits = pt.as_tensor_variable(logits)
        labels = pt.cast(pt.as_tensor_variable(labels), 'int64')
        weights = pt.cast(pt.as_tensor_variable(weights), logits.dtype)
        if logits.ndim != 2 or labels.ndim != 1 or weights.ndim != 1:
            raise TypeError('SoftmaxCrossEntropy needs (N, V) logits, (N,) labels and (N,) weights')
        if logits.dtype not in ('float32', 'float64'):
            raise TypeError('SoftmaxCrossEntropy needs float32 or float64 logits, got ' + logits.dtype)
        return Apply(self, [logits, labels, weights], [pt.TensorType(logits.dtype, shape=())(), logits.type()])

    def perform(self, node, inputs, outputs):
        z, y, w = inputs
        n, v = z.shape
        if v == 0 and n:
            raise ValueError('SoftmaxCrossEntropy: no classes')
        counted = w != 0
        if np.any(counted & ((y < 0) | (y >= v))):
            raise ValueError('SoftmaxCrossEntropy: a label is out of range [0, {})'.format(v))
        norm = max(float(w.sum()), 1.0) if self.mean else 1.0
        rows = np.flatnonzero(counted)
        g = np.zeros_like(z)
        total, g[rows] = counted_rows_loss(z[rows], y[rows], w[rows], norm)
        outputs[0][0] = np.asarray(total / norm, dtype=z.dtype)
        outputs[1][0] = g

    def infer_shape(self, fgraph, node, shapes):
        return [(), shapes[0]]

    def connection_pattern(self, node):
        return [[True, True], [False, False], [False, False]]

    def pullback(self, inputs, outputs, cotangents):
        g_loss = cotangents[0]
        dz = outputs[1]
        if isinstance(g_loss.type, DisconnectedType):
            return [pt.zeros_like(inputs[0]), DisconnectedType()(), DisconnectedType()()]
        return [g_loss * dz, DisconnectedType()(), DisconnectedType()()]

    def loop_support_code(self):
        return _ROW_LOOPS

    def c_code(self, node, name, inputs, outputs, sub):
        z, y, w = inputs
        loss, g = outputs
        fail = sub['fail']
        return '''
        {{
            if (PyArray_NDIM({z}) != 2 || PyArray_NDIM({y}) != 1 || PyArray_NDIM({w}) != 1
                    || PyArray_DIMS({y})[0] != PyArray_DIMS({z})[0] || PyArray_DIMS({w})[0] != PyArray_DIMS({z})[0]) {{
                PyErr_SetString(PyExc_ValueError, "SoftmaxCrossEntropy: needs (N, V) logits with (N,) labels and weights");
                {fail}
            }}
            if (PyArray_DIMS({z})[1] == 0 && PyArray_DIMS({z})[0] > 0) {{
                PyErr_SetString(PyExc_ValueError, "SoftmaxCrossEntropy: no classes");
                {fail}
            }}
            PyArrayObject* zc = PyArray_GETCONTIGUOUS({z});
            PyArrayObject* yc = PyArray_GETCONTIGUOUS({y});
            PyArrayObject* wc = PyArray_GETCONTIGUOUS({w});
            if (!zc || !yc || !wc) {{ Py_XDECREF(zc); Py_XDECREF(yc); Py_XDECREF(wc); {fail} }}
            if (!({g} && PyArray_SAMESHAPE({g}, zc) && PyArray_ISCARRAY({g}) && {g} != zc)) {{
                Py_XDECREF({g});
                {g} = (PyArrayObject*) PyArray_EMPTY(2, PyArray_DIMS(zc), PyArray_TYPE(zc), 0);
            }}
            if (!{loss}) {{
                {loss} = (PyArrayObject*) PyArray_EMPTY(0, NULL, PyArray_TYPE(zc), 0);
            }}
            if (!{g} || !{loss}) {{
                Py_DECREF(zc); Py_DECREF(yc); Py_DECREF(wc);
                if (!PyErr_Occurred()) PyErr_NoMemory();
                {fail}
            }}
            double total = 0;
            const ptrdiff_t bad = sx_matrix<dtype_{z}>((const dtype_{z}*) PyArray_DATA(zc),
                (const npy_int64*) PyArray_DATA(yc), (const dtype_{z}*) PyArray_DATA(wc),
                (dtype_{z}*) PyArray_DATA({g}), PyArray_DIMS(zc)[0], PyArray_DIMS(zc)[1], {mean}, &total);
            Py_DECREF(zc); Py_DECREF(yc); Py_DECREF(wc);
            if (bad) {{
                PyErr_Format(PyExc_ValueError, "SoftmaxCrossEntropy: the label of row %ld is out of range [0, %ld)",
                             (long) (bad - 1), (long) PyArray_DIMS({z})[1]);
                {fail}
            }}
            *(dtype_{z}*) PyArray_DATA({loss}) = (dtype_{z}) total;
        }}
        '''.format(z=z, y=y, w=w, loss=loss, g=g, fail=fail, mean=int(self.mean))

    def c_headers(self, **kwargs):
        return ['<cmath>', '<cstddef>']

    def c_compile_args(self, **kwargs):
        return super().c_compile_args(**kwargs) + ['-fopenmp-simd']

    def c_code_cache_version(self):
        return source_version(SoftmaxCrossEntropy.c_code, _ROW_LOOPS, PARALLEL_C)


_mean_op, _sum_op = SoftmaxCrossEntropy(True), SoftmaxCrossEntropy(False)


def softmax_cross_entropy(logits, labels, weights=None, mean=True):
    """The loss (scalar) of :class:`SoftmaxCrossEntropy`; ``weights`` None = every row counts."""
    if weights is None:
        weights = pt.ones((logits.shape[0],), dtype=logits.dtype)
    return (_mean_op if mean else _sum_op)(logits, labels, weights)[0]
