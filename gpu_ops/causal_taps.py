"""The shifted copies a causal dilated convolution multiplies, as one Op forward and one backward.

``recsys_core.blocks.causal_conv`` applies all k taps of a convolution as one GEMM over the k
shifted copies of its input side by side: taps[b, t, j C:(j+1) C] = x[b, t - (k-1-j) d], zero
before the start. Composed, that is a Join to left-pad x with zeros and a Join of k slices
forward, and backward k IncSubtensors into a zero tensor plus the pad's slice: PyTensor's profile
of a NextItNet step (8 convolutions) gave them 15% of the step, more than the convolutions'
GEMMs. :class:`CausalTaps` writes the taps in one pass and :class:`CausalTapsGrad` sums each
input row's k gradient slices in one pass (taps in order j = 0..k-1), rows on OpenMP threads like
the other custom Ops. The composition stays the reference (custom Ops off, the JAX backend);
tests/test_causal_taps.py checks values and gradients against it.
"""
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp

from .c_code import PARALLEL_C, ParallelLoops, source_version

_LOOPS = '''
#include <cstring>
// taps (B, L, k C) from x (B, L, C): block j of row (b, t) is x[b, t - (k-1-j) d], zero before the start.
template <typename T>
static void ct_forward(const T* x, T* taps, ptrdiff_t B, ptrdiff_t L, ptrdiff_t C, ptrdiff_t k, ptrdiff_t d) {
    const ptrdiff_t rows = B * L;
    const int nt = rs_threads((double) rows * (double) (k * C), 65536.0);
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (ptrdiff_t r = 0; r < rows; ++r) {
        const ptrdiff_t t = r % L;
        T* o = taps + r * k * C;
        for (ptrdiff_t j = 0; j < k; ++j) {
            const ptrdiff_t back = (k - 1 - j) * d;
            if (t >= back) std::memcpy(o + j * C, x + (r - back) * C, sizeof(T) * (size_t) C);
            else std::memset(o + j * C, 0, sizeof(T) * (size_t) C);
        }
    }
}

// dx (B, L, C) from dtaps (B, L, k C): dx[b, s] = sum_j dtaps[b, s + (k-1-j) d, block j] within the sequence.
template <typename T>
static void ct_backward(const T* dtaps, T* dx, ptrdiff_t B, ptrdiff_t L, ptrdiff_t C, ptrdiff_t k, ptrdiff_t d) {
    const ptrdiff_t rows = B * L;
    const int nt = rs_threads((double) rows * (double) (k * C), 65536.0);
    #pragma omp parallel for num_threads(nt) schedule(static)
    for (ptrdiff_t r = 0; r < rows; ++r) {
        const ptrdiff_t s = r % L;
        T* __restrict__ o = dx + r * C;
        std::memset(o, 0, sizeof(T) * (size_t) C);
        for (ptrdiff_t j = 0; j < k; ++j) {
            const ptrdiff_t ahead = (k - 1 - j) * d;
            if (s + ahead >= L) continue;
            const T* __restrict__ g = dtaps + (r + ahead) * k * C + j * C;
            #pragma omp simd
            for (ptrdiff_t c = 0; c < C; ++c) o[c] += g[c];
        }
    }
}
'''

_C_CODE = '''
{{
    if (PyArray_NDIM({x}) != 3 || ({grad} && PyArray_DIMS({x})[2] % {k} != 0)) {{
        PyErr_SetString(PyExc_ValueError, "{op}: needs a (batch, length, channels{times_k}) tensor");
        {fail}
    }}
    PyArrayObject* xc = PyArray_GETCONTIGUOUS({x});
    if (!xc) {{ {fail} }}
    npy_intp dims[3] = {{PyArray_DIMS(xc)[0], PyArray_DIMS(xc)[1], {grad} ? PyArray_DIMS(xc)[2] / {k} : PyArray_DIMS(xc)[2] * {k}}};
    const ptrdiff_t C = {grad} ? dims[2] : PyArray_DIMS(xc)[2];
    if (!({out} && PyArray_NDIM({out}) == 3 && PyArray_DIMS({out})[0] == dims[0] && PyArray_DIMS({out})[1] == dims[1]
          && PyArray_DIMS({out})[2] == dims[2] && PyArray_ISCARRAY({out}))) {{
        Py_XDECREF({out});
        {out} = (PyArrayObject*) PyArray_EMPTY(3, dims, PyArray_TYPE(xc), 0);
        if (!{out}) {{ Py_DECREF(xc); {fail} }}
    }}
    {fn}<dtype_{x}>((const dtype_{x}*) PyArray_DATA(xc), (dtype_{x}*) PyArray_DATA({out}), dims[0], dims[1], C, {k}, {d});
    Py_DECREF(xc);
}}
'''


def _np_taps(x, k, d):
    B, L, C = x.shape
    out = np.zeros((B, L, k * C), dtype=x.dtype)
    for j in range(k):
        back = (k - 1 - j) * d
        if back < L:
            out[:, back:, j * C:(j + 1) * C] = x[:, :L - back]
    return out


def _np_taps_grad(g, k, d):
    B, L, KC = g.shape
    C = KC // k
    out = np.zeros((B, L, C), dtype=g.dtype)
    for j in range(k):
        ahead = (k - 1 - j) * d
        if ahead < L:
            out[:, :L - ahead] += g[:, ahead:, j * C:(j + 1) * C]
    return out


class _TapsOp(ParallelLoops, COp):
    __props__ = ('kernel', 'dilation')
    grad_direction = False

    def __init__(self, kernel, dilation):
        self.kernel, self.dilation = int(kernel), int(dilation)
        if self.kernel < 1 or self.dilation < 1:
            raise ValueError('causal taps need a kernel size and a dilation of at least 1')

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim != 3 or x.dtype not in ('float32', 'float64'):
            raise TypeError('{} needs a float32 or float64 (batch, length, channels) tensor'.format(type(self).__name__))
        c = x.type.shape[2]
        width = None if c is None else (c // self.kernel if self.grad_direction else c * self.kernel)
        return Apply(self, [x], [pt.TensorType(x.dtype, shape=x.type.shape[:2] + (width,))()])

    def infer_shape(self, fgraph, node, shapes):
        b, length, c = shapes[0]
        return [(b, length, c // self.kernel if self.grad_direction else c * self.kernel)]

    def loop_support_code(self):
        return _LOOPS

    def c_code(self, node, name, inputs, outputs, sub):
        return _C_CODE.format(x=inputs[0], out=outputs[0], fail=sub['fail'], k=self.kernel, d=self.dilation,
                              grad=int(self.grad_direction), op=type(self).__name__,
                              times_k=' x kernel' if self.grad_direction else '',
                              fn='ct_backward' if self.grad_direction else 'ct_forward')

    def c_headers(self, **kwargs):
        return ['<cstring>', '<cstddef>']

    def c_compile_args(self, **kwargs):
        return super().c_compile_args(**kwargs) + ['-fopenmp-simd']

    def c_code_cache_version(self):
        return source_version(_TapsOp.c_code, _LOOPS, _C_CODE, PARALLEL_C)


class CausalTaps(_TapsOp):
    """(B, L, k C) taps of a (B, L, C) input for a causal convolution of kernel k and dilation d."""

    def perform(self, node, inputs, outputs):
        outputs[0][0] = _np_taps(inputs[0], self.kernel, self.dilation)

    def pullback(self, inputs, outputs, cotangents):
        return [CausalTapsGrad(self.kernel, self.dilation)(cotangents[0])]


class CausalTapsGrad(_TapsOp):
    """The gradient of :class:`CausalTaps`: (B, L, k C) -> (B, L, C)."""
    grad_direction = True

    def perform(self, node, inputs, outputs):
        if inputs[0].shape[2] % self.kernel:
            raise ValueError('CausalTapsGrad: the channels are not a multiple of the kernel size')
        outputs[0][0] = _np_taps_grad(inputs[0], self.kernel, self.dilation)

    def pullback(self, inputs, outputs, cotangents):
        return [CausalTaps(self.kernel, self.dilation)(cotangents[0])]


def causal_taps(x, kernel, dilation):
    """The k shifted copies of x side by side, block j shifted back by (k-1-j) * dilation."""
    return CausalTaps(kernel, dilation)(x)
