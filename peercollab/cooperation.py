"""How two peers exchange knowledge after an epoch (reference sections 4.3 and 4.4), on numpy arrays.

Layer-wise (LW): each tensor becomes ``w * own + (1 - w) * peer`` with the gate
``w = b / (1 + exp(-a x))``; x compares the two tensors by the entropy of their value histograms
(10 equal-width half-open bins over [min, max), natural log, no renormalisation: the maximum falls
outside every bin) or by their L1 norms ((|own| - |peer|) / (|own| + |peer|)). Walking the weights
in the SASRec order, "criterion" tensors compute their own gate and the others reuse the last gate
computed (biases borrow their weight's, the FFN LayerNorm the readout weight's); which tensors are
criterion, borrowing or untouched is the cooperation type's (:data:`LW_ROLES`).

Parameter-wise (PW): in every tensor with two or more axes, the entries whose magnitude is at or
below the ``percent`` percentile of the tensor's own magnitudes are replaced by the peer's entries
at the same positions; 1-D tensors (biases, LayerNorms) are kept.

Noise (the release's control, one model and no peer): in every tensor with two or more axes, the
entries whose magnitude is strictly below the ``percent`` percentile get Gaussian noise of
standard deviation ``rate ** (epoch // T + 1)``.

Which weight is of which kind (embedding, middle weight or bias, final weight or bias) is the peer
model's (``weight_kind`` of peercollab.sasrec, .youtubednn and .bpr); the merges walk the weights in
the model's order, which is the release's state-dict order.

The float32 arithmetic mirrors the release (bin edges ``min + k * s`` in float32, the percentile
rounded to float32 before the comparison); a constant tensor, on which the release crashes, has
entropy 0.
"""
import re
from collections import OrderedDict

import numpy as np

from recsys_core.errors import UserError

N_BINS = 10
LW_TYPES = ('alllayer_entropy', 'alllayer_L1norm', 'onlyembed', 'onlymiddle', 'onlyfinal')
"""The types of SASRec and YouTubeDNN (SASRec_LW.py, DNN_LW.py)."""
BPR_LW_TYPES = ('embed_entropy', 'embed_L1norm')
"""BPR_LW.py's types: every weight computes its own gate (the user and item tables, the towers'
weights) and the towers' biases carry it."""
LW_ALIASES = {'alllayer_eL1norm': 'alllayer_L1norm'}  # the README's spelling (the release ignores it)

_CRITERION, _CARRY = 'criterion', 'carry'
_ALL_ENTROPY = {'embed': _CRITERION, 'middle_weight': _CRITERION, 'attn_norm_weight': _CRITERION,
                'final_weight': _CRITERION, 'middle_bias': _CARRY, 'ffn_norm_weight': _CARRY, 'final_bias': _CARRY}
LW_ROLES = {
    'alllayer_entropy': _ALL_ENTROPY,
    'alllayer_L1norm': dict(_ALL_ENTROPY, ffn_norm_weight=_CRITERION),
    'onlyembed': {'embed': _CRITERION},
    'onlymiddle': {'middle_weight': _CRITERION, 'attn_norm_weight': _CRITERION, 'middle_bias': _CARRY,
                   'ffn_norm_weight': _CARRY},
    'onlyfinal': {'final_weight': _CRITERION, 'final_bias': _CARRY},
    'embed_entropy': {'embed': _CRITERION, 'middle_weight': _CRITERION, 'middle_bias': _CARRY},
    'embed_L1norm': {'embed': _CRITERION, 'middle_weight': _CRITERION, 'middle_bias': _CARRY},
}
"""type -> {kind of weight: criterion (own gate) or carry (the last gate)}; kinds not listed are kept."""


def canonical_type(name, types=LW_TYPES):
    """The cooperation type under its code name (the README's alllayer_eL1norm is alllayer_L1norm)."""
    name = LW_ALIASES.get(name, name) if types == LW_TYPES else name
    if name not in types:
        names = types + tuple(LW_ALIASES) if types == LW_TYPES else types
        raise UserError('Unknown cooperation_type {!r}; use one of: {}'.format(name, ', '.join(names)))
    return name


def sasrec_weight_kind(name):
    """What a SASRec weight is, by its name (peercollab.sasrec's names, in the release's order)."""
    if name in ('item_emb', 'pos_emb'):
        return 'embed'
    if name in ('final_W', 'final_b'):
        return 'final_weight' if name == 'final_W' else 'final_bias'
    match = re.fullmatch(r'b\d+_(q|k|v|na|f1|f2|nf)_(W|b|g)', name)
    if match is None:
        raise ValueError('not a weight of the peers\' SASRec: {}'.format(name))
    part, kind = match.groups()
    if kind == 'b':
        return 'middle_bias'
    return {'na': 'attn_norm_weight', 'nf': 'ffn_norm_weight'}.get(part, 'middle_weight')


def layered_weight_kind(name):
    """What a weight of YouTubeDNN or BPR is: its embedding tables, its MLP's (``mlp0_W``,
    ``user_mlp0_b``, ...) weights and biases, its output layer."""
    if name in ('item_emb', 'user_emb'):
        return 'embed'
    if name in ('final_W', 'final_b'):
        return 'final_weight' if name == 'final_W' else 'final_bias'
    match = re.fullmatch(r'(user_|item_)?mlp\d+_(W|b)', name)
    if match is None:
        raise ValueError('not a weight of YouTubeDNN or BPR: {}'.format(name))
    return 'middle_weight' if match.group(2) == 'W' else 'middle_bias'


def entropy(weights, n_bins=N_BINS):
    """Entropy (nats) of a tensor's values over ``n_bins`` equal-width bins [min + k s, min + (k+1) s)."""
    x = np.asarray(weights, dtype=np.float32).ravel()
    lo = x.min()
    scale = np.float32(np.float32(x.max() - lo) / np.float32(n_bins))
    if scale == 0:
        return 0.0
    edges = np.array([lo + np.float32(k) * scale for k in range(n_bins + 1)], dtype=np.float32)
    bins = np.searchsorted(edges, x, side='right') - 1   # k with edges[k] <= x; k = n_bins is outside
    counts = np.bincount(bins[bins < n_bins], minlength=n_bins)
    p = counts[counts > 0].astype(np.float32) / np.float32(len(x))
    return float(-np.sum(p * np.log(p), dtype=np.float32))


def l1_contrast(own, peer):
    """(|own|_1 - |peer|_1) / (|own|_1 + |peer|_1), in [-1, 1] (0 when both are 0)."""
    a = np.abs(np.asarray(own, dtype=np.float32)).sum(dtype=np.float32)
    c = np.abs(np.asarray(peer, dtype=np.float32)).sum(dtype=np.float32)
    total = a + c
    return 0.0 if total == 0 else float(a / total - c / total)


def gate(x, a, b=1.0):
    """The mixing weight of the own tensor: b / (1 + exp(-a x))."""
    with np.errstate(over='ignore'):
        return float(b / (1.0 + np.exp(-a * float(x))))


def mix(own, peer, w):
    """w * own + (1 - w) * peer in float32."""
    return (np.asarray(own, dtype=np.float32) * np.float32(w)
            + np.asarray(peer, dtype=np.float32) * np.float32(1.0 - w)).astype(np.float32)


def lw_merge(own, peer, cooperation_type, a, b=1.0, weight_kind=sasrec_weight_kind):
    """Layer-wise cooperation: the own weights (an ordered dict, the model's order) mixed with the
    peer's pre-merge snapshot. Returns (new weights, {name: gate used}) ."""
    name_of_type = LW_ALIASES.get(cooperation_type, cooperation_type)
    if name_of_type not in LW_ROLES:
        canonical_type(cooperation_type)  # the error names the types
    roles = LW_ROLES[name_of_type]
    criterion = l1_contrast if name_of_type.endswith('L1norm') else (lambda u, c: entropy(u) - entropy(c))
    out, gates, w = OrderedDict(), OrderedDict(), None
    for name, value in own.items():
        role = roles.get(weight_kind(name))
        if role is None:
            out[name] = value
            continue
        if role == _CRITERION or w is None:
            w = gate(criterion(value, peer[name]), a, b)
        out[name] = mix(value, peer[name], w)
        gates[name] = w
    return out, gates


def replaced_mask(weights, percent):
    """Where PW replaces a tensor's entries: |w| <= the ``percent`` percentile of |w| (linear
    interpolation, as numpy's default), compared in float32 as the release compares."""
    mag = np.abs(np.asarray(weights, dtype=np.float32))
    threshold = np.float32(np.percentile(mag, percent))
    return ~(mag > threshold)


def pw_merge(own, peer, percent):
    """Parameter-wise cooperation: the weakest ``percent``% of each >= 2-D tensor taken from the peer."""
    out = OrderedDict()
    for name, value in own.items():
        value = np.asarray(value)
        if value.ndim < 2:
            out[name] = value
            continue
        out[name] = np.where(replaced_mask(value, percent), np.asarray(peer[name], dtype=value.dtype), value)
    return out


def noise_sigma(epoch, rate, period):
    """The noise's standard deviation after 0-based ``epoch``: rate ** (epoch // period + 1)."""
    return float(rate) ** (epoch // int(period) + 1)


def add_noise(weights, percent, sigma, rng):
    """The noise control: in each >= 2-D tensor, N(0, sigma^2) added to the entries with |w| strictly
    below the ``percent`` percentile of |w| (float32, as released); 1-D tensors are kept."""
    out = OrderedDict()
    for name, value in weights.items():
        value = np.asarray(value)
        if value.ndim < 2:
            out[name] = value
            continue
        mag = np.abs(value.astype(np.float32))
        weak = mag < np.float32(np.percentile(mag, percent))
        noise = rng.normal(0.0, sigma, size=value.shape).astype(np.float32)
        out[name] = (value + noise * weak).astype(value.dtype)
    return out
