"""NextItNet and CpRec: shapes, causality, parameter sharing, block softmax, fast inference,
vocabularies, the released split, sampled softmax, model files and learning on real data."""
import math
import os

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest

from cprec import CpRec, blockwise
from nextitnet import NextItNet, sampled_softmax
from recsys_core.backend import compile_function
from recsys_core.data import load_events
from recsys_core.errors import UserError
from recsys_core.evaluation import evaluate_last_items
from recsys_core.sequences import legacy_split, left_pad, windows

from conftest import seq_frame

LASTFM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '..', 'shared', 'data',
                      'lastfm_sessions', 'user-filter-20000items-session5.csv')
SCHEMES = ('original', 'cross-layer', 'cross-block', 'adjacent-layer', 'adjacent-block')



@pytest.fixture(scope='module')
def small_seqs():
    rng = np.random.default_rng(0)
    return seq_frame([list(rng.integers(0, 60, size=rng.integers(2, 9))) for _ in range(200)])


def prepared(cls, data, **params):
    """A model with its vocabulary and initial weights, without training (nothing compiled)."""
    model = cls(**params)
    model._training_rows(data, verbose=False)
    model.weights = model._init_weights()
    model._make_shared()
    return model


def hidden_fn(model):
    X = pt.imatrix('X')
    return compile_function([X], model._hidden(X))


@pytest.fixture(scope='module')
def lastfm_split():
    data = load_events(LASTFM, verbose=False)
    train_ids, test_ids = legacy_split(data['SessionId'].nunique(), 0.2)
    return data[data['SessionId'].isin(train_ids)], data[data['SessionId'].isin(test_ids)]


def test_legacy_split_matches_released_sizes_and_permutation():
    train, test = legacy_split(1804, 0.2)
    assert (len(train), len(test)) == (1444, 360)
    np.random.seed(10)
    expected = np.random.permutation(np.arange(1804))
    assert np.array_equal(np.concatenate([train, test]), expected)
    state = np.random.get_state()[1][:5].copy()
    legacy_split(50, 0.2)
    assert np.array_equal(np.random.get_state()[1][:5], state)  # the caller's global RNG is untouched


def test_windows_and_left_padding():
    assert windows(list(range(7)), 3) == [[1, 2, 3], [4, 5, 6]]  # the oldest single item is dropped
    assert windows([1, 2], 5) == [[1, 2]]
    assert left_pad([[1, 2], [3, 4, 5, 6]], 3, 0).tolist() == [[0, 1, 2], [4, 5, 6]]


def test_nextitnet_vocabulary_is_first_appearance_with_pad_zero():
    model = NextItNet(max_len=4)
    rows = model._training_rows(seq_frame([['b', 'a'], ['c', 'b', 'a']]), verbose=False)
    assert list(model.vocab) == ['<PAD>', 'b', 'a', 'c'] and model.pad_index == 0
    assert rows.tolist() == [[0, 0, 1, 2], [0, 3, 1, 2]]


def test_cprec_vocabulary_is_frequency_ranked_with_counted_pad():
    model = CpRec(max_len=4)
    model._training_rows(seq_frame([['b', 'a'], ['c', 'b', 'a'], ['a', 'd']]), verbose=False)
    # counts: a 3, PAD 2+1+2 = 5, b 2, c 1, d 1 (ties by token)
    assert list(model.vocab) == ['<PAD>', 'a', 'b', 'c', 'd'] and model.pad_index == 0
    assert model.itemidmap.to_dict() == {'a': 1, 'b': 2, 'c': 3, 'd': 4}


def test_vocabulary_all_builds_ids_and_frequencies_over_the_whole_file():
    """vocabulary=all (the releases build their vocabulary, frequencies and length T before
    splitting): the test events join the vocabulary; training rows stay the training data's."""
    train = seq_frame([['b', 'a'], ['c', 'b', 'a']])
    test = seq_frame([['a', 'e', 'e'], ['f', 'a']])
    model = CpRec(max_len=4, vocabulary='all')
    rows = model._training_rows(train, verbose=False, vocab_data=test)
    # a 2+2, b 2, e 2, c 1, f 1; padding 2+1 (train) + 1+2 (test) = 6
    assert list(model.vocab) == ['<PAD>', 'a', 'b', 'e', 'c', 'f'] and rows.tolist() == [[0, 0, 2, 1], [0, 4, 2, 1]]
    assert list(model._freq) == [6, 4, 2, 2, 1, 1] and set(model.itemidmap.index) == set('abcef')
    model = CpRec(vocabulary='all')  # T = the longest sequence of the whole file (3); padding 1 + 1
    rows = model._training_rows(train, verbose=False, vocab_data=test)
    assert list(model.vocab) == ['a', '<PAD>', 'b', 'e', 'c', 'f'] and model.pad_index == 1 and rows.shape == (2, 3)
    model = NextItNet(max_len=4, vocabulary='all')  # first appearance: the training data, then the rest
    model._training_rows(train, verbose=False, vocab_data=test)
    assert list(model.vocab) == ['<PAD>', 'b', 'a', 'c', 'e', 'f']
    model = CpRec(max_len=4)  # vocabulary=train (default): vocab_data is not used
    model._training_rows(train, verbose=False, vocab_data=test)
    assert list(model.vocab) == ['<PAD>', 'a', 'b', 'c']


@pytest.mark.parametrize('cls', [NextItNet, CpRec])
def test_vocabulary_all_needs_the_other_events_and_vocab_is_an_alias(cls, capsys):
    model = cls()
    model.set_params(vocab='all')
    assert model.vocabulary == 'all' and 'vocab' not in model.get_params()
    assert 'SET   vocabulary   TO   all' in capsys.readouterr().out
    with pytest.raises(UserError, match='vocab_data'):
        model.fit(seq_frame([['b', 'a'], ['c', 'b', 'a']]), verbose=False)
    with pytest.raises(UserError, match='vocabulary'):
        cls(vocabulary='test')


def test_cprec_readme_flag_softmax_type_is_an_alias(capsys):
    model = CpRec()
    model.set_params(softmax_type='FullSoftmax', top_k=7)
    assert capsys.readouterr().out.splitlines()[0].startswith('SET   use_softmax_type   TO   FullSoftmax   ')
    params = model.get_params()
    assert params['use_softmax_type'] == 'FullSoftmax' and 'softmax_type' not in params
    assert CpRec(softmax_type='Block_for_Softmax').use_softmax_type == 'Block_for_Softmax'
    with pytest.raises(UserError, match='given twice'):
        model.set_params(softmax_type='FullSoftmax', use_softmax_type='FullSoftmax')
    with pytest.raises(UserError, match='use_softmax_type'):
        model.set_params(softmax_type='Full')


def _real_item_head(counts):
    """1 (the padding id, ranked first) + the fewest items holding 80% of the real occurrences."""
    share = np.cumsum(np.sort(counts)[::-1]) / counts.sum()
    return 1 + int(np.searchsorted(share, 0.8) + 1)


def test_cprec_auto_blocks_leave_padding_out_of_the_frequency_shares():
    """80% padding: <PAD> ranks first (as released) but the 80%/95% shares count real items only,
    so the head holds the frequent items instead of the padding class alone."""
    rng = np.random.default_rng(4)
    seqs = [[str(x) for x in rng.zipf(1.3, size=2) % 40 + 1] for _ in range(300)]
    model = prepared(CpRec, seq_frame(seqs), dilated_channels=8, dilations=[1], max_len=10, block='auto')
    assert model.pad_index == 0 and model._freq[0] == 8 * 300  # 80% of the 3000 positions
    counts = pd.Series([x for s in seqs for x in s]).value_counts().values
    assert model.bounds[0] == _real_item_head(counts) > 1


def test_cprec_auto_blocks_leave_a_files_literal_padding_out_of_the_shares():
    """A pre-padded file (NextItNet's README pads with a literal 0) and a literal <PAD> (the
    released loader's pad token, which it counts as padding): neither takes the head alone."""
    rng = np.random.default_rng(4)
    real = [[str(x) for x in rng.zipf(1.3, size=2) % 40 + 1] for _ in range(300)]
    model = prepared(CpRec, seq_frame([['0'] * 8 + s for s in real]), dilated_channels=8, dilations=[1],
                     block='auto')
    counts = pd.Series([x for s in real for x in s]).value_counts().values
    assert model.vocab[0] == '0' and model.bounds[0] == _real_item_head(counts)
    assert '0' in model.itemidmap.index  # an ordinary class otherwise, as in the release
    model = prepared(CpRec, seq_frame([['<PAD>'] * 4 + s for s in real]), dilated_channels=8, dilations=[1],
                     max_len=10, block='auto')
    assert list(model.vocab).count('<PAD>') == 1 and model.pad_index == 0 and '<PAD>' not in model.itemidmap.index
    assert model._freq[0] == 8 * 300 and model.bounds[0] == _real_item_head(counts)


@pytest.mark.parametrize('softmax_type', ['Block_Input_Full', 'Block_for_Softmax', 'Block_Input_Softmax',
                                          'Block_Input_Softmax_Inference'])
def test_cprec_embedding_factor_one_is_the_plain_embedding_and_softmax(small_seqs, softmax_type):
    """The release's help text: factor 1 means the basic embedding, so no block tables, no d x d
    projections and compression 1x: the same network, and the same initial weights, as FullSoftmax."""
    params = dict(dilated_channels=8, dilations=[1], max_len=9, block=[10, 30])
    model = prepared(CpRec, small_seqs, use_softmax_type=softmax_type, use_embedding_type_factor=1, **params)
    full = prepared(CpRec, small_seqs, use_softmax_type='FullSoftmax', **params)
    assert list(model.weights) == list(full.weights) and model.bounds is None
    for name in full.weights:
        np.testing.assert_array_equal(model.weights[name], full.weights[name])
    assert model.parameter_counts()['total'] == model.uncompressed_parameters()
    assert not model.block_input and not model.block_output
    widths = prepared(CpRec, small_seqs, use_softmax_type=softmax_type, use_embedding_type_factor=1,
                      block_dims=[8, 8, 8], **params)  # explicit widths keep the block structure
    assert widths.bounds == [10, 30, widths.n_vocab]


@pytest.mark.parametrize('cls,params', [(NextItNet, {}), (CpRec, {'use_softmax_type': 'Block_Input_Softmax'})])
def test_output_shapes_and_causality(small_seqs, cls, params):
    model = prepared(cls, small_seqs, dilated_channels=16, dilations=[1, 2], max_len=9, **params)
    fn = hidden_fn(model)
    rng = np.random.default_rng(1)
    X = rng.integers(0, model.n_vocab, size=(3, 12)).astype(np.int32)
    h = fn(X)
    assert h.shape == (3, 12, 16)
    scores = model._scores_fn()(X)
    assert scores.shape == (3, model.n_vocab) and np.all(np.isneginf(scores[:, model.pad_index]))
    for t in (0, 5, 11):
        X2 = X.copy()
        X2[:, t] = (X2[:, t] + 1) % model.n_vocab
        h2 = fn(X2)
        np.testing.assert_array_equal(h2[:, :t], h[:, :t])  # nothing before t changes
        assert not np.allclose(h2[:, t], h[:, t])


@pytest.mark.parametrize('scheme', SCHEMES)
def test_sharing_parameter_counts_follow_the_formula(small_seqs, scheme):
    C, k, L = 8, 3, 3
    model = prepared(CpRec, small_seqs, dilated_channels=C, dilations=[1, 2, 4], kernel_size=k, max_len=9,
                     use_softmax_type='FullSoftmax', use_parametersharing_type=scheme)
    distinct = {'original': 2 * L, 'cross-layer': 1, 'cross-block': 2, 'adjacent-layer': L,
                'adjacent-block': 2 * math.ceil(L / 2)}[scheme]
    assert model.parameter_counts()['middle'] == distinct * (k * C * C + C) + 4 * L * C
    blocks = model._residual_blocks()  # sharing = blocks holding the same Conv objects
    assert len({id(c) for b in blocks for c in (b.conv_a, b.conv_b)}) == distinct
    if scheme == 'adjacent-block':  # blocks 0 and 1 pair up, block 2 is alone
        assert blocks[0].conv_a is blocks[1].conv_a and blocks[2].conv_a is not blocks[1].conv_a


def test_shared_kernel_receives_every_users_gradient(small_seqs):
    model = prepared(CpRec, small_seqs, dilated_channels=8, dilations=[1, 2], max_len=9,
                     use_softmax_type='FullSoftmax', use_parametersharing_type='cross-layer', tied_init=False)
    assert [n for n in model.shared if n.startswith('conv')] == ['conv_all_W', 'conv_all_b']
    X = pt.imatrix('X')
    cost = model._hidden(X).sum()
    g = compile_function([X], pytensor.grad(cost, model.shared['conv_all_W']))
    assert np.abs(g(np.ones((2, 5), dtype=np.int32))).sum() > 0


def _two_tail_tree(rng, d, bounds):
    """Random block softmax weights: a head over bounds[0] items + 2 cluster entries, two tails."""
    head = pytensor.shared(rng.normal(size=(d, bounds[0] + 2)).astype('float32'))
    downs = [pytensor.shared(rng.normal(size=(d, w)).astype('float32')) for w in (3, 2)]
    outs = [pytensor.shared(rng.normal(size=(w, n)).astype('float32')) for w, n in ((3, 5), (2, 6))]
    return head, downs, outs


def test_block_softmax_is_a_distribution_and_matches_its_loss():
    rng = np.random.default_rng(2)
    d, bounds = 6, [4, 9, 15]
    head, downs, outs = _two_tail_tree(rng, d, bounds)
    H, y = pt.fmatrix('H'), pt.ivector('y')
    logp = compile_function([H], blockwise.block_log_probs(H, head, downs, outs, bounds))
    loss = compile_function([H, y], blockwise.block_softmax_loss(H, y, head, downs, outs, bounds))
    h = rng.normal(size=(7, d)).astype('float32')
    lp = logp(h)
    assert lp.shape == (7, 15)
    np.testing.assert_allclose(np.exp(lp).sum(axis=1), 1.0, rtol=1e-5)
    labels = np.array([0, 3, 4, 8, 9, 14, 2], dtype=np.int32)  # head, tail 1 and tail 2 labels
    np.testing.assert_allclose(loss(h, labels), -lp[np.arange(7), labels].mean(), rtol=1e-5)


def test_block_softmax_static_shape_form_gives_the_same_loss_and_gradients():
    """The masked form (for fixed-shape backends such as JAX) equals the row-gathering form,
    including a batch with no row in one tail."""
    rng = np.random.default_rng(5)
    d, bounds = 6, [4, 9, 15]
    head, downs, outs = _two_tail_tree(rng, d, bounds)
    H, y = pt.fmatrix('H'), pt.ivector('y')
    params = [head] + downs + outs
    fns = []
    for static in (False, True):
        loss = blockwise.block_softmax_loss(H, y, head, downs, outs, bounds, static_shapes=static)
        fns.append(compile_function([H, y], [loss] + pytensor.grad(loss, [H] + params)))
    h = rng.normal(size=(9, d)).astype('float32')
    for labels in ([0, 3, 4, 8, 9, 14, 2, 13, 5], [0, 1, 2, 3, 4, 5, 6, 7, 8]):  # the second leaves tail 2 empty
        gathered, masked = (f(h, np.array(labels, dtype=np.int32)) for f in fns)
        for a, b in zip(gathered, masked):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_block_softmax_with_every_item_in_the_head_is_the_full_softmax():
    rng = np.random.default_rng(3)
    W = rng.normal(size=(5, 11)).astype('float32')
    H = pt.fmatrix('H')
    logp = compile_function([H], blockwise.block_log_probs(H, pytensor.shared(W), [], [], [11]))
    h = rng.normal(size=(4, 5)).astype('float32')
    z = h @ W
    full = z - z.max(axis=1, keepdims=True)
    full = full - np.log(np.exp(full).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(logp(h), full, rtol=1e-5, atol=1e-6)


def _random_tree(rng, B, bounds, spread):
    n = len(bounds) - 1
    z = rng.normal(scale=spread, size=(B, bounds[0] + n))
    p_head = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    tails = [rng.dirichlet(np.full(bounds[j] - bounds[j - 1], 0.3), size=B) for j in range(1, n + 1)]
    full = np.concatenate([p_head[:, :bounds[0]]] + [p_head[:, bounds[0] + j - 1:bounds[0] + j] * tails[j - 1]
                                                      for j in range(1, n + 1)], axis=1)
    return p_head, tails, full


@pytest.mark.parametrize('batch', [1, 7, 64])
def test_fast_inference_exact_rule_always_gives_the_full_top_k(batch):
    rng = np.random.default_rng(batch)
    bounds, k = [10, 25, 60], 5
    for spread in (0.5, 2.0, 4.0):
        p_head, tails, full = _random_tree(rng, batch, bounds, spread)
        ids, probs, evaluated = blockwise.fast_top_k(p_head, lambda j, rows: tails[j - 1][rows], bounds, k,
                                                     'exact', pad_index=59)
        full[:, 59] = -1
        expected = np.sort(full, axis=1)[:, ::-1][:, :k]
        np.testing.assert_allclose(probs, expected, rtol=1e-12)
        assert np.array_equal(np.take_along_axis(full, ids, axis=1), probs)
    assert sum(evaluated) < 2 * batch or batch == 1  # pruning actually skips work at the largest spread


def test_fast_inference_released_rule_is_exact_when_its_pruning_is_safe():
    rng = np.random.default_rng(11)
    bounds, k = [10, 25, 60], 5
    p_head, tails, full = _random_tree(rng, 400, bounds, 3.0)
    ids, probs, _ = blockwise.fast_top_k(p_head, lambda j, rows: tails[j - 1][rows], bounds, k, 'released',
                                         pad_index=59)
    full[:, 59] = -1
    expected = np.sort(full, axis=1)[:, ::-1][:, :k]
    kth_head_item = np.sort(p_head[:, :bounds[0]], axis=1)[:, ::-1][:, k - 1]
    guaranteed = np.ones(len(full), dtype=bool)
    for j in (1, 2):
        token = p_head[:, bounds[0] + j - 1]
        skipped = (p_head[:, :bounds[0] + 2] > token[:, None]).sum(axis=1) >= k
        guaranteed &= ~skipped | (kth_head_item >= token)
    assert guaranteed.sum() > 100 and (~guaranteed).sum() > 0
    np.testing.assert_allclose(probs[guaranteed], expected[guaranteed], rtol=1e-12)


def test_fast_inference_prunes_only_at_its_own_top_k(small_seqs):
    """Block_Input_Softmax_Inference: only cut-off == top_k comes from the pruned top_k list; every
    other cut-off, and every call that does not name its cut-offs, ranks exactly (the tree's
    log-probabilities), and the model says which cut-offs were pruned."""
    model = prepared(CpRec, small_seqs, dilated_channels=8, dilations=[1], max_len=9, block=[10, 30],
                     use_softmax_type='Block_Input_Softmax_Inference', top_k=5)
    model.check_trained = lambda: None
    w = {k: np.zeros_like(v) for k, v in model.weights.items()}  # zero embeddings: h = ReLU(ln0b_b) = e_0
    w['ln0b_b'][0] = 1
    w['out_head'][0, 1:5] = 5.0  # four head items, the token of the spread-out tail 2 above them
    w['out_head'][0, 11], w['out_head'][0, 10] = 5.5, 4.9  # tail 1's token: just outside the top 5
    w['out_down1'][0, 0], w['out_tail1'][0, 3] = 1.0, 10.0  # id 13 takes nearly all of tail 1
    for name, value in w.items():
        model.shared[name].set_value(value)
    rng = np.random.default_rng(7)
    histories = [rng.integers(1, model.n_vocab, size=rng.integers(1, 8)).astype(np.int32) for _ in range(300)]
    targets = np.where(rng.random(300) < 0.2, 13, rng.integers(1, model.n_vocab, size=300))
    exact = NextItNet.rank_last_items(model, histories, targets, 'standard', 20)
    ids, _ = model.fast_top_k(model.windows_of(histories), 5)
    hit = ids == targets[:, None]
    pruned = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, np.inf)
    assert (np.isinf(pruned) & (exact <= 5)).any()  # the released rule misses items of skipped tails
    np.testing.assert_array_equal(model.rank_last_items(histories, targets, 'standard', 20), exact)
    assert model.pruned_cut_offs([5, 20]) == [] and model.last_inference_stats['top_k'] == 5
    np.testing.assert_array_equal(model.last_inference_stats['pruned_ranks'], pruned)
    ranks = model.rank_last_items(histories, targets, 'standard', 20, cut_offs=[1, 5, 20])
    np.testing.assert_array_equal(ranks, np.stack([exact, pruned, exact]))
    assert model.pruned_cut_offs([1, 5, 20]) == [5] and model.pruned_cut_offs([1, 20]) == []
    ranks = model.rank_last_items(histories, targets, 'standard', 20, cut_offs=[3, 20])  # top_k not asked
    np.testing.assert_array_equal(ranks, np.stack([exact, exact]))
    assert model.pruned_cut_offs([3, 20]) == []
    np.testing.assert_array_equal(model.rank_last_items(histories, targets, 'standard', 5, cut_offs=[5]),
                                  pruned[None])  # the fast pass alone
    assert model.pruned_cut_offs([5]) == [5]
    plain = prepared(NextItNet, small_seqs, dilated_channels=8, dilations=[1], max_len=9)
    plain.check_trained = lambda: None
    ranks = plain.rank_last_items(histories[:5], targets[:5], 'standard', 20, cut_offs=[5, 20])
    assert ranks.shape == (2, 5) and np.array_equal(ranks[0], ranks[1])


def test_block_boundaries():
    counts = np.array([50, 30, 10, 5, 3, 1, 1, 0])
    assert blockwise.resolve_boundaries('auto', counts) == [2, 4, 8]  # 80% and 95% of the occurrences
    assert blockwise.resolve_boundaries('default', counts) == [2, 4, 8]  # V too small for 7000/15000
    assert blockwise.resolve_boundaries('default', np.ones(20000)) == [7000, 15000, 20000]
    assert blockwise.resolve_boundaries([3, 6], counts) == [3, 6, 8]
    with pytest.raises(Exception, match='does not fit'):
        blockwise.resolve_boundaries([6, 3], counts)
    assert blockwise.tail_dims(512, 3, 4, [], softmax=False) == [128, 32, 8]
    assert blockwise.tail_dims(512, 3, 4, [], softmax=True) == [128, 32, 2]  # the release squares its factor
    assert blockwise.tail_dims(100, 2, 4, [], softmax=False) == [25, 6]


def test_sampled_softmax_matches_a_direct_computation():
    rng = np.random.default_rng(5)
    V, n = 40, 8
    ids, tries = sampled_softmax.sample_unique_log_uniform(rng, n, V)
    assert len(set(ids.tolist())) == n and tries >= n
    h = rng.normal(size=(6, 4)).astype('float32')
    W = rng.normal(size=(V, 4)).astype('float32')
    b = rng.normal(size=V).astype('float32')
    labels = np.array([ids[0], 1, 2, 3, 30, 39], dtype=np.int32)  # row 0 has an accidental hit
    tq = np.log(sampled_softmax.expected_counts(labels, tries, n, V)).astype('float32')
    sq = np.log(sampled_softmax.expected_counts(ids, tries, n, V)).astype('float32')
    Hs, ys, Ss, tqs, sqs = pt.fmatrix(), pt.ivector(), pt.ivector(), pt.fvector(), pt.fvector()
    fn = compile_function([Hs, ys, Ss, tqs, sqs], sampled_softmax.sampled_softmax_loss(
        Hs, ys, pytensor.shared(W), pytensor.shared(b), Ss, tqs, sqs))
    expected = []
    for i in range(6):
        logits = [h[i] @ W[labels[i]] + b[labels[i]] - tq[i]]
        logits += [h[i] @ W[s] + b[s] - sq[c] for c, s in enumerate(ids) if s != labels[i]]
        logits = np.array(logits, dtype=np.float64)
        expected.append(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[0])
    np.testing.assert_allclose(fn(h, labels, ids.astype(np.int32), tq, sq), np.mean(expected), rtol=1e-4)


def _popularity(train, test):
    from baselines.pop import Pop
    return evaluate_last_items(Pop().fit(train, verbose=False), test, cut_off=[20], verbose=False)


@pytest.mark.parametrize('cls,params', [
    (NextItNet, {}),
    (CpRec, {'use_softmax_type': 'Block_Input_Softmax', 'use_parametersharing_type': 'cross-block'}),
])
@pytest.mark.slow
def test_training_on_lastfm_beats_popularity_and_survives_a_model_file(lastfm_split, tmp_path, cls, params):
    train, test = lastfm_split
    model = cls(dilated_channels=48, dilations=[1, 2], n_epochs=8, **params)
    model.fit(train, verbose=False)
    ours = evaluate_last_items(model, test, cut_off=[20], verbose=False)
    pop = _popularity(train, test)
    assert ours['hr'][0] > pop['hr'][0] and ours['mrr'][0] > 1.5 * pop['mrr'][0], (ours, pop)
    known = list(train[train['SessionId'] == train['SessionId'].iloc[0]]['ItemId'].values[:3])
    ids, scores = model.recommend(known, k=5, exclude_seen=True)
    assert len(ids) == 5 and np.all(np.diff(scores) <= 0) and not set(ids) & set(known)
    assert '<PAD>' not in set(ids)
    path = str(tmp_path / 'model.pickle')
    model.savemodel(path)
    loaded = cls.loadmodel(path)
    again = evaluate_last_items(loaded, test, cut_off=[20], verbose=False)
    assert again['hr'] == ours['hr'] and again['mrr'] == ours['mrr']
    assert list(loaded.recommend(known, k=5, exclude_seen=True)[0]) == list(ids)


@pytest.mark.slow
def test_training_on_generated_sessions_beats_popularity(tiny_data):
    train, test = tiny_data
    model = CpRec(dilated_channels=32, dilations=[1, 2], n_epochs=10, max_len=10, batch_size=32,
                  use_softmax_type='Block_Input_Softmax_Inference', top_k=20, block='auto')
    model.fit(train, verbose=False)
    ours = evaluate_last_items(model, test, cut_off=[20], verbose=False)
    pop = _popularity(train, test)
    assert ours['mrr'][0] > 1.1 * pop['mrr'][0], (ours, pop)  # popularity is strong on this long-tailed data
    assert model.last_inference_stats['rows'] > 0

