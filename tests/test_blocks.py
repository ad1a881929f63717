"""The shared sequence-model blocks: against numpy, causality, the ReZero scale, shared weights."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from recsys_core.backend import compile_function
from recsys_core.blocks import (Conv, DilatedResidualBlock, LayerNorm, Linear, SASRecBlock, Scale, apply_stack,
                                distinct_weights, torch_uniform, truncated_normal)


def shared_of(values):
    return {k: pytensor.shared(v, name=k) for k, v in values.items()}


def numpy_layer_norm(x, eps):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps)


def numpy_sasrec(x, w, heads):
    B, L, d = x.shape
    dh = d // heads

    def lin(name, t):
        return t @ w[name + '_W'] + w[name + '_b']

    Q, K, V = (lin(n, x).reshape(B, L, heads, dh).transpose(0, 2, 1, 3) for n in ('q', 'k', 'v'))
    s = Q @ K.transpose(0, 1, 3, 2) / np.sqrt(dh)
    s = np.where(np.tril(np.ones((L, L), dtype=bool)), s, -(2.0 ** 32) + 1)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    a = (p @ V).transpose(0, 2, 1, 3).reshape(B, L, d)
    y = numpy_layer_norm(x + w['sa'][0] * a, 1e-5)
    f = lin('f2', np.maximum(lin('f1', y), 0))
    return numpy_layer_norm(y + w['sf'][0] * f, 1e-5)


def sasrec_block(heads):
    return SASRecBlock(Linear('q'), Linear('k'), Linear('v'), LayerNorm('na', 1e-5), Linear('f1'), Linear('f2'),
                       LayerNorm('nf', 1e-5), heads=heads, scale_attn=Scale('sa'), scale_ffn=Scale('sf'))


def sasrec_weights(rng, d, alpha):
    w = {}
    for n in ('q', 'k', 'v', 'f1', 'f2'):
        w[n + '_W'] = torch_uniform(rng, (d, d), d)
        w[n + '_b'] = torch_uniform(rng, (d,), d)
    for n in ('na', 'nf'):
        w.update(LayerNorm(n).init(d))
    w['sa'] = np.full(1, alpha, dtype='float32')
    w['sf'] = np.full(1, alpha, dtype='float32')
    return w


@pytest.mark.parametrize('heads', [1, 2])
def test_sasrec_block_matches_numpy_and_is_causal(heads):
    rng = np.random.default_rng(0)
    w = sasrec_weights(rng, 8, 0.7)
    X = pt.tensor3('X', dtype='float32')
    fn = compile_function([X], sasrec_block(heads)(shared_of(w), X))
    x = rng.standard_normal((3, 5, 8)).astype('float32')
    out = fn(x)
    np.testing.assert_allclose(out, numpy_sasrec(x.astype(np.float64), w, heads), rtol=2e-4, atol=2e-5)
    later = x.copy()
    later[:, 3:] += 1.0  # changing positions 3.. leaves positions 0..2 unchanged
    np.testing.assert_allclose(fn(later)[:, :3], out[:, :3], rtol=1e-6, atol=1e-6)
    assert not np.allclose(fn(later)[:, 3:], out[:, 3:])


def test_sasrec_block_with_zero_scales_is_its_two_layer_norms():
    rng = np.random.default_rng(1)
    w = sasrec_weights(rng, 8, 0.0)
    X = pt.tensor3('X', dtype='float32')
    x = rng.standard_normal((2, 4, 8)).astype('float32')
    out = compile_function([X], sasrec_block(1)(shared_of(w), X))(x)
    np.testing.assert_allclose(out, numpy_layer_norm(numpy_layer_norm(x, 1e-5), 1e-5), rtol=1e-4, atol=1e-5)


def dilated_stack(n, scale, shared_conv=False):
    if shared_conv:
        one = Conv('all')
        convs = [(one, one)] * n
    else:
        convs = [(Conv('c{}a'.format(i)), Conv('c{}b'.format(i))) for i in range(n)]
    return [DilatedResidualBlock(a, b, LayerNorm('ln{}a'.format(i)), LayerNorm('ln{}b'.format(i)), 1 + 3 * (i % 2),
                                 Scale('alpha{}'.format(i)) if scale else None) for i, (a, b) in enumerate(convs)]


def stack_weights(blocks, rng, C, alpha):
    w = {}
    for name in distinct_weights(blocks):
        if name.endswith('_W'):
            w[name] = truncated_normal(rng, (3, C, C), 0.5)
        elif name.startswith('alpha'):
            w[name] = np.full(1, alpha, dtype='float32')
        elif name.endswith('_g'):
            w[name] = np.ones(C, dtype='float32')
        else:
            w[name] = np.zeros(C, dtype='float32')
    return w


def test_dilated_block_with_zero_scale_is_the_identity_and_scale_opens_it():
    rng = np.random.default_rng(2)
    blocks = dilated_stack(4, scale=True)
    X = pt.tensor3('X', dtype='float32')
    x = rng.standard_normal((2, 9, 6)).astype('float32')
    closed = compile_function([X], apply_stack(shared_of(stack_weights(blocks, rng, 6, 0.0)), X, blocks))(x)
    np.testing.assert_array_equal(closed, x)
    opened = compile_function([X], apply_stack(shared_of(stack_weights(blocks, rng, 6, 0.5)), X, blocks))(x)
    assert not np.allclose(opened, x)


def test_blocks_holding_one_conv_share_its_weights():
    private, shared = dilated_stack(4, scale=False), dilated_stack(4, scale=False, shared_conv=True)
    assert len([n for n in distinct_weights(private) if n.endswith('_W')]) == 8
    assert [n for n in distinct_weights(shared) if n.endswith('_W')] == ['all_W']
    # a stack is a list: growing it by copying blocks reuses their weight holders
    grown = private + private[:2]
    assert distinct_weights(grown) == distinct_weights(private)
