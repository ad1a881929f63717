"""Custom operations that GRU4Rec-style graphs need beyond plain PyTensor.

Each operation exists twice: a custom Op with a fast CPU implementation (a CUDA implementation
slots in later as another ``perform``/linker dispatch of the same Op), and a reference composition
of standard PyTensor ops. One switch chooses, like the original's ``disable_custom_op``:
:func:`set_custom_ops` or the environment variable ``GPU_OPS_DISABLE_CUSTOM=1``. Tests check each
custom Op against its reference on random inputs, gradients included.

- :func:`positive_diag`: the positive scores of a sampled score matrix (row i, column i).
- :func:`searchsorted`: binary-search sampling from a cumulative distribution.
- :func:`rank_counts`: per row, how many items score above / equal to the target (ranking
  without sort or argmax); :func:`rank_counts_at` when the target is the row's own column (what
  the CUDA kernel ``rank_metrics`` takes, for ``-d cuda``).
- :func:`row_sum`, :func:`row_max_shift`: row reductions of score matrices (fast CPU loops).
- ``gpu_ops.sampled_loss.SampledLoss``: final activation + GRU4Rec loss on the sampled score
  matrix with its gradient in one pass (reference: ``gru4rec.losses.reference_loss``).
- ``gpu_ops.softmax_xent.SoftmaxCrossEntropy``: full-softmax cross-entropy of integer labels with
  its gradient in one pass per row, rows weighted by a mask (reference: recsys_core.softmax).
- ``gpu_ops.layer_norm.LayerNorm`` / ``LayerNormGrad``: LayerNorm over the last axis forward and
  backward, one pass per row each (reference: the composition in recsys_core.blocks.layer_norm).
- ``gpu_ops.linear_xent.LinearCrossEntropy``: an output layer h W + b and its full-softmax
  cross-entropy with every gradient, in blocks of rows whose logits stay in cache (BLAS inside;
  reference: the product into ``SoftmaxCrossEntropy`` or the composition).
- :func:`gpu_ops.causal_taps.causal_taps`: the shifted input copies of a causal dilated
  convolution in one pass, its gradient in one (reference: the Joins in recsys_core.blocks).
- :func:`gpu_ops.nonzero.flat_nonzero`: a vector's nonzero indices in C (reference: ``pt.nonzero``).
- ``gpu_ops.sparse_update.SparseAdagrad``: in-place row-sparse adagrad update (reference:
  ``recsys_core.optim.Optimizer``'s composed update).
- :func:`unique_inverse`: sorted unique indices with the inverse mapping (the rows a step touches).
- :func:`score_columns`: the scores of the distinct sampled items expanded to the sampled columns,
  plus a per-column offset (``a[cols].T + offset``), with the summed gradient.
- ``gpu_ops.rows``: a compiled row scatter replacing PyTensor's Python row increments (a rewrite).

The package is the project's bottom layer: it imports nothing of the project (the model packages
and recsys_core import it; tests/test_imports.py checks). ``gpu_ops.toolchain`` holds how the C
code is compiled and linked (BLAS flags, the parallel GEMM wrapper, gcc flags); importing the
package makes its BLAS flags PyTensor's default without compiling anything (the wrapper is built
at the first graph compilation) and ``gpu_ops.activations`` parses the original's activation strings.
"""
import os

from . import toolchain

toolchain.link_blas()  # PyTensor's default BLAS flags become ours; computed (and the wrapper built) at first read

from .columns import score_columns
from .diag import positive_diag
from .ranking import rank_counts, rank_counts_at
from .reductions import row_max_shift, row_sum
from .search import searchsorted
from .unique import unique_inverse

_custom = os.environ.get('GPU_OPS_DISABLE_CUSTOM', '0') not in ('1', 'true', 'True')


def set_custom_ops(enabled):
    """Use the custom Ops (True) or the reference compositions (False) in graphs built from now on."""
    global _custom
    _custom = bool(enabled)


def custom_ops_enabled():
    return _custom


__all__ = ['positive_diag', 'score_columns', 'rank_counts', 'rank_counts_at', 'row_max_shift', 'row_sum', 'searchsorted', 'unique_inverse', 'set_custom_ops', 'custom_ops_enabled']
