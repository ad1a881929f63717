"""Log-softmax and softmax cross-entropy, written once for every model that scores a vocabulary
(and the attention weights of the SASRec block). GRU4Rec's losses over sampled score matrices are
its own fused Op (gpu_ops.sampled_loss, reference gru4rec.losses), with its final activations.

All forms shift by the row maximum before exponentiating (stable for any finite logits).
``mask`` arguments (1 = counts, 0 = ignored) leave positions out of a mean, e.g. padding targets
where a release does not train on them.

With the custom Ops on (the C backend's default), :func:`cross_entropy` and
:func:`cross_entropy_sum` are one fused Op (gpu_ops.softmax_xent: loss and gradient in one pass
over each row, in C), and :func:`linear_cross_entropy` (an output layer h W + b and its
cross-entropy) is one Op with the layer's GEMMs inside (gpu_ops.linear_xent: blocks of rows whose
logits never leave the cache); otherwise, e.g. under JAX, the composition below.
"""
import pytensor.tensor as pt

import gpu_ops
from gpu_ops.linear_xent import linear_cross_entropy as fused_linear_cross_entropy
from gpu_ops.softmax_xent import softmax_cross_entropy


def log_softmax(z):
    """Log-softmax over the last axis (the rows of a (N, V) matrix)."""
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - pt.log(pt.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(z):
    """Softmax over the last axis (the rows of a (N, V) matrix; attention weights over keys)."""
    e = pt.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def label_log_probs(logits, labels):
    """log p(label) of each row: the label's logit minus the row's log-sum-exp, (N,)."""
    top = logits.max(axis=1, keepdims=True)
    shifted = logits - top
    return shifted[pt.arange(labels.shape[0]), labels] - pt.log(pt.exp(shifted).sum(axis=1))


def cross_entropy(logits, labels, mask=None):
    """Mean softmax cross-entropy of integer labels (over the rows where ``mask`` is 1)."""
    if gpu_ops.custom_ops_enabled():
        return softmax_cross_entropy(logits, labels, mask, mean=True)
    nll = -label_log_probs(logits, labels)
    if mask is None:
        return nll.mean()
    mask = pt.cast(mask, logits.dtype)
    return (nll * mask).sum() / pt.maximum(mask.sum(), 1)


def cross_entropy_sum(logits, labels):
    """Summed softmax cross-entropy of integer labels."""
    if gpu_ops.custom_ops_enabled():
        return softmax_cross_entropy(logits, labels, None, mean=False)
    return -label_log_probs(logits, labels).sum()


def linear_cross_entropy(h, W, b, labels, mask=None):
    """Mean softmax cross-entropy of integer labels under the output layer h W + b (over the rows
    where ``mask`` is 1); ``b`` None: no bias."""
    return _linear(h, W, b, labels, mask, True)


def linear_cross_entropy_sum(h, W, b, labels):
    """Summed softmax cross-entropy of integer labels under the output layer h W + b (``b`` None: no bias)."""
    return _linear(h, W, b, labels, None, False)


def _linear(h, W, b, labels, mask, mean):
    if gpu_ops.custom_ops_enabled() and h.dtype in ('float32', 'float64') and W.dtype == h.dtype \
            and (b is None or b.dtype == h.dtype):
        bias = pt.zeros((W.shape[1],), dtype=W.dtype) if b is None else b
        return fused_linear_cross_entropy(h, W, bias, labels, mask, mean=mean)
    logits = pt.dot(h, W) if b is None else pt.dot(h, W) + b
    return cross_entropy(logits, labels, mask) if mean else cross_entropy_sum(logits, labels)
