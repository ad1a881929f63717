"""Building blocks of the sequence models, as objects that name their weights.

A block holds the *names* of its weights and is applied to a dict of shared variables:
``block(shared, x)``. Two blocks that hold the same :class:`Conv` (or :class:`Linear`) object share
its weights, which is how CpRec's layer-wise sharing schemes are expressed; a residual stack is a
plain list of blocks, so the stacking methods of StackRec copy, grow and re-order it as a list
(:func:`apply_stack`, :func:`distinct_weights`).

- :class:`DilatedResidualBlock`: NextItNet's block (causal conv, LayerNorm, ReLU, twice, plus the
  identity skip), optionally with StackRec's learnable branch scale initialised at 0 (ReZero-style:
  the block starts as the identity).
- :class:`SASRecBlock`: the SASRec block of the StackRec and PeerCollab releases: causal
  single/multi-head self-attention without an output projection, post-LayerNorm residuals around
  the attention and a width-d pointwise feed-forward part, each optionally scaled (ReZero-style).

Causal convolutions left-pad the time axis with (k-1)*dilation zeros and apply all k taps as one
matrix product over the stacked shifted copies (one GEMM per convolution instead of k); with the
custom Ops on, one C Op writes the shifted copies (gpu_ops.causal_taps).
"""
import numpy as np
import pytensor.tensor as pt

from .randomness import dropout
from .softmax import softmax

LAYER_NORM_EPS = 1e-8     # NextItNet's TF LayerNorm
TORCH_LAYER_NORM_EPS = 1e-5
ATTENTION_MASK = -(2.0 ** 32) + 1  # the releases' value for masked attention logits


# ----------------------------------------------------------------- functions
def causal_conv(x, W, b, dilation):
    """y[t] = b + sum_j x[t - (k-1-j)*dilation] @ W[j], with x = 0 before the start.

    x: (B, L, Cin); W: (k, Cin, Cout), W[k-1] multiplies the current step; b: (Cout,).
    """
    k = W.type.shape[0] if W.type.shape[0] is not None else W.get_value(borrow=True).shape[0]
    batch, length, channels = x.shape[0], x.shape[1], x.shape[2]
    from gpu_ops import custom_ops_enabled
    if k > 1 and custom_ops_enabled() and x.dtype in ('float32', 'float64') and isinstance(dilation, (int, np.integer)):
        from gpu_ops.causal_taps import causal_taps
        taps = causal_taps(x, k, int(dilation))  # the same taps in one C pass (and its gradient in one)
    elif k > 1:
        padded = pt.concatenate([pt.zeros((batch, (k - 1) * dilation, channels), dtype=x.dtype), x], axis=1)
        taps = pt.concatenate([padded[:, j * dilation:j * dilation + length] for j in range(k)], axis=2)
    else:
        taps = x
    flat = taps.reshape((batch * length, k * channels))
    y = pt.dot(flat, W.reshape((k * channels, W.shape[2]))) + b
    return y.reshape((batch, length, W.shape[2]))


def layer_norm(x, gamma, beta, eps=LAYER_NORM_EPS):
    """Normalise over the last axis per position (biased variance): one C Op forward and one backward
    (gpu_ops.layer_norm) when the custom Ops are on, else this composition."""
    from gpu_ops import custom_ops_enabled
    if custom_ops_enabled() and x.dtype in ('float32', 'float64'):
        from gpu_ops.layer_norm import layer_norm as fused
        return fused(x, gamma, beta, eps)
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred ** 2).mean(axis=-1, keepdims=True)
    return centred / pt.sqrt(var + np.float32(eps)) * gamma + beta


def receptive_field(dilations, kernel_size):
    """How many past items the last position of a NextItNet stack sees: 1 + sum of (k-1)*(d + 2d)."""
    return 1 + sum((kernel_size - 1) * 3 * d for d in dilations)


# ----------------------------------------------------------------- initialisers
def truncated_normal(rng, shape, std):
    """TF's truncated_normal: N(0, std) redrawn outside two standard deviations."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return (out * std).astype('float32')


def glorot_uniform(rng, shape):
    """TF's default initializer for 2-D matrices (fan_in, fan_out)."""
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, shape).astype('float32')


def torch_uniform(rng, shape, fan_in):
    """PyTorch's default Linear/Conv1d initialisation of weights and biases: U(-1/sqrt(fan_in), +)."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape).astype('float32')


# ----------------------------------------------------------------- weight holders
class Conv:
    """A causal convolution's weights: ``{name}_W`` (k, Cin, Cout) and ``{name}_b`` (Cout,)."""

    def __init__(self, name):
        self.name = name

    def weight_names(self):
        return [self.name + '_W', self.name + '_b']

    def __call__(self, shared, x, dilation):
        return causal_conv(x, shared[self.name + '_W'], shared[self.name + '_b'], dilation)


class Linear:
    """y = x W + b over the last axis: ``{name}_W`` (in, out) and ``{name}_b`` (out,)."""

    def __init__(self, name):
        self.name = name

    def weight_names(self):
        return [self.name + '_W', self.name + '_b']

    def __call__(self, shared, x):
        W, b = shared[self.name + '_W'], shared[self.name + '_b']
        flat = x.reshape((-1, x.shape[-1]))
        return (pt.dot(flat, W) + b).reshape(tuple(x.shape[i] for i in range(x.ndim - 1)) + (W.shape[1],))


class LayerNorm:
    """LayerNorm weights ``{name}_g`` (init 1) and ``{name}_b`` (init 0)."""

    def __init__(self, name, eps=LAYER_NORM_EPS):
        self.name, self.eps = name, eps

    def weight_names(self):
        return [self.name + '_g', self.name + '_b']

    def init(self, width):
        return {self.name + '_g': np.ones(width, dtype='float32'), self.name + '_b': np.zeros(width, dtype='float32')}

    def __call__(self, shared, x):
        return layer_norm(x, shared[self.name + '_g'], shared[self.name + '_b'], self.eps)


class Scale:
    """A learnable scalar branch scale ``{name}`` of shape (1,), initialised at 0 (ReZero-style)."""

    def __init__(self, name):
        self.name = name

    def weight_names(self):
        return [self.name]

    def init(self):
        return {self.name: np.zeros(1, dtype='float32')}

    def __call__(self, shared, branch):
        return shared[self.name][0] * branch


# ----------------------------------------------------------------- blocks
class DilatedResidualBlock:
    """NextItNet's residual block for base dilation d:
    c = ReLU(LN_b(conv_b(ReLU(LN_a(conv_a(x, d))), 2d))); out = x + c, or x + alpha * c with a
    :class:`Scale` (StackRec: alpha starts at 0, so a new block starts as the identity)."""

    def __init__(self, conv_a, conv_b, norm_a, norm_b, dilation, scale=None):
        self.conv_a, self.conv_b, self.norm_a, self.norm_b = conv_a, conv_b, norm_a, norm_b
        self.dilation, self.scale = dilation, scale

    def parts(self):
        return [p for p in (self.conv_a, self.conv_b, self.norm_a, self.norm_b, self.scale) if p is not None]

    def __call__(self, shared, x):
        a = pt.maximum(self.norm_a(shared, self.conv_a(shared, x, self.dilation)), 0)
        c = pt.maximum(self.norm_b(shared, self.conv_b(shared, a, 2 * self.dilation)), 0)
        return x + (c if self.scale is None else self.scale(shared, c))


class SASRecBlock:
    """The SASRec block of the StackRec/PeerCollab releases (post-LN, no attention output projection):

        A = causal multi-head attention(Q = x Wq + bq, K = x Wk + bk, V = x Wv + bv), scale sqrt(d/h)
        y = LN_a(x + alpha_a * A);  F = W2(dropout(ReLU(W1 y))) ;  out = LN_f(y + alpha_f * dropout(F))

    Keys after the query are masked with -(2^32)+1; there is no padding mask (the releases' masks are
    no-ops once position embeddings are added). ``scale_attn`` / ``scale_ffn`` are :class:`Scale` s
    (StackRec) or None (PeerCollab, alpha = 1). Dropout acts on the attention probabilities and both
    FFN outputs when ``srng`` is given (training).
    """

    def __init__(self, q, k, v, norm_attn, ffn_in, ffn_out, norm_ffn, heads=1, scale_attn=None, scale_ffn=None):
        self.q, self.k, self.v, self.norm_attn = q, k, v, norm_attn
        self.ffn_in, self.ffn_out, self.norm_ffn = ffn_in, ffn_out, norm_ffn
        self.heads, self.scale_attn, self.scale_ffn = heads, scale_attn, scale_ffn

    def parts(self):
        return [p for p in (self.q, self.k, self.v, self.norm_attn, self.ffn_in, self.ffn_out, self.norm_ffn,
                            self.scale_attn, self.scale_ffn) if p is not None]

    def attention(self, shared, x, p_drop=0.0, srng=None, keys=None, key_mask=None):
        """Causal attention of the queries x over ``keys`` (default x); ``key_mask`` (B, L), 0 where
        a key is left out."""
        B, L, d = x.shape[0], x.shape[1], x.shape[2]
        h = self.heads
        keys = x if keys is None else keys

        def split(t):  # (B, L, d) -> (B*h, L, d/h)
            return t.reshape((B, L, h, d // h)).dimshuffle(0, 2, 1, 3).reshape((B * h, L, d // h))

        Q, K, V = split(self.q(shared, x)), split(self.k(shared, keys)), split(self.v(shared, keys))
        scores = pt.matmul(Q, K.dimshuffle(0, 2, 1)) / pt.sqrt(pt.cast(d // h, x.dtype))
        keep = pt.le(pt.arange(L)[None, :], pt.arange(L)[:, None])[None, :, :]  # key j <= query i
        if key_mask is not None:  # one row per (batch, head), as split orders them
            keep = pt.and_(keep, pt.repeat(key_mask, h, axis=0)[:, None, :])
        probs = softmax(pt.switch(keep, scores, np.float32(ATTENTION_MASK)))
        if srng is not None:
            probs = dropout(probs, p_drop, srng)
        out = pt.matmul(probs, V)  # (B*h, L, d/h)
        return out.reshape((B, h, L, d // h)).dimshuffle(0, 2, 1, 3).reshape((B, L, d))

    def feed_forward(self, shared, y, p_drop=0.0, srng=None):
        """W2(dropout(ReLU(W1 y))), dropout again on the output while training."""
        f = pt.maximum(self.ffn_in(shared, y), 0)
        if srng is not None:
            f = dropout(f, p_drop, srng)
        f = self.ffn_out(shared, f)
        return dropout(f, p_drop, srng) if srng is not None else f

    def __call__(self, shared, x, p_drop=0.0, srng=None):
        a = self.attention(shared, x, p_drop, srng)
        y = self.norm_attn(shared, x + (a if self.scale_attn is None else self.scale_attn(shared, a)))
        f = self.feed_forward(shared, y, p_drop, srng)
        return self.norm_ffn(shared, y + (f if self.scale_ffn is None else self.scale_ffn(shared, f)))


class KangSASRecBlock(SASRecBlock):
    """The block of Kang & McAuley's own SASRec code: pre-LN, with the normalised input as the
    residual, keys and values from the unnormalised input, and padding left out:

        q = LN_a(x);  A = attention(Q = q Wq + bq, K = x Wk + bk, V = x Wv + bv)
        y = q + A;  z = LN_f(y);  out = (z + dropout(W2 dropout(ReLU(W1 z)))) * m

    The padding is found as that code finds it, from the input: m_j = 0 where x_j is all zero (the
    model zeroes the padding positions of its input and every block keeps them zero). Such keys
    are masked (-(2^32)+1) like the keys after the query. The code's query mask changes only the
    padding positions' rows, which m zeroes, so it is left out.
    """

    def __call__(self, shared, x, p_drop=0.0, srng=None):
        m = pt.neq(pt.abs(x).sum(axis=-1), 0)
        q = self.norm_attn(shared, x)
        y = q + self.attention(shared, q, p_drop, srng, keys=x, key_mask=m)
        z = self.norm_ffn(shared, y)
        return (z + self.feed_forward(shared, z, p_drop, srng)) * pt.cast(m, x.dtype)[:, :, None]


def apply_stack(shared, x, blocks, layouts=(), **kwargs):
    """Apply a residual stack, a list of blocks, bottom first: as a loop over its repeated cycle
    when ``layouts`` (the model's :class:`recsys_core.stacked.StackLayout` s) has one for these
    blocks (its weights are then stored stacked), else block after block."""
    layout = next((lay for lay in layouts if lay.matches(blocks)), None)
    if layout is not None:
        from .backend import compile_mode
        from .stacked import apply_scanned
        return apply_scanned(shared, x, layout, mode=compile_mode(), **kwargs)
    for block in blocks:
        x = block(shared, x, **kwargs)
    return x


def distinct_parts(blocks, kind=None):
    """The weight holders of a stack, each once (shared holders are listed at their first use)."""
    seen, out = set(), []
    for block in blocks:
        for part in block.parts():
            if id(part) not in seen and (kind is None or isinstance(part, kind)):
                seen.add(id(part))
                out.append(part)
    return out


def distinct_weights(blocks):
    """Names of a stack's weights, each once, in order of first use."""
    return [name for part in distinct_parts(blocks) for name in part.weight_names()]
