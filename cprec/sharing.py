"""CpRec's layer-wise parameter sharing: which conv kernel (and bias) each convolution uses.

Block i has conv a (dilation d_i) and conv b (dilation 2 d_i). Shared convolutions keep their own
dilation; LayerNorm parameters are never shared.

| scheme          | conv a of block i | conv b of block i | distinct kernels |
| original        | conv{i}a          | conv{i}b          | 2L               |
| cross-layer     | conv_all          | conv_all          | 1                |
| cross-block     | conv_a            | conv_b            | 2                |
| adjacent-layer  | conv{i}           | conv{i}           | L                |
| adjacent-block  | conv_pair{i//2}a  | conv_pair{i//2}b  | 2 ceil(L/2)      |
"""
import math

SCHEMES = ('original', 'cross-layer', 'cross-block', 'adjacent-layer', 'adjacent-block')


def conv_names(scheme, block):
    if scheme == 'original':
        return 'conv{}a'.format(block), 'conv{}b'.format(block)
    if scheme == 'cross-layer':
        return 'conv_all', 'conv_all'
    if scheme == 'cross-block':
        return 'conv_a', 'conv_b'
    if scheme == 'adjacent-layer':
        return 'conv{}'.format(block), 'conv{}'.format(block)
    if scheme == 'adjacent-block':
        return 'conv_pair{}a'.format(block // 2), 'conv_pair{}b'.format(block // 2)
    raise ValueError('unknown sharing scheme {!r}'.format(scheme))


def middle_parameters(scheme, n_blocks, channels, kernel_size):
    """The reference notes' formula: distinct kernels x (k C^2 + C) plus 4 C LayerNorm values per block."""
    per_conv = kernel_size * channels ** 2 + channels
    distinct = {'original': 2 * n_blocks, 'cross-layer': 1, 'cross-block': 2, 'adjacent-layer': n_blocks,
                'adjacent-block': 2 * math.ceil(n_blocks / 2)}[scheme]
    return distinct * per_conv + 4 * n_blocks * channels
