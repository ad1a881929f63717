"""Layer normalisation over the last axis as two Ops: the forward pass and its gradient.

Composed from standard ops (``recsys_core.blocks.layer_norm``: two row means, a subtract, a square
root and a divide forward; three row sums and a chain of elementwise passes backward), one
LayerNorm of NextItNet's (80, 43, 64) activations took 9.9 ms forward and backward: PyTensor's sums
over the last axis run scalar loops, and the eight LayerNorms were about a fifth of the step.
:class:`LayerNorm` normalises each row of the last axis in one pass while it is in cache and keeps
the row means and reciprocal deviations; :class:`LayerNormGrad` uses them for the gradient of x
(dx = r (dy g - mean(dy g) - xhat mean(dy g xhat)), the exact gradient of the composition, since
the mean and the biased variance both depend on x) and accumulates the gradients of gamma and beta
in fixed blocks of rows, so they do not depend on the thread count. Rows run on OpenMP threads like
the other custom Ops; row sums accumulate in double, as PyTensor's sums do.

The composition stays the reference (custom Ops off, the JAX backend); tests/test_layer_norm.py
checks values and gradients against it.
"""
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp

from .c_code import PARALLEL_C, ParallelLoops, source_version

_GRAD_BLOCK = 256  # rows per partial sum of the gamma and beta gradients

_LOOPS = '''
// y = (x - m) r g + b per row of width C, with m the row mean and r = 1 / sqrt(var + eps).
template <typename T>
static void ln_forward(const T* x, const T* g, const T* b, T* y, T* mean, T* rstd, ptrdiff_t R, ptrdiff_t C,
                       double eps) {
    const int nt = rs_threads((double) R * (double) C, 32768.0);
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (ptrdiff_t i = 0; i < R; ++i) {
        const T* __restrict__ xr = x + i * C;
        T* __restrict__ yr = y + i * C;
        double s = 0;
        #pragma omp simd reduction(+:s)
        for (ptrdiff_t j = 0; j < C; ++j) s += (double) xr[j];
        const T m = (T) s / (T) C;
        double q = 0;
        #pragma omp simd reduction(+:q)
        for (ptrdiff_t j = 0; j < C; ++j) { const T c = xr[j] - m; q += (double) (c * c); }
        const T r = (T) 1 / std::sqrt((T) q / (T) C + (T) eps);
        #pragma omp simd
        for (ptrdiff_t j = 0; j < C; ++j) yr[j] = (xr[j] - m) * r * g[j] + b[j];
        mean[i] = m;
        rstd[i] = r;
    }
}

// dx per row; dgamma = sum_rows dy xhat and dbeta = sum_rows dy through per-block partial sums
// (blocks of ``block`` rows, summed in block order: the same result for any thread count).
template <typename T>
static int ln_backward(const T* dy, const T* x, const T* g, const T* mean, const T* rstd, T* dx, T* dg, T* db,
                       ptrdiff_t R, ptrdiff_t C, ptrdiff_t block) {
    const ptrdiff_t nb = (R + block - 1) / block;
    double* part = (double*) std::calloc((size_t) (nb > 0 ? nb : 1) * 2 * (size_t) C, sizeof(double));
    if (!part) return 1;
    const int nt = rs_threads((double) R * (double) C, 32768.0);
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (ptrdiff_t k = 0; k < nb; ++k) {
        double* __restrict__ pg = part + k * 2 * C;
        double* __restrict__ pb = pg + C;
        const ptrdiff_t hi = (k + 1) * block < R ? (k + 1) * block : R;
        for (ptrdiff_t i = k * block; i < hi; ++i) {
            const T* __restrict__ xr = x + i * C;
            const T* __restrict__ dyr = dy + i * C;
            T* __restrict__ dxr = dx + i * C;
            const T m = mean[i], r = rstd[i];
            double a = 0, c = 0;
            #pragma omp simd reduction(+:a, c)
            for (ptrdiff_t j = 0; j < C; ++j) {
                const T xh = (xr[j] - m) * r, d = dyr[j] * g[j];
                a += (double) d;
                c += (double) (d * xh);
                pg[j] += (double) (dyr[j] * xh);
                pb[j] += (double) dyr[j];
            }
            const T am = (T) (a / (double) C), cm = (T) (c / (double) C);
            #pragma omp simd
            for (ptrdiff_t j = 0; j < C; ++j) dxr[j] = r * (dyr[j] * g[j] - am - (xr[j] - m) * r * cm);
        }
    }
    for (ptrdiff_t j = 0; j < C; ++j) {
        double sg = 0, sb = 0;
        for (ptrdiff_t k = 0; k < nb; ++k) { sg += part[k * 2 * C + j]; sb += part[k * 2 * C + C + j]; }
        dg[j] = (T) sg;
        db[j] = (T) sb;
    }
    std::free(part);
    return 0;
}
'''

_PREAMBLE = '''
    if (PyArray_NDIM({x}) < 1 || PyArray_NDIM({g}) != 1 || PyArray_DIMS({g})[0] != PyArray_DIMS({x})[PyArray_NDIM({x}) - 1]
            || PyArray_NDIM({b}) != 1 || PyArray_DIMS({b})[0] != PyArray_DIMS({g})[0]) {{
        PyErr_SetString(PyExc_ValueError, "{op}: gamma and beta must be vectors as long as the last axis of x");
        {fail}
    }}
    const int nd = PyArray_NDIM({x});
    const ptrdiff_t C = PyArray_DIMS({x})[nd - 1];
    if (C == 0) {{
        PyErr_SetString(PyExc_ValueError, "{op}: the normalised axis is empty");
        {fail}
    }}
    const ptrdiff_t R = (ptrdiff_t) (PyArray_SIZE({x}) / C);
'''


def _fresh(out, ndim, dims, like):
    """C (braces doubled, for the c_code template): reuse the output array ``out`` when it has these dims and is C-contiguous, else a new one."""
    return '''
    {{
        bool same = {out} && PyArray_NDIM({out}) == {ndim} && PyArray_ISCARRAY({out});
        for (int d = 0; same && d < {ndim}; ++d) same = PyArray_DIMS({out})[d] == ({dims})[d];
        if (!same) {{
            Py_XDECREF({out});
            {out} = (PyArrayObject*) PyArray_EMPTY({ndim}, {dims}, PyArray_TYPE({like}), 0);
        }}
    }}
    '''.format(out=out, ndim=ndim, dims=dims, like=like).replace('{', '{{').replace('}', '}}')


def _np_forward(x, g, b, eps):
    x64 = x.astype(np.float64)
    m = (x64.sum(axis=-1) / x.shape[-1]).astype(x.dtype)
    c = x - m[..., None]
    r = (1 / np.sqrt((c.astype(np.float64) ** 2).sum(axis=-1) / x.shape[-1] + eps)).astype(x.dtype)
    return (c * r[..., None] * g + b).astype(x.dtype), m, r


class LayerNorm(ParallelLoops, COp):
    """(y, row means, row reciprocal deviations) of LayerNorm over the last axis of x."""
    __props__ = ('eps',)

    def __init__(self, eps):
        self.eps = float(eps)

    def make_node(self, x, gamma, beta):
        x = pt.as_tensor_variable(x)
        if x.ndim < 1 or x.dtype not in ('float32', 'float64'):
            raise TypeError('LayerNorm needs a float32 or float64 tensor, got {} of {} dimensions'.format(x.dtype, x.ndim))
        gamma, beta = (pt.cast(pt.as_tensor_variable(v), x.dtype) for v in (gamma, beta))
        if gamma.ndim != 1 or beta.ndim != 1:
            raise TypeError('LayerNorm needs vectors gamma and beta')
        stats = pt.TensorType(x.dtype, shape=x.type.shape[:-1])
        return Apply(self, [x, gamma, beta], [x.type(), stats(), stats()])

    def perform(self, node, inputs, outputs):
        x, g, b = inputs
        if x.shape[-1] == 0:
            raise ValueError('LayerNorm: the normalised axis is empty')
        for out, value in zip(outputs, _np_forward(x, g, b, self.eps)):
            out[0] = value

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0], shapes[0][:-1], shapes[0][:-1]]

    def pullback(self, inputs, outputs, cotangents):
        x, gamma, _ = inputs
        dy = cotangents[0]
        if any(not isinstance(c.type, DisconnectedType) for c in cotangents[1:]):
            raise NotImplementedError('LayerNorm: gradients through its row statistics are not implemented')
        if isinstance(dy.type, DisconnectedType):
            return [pt.zeros_like(x), pt.zeros_like(gamma), pt.zeros_like(gamma)]
        return list(LayerNormGrad()(pt.cast(dy, x.dtype), x, gamma, outputs[1], outputs[2]))

    def loop_support_code(self):
        return _LOOPS

    def c_code(self, node, name, inputs, outputs, sub):
        x, g, b = inputs
        y, m, r = outputs
        fail = sub['fail']
        return ('''
        {{
            ''' + _PREAMBLE + '''
            PyArrayObject* xc = PyArray_GETCONTIGUOUS({x});
            PyArrayObject* gc = PyArray_GETCONTIGUOUS({g});
            PyArrayObject* bc = PyArray_GETCONTIGUOUS({b});
            if (!xc || !gc || !bc) {{ Py_XDECREF(xc); Py_XDECREF(gc); Py_XDECREF(bc); {fail} }}
            ''' + _fresh(y, 'nd', 'PyArray_DIMS(xc)', 'xc') + _fresh(m, 'nd - 1', 'PyArray_DIMS(xc)', 'xc')
               + _fresh(r, 'nd - 1', 'PyArray_DIMS(xc)', 'xc') + '''
            if (!{y} || !{m} || !{r}) {{
                Py_DECREF(xc); Py_DECREF(gc); Py_DECREF(bc);
                if (!PyErr_Occurred()) PyErr_NoMemory();
                {fail}
            }}
            ln_forward<dtype_{x}>((const dtype_{x}*) PyArray_DATA(xc), (const dtype_{x}*) PyArray_DATA(gc),
                (const dtype_{x}*) PyArray_DATA(bc), (dtype_{x}*) PyArray_DATA({y}), (dtype_{x}*) PyArray_DATA({m}),
                (dtype_{x}*) PyArray_DATA({r}), R, C, {eps!r});
            Py_DECREF(xc); Py_DECREF(gc); Py_DECREF(bc);
        }}
        ''').format(x=x, g=g, b=b, y=y, m=m, r=r, fail=fail, eps=self.eps, op='LayerNorm')

    def c_headers(self, **kwargs):
        return ['<cmath>', '<cstddef>']

    def c_compile_args(self, **kwargs):
        return super().c_compile_args(**kwargs) + ['-fopenmp-simd']

    def c_code_cache_version(self):
        return source_version(LayerNorm.c_code, _LOOPS, _PREAMBLE, _fresh, PARALLEL_C)


class LayerNormGrad(ParallelLoops, COp):
    """(dx, dgamma, dbeta) of :class:`LayerNorm` from dy, x, gamma and the forward's row statistics."""
    __props__ = ()

    def make_node(self, dy, x, gamma, mean, rstd):
        dy, x, gamma, mean, rstd = (pt.as_tensor_variable(v) for v in (dy, x, gamma, mean, rstd))
        return Apply(self, [dy, x, gamma, mean, rstd], [x.type(), gamma.type(), gamma.type()])

    def perform(self, node, inputs, outputs):
        dy, x, g, m, r = inputs
        C = x.shape[-1]
        xh = (x - m[..., None]) * r[..., None]
        d = dy * g
        a = d.astype(np.float64).sum(axis=-1, keepdims=True) / C
        c = (d * xh).astype(np.float64).sum(axis=-1, keepdims=True) / C
        outputs[0][0] = (r[..., None] * (d - a.astype(x.dtype) - xh * c.astype(x.dtype))).astype(x.dtype)
        rows = (-1, C)
        outputs[1][0] = (dy * xh).reshape(rows).astype(np.float64).sum(axis=0).astype(x.dtype)
        outputs[2][0] = dy.reshape(rows).astype(np.float64).sum(axis=0).astype(x.dtype)

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[1], shapes[2], shapes[2]]

    def loop_support_code(self):
        return _LOOPS

    def c_code(self, node, name, inputs, outputs, sub):
        dy, x, g, m, r = inputs
        dx, dg, db = outputs
        fail = sub['fail']
        return ('''
        {{
            ''' + _PREAMBLE + '''
            if (!PyArray_SAMESHAPE({dy}, {x}) || PyArray_SIZE({m}) != R || PyArray_SIZE({r}) != R) {{
                PyErr_SetString(PyExc_ValueError, "LayerNormGrad: dy, x and the row statistics do not match");
                {fail}
            }}
            PyArrayObject* dyc = PyArray_GETCONTIGUOUS({dy});
            PyArrayObject* xc = PyArray_GETCONTIGUOUS({x});
            PyArrayObject* gc = PyArray_GETCONTIGUOUS({g});
            PyArrayObject* mc = PyArray_GETCONTIGUOUS({m});
            PyArrayObject* rc = PyArray_GETCONTIGUOUS({r});
            if (!dyc || !xc || !gc || !mc || !rc) {{
                Py_XDECREF(dyc); Py_XDECREF(xc); Py_XDECREF(gc); Py_XDECREF(mc); Py_XDECREF(rc);
                {fail}
            }}
            ''' + _fresh(dx, 'nd', 'PyArray_DIMS(xc)', 'xc') + _fresh(dg, '1', 'PyArray_DIMS(gc)', 'xc')
               + _fresh(db, '1', 'PyArray_DIMS(gc)', 'xc') + '''
            int bad = !{dx} || !{dg} || !{db};
            if (!bad)
                bad = ln_backward<dtype_{x}>((const dtype_{x}*) PyArray_DATA(dyc), (const dtype_{x}*) PyArray_DATA(xc),
                    (const dtype_{x}*) PyArray_DATA(gc), (const dtype_{x}*) PyArray_DATA(mc),
                    (const dtype_{x}*) PyArray_DATA(rc), (dtype_{x}*) PyArray_DATA({dx}), (dtype_{x}*) PyArray_DATA({dg}),
                    (dtype_{x}*) PyArray_DATA({db}), R, C, {block});
            Py_DECREF(dyc); Py_DECREF(xc); Py_DECREF(gc); Py_DECREF(mc); Py_DECREF(rc);
            if (bad) {{
                if (!PyErr_Occurred()) PyErr_NoMemory();
                {fail}
            }}
        }}
        ''').format(dy=dy, x=x, g=g, b=g, m=m, r=r, dx=dx, dg=dg, db=db, fail=fail, block=_GRAD_BLOCK,
                   op='LayerNormGrad')

    def c_headers(self, **kwargs):
        return ['<cmath>', '<cstddef>', '<cstdlib>']

    def c_compile_args(self, **kwargs):
        return super().c_compile_args(**kwargs) + ['-fopenmp-simd']

    def c_code_cache_version(self):
        return source_version(LayerNormGrad.c_code, _LOOPS, _PREAMBLE, _fresh, PARALLEL_C, '\n_GRAD_BLOCK = %d' % _GRAD_BLOCK)


def layer_norm(x, gamma, beta, eps):
    """LayerNorm over the last axis through :class:`LayerNorm` (its gradient through LayerNormGrad)."""
    return LayerNorm(eps)(x, gamma, beta)[0]
