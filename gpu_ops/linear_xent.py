"""An output layer and its full-softmax cross-entropy as one Op, in blocks of rows that stay in cache.

The output layer of NextItNet, CpRec and SASRec scores every trained position against the whole
vocabulary: logits = h W + b, (N, V) with N = batch x positions, then the softmax cross-entropy and,
backward, dh = G W^T, dW = h^T G and db = the column sums of G (G = d loss / d logits). Composed,
the (N, V) logit and gradient matrices (62 MB each in NextItNet's benchmark step) go to memory and
back six times between the GEMMs, the bias add, the cross-entropy and the bias gradient; on two
threads the step then waited on memory (the forward GEMM ran 1.2x faster on two threads than on
one). :class:`LinearCrossEntropy` takes h, W, b, labels and row weights and walks the counted rows
in blocks of ``ROWS`` (row weight 0: not scored at all, its dh is 0): for each block the logits
(one GEMM), the softmax cross-entropy row by row in place, dh (one GEMM) and the block's share of
dW (one GEMM accumulating into the thread's own dW) and db, while the block's logits are in
cache. Threads take blocks in a fixed round robin and their dW and db are added in thread order,
so a run is deterministic for a given thread count (as the GEMMs split between threads are).

The GEMMs are BLAS calls (sgemm_/dgemm_ through the project's BLAS flags, each on one thread
inside the Op's parallel loop); without BLAS flags the Op runs its numpy ``perform``. The loss is
the weighted mean (``mean=True``, over sum(w), at least 1) or the weighted sum of the rows' negative
log-likelihoods, as :class:`gpu_ops.softmax_xent.SoftmaxCrossEntropy`; gradients are computed in
the forward pass and handed to the backward pass (the pullback scales them by the cotangent).

The composition (``cross_entropy(dot(h, W) + b, ...)`` in recsys_core.softmax) is the reference;
tests/test_linear_xent.py checks values and gradients against it.
"""
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp

from .c_code import PARALLEL_C, ParallelLoops, source_version
from .softmax_xent import counted_rows_loss

ROWS = 128  # rows per block: a block's logits (ROWS x V) should stay in the core's cache

_LOOPS = '''
#include <cstring>
#include <cstdlib>
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*);
}

// Row-major C (rows x cols) = op(A) op(B) + beta C through the column-major BLAS (C^T = op(B)^T op(A)^T).
static inline void lx_gemm(const char* tb, const char* ta, int m, int n, int k, float alpha, const float* b, int ldb,
                           const float* a, int lda, float beta, float* c, int ldc) {
    sgemm_(tb, ta, &m, &n, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}
static inline void lx_gemm(const char* tb, const char* ta, int m, int n, int k, double alpha, const double* b,
                           int ldb, const double* a, int lda, double beta, double* c, int ldc) {
    dgemm_(tb, ta, &m, &n, &k, &alpha, b, &ldb, a, &lda, &beta, c, &ldc);
}

// One row in place: z (the row's h W) gets the bias, then becomes (softmax - onehot(y)) * scale;
// db += that row. Returns the row's negative log-likelihood.
template <typename T>
static inline double lx_row(T* __restrict__ z, const T* __restrict__ b, double* __restrict__ db, ptrdiff_t V,
                            ptrdiff_t y, T scale) {
    T m = z[0] + b[0];
    #pragma omp simd reduction(max:m)
    for (ptrdiff_t j = 0; j < V; ++j) { const T v = z[j] + b[j]; z[j] = v; m = v > m ? v : m; }
    const T zy = z[y];
    T s = 0;
    #pragma omp simd reduction(+:s)
    for (ptrdiff_t j = 0; j < V; ++j) { const T e = std::exp(z[j] - m); z[j] = e; s += e; }
    const T k = scale / s;
    #pragma omp simd
    for (ptrdiff_t j = 0; j < V; ++j) { const T g = z[j] * k; z[j] = g; db[j] += (double) g; }
    z[y] -= scale;
    db[y] -= (double) scale;
    return std::log((double) s) - ((double) zy - (double) m);
}

// Returns 0, or 1 + the first counted row whose label is out of range, or -1 when out of memory.
template <typename T>
static ptrdiff_t lx_run(const T* h, const T* W, const T* b, const npy_int64* y, const T* w, ptrdiff_t N, ptrdiff_t C,
                        ptrdiff_t V, int mean, ptrdiff_t rows_per_block, double* loss, T* dh, T* dW, T* db) {
    double wsum = 0;
    ptrdiff_t M = 0;
    for (ptrdiff_t i = 0; i < N; ++i) {
        wsum += (double) w[i];
        if (w[i] != 0) {
            if (y[i] < 0 || y[i] >= V) return i + 1;
            ++M;
        }
    }
    const double norm = mean ? (wsum > 1 ? wsum : 1.0) : 1.0;
    std::memset(dh, 0, sizeof(T) * (size_t) N * (size_t) C);
    std::memset(dW, 0, sizeof(T) * (size_t) C * (size_t) V);
    std::memset(db, 0, sizeof(T) * (size_t) V);
    *loss = 0;
    if (M == 0) return 0;  // no counted row: loss and gradients 0
    ptrdiff_t* rows = (ptrdiff_t*) std::malloc(sizeof(ptrdiff_t) * (size_t) M);
    if (!rows) return -1;
    for (ptrdiff_t i = 0, r = 0; i < N; ++i) if (w[i] != 0) rows[r++] = i;
    const ptrdiff_t RB = rows_per_block, nblocks = (M + RB - 1) / RB;
    int nt = rs_threads((double) M * (double) V * (double) (C + 1), 4e6);
    if (nt > nblocks) nt = (int) nblocks;
    // per thread: its block's logits, h rows and dh rows; dW (thread 0 writes the output) and db sums
    const size_t per = (size_t) RB * (size_t) V + 2 * (size_t) RB * (size_t) C;
    T* work = (T*) std::malloc(sizeof(T) * (per * (size_t) nt + (size_t) (nt - 1) * (size_t) C * (size_t) V + 1));
    double* dbs = (double*) std::calloc((size_t) nt * (size_t) V + 1, sizeof(double));
    double* totals = (double*) std::calloc((size_t) nt, sizeof(double));
    if (!work || !dbs || !totals) { std::free(rows); std::free(work); std::free(dbs); std::free(totals); return -1; }
    T* dWs = work + per * (size_t) nt;
    if (nt > 1) std::memset(dWs, 0, sizeof(T) * (size_t) (nt - 1) * (size_t) C * (size_t) V);
    #pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num();
#else
        const int t = 0;
#endif
        T* Z = work + per * (size_t) t;
        T* hb = Z + (size_t) RB * (size_t) V;
        T* dhb = hb + (size_t) RB * (size_t) C;
        T* dWt = t == 0 ? dW : dWs + (size_t) (t - 1) * (size_t) C * (size_t) V;
        double* dbt = dbs + (size_t) t * (size_t) V;
        double total = 0;
        const int iV = (int) V, iC = (int) C;
        for (ptrdiff_t blk = t; blk < nblocks; blk += nt) {
            const ptrdiff_t r0 = blk * RB, R = M - r0 < RB ? M - r0 : RB;
            const int iR = (int) R;
            for (ptrdiff_t r = 0; r < R; ++r) std::memcpy(hb + r * C, h + rows[r0 + r] * C, sizeof(T) * (size_t) C);
            lx_gemm("N", "N", iV, iR, iC, (T) 1, W, iV, hb, iC, (T) 0, Z, iV);                 // Z = hb W
            for (ptrdiff_t r = 0; r < R; ++r) {
                const ptrdiff_t i = rows[r0 + r];
                total += (double) w[i] * lx_row<T>(Z + r * V, b, dbt, V, (ptrdiff_t) y[i], (T) ((double) w[i] / norm));
            }
            lx_gemm("T", "N", iC, iR, iV, (T) 1, W, iV, Z, iV, (T) 0, dhb, iC);                // dhb = G W^T
            for (ptrdiff_t r = 0; r < R; ++r) std::memcpy(dh + rows[r0 + r] * C, dhb + r * C, sizeof(T) * (size_t) C);
            lx_gemm("N", "T", iV, iC, iR, (T) 1, Z, iV, hb, iC, (T) 1, dWt, iV);               // dW += hb^T G
        }
        totals[t] = total;
    }
    double total = 0;
    for (int t = 0; t < nt; ++t) total += totals[t];
    for (int t = 1; t < nt; ++t) {
        const T* part = dWs + (size_t) (t - 1) * (size_t) C * (size_t) V;
        for (ptrdiff_t j = 0; j < C * V; ++j) dW[j] += part[j];
    }
    for (ptrdiff_t j = 0; j < V; ++j) {
        double s = 0;
        for (int t = 0; t < nt; ++t) s += dbs[(size_t) t * (size_t) V + j];
        db[j] = (T) s;
    }
    *loss = total / norm;
    std::free(rows); std::free(work); std::free(dbs); std::free(totals);
    return 0;
}
'''


def _blas_flags(kind):
    """PyTensor's BLAS flags of one kind ('libs', 'flags', 'libs_dir', 'include_dir')."""
    from pytensor.tensor.blas import ldflags
    return ldflags(**{k: k == kind for k in ('libs', 'flags', 'libs_dir', 'include_dir')})


class LinearCrossEntropy(ParallelLoops, COp):
    """(loss, dh, dW, db) of the softmax cross-entropy of ``labels`` under h W + b, rows weighted by
    ``weights``: the weighted mean (``mean=True``) or sum."""
    __props__ = ('mean',)

    def __init__(self, mean=True):
        self.mean = bool(mean)

    def make_node(self, h, W, b, labels, weights):
        h, W, b = (pt.as_tensor_variable(v) for v in (h, W, b))
        if h.ndim != 2 or W.ndim != 2 or b.ndim != 1:
            raise TypeError('LinearCrossEntropy needs (N, C) h, a (C, V) weight matrix and a (V,) bias')
        if h.dtype not in ('float32', 'float64') or W.dtype != h.dtype or b.dtype != h.dtype:
            raise TypeError('LinearCrossEntropy needs h, W and b of one float type, got {}, {}, {}'.format(
                h.dtype, W.dtype, b.dtype))
        labels = pt.cast(pt.as_tensor_variable(labels), 'int64')
        weights = pt.cast(pt.as_tensor_variable(weights), h.dtype)
        if labels.ndim != 1 or weights.ndim != 1:
            raise TypeError('LinearCrossEntropy needs (N,) labels and weights')
        return Apply(self, [h, W, b, labels, weights],
                     [pt.TensorType(h.dtype, shape=())(), h.type(), W.type(), b.type()])

    def perform(self, node, inputs, outputs):
        h, W, b, y, w = inputs
        self._check(h, W, b, y, w)
        counted = w != 0
        norm = max(float(w.sum()), 1.0) if self.mean else 1.0
        rows = np.flatnonzero(counted)
        total, g = counted_rows_loss((h[rows] @ W + b).astype(h.dtype), y[rows], w[rows], norm)
        dh = np.zeros_like(h)
        dh[rows] = g @ W.T
        outputs[0][0] = np.asarray(total / norm, dtype=h.dtype)
        outputs[1][0] = dh
        outputs[2][0] = (h[rows].T @ g).astype(h.dtype)
        outputs[3][0] = g.astype(np.float64).sum(axis=0).astype(h.dtype)

    @staticmethod
    def _check(h, W, b, y, w):
        if h.shape[1] != W.shape[0] or W.shape[1] != b.shape[0] or y.shape[0] != h.shape[0] or w.shape[0] != h.shape[0]:
            raise ValueError('LinearCrossEntropy: h {}, W {}, b {}, labels {} and weights {} do not fit'.format(
                h.shape, W.shape, b.shape, y.shape, w.shape))
        counted = w != 0
        if W.shape[1] == 0 and counted.any():
            raise ValueError('LinearCrossEntropy: no classes')
        if np.any(counted & ((y < 0) | (y >= W.shape[1]))):
            raise ValueError('LinearCrossEntropy: a label is out of range [0, {})'.format(W.shape[1]))

    def infer_shape(self, fgraph, node, shapes):
        return [(), shapes[0], shapes[1], shapes[2]]

    def connection_pattern(self, node):
        return [[True, True, True, True]] * 3 + [[False] * 4] * 2

    def pullback(self, inputs, outputs, cotangents):
        g_loss = cotangents[0]
        if any(not isinstance(c.type, DisconnectedType) for c in cotangents[1:]):
            raise NotImplementedError('LinearCrossEntropy: its gradient outputs are not differentiable')
        if isinstance(g_loss.type, DisconnectedType):
            grads = [pt.zeros_like(v) for v in inputs[:3]]
        else:
            grads = [g_loss * d for d in outputs[1:]]
        return grads + [DisconnectedType()(), DisconnectedType()()]

    def loop_support_code(self):
        return _LOOPS

    def c_code(self, node, name, inputs, outputs, sub):
        if not _blas_flags('libs'):
            raise NotImplementedError('no BLAS to link: the numpy perform runs')
        h, W, b, y, w = inputs
        loss, dh, dW, db = outputs
        fail = sub['fail']
        alloc = ''.join('''
            if (!({out} && PyArray_SAMESHAPE({out}, {like}) && PyArray_ISCARRAY({out}) && (PyObject*) {out} != (PyObject*) {like})) {{
                Py_XDECREF({out});
                {out} = (PyArrayObject*) PyArray_EMPTY(PyArray_NDIM({like}), PyArray_DIMS({like}), PyArray_TYPE({like}), 0);
            }}'''.format(out=out, like=like) for out, like in ((dh, 'hc'), (dW, 'Wc'), (db, 'bc')))
        return '''
        {{
            if (PyArray_NDIM({h}) != 2 || PyArray_NDIM({W}) != 2 || PyArray_NDIM({b}) != 1 || PyArray_NDIM({y}) != 1
                    || PyArray_NDIM({w}) != 1 || PyArray_DIMS({h})[1] != PyArray_DIMS({W})[0]
                    || PyArray_DIMS({W})[1] != PyArray_DIMS({b})[0] || PyArray_DIMS({y})[0] != PyArray_DIMS({h})[0]
                    || PyArray_DIMS({w})[0] != PyArray_DIMS({h})[0]) {{
                PyErr_SetString(PyExc_ValueError, "LinearCrossEntropy: h (N, C), W (C, V), b (V,), labels and weights (N,) do not fit");
                {fail}
            }}
            const ptrdiff_t N = PyArray_DIMS({h})[0], C = PyArray_DIMS({h})[1], V = PyArray_DIMS({W})[1];
            if (V == 0 && N > 0) {{
                PyErr_SetString(PyExc_ValueError, "LinearCrossEntropy: no classes");
                {fail}
            }}
            if (N > 2147483647 || C > 2147483647 || V > 2147483647) {{
                PyErr_SetString(PyExc_ValueError, "LinearCrossEntropy: dimensions beyond the BLAS int range");
                {fail}
            }}
            PyArrayObject* hc = PyArray_GETCONTIGUOUS({h});
            PyArrayObject* Wc = PyArray_GETCONTIGUOUS({W});
            PyArrayObject* bc = PyArray_GETCONTIGUOUS({b});
            PyArrayObject* yc = PyArray_GETCONTIGUOUS({y});
            PyArrayObject* wc = PyArray_GETCONTIGUOUS({w});
            if (!hc || !Wc || !bc || !yc || !wc) {{
                Py_XDECREF(hc); Py_XDECREF(Wc); Py_XDECREF(bc); Py_XDECREF(yc); Py_XDECREF(wc);
                {fail}
            }}
            {alloc}
            if (!{loss}) {loss} = (PyArrayObject*) PyArray_EMPTY(0, NULL, PyArray_TYPE(hc), 0);
            ptrdiff_t bad = -1;
            double total = 0;
            if ({loss} && {dh} && {dW} && {db})
                bad = lx_run<dtype_{h}>((const dtype_{h}*) PyArray_DATA(hc), (const dtype_{h}*) PyArray_DATA(Wc),
                    (const dtype_{h}*) PyArray_DATA(bc), (const npy_int64*) PyArray_DATA(yc),
                    (const dtype_{h}*) PyArray_DATA(wc), N, C, V, {mean}, {rows}, &total,
                    (dtype_{h}*) PyArray_DATA({dh}), (dtype_{h}*) PyArray_DATA({dW}), (dtype_{h}*) PyArray_DATA({db}));
            Py_DECREF(hc); Py_DECREF(Wc); Py_DECREF(bc); Py_DECREF(yc); Py_DECREF(wc);
            if (bad < 0) {{
                if (!PyErr_Occurred()) PyErr_NoMemory();
                {fail}
            }}
            if (bad > 0) {{
                PyErr_Format(PyExc_ValueError, "LinearCrossEntropy: the label of row %ld is out of range [0, %ld)",
                             (long) (bad - 1), (long) V);
                {fail}
            }}
            *(dtype_{h}*) PyArray_DATA({loss}) = (dtype_{h}) total;
        }}
        '''.format(h=h, W=W, b=b, y=y, w=w, loss=loss, dh=dh, dW=dW, db=db, fail=fail, alloc=alloc,
                   mean=int(self.mean), rows=ROWS)

    def c_headers(self, **kwargs):
        return ['<cmath>', '<cstddef>', '<cstring>', '<cstdlib>']

    def c_libraries(self, **kwargs):
        return _blas_flags('libs')

    def c_lib_dirs(self, **kwargs):
        return _blas_flags('libs_dir')

    def c_header_dirs(self, **kwargs):
        return _blas_flags('include_dir')

    def c_compile_args(self, **kwargs):
        return super().c_compile_args(**kwargs) + ['-fopenmp-simd'] + _blas_flags('flags')

    def c_code_cache_version(self):
        return source_version(LinearCrossEntropy.c_code, _LOOPS, PARALLEL_C, '\nROWS = %d' % ROWS)


_mean_op, _sum_op = LinearCrossEntropy(True), LinearCrossEntropy(False)


def linear_cross_entropy(h, W, b, labels, weights=None, mean=True):
    """The loss (scalar) of :class:`LinearCrossEntropy`; ``weights`` None = every row counts."""
    if weights is None:
        weights = pt.ones((h.shape[0],), dtype=h.dtype)
    return (_mean_op if mean else _sum_op)(h, W, b, labels, weights)[0]
