"""StackRec's NextItNet (wangjiachun0426/StackRec, generator_deep.py + ops.py): NextItNet whose
residual blocks each carry a learnable scale alpha, initialised at 0, on the whole residual branch
(x + alpha * ReLU(LN(conv(ReLU(LN(conv(x))))))): every block starts as the identity, so blocks
stacked on a trained model leave its function unchanged until training opens them.

As released (../shared/reference/stackrec.md, section 4.1): sampled softmax with TF's log-uniform
sampler over 20% of the vocabulary (is_negsample), a separate output layer N(0, 0.01) with bias
0.1, conv kernels drawn identical (tied_init), TF's Adam, lr 1e-3, batch 256, dilation_count c ->
dilations [1, 4] * c, and the optional L2 term (mean over tensors of 1/2 ||v||^2; 0.001 for the
ColdRec source, 0 otherwise). Everything NextItNet's docstring lists as a difference from its
release (padding class never recommended, windows, complete batches) holds here too; the release
trains its alphas and LayerNorms like every other weight, and so does this. ``rezero=False`` gives
the blocks of the release's ops_original.py, without alpha (a stacked block then starts as a
trained-looking block, not as the identity).
"""
import numpy as np

from nextitnet.model import NextItNet
from recsys_core.blocks import Conv, DilatedResidualBlock, LayerNorm, Scale
from recsys_core.optim import mean_l2
from recsys_core.params import KEY_PARAMS, Param, non_negative


def _defaults(params, **values):
    """NextItNet's parameters with StackRec's released defaults."""
    out = []
    for p in params:
        if p.name in values:
            p = Param(p.name, values[p.name], p.check, p.item_type, p.doc)
        out.append(p)
    return out


class StackNextItNet(NextItNet):
    """NextItNet with a ReZero-style scale per residual block (StackRec's base model)."""

    PARAMS = _defaults([p for p in NextItNet.PARAMS if p not in KEY_PARAMS], dilated_channels=64,
                       dilations=[1, 4] * 4, batch_size=256, is_negsample=True) + [
        Param('l2_reg', 0.0, non_negative, doc='weight of the mean over tensors of 1/2 ||v||^2 (ColdRec source: 0.001)'),
        Param('rezero', True, doc='a learnable scale alpha (init 0) per block, as ops.py; False: blocks without '
                                  'it, as ops_original.py'),
    ] + KEY_PARAMS

    def _residual_blocks(self):
        return [DilatedResidualBlock(Conv('conv{}a'.format(i)), Conv('conv{}b'.format(i)), LayerNorm('ln{}a'.format(i)),
                                     LayerNorm('ln{}b'.format(i)), d, Scale('alpha{}'.format(i)) if self.rezero else None)
                for i, d in enumerate(self.dilations)]

    def _init_weights(self):
        w = super()._init_weights()
        for block in self._residual_blocks():
            if block.scale is not None:
                w.update(block.scale.init())
        return w

    def _regularization(self):
        return np.float32(self.l2_reg) * mean_l2(self._trainable()) if self.l2_reg else 0

    def _part(self, name):
        return 'middle' if name.startswith('alpha') else super()._part(name)


MODEL_CLASS = StackNextItNet
