"""GRU4Rec's losses on a batch x (batch + n_sample) score matrix whose positives are on the diagonal.

Each returns the summed loss of the batch (the caller divides by the configured batch size).
``n_sample`` is the number of shared extra negatives (columns after the first ``M``).
:func:`sampled_loss` is what the model uses: the fused custom Op (gpu_ops.sampled_loss) or, with
custom ops switched off, :func:`reference_loss`, the composition of standard ops below.
"""
import pytensor.tensor as pt

import gpu_ops
from gpu_ops import positive_diag, row_max_shift, row_sum
from gpu_ops.sampled_loss import SampledLoss
from recsys_core.activations import build_activation

LOSSES = ('cross-entropy', 'bpr-max', 'top1', 'bpr', 'top1-max', 'xe_logit')
EPS = 1e-24


def softmax_neg(x):
    """Softmax over the negatives of each row only (the positive, on the diagonal, is masked out)."""
    mask = 1.0 - pt.eye(x.shape[0], x.shape[1], dtype=x.dtype)
    x = x * mask
    e = pt.exp(x - row_max_shift(x, keepdims=True)) * mask
    return e / row_sum(e, keepdims=True)


def cross_entropy(yhat, M, n_sample, smoothing, bpreg):
    pos = -pt.log(positive_diag(yhat) + EPS)
    if smoothing:
        n_out = pt.cast(M + n_sample, yhat.dtype)
        return pt.sum((1.0 - (n_out / (n_out - 1)) * smoothing) * pos
                      + (smoothing / (n_out - 1)) * row_sum(-pt.log(yhat + EPS)))
    return pt.sum(pos)


def xe_logit(yhat, M, n_sample, smoothing, bpreg):
    """Cross-entropy from 'softmax_logit' outputs (which are already negative log-probabilities)."""
    pos = positive_diag(yhat)
    if smoothing:
        n_out = pt.cast(M + n_sample, yhat.dtype)
        return pt.sum((1.0 - (n_out / (n_out - 1)) * smoothing) * pos + (smoothing / (n_out - 1)) * row_sum(yhat))
    return pt.sum(pos)


def bpr(yhat, M, n_sample, smoothing, bpreg):
    d = positive_diag(yhat)[:, None]
    return pt.sum(-pt.log(pt.sigmoid(d - yhat)))


def bpr_max(yhat, M, n_sample, smoothing, bpreg):
    s = softmax_neg(yhat)
    d = positive_diag(yhat)[:, None]
    return pt.sum(-pt.log(row_sum(pt.sigmoid(d - yhat) * s) + EPS) + bpreg * row_sum((yhat ** 2) * s))


def top1(yhat, M, n_sample, smoothing, bpreg):
    d = positive_diag(yhat)[:, None]
    n_out = pt.cast(M + n_sample, yhat.dtype)
    return pt.sum(row_sum(pt.sigmoid(yhat - d) + pt.sigmoid(yhat ** 2)) / n_out - pt.sigmoid(d[:, 0] ** 2) / n_out)


def top1_max(yhat, M, n_sample, smoothing, bpreg):
    s = softmax_neg(yhat)
    d = positive_diag(yhat)[:, None]
    return pt.sum(row_sum(s * (pt.sigmoid(yhat - d) + pt.sigmoid(yhat ** 2))))


LOSS_FUNCTIONS = {'cross-entropy': cross_entropy, 'bpr-max': bpr_max, 'top1': top1, 'bpr': bpr,
                  'top1-max': top1_max, 'xe_logit': xe_logit}


def reference_loss(scores, loss, final_act, smoothing=0.0, bpreg=0.0):
    """Final activation then loss, as a composition of standard ops (n_out = number of columns)."""
    M = scores.shape[0]
    n_sample = scores.shape[1] - M
    return LOSS_FUNCTIONS[loss](build_activation(final_act)(scores), M, n_sample, smoothing, bpreg)


def sampled_loss(scores, loss, final_act, smoothing=0.0, bpreg=0.0):
    """Summed loss of ``final_act`` + ``loss`` on a sampled score matrix (custom Op or reference)."""
    if gpu_ops.custom_ops_enabled():
        return SampledLoss(loss, final_act, smoothing, bpreg)(scores)[0]
    return reference_loss(scores, loss, final_act, smoothing, bpreg)
