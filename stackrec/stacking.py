"""StackRec's stacking methods as pure functions on weight dicts (reference sections 5 and 9).

A trained shallow model of M blocks initialises a deeper one of L blocks. Which old block each new
block copies is the *rule* (one per released module file), what is copied is the *method*:

* rule ``'double'`` (ops.py, L = 2M, NextItNet and GRec): stackA i//2, stackC i mod M, stackR i < M
  (the rest fresh), stackE and from_scratch all fresh (section 5.1);
* rule ``'copytop'`` (ops_copytop.py, L = M + top, top 16): stackC repeats the top blocks on top,
  stackA duplicates each top block in place (section 5.2);
* rule ``'modules'`` (Modules.py of SASRec/SSE-PT, hard-coded +6 there, ``top`` here): stackC
  src(i) = i - top and stackA src(i) = (i - top)//2 + top for the top new blocks. For 18 -> 24 stackA
  gives [0..17, 12,12,13,13,14,14], not a doubling of the top six [P14]; kept as released.

Method names are case-insensitive (the README writes stackR, the code StackR [P13]). The deep
model's own fresh initialisation supplies everything not copied: the output softmax is never copied
[P11]; under stackA/stackC every LayerNorm and scale restarts (1/0 and alpha 0), so the stacked
network starts as embedding -> identity -> fresh softmax; only stackR keeps its bottom half intact.
stackA ignores dilation parity (new block i may take a kernel trained at the other dilation) as
released [P12].

Copies are independent arrays. The PyTorch release builds its copies with nn.Parameter(state_dict
[name]), which shares storage, so new SASRec blocks mapped to one old block keep the same Q/K/V
tensor for the whole training and their updates add up [P15]. That is a side effect of the
loading code, not part of the method (the TF release's copies are independent variables), and a
tied copy would no longer be a model with L independent blocks, so it is not emulated.

Weight names (the models use them): NextItNet family (NextItNet, GRec) 'E', per block i
conv{i}a_W/_b, conv{i}b_W/_b, ln{i}a_g/_b, ln{i}b_g/_b, alpha{i}, output Ws/bs; SASRec family
(SASRec, SSE-PT) item_emb, pos_emb (user_emb for SSE-PT), ln_pre_g/_b, per block i b{i}_q/_k/_v
_W/_b, b{i}_na_g/_b, b{i}_f1/_f2_W/_b, b{i}_nf_g/_b, b{i}_sa, b{i}_sf, output final_W/final_b.
"""
import re
from collections import OrderedDict

import numpy as np

from recsys_core.errors import UserError

METHODS = ('from_scratch', 'stackA', 'stackC', 'stackR', 'stackE')
RULES = OrderedDict([('double', METHODS),                                  # ops.py / ops_original.py
                     ('copytop', ('from_scratch', 'stackA', 'stackC')),    # ops_copytop.py
                     ('modules', ('from_scratch', 'stackA', 'stackC'))])   # Modules.py (SASRec, SSE-PT)
DEFAULT_TOP = {'copytop': 16, 'modules': 6}
FAMILIES = {'nextitnet': 'nextitnet', 'grec': 'nextitnet', 'sasrec': 'sasrec', 'ssept': 'sasrec'}
FAMILY_METHODS = {'nextitnet': METHODS, 'sasrec': ('from_scratch', 'stackA', 'stackC')}  # section 5.4

_BLOCK_KEY = {'nextitnet': re.compile(r'^conv(\d+)a_W$'), 'sasrec': re.compile(r'^b(\d+)_q_W$')}
_CONV = ('conv{}a_W', 'conv{}a_b', 'conv{}b_W', 'conv{}b_b')
_LN_ALPHA = ('ln{}a_g', 'ln{}a_b', 'ln{}b_g', 'ln{}b_b', 'alpha{}')
_QKV = ('b{}_q_W', 'b{}_q_b', 'b{}_k_W', 'b{}_k_b', 'b{}_v_W', 'b{}_v_b')


def canonical_method(method):
    """The README's spelling of a method name given in any case."""
    names = {m.lower(): m for m in METHODS}
    key = str(method).lower()
    if key not in names:
        raise UserError('Unknown stacking method {!r}; use one of: {}'.format(method, ', '.join(METHODS)))
    return names[key]


def _family(family):
    key = str(family).lower()
    if key not in FAMILIES:
        raise UserError('Unknown model family {!r} for stacking; use one of: {}'.format(family, ', '.join(FAMILIES)))
    return FAMILIES[key]


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError('{} must be a positive integer, not {!r}'.format(name, value))
    return int(value)


def block_sources(method, old_blocks, new_blocks, rule, top=None):
    """For each new block, the index of the old block it copies, or None where it starts fresh.

    Depths are checked only for the methods that copy blocks: from_scratch and stackE copy no block,
    so any depths do. ``top`` is the number of blocks added by 'copytop' (default 16) and 'modules'
    (default 6); 'double' has none.
    """
    method = canonical_method(method)
    M, L = _positive('old_blocks', old_blocks), _positive('new_blocks', new_blocks)
    if rule not in RULES:
        raise UserError('Unknown stacking rule {!r}; use one of: {}'.format(rule, ', '.join(RULES)))
    if method not in RULES[rule]:
        raise UserError('Stacking rule {} implements only {} (not {}), as released'.format(
            rule, ', '.join(RULES[rule]), method))
    if rule == 'double':
        if top is not None:
            raise UserError("Stacking rule double doubles the stack; it takes no top (top={!r})".format(top))
    else:
        top = DEFAULT_TOP[rule] if top is None else _positive('top', top)
    if method in ('from_scratch', 'stackE'):
        return [None] * L
    if rule == 'double':
        if L != 2 * M:
            raise UserError('{} under rule double needs new_blocks = 2 * old_blocks; got {} -> {}'.format(method, M, L))
        src = {'stackA': lambda i: i // 2, 'stackC': lambda i: i % M, 'stackR': lambda i: i if i < M else None}[method]
    else:
        if L != M + top:
            raise UserError('{} under rule {} adds top={} blocks: new_blocks must be {} + {} = {}, not {}'.format(
                method, rule, top, M, top, M + top, L))
        if rule == 'copytop':   # section 5.2; base = L - 2*top
            base = L - 2 * top
            src = {'stackC': lambda i: i if i < L - top else i - top,
                   'stackA': lambda i: i if i < base else (i - base) // 2 + base}[method]
        else:                   # section 5.4, the release's formulas with 6 -> top
            src = {'stackC': lambda i: i - top if i >= L - top else i,
                   'stackA': lambda i: (i - top) // 2 + top if i >= L - top else i}[method]
    sources = [src(i) for i in range(L)]
    bad = [(i, j) for i, j in enumerate(sources) if j is not None and not 0 <= j < M]
    if bad:
        raise UserError('{} under rule {} (top={}) does not fit {} -> {} blocks: new block {} would copy old block {}, '
                        'which a stack of {} blocks does not have'.format(method, rule, top, M, L, *bad[0], M))
    return sources


def _copy_plan(method, family, sources, fresh):
    """(target name, source name) pairs of every copied weight."""
    if method == 'from_scratch':
        return []
    if family == 'nextitnet':
        plan = [('E', 'E')]
        for i, j in enumerate(sources):
            if j is not None:
                names = _CONV + _LN_ALPHA if method == 'stackR' else _CONV
                plan += [(n.format(i), n.format(j)) for n in names if n.format(i) in fresh]  # no alpha: ops_original
        return plan
    plan = [(n, n) for n in ('item_emb', 'pos_emb', 'user_emb') if n != 'user_emb' or n in fresh]
    for i, j in enumerate(sources):
        if j is not None:
            plan += [(n.format(i), n.format(j)) for n in _QKV]
    return plan


def _count_check(weights, family, blocks, which):
    found = sorted(int(m.group(1)) for m in map(_BLOCK_KEY[family].match, weights) if m)
    if found != list(range(blocks)):
        raise UserError('The {} weights hold {} {} blocks, not {} ({}_blocks)'.format(
            which, len(found), family, blocks, which))


def _checked(method, family, old_blocks, new_blocks, rule, top):
    """(method, family, block sources) after every check that needs no weights."""
    method, family = canonical_method(method), _family(family)
    if method not in FAMILY_METHODS[family]:
        raise UserError('The release defines {} only for the NextItNet family (ops.py); the {} family stacks with: {}'
                        .format(method, family, ', '.join(FAMILY_METHODS[family])))
    return method, family, block_sources(method, old_blocks, new_blocks, rule, top)


def _stack(old, fresh, method, family, old_blocks, new_blocks, rule, top):
    method, family, sources = _checked(method, family, old_blocks, new_blocks, rule, top)
    _count_check(fresh, family, new_blocks, 'new')
    if any(j is not None for j in sources):
        _count_check(old, family, old_blocks, 'old')
    plan = _copy_plan(method, family, sources, fresh)
    missing = sorted({s for _, s in plan if s not in old})
    if missing:
        raise UserError('{}: the shallow model has no weight {} (is it a {} model of {} blocks?)'.format(
            method, ', '.join(missing[:5]) + (' ...' if len(missing) > 5 else ''), family, old_blocks))
    for t, s in plan:
        if t not in fresh:
            raise UserError('{}: the deep model has no weight {}'.format(method, t))
        if np.shape(old[s]) != np.shape(fresh[t]):
            raise UserError('{}: weight {} has shape {} in the shallow model but {} has {} in the deep model{}'.format(
                method, s, np.shape(old[s]), t, np.shape(fresh[t]),
                ' (stages must share one vocabulary, P1)' if s in ('E', 'item_emb', 'user_emb') else ''))
    out = OrderedDict((k, np.array(v)) for k, v in fresh.items())
    for t, s in plan:
        out[t] = np.array(old[s], dtype=out[t].dtype)   # a copy, never a view of the source [P15]
    return out, [t for t, _ in plan]


def stack_weights(old, fresh, method, family, old_blocks, new_blocks, rule, top=None):
    """The deep model's full weight dict: ``fresh`` (its own initialisation, e.g. LN 1/0, alpha 0,
    a new softmax) with the method's weights copied from ``old``. Neither input is modified and
    the result shares no array with them.

    Copied (section 5): the item embedding for every method but from_scratch (SASRec family: item,
    position and, when the deep model has one, user embedding); NextItNet family: stackA/stackC the
    conv W,b of each block's source, stackR conv, LN and alpha of the bottom M blocks, stackE
    nothing else; SASRec family: the Q/K/V weights and biases of each block's source only.
    """
    return _stack(old, fresh, method, family, old_blocks, new_blocks, rule, top)[0]


def stacking_mapping(method, family, old_blocks, new_blocks, rule, top=None):
    """A ``mapping(source_weights, target_weights)`` for :class:`recsys_core.trainer.WarmStart`.

    It returns only the weights the method copies (so the trainer's "k of N weights copied" is
    true); the target keeps its fresh values for the rest. The method, family and depths are checked
    here, before any training; from_scratch copies nothing and needs no warm start.
    """
    if canonical_method(method) == 'from_scratch':
        raise UserError('from_scratch copies no weight: train the deep model without a warm start')
    _checked(method, family, old_blocks, new_blocks, rule, top)

    def mapping(source_weights, target_weights):
        full, copied = _stack(source_weights, target_weights, method, family, old_blocks, new_blocks, rule, top)
        return OrderedDict((k, full[k]) for k in copied)
    return mapping
