"""CpRec (Sun et al., SIGIR 2020): NextItNet compressed by block-wise adaptive embedding/softmax and
layer-wise parameter sharing, with fast top-k inference.

Parameters keep the release's names: use_softmax_type (FullSoftmax, Block_Input_Full,
Block_for_Softmax, Block_Input_Softmax, Block_Input_Softmax_Inference; the README's name
``softmax_type`` is accepted as an alias), use_parametersharing_type
(original, cross-layer, cross-block, adjacent-layer, adjacent-block), use_embedding_type_factor,
block (boundaries, e.g. 7000/15000; 'default' or 'auto'), plus block_dims (e.g. 512/128/32).

Where the released code (siat-nlp/CpRec c3b5d0b) is buggy, the intended behaviour is implemented:
- adjacent-block shares kernels between blocks (0,1), (2,3), ...; the release names its scopes with
  Python 3's float division (layer_id/2), so it shares nothing;
- Block_Input_Softmax_Inference runs at any batch size and merges the per-cluster candidates into
  one top-k list (the release raised a KeyError, fixed the batch at 128 and never merged);
  ``inference_rule=exact`` adds a pruning test that guarantees the exact top-k; under the paper
  protocol only the cut-off equal to ``top_k`` takes its numbers from the pruned list, every other
  cut-off ranks exactly (``CpRec.rank_last_items`` with ``cut_offs``; ``pruned_cut_offs`` and
  ``last_inference_stats`` say which numbers came from the pruned list);
- block widths use integer division (the release's float division broke for d not divisible);
- use_embedding_type_factor=1 (without block_dims) means the plain embedding and softmax, as the
  release's help text says ("1 means basic embedding"): every use_softmax_type is then the
  FullSoftmax network, with no block tables, no d x d projections and compression 1x (the release
  crashed in the Block_Input_Softmax modes, used the full embedding in Block_Input_Full and kept
  the 2-level tree with d-wide tails in Block_for_Softmax); block_dims keep the block structure;
- block boundaries that do not fit the catalogue (the default 7000/15000 needs more than 15000 ids)
  are replaced by frequency quantiles (block=auto) instead of failing; the quantiles count real
  items only: the <PAD> class (ranked by its padding slots, as released, so usually id 0 and in
  the head) and a pre-padded file's literal pad token (``pad_token``, default NextItNet's ``0``; an
  ordinary class otherwise, as released) keep their rank but hold no share of the occurrences;
- a literal ``<PAD>`` in the file is the padding class (the released loader counts it as padding);
- the input, residual and output widths are one parameter, dilated_channels (the release's block
  modes require them equal; its projections for unequal widths in the full modes are not offered).
Everything NextItNet's docstring lists (initial values, batching, windows, padding class) holds
here too; CpRec's own initialisers (uniform embedding, N(0, 0.01) softmax with bias 0.1, Glorot
block matrices) and its L2 term (l2_reg x mean over tensors of 1/2 ||v||^2) are kept.
"""
from .model import CpRec

MODEL_CLASS = CpRec

__all__ = ['CpRec', 'MODEL_CLASS']
