"""Sampled-scoring loss: final activation + GRU4Rec loss on a batch x (batch + n_sample) score
matrix, with its gradient computed in the same pass.

The reference is the composition of standard ops in ``gru4rec.losses`` (activation, then loss);
PyTensor differentiates it into some twenty elementwise passes over the score matrix, which
measured as the largest part of a CPU training step. :class:`SampledLoss` computes the summed loss
and d(loss)/d(scores) in one pass per row (C, gpu_ops/c/sampled_loss.h, under the C backend; the
numpy ``perform`` below, with the same formulas, under the other linkers) and hands the gradient to
the backward pass as a constant (its pullback is a single multiply by the incoming scalar
cotangent). A CUDA implementation slots in as another implementation of the same Op.

Positives are on the diagonal (row i, column i); ``K`` is the number of columns.
"""
import os

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp

from .activations import parse_activation
from .c_code import PARALLEL_C, ParallelLoops, source_version

EPS = 1e-24


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _softmax_neg(y):
    """The original's negative-only softmax (diagonal masked out; max taken after masking)."""
    n = y.shape[0]
    x = y.copy()
    x[np.arange(n), np.arange(n)] = 0
    e = np.exp(x - x.max(axis=1, keepdims=True))
    e[np.arange(n), np.arange(n)] = 0
    return e / e.sum(axis=1, keepdims=True)


def activation_forward(z, kind, args):
    """Return (y, state) where state carries what the backward pass needs."""
    if kind == 'softmax':
        e = np.exp(z - z.max(axis=1, keepdims=True))
        y = e / e.sum(axis=1, keepdims=True)
        return y, y
    if kind == 'softmax_logit':
        x = z - z.max(axis=1, keepdims=True)
        e = np.exp(x)
        s = e.sum(axis=1, keepdims=True)
        return np.log(s) - x, e / s
    if kind == 'linear':
        return z, None
    if kind == 'relu':
        return np.maximum(z, 0), None
    if kind == 'tanh':
        y = np.tanh(z)
        return y, y
    if kind == 'leaky':
        return np.where(z >= 0, z, args[0] * z), None
    ez = np.exp(np.minimum(z, 0))
    if kind == 'elu':
        return np.where(z >= 0, z, args[0] * (ez - 1)), ez
    lmbd, alpha = args  # selu
    return lmbd * np.where(z >= 0, z, alpha * (ez - 1)), ez


def activation_backward(z, g, y, state, kind, args):
    """d(loss)/dz from d(loss)/dy."""
    if kind == 'softmax':
        return y * (g - (g * y).sum(axis=1, keepdims=True))
    if kind == 'softmax_logit':
        return state * g.sum(axis=1, keepdims=True) - g
    if kind == 'linear':
        return g
    if kind == 'relu':
        return g * (z >= 0)
    if kind == 'tanh':
        return g * (1 - state * state)
    if kind == 'leaky':
        return np.where(z >= 0, g, args[0] * g)
    if kind == 'elu':
        return np.where(z >= 0, g, g * args[0] * state)
    lmbd, alpha = args
    return lmbd * np.where(z >= 0, g, g * alpha * state)


def loss_forward_backward(y, loss, smoothing, bpreg):
    """Summed loss over the rows and d(loss)/dy."""
    n, k = y.shape
    rows = np.arange(n)
    d = y[rows, rows]
    if loss in ('cross-entropy', 'xe_logit'):
        w = 1.0 - (k / (k - 1)) * smoothing if smoothing else 1.0
        spread = smoothing / (k - 1) if smoothing else 0.0
        if loss == 'cross-entropy':
            value = w * np.sum(-np.log(d + EPS))
            g = np.full_like(y, 0.0)
            if smoothing:
                value += spread * np.sum(-np.log(y + EPS))
                g = -spread / (y + EPS)
            g[rows, rows] += -w / (d + EPS)
        else:
            value = w * np.sum(d) + (spread * np.sum(y) if smoothing else 0.0)
            g = np.full_like(y, spread)
            g[rows, rows] += w
        return value, g
    if loss == 'bpr':
        u = d[:, None] - y
        value = np.sum(np.logaddexp(0, -u))
        g = _sigmoid(-u)
        g[rows, rows] = 0.5 - g.sum(axis=1)
        return value, g
    if loss == 'top1':
        s1 = _sigmoid(y - d[:, None])
        s2 = _sigmoid(y * y)
        value = np.sum((s1 + s2).sum(axis=1) / k - _sigmoid(d * d) / k)
        g1 = s1 * (1 - s1)
        g = (g1 + 2 * y * s2 * (1 - s2)) / k
        g[rows, rows] = -(g1.sum(axis=1) - g1[rows, rows]) / k
        return value, g
    sn = _softmax_neg(y)
    a = _sigmoid(d[:, None] - y)
    if loss == 'bpr-max':
        a_s = a * sn
        A0 = a_s.sum(axis=1, keepdims=True)
        A = A0 + EPS
        ysq = y * y
        B = (sn * ysq).sum(axis=1, keepdims=True)
        value = np.sum(-np.log(A) + bpreg * B)
        da = a * (1 - a)
        g = -(-da * sn + sn * (a - A0)) / A + bpreg * (2 * sn * y + sn * (ysq - B))
        g[rows, rows] = -(da * sn).sum(axis=1) / A[:, 0]
        return value, g
    # top1-max
    s1 = 1 - a  # sigmoid(y - d)
    s2 = _sigmoid(y * y)
    c = s1 + s2
    C = (sn * c).sum(axis=1, keepdims=True)
    value = np.sum(C)
    g1 = s1 * (1 - s1)
    g = sn * (g1 + 2 * y * s2 * (1 - s2)) + sn * (c - C)
    g[rows, rows] = -(sn * g1).sum(axis=1)
    return value, g


ACTIVATION_CODES = {k: i for i, k in enumerate(
    ('linear', 'relu', 'tanh', 'softmax', 'softmax_logit', 'leaky', 'elu', 'selu'))}
LOSS_CODES = {k: i for i, k in enumerate(('cross-entropy', 'xe_logit', 'bpr', 'top1', 'bpr-max', 'top1-max'))}
C_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'c', 'sampled_loss.h')


class SampledLoss(ParallelLoops, COp):
    """(summed loss, d loss / d scores) of final activation + loss on a sampled score matrix."""
    __props__ = ('loss', 'final_act', 'smoothing', 'bpreg')

    def __init__(self, loss, final_act, smoothing=0.0, bpreg=0.0):
        self.loss, self.final_act = loss, final_act
        self.smoothing, self.bpreg = float(smoothing), float(bpreg)
        self._act = parse_activation(final_act)

    def make_node(self, z):
        z = pt.as_tensor_variable(z)
        return Apply(self, [z], [pt.TensorType(z.dtype, shape=())(), z.type()])

    def perform(self, node, inputs, outputs):
        (z,) = inputs
        kind, args = self._act
        y, state = activation_forward(z, kind, args)
        value, g = loss_forward_backward(y, self.loss, self.smoothing, self.bpreg)
        outputs[0][0] = np.asarray(value, dtype=z.dtype)
        outputs[1][0] = activation_backward(z, g, y, state, kind, args).astype(z.dtype, copy=False)

    def infer_shape(self, fgraph, node, shapes):
        return [(), shapes[0]]

    def loop_support_code(self):
        with open(C_SOURCE) as f:
            return f.read()

    def c_code(self, node, name, inputs, outputs, sub):
        (z,) = inputs
        value, dz = outputs
        fail = sub['fail']
        kind, args = self._act
        args = tuple(args) + (0.0,) * (2 - len(args))
        return '''
        {{
            if (PyArray_NDIM({z}) != 2 || PyArray_DIMS({z})[0] > PyArray_DIMS({z})[1] || PyArray_DIMS({z})[1] < 2) {{
                PyErr_SetString(PyExc_ValueError, "SampledLoss: needs an M x K score matrix with 2 <= K and M <= K");
                {fail}
            }}
            PyArrayObject* zc = PyArray_GETCONTIGUOUS({z});
            if (!zc) {{ {fail} }}
            if (!({dz} && PyArray_SAMESHAPE({dz}, zc) && PyArray_ISCARRAY({dz}))) {{
                Py_XDECREF({dz});
                {dz} = (PyArrayObject*) PyArray_EMPTY(2, PyArray_DIMS(zc), PyArray_TYPE(zc), 0);
            }}
            if (!{value}) {{
                {value} = (PyArrayObject*) PyArray_EMPTY(0, NULL, PyArray_TYPE(zc), 0);
            }}
            const ptrdiff_t M = PyArray_DIMS(zc)[0], K = PyArray_DIMS(zc)[1];
            if (!{dz} || !{value}) {{
                Py_DECREF(zc);
                if (!PyErr_Occurred()) PyErr_NoMemory();
                {fail}
            }}
            double total = 0;
            const bool ok = sl_matrix<dtype_{z}>({act}, {a0}, {a1}, {loss}, {smoothing}, {bpreg},
                (const dtype_{z}*) PyArray_DATA(zc), (dtype_{z}*) PyArray_DATA({dz}), M, K, &total);
            Py_DECREF(zc);
            if (!ok) {{
                PyErr_NoMemory();
                {fail}
            }}
            *(dtype_{z}*) PyArray_DATA({value}) = (dtype_{z}) total;
        }}
        '''.format(z=z, value=value, dz=dz, fail=fail, act=ACTIVATION_CODES[kind], a0=repr(float(args[0])),
                   a1=repr(float(args[1])), loss=LOSS_CODES[self.loss], smoothing=repr(self.smoothing),
                   bpreg=repr(self.bpreg))

    def c_headers(self, **kwargs):
        return ['<cstdlib>', '<cmath>']

    def c_compile_args(self, **kwargs):
        return super().c_compile_args(**kwargs) + ['-fopenmp-simd']  # the rows' ``omp simd`` maxima

    def c_code_cache_version(self):
        return source_version(SampledLoss.c_code, C_SOURCE, PARALLEL_C)

    def pullback(self, inputs, outputs, cotangents):
        return [cotangents[0] * outputs[1]]

