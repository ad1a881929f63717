"""Activation functions named by the original's strings.

'linear', 'relu', 'tanh', 'softmax', 'softmax_logit', 'leaky-X', 'elu-X', 'selu-X-Y'. Parsing is
separate from building so that a bad string is rejected when the parameter is set, not at fit time.
"""
import pytensor.tensor as pt

from gpu_ops import row_max_shift, row_sum
from gpu_ops.activations import SOFTMAX_FAMILY, parse_activation  # noqa: F401  (the parser lives beside the fused loss Op that reads it)


def check_activation(allow_softmax):
    """A Param check for activation strings."""
    def check(value):
        try:
            parse_activation(value, allow_softmax)
        except ValueError as e:
            return str(e)
        return None
    return check


def softmax(x):
    import gpu_ops
    if gpu_ops.custom_ops_enabled():
        from gpu_ops.softmax import row_softmax
        return row_softmax(x)
    e = pt.exp(x - row_max_shift(x, keepdims=True))
    return e / row_sum(e, keepdims=True)


def softmax_logit(x):
    """Negative log-softmax (log-sum-exp minus score): the original's 'softmax_logit'."""
    x = x - row_max_shift(x, keepdims=True)
    return pt.log(row_sum(pt.exp(x), keepdims=True)) - x


def build_activation(name):
    """Return a function of a symbolic tensor implementing the named activation."""
    kind, args = parse_activation(name)
    if kind == 'linear':
        return lambda x: x
    if kind == 'relu':
        return lambda x: pt.maximum(x, 0)
    if kind == 'tanh':
        return pt.tanh
    if kind == 'softmax':
        return softmax
    if kind == 'softmax_logit':
        return softmax_logit
    if kind == 'leaky':
        (leak,) = args
        return lambda x: pt.switch(pt.ge(x, 0), x, leak * x)
    if kind == 'elu':
        (alpha,) = args
        return lambda x: pt.switch(pt.ge(x, 0), x, alpha * (pt.exp(x) - 1))
    lmbd, alpha = args
    return lambda x: lmbd * pt.switch(pt.ge(x, 0), x, alpha * (pt.exp(x) - 1))
