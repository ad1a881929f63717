"""StackRec's stacking methods on weight dicts (stackrec.stacking; reference sections 5 and 9)."""
import copy

import numpy as np
import pytest

from recsys_core.errors import UserError
from stackrec.stacking import block_sources, canonical_method, stack_weights, stacking_mapping

V, C, T = 7, 4, 5   # vocabulary, width, positions


def nextitnet_weights(blocks, rng, fresh=False):
    """NextItNet-family weights; fresh ones as the deep model initialises them (LN 1/0, alpha 0)."""
    w = {'E': rng.standard_normal((V, C)), 'Ws': rng.standard_normal((V, C)), 'bs': rng.standard_normal(V)}
    for i in range(blocks):
        for c in 'ab':
            w['conv{}{}_W'.format(i, c)] = rng.standard_normal((1, 3, C, C))
            w['conv{}{}_b'.format(i, c)] = rng.standard_normal(C)
            w['ln{}{}_g'.format(i, c)] = np.ones(C) if fresh else rng.standard_normal(C)
            w['ln{}{}_b'.format(i, c)] = np.zeros(C) if fresh else rng.standard_normal(C)
        w['alpha{}'.format(i)] = np.zeros(1) if fresh else rng.standard_normal(1)
    return w


def sasrec_weights(blocks, rng, fresh=False, users=False):
    w = {'item_emb': rng.standard_normal((V, C)), 'pos_emb': rng.standard_normal((T, C)),
         'ln_pre_g': rng.standard_normal(C), 'ln_pre_b': rng.standard_normal(C),
         'final_W': rng.standard_normal((C, V)), 'final_b': rng.standard_normal(V)}
    if users:
        w['user_emb'] = rng.standard_normal((3, C))
    for i in range(blocks):
        for part in ('q', 'k', 'v', 'f1', 'f2'):
            w['b{}_{}_W'.format(i, part)] = rng.standard_normal((C, C))
            w['b{}_{}_b'.format(i, part)] = rng.standard_normal(C)
        for ln in ('na', 'nf'):
            w['b{}_{}_g'.format(i, ln)] = np.ones(C) if fresh else rng.standard_normal(C)
            w['b{}_{}_b'.format(i, ln)] = np.zeros(C) if fresh else rng.standard_normal(C)
        for s in ('sa', 'sf'):
            w['b{}_{}'.format(i, s)] = np.zeros(1) if fresh else rng.standard_normal(1)
    return w


def origin(out, old, fresh):
    """name -> the old weight's name it equals, or 'fresh'."""
    result = {}
    for k, v in out.items():
        if np.array_equal(v, fresh[k]):
            result[k] = 'fresh'
        else:
            match = [n for n, o in old.items() if np.shape(o) == np.shape(v) and np.array_equal(o, v)]
            assert len(match) == 1, k
            result[k] = match[0]
    return result


# --- block maps ------------------------------------------------------------------------------------

def test_double_rule_maps():
    assert block_sources('stackA', 4, 8, 'double') == [0, 0, 1, 1, 2, 2, 3, 3]
    assert block_sources('stackC', 4, 8, 'double') == [0, 1, 2, 3, 0, 1, 2, 3]
    assert block_sources('stackR', 4, 8, 'double') == [0, 1, 2, 3, None, None, None, None]
    assert block_sources('stackE', 4, 8, 'double') == [None] * 8
    assert block_sources('from_scratch', 4, 8, 'double') == [None] * 8
    assert block_sources('stackA', 16, 32, 'double') == [i // 2 for i in range(32)]


def test_copytop_rule_maps():
    assert block_sources('stackC', 32, 48, 'copytop') == list(range(32)) + list(range(16, 32))
    assert block_sources('stackA', 32, 48, 'copytop') == list(range(16)) + [j for j in range(16, 32) for _ in (0, 1)]
    assert block_sources('stackC', 4, 6, 'copytop', top=2) == [0, 1, 2, 3, 2, 3]
    assert block_sources('stackA', 4, 6, 'copytop', top=2) == [0, 1, 2, 2, 3, 3]
    assert block_sources('from_scratch', 32, 48, 'copytop') == [None] * 48


def test_modules_rule_maps_as_released():
    assert block_sources('stackA', 18, 24, 'modules') == list(range(18)) + [12, 12, 13, 13, 14, 14]   # P14
    assert block_sources('stackC', 18, 24, 'modules') == list(range(18)) + list(range(12, 18))
    assert block_sources('stackC', 4, 6, 'modules', top=2) == [0, 1, 2, 3, 2, 3]
    assert block_sources('stackA', 4, 6, 'modules', top=2) == [0, 1, 2, 3, 3, 3]


def test_method_names_case_insensitive():
    for given, name in [('STACKA', 'stackA'), ('stackc', 'stackC'), ('StackR', 'stackR'), ('stackR', 'stackR'),
                        ('STACKE', 'stackE'), ('From_Scratch', 'from_scratch')]:
        assert canonical_method(given) == name
    assert block_sources('Stackr', 2, 4, 'double') == block_sources('StackR', 2, 4, 'double') == [0, 1, None, None]


@pytest.mark.parametrize('args, message', [
    (('stackX', 4, 8, 'double'), 'from_scratch, stackA, stackC, stackR, stackE'),
    (('stackA', 4, 8, 'triple'), 'double, copytop, modules'),
    (('stackA', 4, 6, 'double'), r'2 \* old_blocks'),
    (('stackC', 32, 40, 'copytop'), 'top=16'),
    (('stackA', 18, 25, 'modules'), 'top=6'),
    (('stackR', 32, 48, 'copytop'), 'implements only'),
    (('stackE', 18, 24, 'modules'), 'implements only'),
    (('stackA', 6, 12, 'modules', 6), 'does not have'),
    (('stackC', 2, 6, 'copytop', 4), 'does not have'),
    (('stackA', 4, 8, 'double', 4), 'no top'),
    (('stackA', 0, 0, 'double'), 'positive integer'),
])
def test_block_map_errors(args, message):
    with pytest.raises(UserError, match=message):
        block_sources(*args)


# --- copied versus fresh -----------------------------------------------------------------------------

def nextitnet_expected(method, M, L):
    """The reference's section 5.1 table, written out per name."""
    src = {'stackA': lambda i: i // 2, 'stackC': lambda i: i % M}
    exp = {'E': 'fresh' if method == 'from_scratch' else 'E', 'Ws': 'fresh', 'bs': 'fresh'}
    for i in range(L):
        for c in 'ab':
            for n in ('conv{}{}_W', 'conv{}{}_b'):
                if method in src:
                    exp[n.format(i, c)] = n.format(src[method](i), c)
                elif method == 'stackR' and i < M:
                    exp[n.format(i, c)] = n.format(i, c)
                else:
                    exp[n.format(i, c)] = 'fresh'
            for n in ('ln{}{}_g', 'ln{}{}_b'):
                exp[n.format(i, c)] = n.format(i, c) if method == 'stackR' and i < M else 'fresh'
        exp['alpha{}'.format(i)] = 'alpha{}'.format(i) if method == 'stackR' and i < M else 'fresh'
    return exp


@pytest.mark.parametrize('method', ['from_scratch', 'stackA', 'stackC', 'stackR', 'stackE'])
def test_nextitnet_family_copies(method):
    rng = np.random.default_rng(0)
    old, fresh = nextitnet_weights(4, rng), nextitnet_weights(8, rng, fresh=True)
    out = stack_weights(old, fresh, method, 'nextitnet', 4, 8, 'double')
    assert set(out) == set(fresh)
    assert origin(out, old, fresh) == nextitnet_expected(method, 4, 8)
    for i in range(8):
        if not (method == 'stackR' and i < 4):
            assert out['alpha{}'.format(i)] == 0 and (out['ln{}a_g'.format(i)] == 1).all()


def test_nextitnet_copytop_copies_convs_only():
    rng = np.random.default_rng(1)
    old, fresh = nextitnet_weights(4, rng), nextitnet_weights(6, rng, fresh=True)
    got = origin(stack_weights(old, fresh, 'stackA', 'grec', 4, 6, 'copytop', top=2), old, fresh)
    assert [got['conv{}b_W'.format(i)] for i in range(6)] == ['conv{}b_W'.format(j) for j in [0, 1, 2, 2, 3, 3]]
    assert got['E'] == 'E' and {got[k] for k in got if k.startswith(('ln', 'alpha', 'Ws', 'bs'))} == {'fresh'}


@pytest.mark.parametrize('method, users', [('stackA', False), ('stackC', True), ('from_scratch', True)])
def test_sasrec_family_copies_qkv_only(method, users):
    rng = np.random.default_rng(2)
    old, fresh = sasrec_weights(18, rng, users=users), sasrec_weights(24, rng, fresh=True, users=users)
    out = stack_weights(old, fresh, method, 'ssept' if users else 'sasrec', 18, 24, 'modules')
    got = origin(out, old, fresh)
    sources = block_sources(method, 18, 24, 'modules')
    for k, v in got.items():
        if method == 'from_scratch':
            assert v == 'fresh', k
        elif k in ('item_emb', 'pos_emb', 'user_emb'):
            assert v == k
        elif k.split('_')[1] in ('q', 'k', 'v'):
            i = int(k.split('_')[0][1:])
            assert v == 'b{}'.format(sources[i]) + k[k.index('_'):], k
        else:   # FFN, both LNs, both scales, LN_pre, final [section 5.4]
            assert v == 'fresh', k


def test_sasrec_family_has_no_stackR_or_stackE():
    rng = np.random.default_rng(3)
    old, fresh = sasrec_weights(2, rng), sasrec_weights(4, rng, fresh=True)
    for method in ('stackR', 'stackE'):
        with pytest.raises(UserError, match='only for the NextItNet family'):
            stack_weights(old, fresh, method, 'sasrec', 2, 4, 'double')
    got = origin(stack_weights(old, fresh, 'stackA', 'sasrec', 2, 4, 'double'), old, fresh)
    assert [got['b{}_q_W'.format(i)] for i in range(4)] == ['b0_q_W', 'b0_q_W', 'b1_q_W', 'b1_q_W']


def test_copies_are_independent_arrays():
    rng = np.random.default_rng(4)
    old, fresh = nextitnet_weights(2, rng), nextitnet_weights(4, rng, fresh=True)
    out = stack_weights(old, fresh, 'stackC', 'nextitnet', 2, 4, 'double')
    for k, v in out.items():
        assert not any(np.shares_memory(v, o) for o in list(old.values()) + list(fresh.values())), k
    assert not np.shares_memory(out['conv0a_W'], out['conv2a_W'])   # both from old block 0 [P15]
    out['conv0a_W'] += 1
    assert np.array_equal(out['conv2a_W'], old['conv0a_W'])


def bad_inputs():
    rng = np.random.default_rng(5)
    old, fresh = nextitnet_weights(4, rng), nextitnet_weights(8, rng, fresh=True)
    no_conv = {k: v for k, v in old.items() if k != 'conv3b_b'}
    no_emb = {k: v for k, v in old.items() if k != 'E'}
    small_vocab = dict(old, E=old['E'][:-1])
    return [
        (no_conv, fresh, 'stackA', 4, 8, 'conv3b_b'),
        (no_emb, fresh, 'stackE', 4, 8, 'no weight E'),
        (small_vocab, fresh, 'stackC', 4, 8, 'one vocabulary'),
        (nextitnet_weights(3, rng), fresh, 'stackA', 4, 8, 'old weights hold 3'),
        (old, nextitnet_weights(6, rng, fresh=True), 'stackA', 4, 8, 'new weights hold 6'),
        (old, fresh, 'stackA', 4, 6, '2 \\* old_blocks'),
        (old, fresh, 'stackQ', 4, 8, 'Unknown stacking method'),
    ]


@pytest.mark.parametrize('case', range(7))
def test_bad_input_one_error_inputs_unchanged(case):
    old, fresh, method, M, L, message = bad_inputs()[case]
    before = copy.deepcopy((old, fresh))
    with pytest.raises(UserError, match=message):
        stack_weights(old, fresh, method, 'nextitnet', M, L, 'double')
    for was, now in zip(before, (old, fresh)):
        assert set(was) == set(now) and all(np.array_equal(was[k], now[k]) for k in was)


def test_inputs_unchanged_after_stacking():
    rng = np.random.default_rng(6)
    old, fresh = nextitnet_weights(2, rng), nextitnet_weights(4, rng, fresh=True)
    before = copy.deepcopy((old, fresh))
    stack_weights(old, fresh, 'stackR', 'nextitnet', 2, 4, 'double')
    for was, now in zip(before, (old, fresh)):
        assert all(np.array_equal(was[k], now[k]) for k in was)


def test_mapping_for_warm_start_returns_only_copied_weights():
    rng = np.random.default_rng(7)
    old, fresh = nextitnet_weights(2, rng), nextitnet_weights(4, rng, fresh=True)
    mapping = stacking_mapping('stacka', 'nextitnet', 2, 4, 'double')
    copied = mapping(old, fresh)
    assert set(copied) == {'E'} | {'conv{}{}_{}'.format(i, c, p) for i in range(4) for c in 'ab' for p in 'Wb'}
    assert np.array_equal(copied['conv3b_W'], old['conv1b_W'])
    assert set(stacking_mapping('stackE', 'nextitnet', 2, 4, 'double')(old, fresh)) == {'E'}


def test_mapping_checks_before_training():
    with pytest.raises(UserError, match='without a warm start'):
        stacking_mapping('from_scratch', 'nextitnet', 2, 4, 'double')
    with pytest.raises(UserError, match='2 \\* old_blocks'):
        stacking_mapping('stackA', 'nextitnet', 2, 5, 'double')
    with pytest.raises(UserError, match='only for the NextItNet family'):
        stacking_mapping('stackR', 'sasrec', 2, 4, 'double')
    with pytest.raises(UserError, match='Unknown model family'):
        stacking_mapping('stackA', 'bert4rec', 2, 4, 'double')
