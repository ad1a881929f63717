"""CpRec's layer-wise parameter sharing: which blocks hold the same convolution objects.

Block i has conv a (dilation d_i) and conv b (dilation 2 d_i). A scheme is a choice of which
recsys_core.blocks.Conv objects the blocks of the stack hold (:func:`residual_blocks`): blocks that
hold one object share its kernel and bias, and each use keeps its own dilation. LayerNorm
parameters are never shared. The weight names (the table) are those of the model files.

| scheme          | conv a of block i | conv b of block i | distinct kernels |
| original        | conv{i}a          | conv{i}b          | 2L               |
| cross-layer     | conv_all          | conv_all          | 1                |
| cross-block     | conv_a            | conv_b            | 2                |
| adjacent-layer  | conv{i}           | conv{i}           | L                |
| adjacent-block  | conv_pair{i//2}a  | conv_pair{i//2}b  | 2 ceil(L/2)      |
"""
import math

from recsys_core.blocks import Conv, DilatedResidualBlock, LayerNorm

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


def residual_blocks(scheme, dilations):
    """The residual stack under ``scheme``: one block per dilation, convolutions shared as the table says."""
    convs = {}

    def conv(name):
        return convs.setdefault(name, Conv(name))
    return [DilatedResidualBlock(*(conv(n) for n in conv_names(scheme, i)), LayerNorm('ln{}a'.format(i)),
                                 LayerNorm('ln{}b'.format(i)), d) for i, d in enumerate(dilations)]


def middle_parameters(scheme, n_blocks, channels, kernel_size):
    """The reference notes' formula: distinct kernels x (k C^2 + C) plus 4 C LayerNorm values per block."""
    per_conv = kernel_size * channels ** 2 + channels
    distinct = {'original': 2 * n_blocks, 'cross-layer': 1, 'cross-block': 2, 'adjacent-layer': n_blocks,
                'adjacent-block': 2 * math.ceil(n_blocks / 2)}[scheme]
    return distinct * per_conv + 4 * n_blocks * channels
