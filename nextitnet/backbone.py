"""NextItNet's residual stack as symbolic PyTensor functions (shared by NextItNet, CpRec, StackRec).

A residual block for dilation d: causal conv (dilation d) -> LayerNorm -> ReLU -> causal conv
(dilation 2d) -> LayerNorm -> ReLU, then the identity skip ``x + c``. Causal convolutions left-pad
the time axis with (k-1)*dilation zeros and apply all k taps as one matrix product over the
stacked shifted copies (one GEMM per convolution instead of k).
"""
import numpy as np
import pytensor.tensor as pt

LAYER_NORM_EPS = 1e-8


def causal_conv(x, W, b, dilation):
    """y[t] = b + sum_j x[t - (k-1-j)*dilation] @ W[j], with x = 0 before the start.

    x: (B, L, Cin); W: (k, Cin, Cout), W[k-1] multiplies the current step; b: (Cout,).
    """
    k = W.type.shape[0] if W.type.shape[0] is not None else W.get_value(borrow=True).shape[0]
    batch, length, channels = x.shape[0], x.shape[1], x.shape[2]
    if k > 1:
        padded = pt.concatenate([pt.zeros((batch, (k - 1) * dilation, channels), dtype=x.dtype), x], axis=1)
        taps = pt.concatenate([padded[:, j * dilation:j * dilation + length] for j in range(k)], axis=2)
    else:
        taps = x
    flat = taps.reshape((batch * length, k * channels))
    y = pt.dot(flat, W.reshape((k * channels, W.shape[2]))) + b
    return y.reshape((batch, length, W.shape[2]))


def layer_norm(x, gamma, beta):
    """Normalise over the channel axis per position (biased variance, eps 1e-8, as released)."""
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred ** 2).mean(axis=-1, keepdims=True)
    return centred / pt.sqrt(var + np.float32(LAYER_NORM_EPS)) * gamma + beta


def residual_block(x, conv_a, conv_b, norm_a, norm_b, dilation):
    """One NextItNet block; conv_* are (W, b) pairs, norm_* (gamma, beta) pairs."""
    a = pt.maximum(layer_norm(causal_conv(x, *conv_a, dilation), *norm_a), 0)
    c = pt.maximum(layer_norm(causal_conv(a, *conv_b, 2 * dilation), *norm_b), 0)
    return x + c


def residual_stack(x, dilations, kernels, norms):
    """Apply len(dilations) blocks; kernels[i] / norms[i] give block i's two (W, b) / (gamma, beta)."""
    for i, d in enumerate(dilations):
        x = residual_block(x, kernels[i][0], kernels[i][1], norms[i][0], norms[i][1], d)
    return x


def receptive_field(dilations, kernel_size):
    """How many past items the last position sees: 1 + sum over blocks of (k-1)*(d + 2d)."""
    return 1 + sum((kernel_size - 1) * 3 * d for d in dilations)


def truncated_normal(rng, shape, std):
    """TF's truncated_normal: N(0, std) redrawn outside two standard deviations."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return (out * std).astype('float32')


def glorot_uniform(rng, shape):
    """TF's default initializer for the CpRec block matrices (2-D: fan_in, fan_out)."""
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, shape).astype('float32')
