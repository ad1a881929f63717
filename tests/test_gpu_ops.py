"""Each custom Op against its reference composition on random inputs, gradients included."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import gpu_ops
from gpu_ops.ranking import ranks_from_counts
from gpu_ops.rows import RowGather, RowScatter
from recsys_core.backend import compile_mode


def both(build, *inputs):
    """Compile ``build`` with custom ops on and off; return the two output lists."""
    outs = []
    for enabled in (True, False):
        gpu_ops.set_custom_ops(enabled)
        try:
            outs.append(pytensor.function(inputs, build(*inputs), mode=compile_mode()))
        finally:
            gpu_ops.set_custom_ops(True)
    return outs


@pytest.mark.parametrize('rows,cols', [(5, 5), (7, 40), (1, 3)])
def test_positive_diag_matches_reference_with_gradient(rows, cols):
    x = pt.matrix('x', dtype='float32')
    w = pt.vector('w', dtype='float32')

    def build(x, w):
        d = gpu_ops.positive_diag(x)
        return [d, pytensor.grad(pt.sum(d * w), x)]
    custom, ref = both(build, x, w)
    rng = np.random.RandomState(0)
    a = rng.randn(rows, cols).astype('float32')
    wv = rng.randn(rows).astype('float32')
    for c, r in zip(custom(a, wv), ref(a, wv)):
        np.testing.assert_allclose(c, r, rtol=1e-6)
    np.testing.assert_allclose(custom(a, wv)[0], a[np.arange(rows), np.arange(rows)])


def test_searchsorted_matches_numpy_and_reference():
    cdf = pt.vector('cdf', dtype='float32')
    u = pt.vector('u', dtype='float32')
    custom, ref = both(lambda c, v: [gpu_ops.searchsorted(c, v)], cdf, u)
    rng = np.random.RandomState(1)
    w = rng.rand(1000) ** 3
    c = (np.cumsum(w) / w.sum()).astype('float32')
    c[-1] = 1
    v = rng.rand(20000).astype('float32')
    got = custom(c, v)[0]
    np.testing.assert_array_equal(got, ref(c, v)[0])
    np.testing.assert_array_equal(got, np.searchsorted(c, v))
    assert got.dtype == np.int64 and got.min() >= 0 and got.max() <= 999


def test_sampling_follows_popularity_power():
    """Frequencies of store samples follow support**alpha (chi-square-like bound)."""
    from recsys_core.sampling import SampleStore
    support = np.array([1, 2, 4, 8, 16, 32, 64, 128], dtype='float32')
    store = SampleStore(support, 0.5, 1000, 200000, seed=3, verbose=False)
    store.next_index()
    samples = store.store.get_value().ravel()
    freq = np.bincount(samples, minlength=8) / len(samples)
    expected = support ** 0.5 / (support ** 0.5).sum()
    np.testing.assert_allclose(freq, expected, atol=0.005)


@pytest.mark.parametrize('mode', ['standard', 'conservative', 'median'])
def test_rank_counts_match_reference_and_full_sort(mode):
    s = pt.matrix('s', dtype='float32')
    t = pt.vector('t', dtype='float32')
    custom, ref = both(lambda a, b: list(gpu_ops.rank_counts(a, b)), s, t)
    rng = np.random.RandomState(2)
    scores = rng.randint(0, 20, size=(50, 300)).astype('float32')  # many ties on purpose
    target_col = rng.randint(0, 300, size=50)
    target = scores[np.arange(50), target_col]
    g, e = custom(scores, target)
    gr, er = ref(scores, target)
    np.testing.assert_array_equal(g, gr)
    np.testing.assert_array_equal(e, er)
    ranks = ranks_from_counts(g.astype(float), e.astype(float), mode)
    for i in range(50):  # against an explicit sort-based definition
        order = np.argsort(-scores[i], kind='stable')
        better = (scores[i] > target[i]).sum()
        ties = (scores[i] == target[i]).sum()
        expected = {'standard': better + 1, 'conservative': better + ties, 'median': better + 0.5 * (ties - 1) + 1}[mode]
        assert ranks[i] == expected
        if ties == 1:
            assert ranks[i] == np.flatnonzero(order == target_col[i])[0] + 1


def test_row_reductions_match_reference_with_gradient():
    x = pt.matrix('x', dtype='float32')

    def build(x):
        sm = gpu_ops.row_sum(pt.exp(x - gpu_ops.row_max_shift(x, keepdims=True)), keepdims=True)
        soft = pt.exp(x - gpu_ops.row_max_shift(x, keepdims=True)) / sm
        loss = pt.sum(-pt.log(soft[:, 0]))
        return [soft, pytensor.grad(loss, x)]
    custom, ref = both(build, x)
    a = np.random.RandomState(4).randn(16, 33).astype('float32') * 5
    for c, r in zip(custom(a), ref(a)):
        np.testing.assert_allclose(c, r, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_row_reductions_c_code_matches_perform(dtype):
    x = pt.matrix('x', dtype=dtype)
    c, py = c_and_python([x], [gpu_ops.row_sum(x), gpu_ops.row_max_shift(x)])
    a = np.random.RandomState(5).randn(300, 700).astype(dtype) * 5  # enough work for the C loop's threads
    a[3] = -1e30
    for got, want in zip(c(a), py(a)):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(c(a)[1], a.max(axis=1))
    empty_sum = pytensor.function([x], gpu_ops.row_sum(x), mode=compile_mode())(a[:, :0])
    assert empty_sum.shape == (300,) and not empty_sum.any()
    with pytest.raises(ValueError, match='empty row'):
        pytensor.function([x], gpu_ops.row_max_shift(x), mode=compile_mode())(a[:, :0])


@pytest.mark.parametrize('set_mode', [False, True])
def test_row_scatter_matches_numpy_including_duplicates(set_mode):
    x = pt.matrix('x', dtype='float32')
    y = pt.matrix('y', dtype='float32')
    idx = pt.ivector('idx')
    out = RowScatter(set_mode, False)(x, y, idx)
    f = pytensor.function([x, y, idx], out, mode=compile_mode())
    rng = np.random.RandomState(5)
    a = rng.randn(10, 4).astype('float32')
    b = rng.randn(6, 4).astype('float32')
    ind = np.array([1, 3, 1, 9, 0, 3] if not set_mode else [1, 3, 2, 9, 0, 5], dtype='int32')
    expected = a.copy()
    if set_mode:
        expected[ind] = b
    else:
        np.add.at(expected, ind, b)
    np.testing.assert_allclose(f(a, b, ind), expected, rtol=1e-6)
    with pytest.raises(IndexError):
        f(a, b, np.array([0, 1, 2, 3, 4, 10], dtype='int32'))


def test_the_rewrites_run_only_in_modes_that_include_their_tag():
    """Registering gpu_ops' rewrites leaves PyTensor's default mode as it was (other code's functions
    in the process are untouched); the project's mode runs them."""
    from gpu_ops import rewrites
    rewrites.register()
    w = pytensor.shared(np.zeros((8, 3), dtype='float32'))
    idx, g = pt.ivector('idx'), pt.matrix('g', dtype='float32')
    f = pytensor.function([idx, g], [], updates=[(w, pt.inc_subtensor(w[idx], g))], mode='FAST_RUN')
    assert not any(isinstance(n.op, RowScatter) for n in f.maker.fgraph.apply_nodes)
    assert rewrites.TAG in compile_mode()._optimizer.include


def test_row_scatter_rewrite_replaces_python_row_increments():
    """The project's C mode puts RowScatter where PyTensor would run numpy add.at."""
    w = pytensor.shared(np.zeros((8, 3), dtype='float32'))
    idx = pt.ivector('idx')
    g = pt.matrix('g', dtype='float32')
    f = pytensor.function([idx, g], [], updates=[(w, pt.inc_subtensor(w[idx], g))], mode=compile_mode())
    assert any(isinstance(n.op, RowScatter) for n in f.maker.fgraph.apply_nodes)
    f(np.array([1, 1, 7], dtype='int32'), np.ones((3, 3), dtype='float32'))
    np.testing.assert_allclose(w.get_value()[[1, 7, 0]], [[2, 2, 2], [1, 1, 1], [0, 0, 0]])


def test_switch_selects_reference_compositions():
    x = pt.matrix('x', dtype='float32')
    gpu_ops.set_custom_ops(False)
    try:
        d = gpu_ops.positive_diag(x)
        g, _ = gpu_ops.rank_counts(x, d)
    finally:
        gpu_ops.set_custom_ops(True)
    assert not isinstance(d.owner.op, gpu_ops.diag.PositiveDiag)
    assert not isinstance(g.owner.op, gpu_ops.ranking.RankCounts)
    assert isinstance(gpu_ops.positive_diag(x).owner.op, gpu_ops.diag.PositiveDiag)


LOSS_ACTS = [('cross-entropy', 'softmax', 0.0), ('cross-entropy', 'softmax', 0.1), ('xe_logit', 'softmax_logit', 0.0),
             ('xe_logit', 'softmax_logit', 0.2), ('bpr-max', 'elu-0.5', 0.0), ('bpr-max', 'linear', 0.0),
             ('bpr-max', 'relu', 0.0), ('bpr', 'tanh', 0.0), ('bpr', 'leaky-0.1', 0.0), ('top1', 'linear', 0.0),
             ('top1', 'selu-1.05-1.67', 0.0), ('top1-max', 'elu-1', 0.0), ('top1-max', 'tanh', 0.0)]


@pytest.mark.parametrize('loss,act,smoothing', LOSS_ACTS)
def test_sampled_loss_matches_reference_with_gradient(loss, act, smoothing):
    """The fused loss Op gives the reference composition's loss and gradient for every loss/activation."""
    from gru4rec.losses import sampled_loss
    z = pt.matrix('z', dtype='float32')
    custom, ref = both(lambda s: [sampled_loss(s, loss, act, smoothing, 1.3),
                                  pytensor.grad(sampled_loss(s, loss, act, smoothing, 1.3) / 7.0, s)], z)
    rng = np.random.RandomState(7)
    scores = (rng.randn(6, 23) * 1.5).astype('float32')
    (lc, gc), (lr, gr) = custom(scores), ref(scores)
    np.testing.assert_allclose(lc, lr, rtol=2e-5)
    np.testing.assert_allclose(gc, gr, rtol=2e-4, atol=1e-6)


def test_sparse_adagrad_is_compiled_in_place():
    """The fused row update must overwrite the weights in place (a copy per step would cost more than it saves)."""
    from gpu_ops.sparse_update import SparseAdagrad
    from recsys_core.backend import compile_function
    from recsys_core.optim import Optimizer, SparseParam
    W = pytensor.shared(np.ones((50, 4), dtype='float32'), name='W')
    idx = pt.ivector('idx')
    rows, inv = pt.unique(idx, return_inverse=True)
    gathered = W[rows]
    cost = pt.sum(gathered[inv] ** 2)
    f = compile_function([idx], cost, updates=Optimizer(0.1, 'adagrad', [], 0.5).updates(cost, [], [SparseParam(W, rows, gathered)]))
    ops = [n.op for n in f.maker.fgraph.apply_nodes if isinstance(n.op, SparseAdagrad)]
    assert len(ops) == 1 and ops[0].inplace
    f(np.array([3, 3, 7], dtype='int32'))
    w = W.get_value()
    assert (w[[3, 7]] < 1).all() and (np.delete(w, [3, 7], axis=0) == 1).all()


@pytest.mark.parametrize('linker', ['c', 'py'])
def test_sparse_adagrad_in_place_leaves_state_untouched_on_a_bad_index(linker):
    from pytensor.compile.mode import Mode
    from gpu_ops.sparse_update import SparseAdagrad
    W = pytensor.shared(np.ones((30, 4), dtype='float32'), name='W')
    acc = pytensor.shared(np.zeros((30, 4), dtype='float32'), name='acc')
    rows, g = pt.lvector('rows'), pt.matrix('g', dtype='float32')
    new_W, new_acc = SparseAdagrad(0.1, 0.0, 0.0)(W, acc, rows, g)
    from gpu_ops import rewrites
    mode = compile_mode() if linker == 'c' else Mode(linker='py', optimizer='fast_run').including(rewrites.register())
    f = pytensor.function([rows, g], [], updates=[(W, new_W), (acc, new_acc)], mode=mode)
    assert [n.op.inplace for n in f.maker.fgraph.apply_nodes if isinstance(n.op, SparseAdagrad)] == [True]
    ok = np.arange(0, 24, 2)
    with pytest.raises(IndexError, match='30'):
        f(np.r_[ok, 30], np.ones((13, 4), dtype='float32'))
    np.testing.assert_array_equal(W.get_value(), 1)
    np.testing.assert_array_equal(acc.get_value(), 0)
    f(ok, np.ones((12, 4), dtype='float32'))
    assert (W.get_value()[ok] < 1).all() and (acc.get_value()[ok] == 1).all()


# ----------------------------------------------------------------- C code against perform
def c_and_python(inputs, outputs):
    """The same graph compiled for the C backend (the Ops' C code) and for the Python linker
    (their ``perform``); asserts that the custom Ops really run as C code in the first."""
    from pytensor.compile.mode import Mode
    c = pytensor.function(inputs, outputs, mode=compile_mode(), on_unused_input='ignore')
    from gpu_ops.unique import UniqueInverse
    from gpu_ops.search import SearchSorted
    from gpu_ops.softmax import RowSoftmax
    from gpu_ops.flat_loops import FlatElemwise
    from gpu_ops.columns import ScoreColumns, ScoreColumnsGrad
    from gpu_ops.reductions import RowMax, RowSum
    from gpu_ops.sparse_update import SparseAdagradOccurrences
    custom = (SampledLoss, SparseAdagrad, SparseAdagradOccurrences, RowScatter, RowGather, Contiguous, UniqueInverse, SearchSorted, RowSoftmax,
              FlatElemwise, ScoreColumns, ScoreColumnsGrad, RowSum, RowMax)
    ran_as_c = [getattr(th, 'cthunk', None) is not None for node, th in zip(c.vm.nodes, c.vm.thunks)
                if isinstance(node.op, custom)]
    assert ran_as_c and all(ran_as_c)
    py = pytensor.function(inputs, outputs, mode=Mode(linker='py', optimizer='fast_run'), on_unused_input='ignore')
    return c, py


from gpu_ops.layout import Contiguous  # noqa: E402
from gpu_ops.sampled_loss import SampledLoss  # noqa: E402
from gpu_ops.sparse_update import SparseAdagrad  # noqa: E402


@pytest.mark.parametrize('loss,act,smoothing', LOSS_ACTS)
def test_sampled_loss_c_code_matches_perform(loss, act, smoothing):
    z = pt.matrix('z', dtype='float32')
    c, py = c_and_python([z], SampledLoss(loss, act, smoothing, 0.7)(z))
    rng = np.random.RandomState(11)
    for shape in [(9, 40), (1, 2), (5, 5)]:
        scores = (rng.randn(*shape) * 2).astype('float32')
        (vc, gc), (vp, gp) = c(scores), py(scores)
        np.testing.assert_allclose(vc, vp, rtol=2e-5)
        np.testing.assert_allclose(gc, gp, rtol=2e-4, atol=1e-6)
    with pytest.raises(ValueError):
        c(np.zeros((3, 2), dtype='float32'))  # more rows than columns: no diagonal of positives


@pytest.mark.parametrize('momentum', [0.0, 0.5])
@pytest.mark.parametrize('lmbd', [0.0, 0.01])
@pytest.mark.parametrize('ndim', [1, 2])
def test_sparse_adagrad_c_code_matches_perform(momentum, lmbd, ndim):
    state = [pt.tensor('s{}'.format(i), dtype='float32', shape=(None,) * ndim) for i in range(3 if momentum else 2)]
    rows, g = pt.lvector('rows'), pt.tensor('g', dtype='float32', shape=(None,) * ndim)
    outs = SparseAdagrad(0.1, momentum, lmbd)(*state, rows, g)
    c, py = c_and_python(state + [rows, g], outs)
    rng = np.random.RandomState(3)
    shape = (20, 7)[:ndim]
    values = [rng.randn(*shape).astype('float32'), rng.rand(*shape).astype('float32'), rng.randn(*shape).astype('float32')]
    values = values[:len(state)]
    idx = np.array([4, 0, 19, 7], dtype='int64')
    grad = rng.randn(4, *shape[1:]).astype('float32')[:, ::-1] if ndim == 2 else rng.randn(4).astype('float32')
    for a, b in zip(c(*values, idx, grad), py(*values, idx, grad)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    untouched = np.setdiff1d(np.arange(20), idx)
    np.testing.assert_array_equal(c(*values, idx, grad)[0][untouched], values[0][untouched])
    with pytest.raises(IndexError):
        c(*values, np.array([0, 1, 2, 20]), grad)
    # more rows than the prefetch distance (8), with a bad index where only the prefetch sees it first
    many = rng.permutation(20)[:15].astype('int64')
    grad = rng.randn(15, *shape[1:]).astype('float32')
    for a, b in zip(c(*values, many, grad), py(*values, many, grad)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    with pytest.raises(IndexError):
        c(*values, np.concatenate([many[:12], [20], many[12:14]]), grad)


def test_row_scatter_c_code_matches_perform_on_strided_and_broadcast_rows():
    x, y = pt.matrix('x', dtype='float32'), pt.matrix('y', dtype='float32')
    idx = pt.lvector('idx')
    c, py = c_and_python([x, y, idx], [RowScatter(False, False)(x.T, y, idx), RowScatter(True, False)(x.T, y[:1], -idx - 1)])
    rng = np.random.RandomState(8)
    a, b = rng.randn(5, 12).astype('float32'), rng.randn(4, 5).astype('float32')
    ind = np.array([0, 11, 0, 3])
    for got, expected in zip(c(a, b, ind), py(a, b, ind)):
        np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize('idx_dtype', ['int32', 'int64'])
def test_row_gather_c_code_matches_perform_and_numpy(idx_dtype):
    x, idx = pt.matrix('x', dtype='float32'), pt.vector('idx', dtype=idx_dtype)
    c, py = c_and_python([x, idx], [RowGather()(x, idx), RowGather()(x.T, idx)])
    rng = np.random.RandomState(9)
    a = rng.randn(40, 40).astype('float32')
    for ind in [rng.randint(-40, 40, size=25), np.array([3]), np.array([], dtype=int), rng.randint(0, 40, size=60)]:
        ind = ind.astype(idx_dtype)  # lengths change between calls: the reused output buffer must follow
        for got, ref, expected in zip(c(a, ind), py(a, ind), [a[ind], a.T[ind]]):
            np.testing.assert_array_equal(got, expected)
            np.testing.assert_array_equal(ref, expected)
    for bad in [np.array([40]), np.array([-41]), np.r_[np.zeros(10, int), 40, np.zeros(3, int)]]:
        with pytest.raises(IndexError, match='out of bounds'):
            c(a, bad.astype(idx_dtype))


def test_row_gather_rewrite_replaces_matrix_take_and_keeps_gradients():
    x, idx = pt.matrix('x', dtype='float32'), pt.lvector('idx')
    f = pytensor.function([x, idx], [x[idx], pytensor.grad((x[idx] ** 2).sum(), x), x[:, 0][idx]], mode=compile_mode())
    ops = [type(n.op) for n in f.maker.fgraph.apply_nodes]
    assert RowGather in ops
    a, ind = np.random.RandomState(2).randn(6, 3).astype('float32'), np.array([5, 1, 5, -6])
    rows, grad, vec = f(a, ind)
    expected = np.zeros_like(a)
    np.add.at(expected, ind, 2 * a[ind])
    np.testing.assert_array_equal(rows, a[ind])
    np.testing.assert_allclose(grad, expected, rtol=1e-6)
    np.testing.assert_array_equal(vec, a[:, 0][ind])
    # the Op's own gradient (used when it is placed in a graph directly)
    g = pytensor.function([x, idx], pytensor.grad((RowGather()(x, idx) ** 2).sum(), x), mode=compile_mode())
    np.testing.assert_allclose(g(a, ind), expected, rtol=1e-6)


def test_row_gather_via_c_code_matches_perform_and_numpy():
    from gpu_ops.rows import RowGatherVia
    x, rows, idx = pt.matrix('x', dtype='float32'), pt.lvector('rows'), pt.ivector('idx')
    c, py = c_and_python([x, rows, idx], [RowGatherVia()(x, rows, idx), RowGatherVia()(x.T, rows, idx)])
    assert all(getattr(th, 'cthunk', None) is not None for node, th in zip(c.vm.nodes, c.vm.thunks)
               if isinstance(node.op, RowGatherVia))
    rng = np.random.RandomState(10)
    a = rng.randn(30, 30).astype('float32')
    table_rows = np.r_[rng.randint(-30, 30, size=17), 29, -30]  # negative: from the end (numpy)
    for ind in [rng.randint(-19, 19, size=40), np.array([18]), np.array([], dtype=int), rng.randint(0, 19, size=11)]:
        ind = ind.astype('int32')
        for f in (c, py):
            got, got_t = f(a, table_rows, ind)
            np.testing.assert_array_equal(got, a[table_rows[ind]])
            np.testing.assert_array_equal(got_t, a.T[table_rows[ind]])
    for bad_rows, bad_idx in [(table_rows, np.array([19])), (table_rows, np.array([-20])), (np.array([30]), np.array([0])),
                              (np.r_[np.zeros(12, int), 30], np.r_[np.zeros(10), 12, 0])]:
        for f in (c, py):
            with pytest.raises(IndexError):
                f(a, bad_rows, bad_idx.astype('int32'))


def test_gather_through_rewrite_reads_the_table_when_only_regathers_read_the_copy():
    from gpu_ops.rows import RowGatherVia
    x, rows, idx = pt.matrix('x', dtype='float32'), pt.lvector('rows'), pt.lvector('idx')
    gathered = x[rows]
    f = pytensor.function([x, rows, idx], [gathered[idx[:3]], gathered[idx[3:]]], mode=compile_mode())
    ops = [type(n.op) for n in f.maker.fgraph.apply_nodes]
    assert ops.count(RowGatherVia) == 2 and RowGather not in ops
    a = np.random.RandomState(1).randn(9, 4).astype('float32')
    r, i = np.array([8, 2, 5]), np.array([2, 0, 0, 1, 2])
    first, rest = f(a, r, i)
    np.testing.assert_array_equal(first, a[r[i[:3]]])
    np.testing.assert_array_equal(rest, a[r[i[3:]]])
    # another reader of the copy keeps the copy, and then the regathers read the copy
    g = pytensor.function([x, rows, idx], [gathered[idx], gathered * 2], mode=compile_mode())
    assert RowGatherVia not in [type(n.op) for n in g.maker.fgraph.apply_nodes]
    np.testing.assert_array_equal(g(a, r, i)[0], a[r[i]])


def test_contiguous_copies_only_strided_inputs():
    x = pt.matrix('x', dtype='float32')
    c, py = c_and_python([x], [Contiguous()(x[:, 1:]), Contiguous()(x) * 2])
    a = np.arange(12, dtype='float32').reshape(3, 4)
    for f in (c, py):
        sliced, doubled = f(a)
        assert sliced.flags.c_contiguous
        np.testing.assert_array_equal(sliced, a[:, 1:])
        np.testing.assert_array_equal(doubled, a * 2)


@pytest.mark.parametrize('values', [[5, 3, 5, 0, 3, 9], [7], [], [-4, 2, -4, 2, 2], [10 ** 9, 3, 10 ** 9, -(10 ** 9)]])
def test_unique_inverse_matches_numpy_on_dense_and_sparse_ranges(values):
    """Small ranges take the table path, huge ranges the sorting path; both equal numpy's unique."""
    from gpu_ops.unique import UniqueInverse
    x = pt.lvector('x')
    c, py = c_and_python([x], UniqueInverse()(x))
    a = np.array(values, dtype='int64')
    expected_values, expected_inverse = np.unique(a, return_inverse=True)
    for f in (c, py):
        got_values, got_inverse = f(a)
        np.testing.assert_array_equal(got_values, expected_values)
        np.testing.assert_array_equal(got_inverse, expected_inverse)
    big = np.random.RandomState(2).randint(0, 50000, size=3000).astype('int64')
    np.testing.assert_array_equal(c(big)[0], np.unique(big))
    np.testing.assert_array_equal(c(big)[0][c(big)[1]], big)


def test_unique_inverse_reuses_its_buffers_across_calls_with_changing_ranges():
    """The dense path keeps its bitmap between calls: a call after a wider (or shifted) one must not
    see the earlier call's values."""
    from gpu_ops.unique import UniqueInverse
    x = pt.ivector('x')
    c, _ = c_and_python([x], UniqueInverse()(x))
    rng = np.random.RandomState(4)
    for lo, hi, n in [(0, 20000, 2176), (0, 70, 50), (-300, 300, 40), (5, 6, 3), (1000, 90000, 6000), (0, 64, 64),
                      (0, 1, 1), (0, 15775, 2176)]:
        a = rng.randint(lo, hi, size=n).astype('int32')
        values, inverse = c(a)
        np.testing.assert_array_equal(values, np.unique(a))
        np.testing.assert_array_equal(values[inverse], a)


@pytest.mark.parametrize('n', [0, 1, 2, 3, 7, 1000])
def test_searchsorted_c_code_matches_numpy_on_exact_hits_and_ends(n):
    """side='left' at exact hits, below the first and above the last entry, every tail length."""
    from gpu_ops.search import SearchSorted
    cdf, u = pt.vector('cdf', dtype='float32'), pt.vector('u', dtype='float32')
    c, py = c_and_python([cdf, u], SearchSorted()(cdf, u))
    rng = np.random.RandomState(n)
    table = np.sort(rng.rand(n)).astype('float32')
    if n:
        table[n // 2:n // 2 + 2] = table[n // 2]  # repeated entries
    for m in (0, 5, 8, 19):
        probe = np.concatenate([rng.rand(m), table[:m], [-1.0, 2.0]]).astype('float32')
        expected = np.searchsorted(table, probe)
        np.testing.assert_array_equal(c(table, probe), expected)
        np.testing.assert_array_equal(py(table, probe), expected)


def test_row_softmax_matches_reference_with_gradient_and_c_code_matches_perform():
    from gpu_ops.softmax import RowSoftmax
    from recsys_core.activations import softmax
    x = pt.matrix('x', dtype='float32')
    w = pt.matrix('w', dtype='float32')
    custom, ref = both(lambda v, u: [softmax(v), pytensor.grad(pt.sum(softmax(v) * u), v)], x, w)
    rng = np.random.RandomState(6)
    a, b = (rng.randn(7, 300) * 8).astype('float32'), rng.randn(7, 300).astype('float32')
    for got, expected in zip(custom(a, b), ref(a, b)):
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-7)
    c, py = c_and_python([x], RowSoftmax()(x.T))
    np.testing.assert_allclose(c(a), py(a), rtol=2e-6, atol=1e-9)
    np.testing.assert_allclose(c(a).sum(axis=1), 1, rtol=1e-5)


# ----------------------------------------------------------------- flat elementwise loops
@pytest.mark.parametrize('case', ['mask', 'two_outputs', 'row_col_scalar', 'unary_inside', 'strided', 'transposed',
                                  'rank3', 'comparison'])
def test_flat_elemwise_matches_python_linker(case):
    """Each pattern against PyTensor's Python implementation, at sizes incl. empty, one element and
    Fortran-ordered inputs (those take PyTensor's generic loop)."""
    from gpu_ops.flat_loops import FlatElemwise
    a, b, c = pt.fmatrices('a', 'b', 'c')
    col = pt.tensor('col', dtype='float32', shape=(None, 1))
    row = pt.tensor('row', dtype='float32', shape=(1, None))
    one = pt.tensor('one', dtype='float32', shape=(1, 1))
    x3, y3 = pt.tensor3('x3', dtype='float32'), pt.tensor3('y3', dtype='float32')
    h = (1 - c) * a + c * b
    outputs = {'mask': [h * col], 'two_outputs': [h * col, h], 'row_col_scalar': [a * b + row - col * one],
               'unary_inside': [pt.tanh(a) * c - b], 'strided': [(a + 1)[::2] * b[::2] + c[::2]],
               'transposed': [a.T * b.T + c.T], 'rank3': [x3 * y3 + 2 * x3], 'comparison': [pt.maximum(a, b) * (c > 0)]}[case]
    inputs = [a, b, c, col, row, one, x3, y3]
    c_fn, py = c_and_python(inputs, outputs)
    assert any(isinstance(n.op, FlatElemwise) for n in c_fn.maker.fgraph.apply_nodes)
    rng = np.random.RandomState(12)
    for n, m in [(7, 13), (1, 1), (64, 128), (0, 5), (6, 6)]:
        values = [rng.randn(n, m).astype('float32') for _ in range(3)] + \
            [rng.randn(n, 1).astype('float32'), rng.randn(1, m).astype('float32'), rng.randn(1, 1).astype('float32'),
             rng.randn(3, n, m).astype('float32'), rng.randn(3, n, m).astype('float32')]
        if n == m:
            values[1] = np.asfortranarray(values[1])
        for got, expected in zip(c_fn(*values), py(*values)):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    if case in ('mask', 'row_col_scalar', 'comparison'):
        with pytest.raises(ValueError):  # sizes must still agree
            c_fn(np.zeros((3, 4), 'float32'), np.zeros((3, 5), 'float32'), np.zeros((3, 5), 'float32'),
                 np.zeros((3, 1), 'float32'), np.zeros((1, 4), 'float32'), np.zeros((1, 1), 'float32'),
                 np.zeros((2, 3, 4), 'float32'), np.zeros((2, 3, 4), 'float32'))


def test_flat_elemwise_in_place_update():
    from gpu_ops.flat_loops import FlatElemwise
    w = pytensor.shared(np.arange(12, dtype='float32').reshape(3, 4))
    g = pt.matrix('g', dtype='float32')
    mask = pt.tensor('mask', dtype='float32', shape=(None, 1))
    f = pytensor.function([g, mask], [], updates=[(w, (w - 0.5 * g) * mask)], mode=compile_mode())
    flats = [n.op for n in f.maker.fgraph.apply_nodes if isinstance(n.op, FlatElemwise)]
    assert flats and flats[0].inplace_pattern
    f(np.ones((3, 4), 'float32'), np.array([[1], [0], [2]], 'float32'))
    expected = (np.arange(12, dtype='float32').reshape(3, 4) - 0.5) * np.array([[1], [0], [2]], 'float32')
    np.testing.assert_allclose(w.get_value(), expected)


def test_gradient_of_two_column_slices_is_a_join():
    """The GRU's gate gradients: inc(inc(zeros[:, s:], A)[:, :s], B) becomes join(B, A), with the same values
    for every width, including widths below the split (the slices then have fewer columns)."""
    from pytensor.tensor.basic import Join
    from pytensor.tensor.subtensor import IncSubtensor
    x, W = pt.matrix('x', dtype='float32'), pt.matrix('W', dtype='float32')
    v = pt.dot(x, W)
    cost = pt.sum(pt.tanh(v[:, :3]) * 2) + pt.sum(pt.sigmoid(v[:, 3:]) ** 2)
    g = pytensor.grad(cost, W)
    f = pytensor.function([x, W], g, mode=compile_mode())
    plain = pytensor.function([x, W], g, mode=compile_mode().excluding('gpu_ops_join_column_halves'))
    ops = [type(n.op) for n in f.maker.fgraph.apply_nodes]
    assert Join in ops and IncSubtensor not in ops
    assert IncSubtensor in [type(n.op) for n in plain.maker.fgraph.apply_nodes]
    rng = np.random.RandomState(12)
    a = rng.rand(5, 4).astype('float32')
    for width in (7, 3, 2, 0):
        w = rng.rand(4, width).astype('float32')
        np.testing.assert_array_equal(f(a, w), plain(a, w))
    # increments into something other than zeros keep PyTensor's ops
    base = pt.matrix('base', dtype='float32')
    y1, y2 = pt.matrix('y1', dtype='float32'), pt.matrix('y2', dtype='float32')
    h = pytensor.function([base, y1, y2], pt.inc_subtensor(pt.inc_subtensor(base[:, 2:], y1)[:, :2], y2), mode=compile_mode())
    assert Join not in [type(n.op) for n in h.maker.fgraph.apply_nodes]
    b0, u1, u2 = rng.rand(3, 5).astype('float32'), rng.rand(3, 3).astype('float32'), rng.rand(3, 2).astype('float32')
    np.testing.assert_allclose(h(b0, u1, u2), b0 + np.concatenate([u2, u1], axis=1), rtol=1e-6)


@pytest.mark.parametrize('m,u,k', [(64, 40, 77), (13, 9, 21), (8, 3, 8), (1, 1, 5), (17, 30, 4)])
def test_score_columns_match_reference_with_gradient(m, u, k):
    """a[cols].T + offset and its gradients, custom against the reference composition; blocks of
    8 x 8 and the remainders, many repeated indices (u small)."""
    a, off, w = pt.matrix('a', dtype='float32'), pt.vector('off', dtype='float32'), pt.matrix('w', dtype='float32')
    cols = pt.lvector('cols')

    def build(a, cols, off, w):
        out = gpu_ops.score_columns(a, cols, off)
        return [out] + pytensor.grad(pt.sum(out * w), [a, off])
    custom, ref = both(build, a, cols, off, w)
    rng = np.random.RandomState(m + u + k)
    av, offv = rng.randn(u, m).astype('float32'), rng.randn(k).astype('float32')
    colv, wv = rng.randint(-u, u, size=k), rng.randn(m, k).astype('float32')
    expected_grad_a = np.zeros((u, m), 'float32')
    np.add.at(expected_grad_a, colv, wv.T)
    for f in (custom, ref):
        out, ga, goff = f(av, colv, offv, wv)
        np.testing.assert_array_equal(out, av[colv].T + offv)
        np.testing.assert_allclose(ga, expected_grad_a, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(goff, wv.sum(axis=0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_score_columns_c_code_matches_perform_and_is_the_gradients_adjoint(dtype):
    from gpu_ops.columns import ScoreColumns, ScoreColumnsGrad
    a, g = pt.matrix('a', dtype=dtype), pt.matrix('g', dtype=dtype)
    off, cols = pt.vector('off', dtype=dtype), pt.ivector('cols')
    ga, goff = ScoreColumnsGrad()(g.T, cols, a.shape[0])  # a strided gradient input
    c, py = c_and_python([a, cols, off, g], [ScoreColumns()(a.T.T, cols, off), ScoreColumns()(a[:, ::2], cols, off), ga, goff])
    rng = np.random.RandomState(3)
    av, offv = rng.randn(23, 18).astype(dtype), rng.randn(41).astype(dtype)
    colv, gv = rng.randint(-23, 23, size=41).astype('int32'), rng.randn(41, 18).astype(dtype)
    results = [f(av, colv, offv, gv) for f in (c, py)]
    for got_c, got_py in zip(*results):
        np.testing.assert_allclose(got_c, got_py, rtol=1e-5, atol=1e-5)
    out, out_strided, grad_a, grad_off = results[0]
    np.testing.assert_array_equal(out_strided, av[:, ::2][colv].T + offv)
    # <a[cols].T + off, G> == <a, grad_a> + <off, grad_off>: the gradient is the forward's adjoint
    lhs = np.sum(out.astype('float64') * gv.T)
    rhs = np.sum(av.astype('float64') * grad_a) + np.sum(offv.astype('float64') * grad_off)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5)
    for bad in (np.array([23], 'int32'), np.array([0, -24], 'int32')):
        for f in (c, py):
            with pytest.raises(IndexError):
                f(av, np.resize(bad, 41), offv, gv)
    for f in (c, py):
        with pytest.raises(ValueError):
            f(av, colv, offv[:-1], gv)


@pytest.mark.parametrize('momentum', [0.0, 0.5])
@pytest.mark.parametrize('lmbd', [0.0, 0.01])
@pytest.mark.parametrize('ndim,n_blocks', [(1, 1), (2, 1), (2, 2)])
def test_occurrence_adagrad_c_code_matches_perform(momentum, lmbd, ndim, n_blocks):
    """The fused per-occurrence update in C against its perform, with the gradient rows as one matrix
    or as two blocks (a shared embedding's input and output rows)."""
    from gpu_ops.sparse_update import SparseAdagradOccurrences
    state = [pt.tensor('s{}'.format(i), dtype='float32', shape=(None,) * ndim) for i in range(3 if momentum else 2)]
    rows, inv = pt.lvector('rows'), pt.lvector('inv')
    blocks = [pt.tensor('g{}'.format(i), dtype='float32', shape=(None,) * ndim) for i in range(n_blocks)]
    c, py = c_and_python(state + [rows, inv] + blocks,
                         SparseAdagradOccurrences(0.1, momentum, lmbd)(*state, rows, inv, *blocks))
    rng = np.random.RandomState(3)
    shape = (20, 7)[:ndim]
    values = [rng.randn(*shape).astype('float32'), rng.rand(*shape).astype('float32'), rng.randn(*shape).astype('float32')]
    values = values[:len(state)]
    distinct = np.arange(0, 20, 2, dtype='int64')  # 10 rows, more than the prefetch distance
    occurrences = np.array([1, 0, 1, 3, 2, 1, 3, 9, 4, 5, 6, 7, 8, 0], dtype='int64')  # rows 0, 2 and 6 repeated
    grad = rng.randn(14, *shape[1:]).astype('float32')
    grad = grad[:, ::-1] if ndim == 2 else grad
    parts = [grad] if n_blocks == 1 else [grad[:5], grad[5:]]
    for a, b in zip(c(*values, distinct, occurrences, *parts), py(*values, distinct, occurrences, *parts)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    untouched = np.setdiff1d(np.arange(20), distinct)
    np.testing.assert_array_equal(c(*values, distinct, occurrences, *parts)[0][untouched], values[0][untouched])
    for bad_rows, bad_occurrences in [(np.append(distinct[:-1], 20), occurrences), (distinct, np.append(occurrences[:-1], 10))]:
        for f in (c, py):
            with pytest.raises(IndexError):
                f(*values, bad_rows, bad_occurrences, *parts)
    with pytest.raises(ValueError):  # one gradient row short
        c(*values, distinct, occurrences, *([grad[:-1]] if n_blocks == 1 else [parts[0], parts[1][:-1]]))
