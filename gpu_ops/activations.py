"""The original's activation strings, parsed: 'linear', 'relu', 'tanh', 'softmax', 'softmax_logit',
'leaky-X', 'elu-X', 'selu-X-Y'.

One parser for both users: the fused loss Op (gpu_ops.sampled_loss) reads its final activation
with it, and the models' parameter checks and graph builders (recsys_core.activations, which
re-exports these names) validate and build with it.
"""

SOFTMAX_FAMILY = ('softmax', 'softmax_logit')


def parse_activation(name, allow_softmax=True):
    """Return (kind, args) for an activation string or raise ValueError."""
    if not isinstance(name, str):
        raise ValueError('activation must be a string')
    simple = ('linear', 'relu', 'tanh') + (SOFTMAX_FAMILY if allow_softmax else ())
    if name in simple:
        return name, ()
    for prefix, nargs in (('leaky-', 1), ('elu-', 1), ('selu-', 2)):
        if name.startswith(prefix):
            parts = name[len(prefix):].split('-')
            if len(parts) != nargs:
                break
            try:
                return prefix[:-1], tuple(float(x) for x in parts)
            except ValueError:
                break
    allowed = ', '.join(simple + ('leaky-X', 'elu-X', 'selu-X-Y'))
    raise ValueError('unknown activation {!r} (allowed: {})'.format(name, allowed))
