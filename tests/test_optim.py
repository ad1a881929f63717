"""Row-sparse updates equal the dense optimizer restricted to the touched rows."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from recsys_core.backend import compile_function
from recsys_core.optim import Optimizer, SparseParam


def numpy_step(p, g, state, adapt, params, lr, momentum, lmbd, rows):
    """Reference update of the rows ``rows`` of p given the full gradient g."""
    p, g = p.copy(), g.copy()
    gr = g[rows]
    if adapt == 'adagrad':
        state['acc'][rows] += gr ** 2
        gr = gr / np.sqrt(state['acc'][rows] + 1e-6)
    elif adapt == 'rmsprop':
        state['acc'][rows] = params[0] * state['acc'][rows] + (1 - params[0]) * gr ** 2
        gr = gr / np.sqrt(state['acc'][rows] + 1e-6)
    elif adapt == 'adam':
        b1, b2 = params
        state['m'][rows] = b1 * state['m'][rows] + (1 - b1) * gr
        state['v'][rows] = b2 * state['v'][rows] + (1 - b2) * gr ** 2
        state['t'][rows] += 1
        t = state['t'][rows][:, None] if state['t'].ndim == 1 else state['t'][rows]
        gr = (state['m'][rows] / (1 - b1 ** t)) / (np.sqrt(state['v'][rows] / (1 - b2 ** t)) + 1e-6)
    elif adapt == 'adadelta':
        rho = params[0]
        state['acc'][rows] = rho * state['acc'][rows] + (1 - rho) * gr ** 2
        scaling = (state['upd'][rows] + 1e-6) / (state['acc'][rows] + 1e-6)
        state['upd'][rows] = rho * state['upd'][rows] + (1 - rho) * scaling * gr ** 2
        gr = gr * np.sqrt(scaling)
        lr = 1.0
    delta = lr * (gr + lmbd * p[rows])
    if momentum > 0:
        state['vel'][rows] = momentum * state['vel'][rows] - delta
        p[rows] += state['vel'][rows]
    else:
        p[rows] -= delta
    return p


@pytest.mark.parametrize('adapt,params', [(None, []), ('adagrad', []), ('rmsprop', [0.9]), ('adam', [0.9, 0.99]),
                                          ('adadelta', [0.95])])
@pytest.mark.parametrize('momentum,lmbd', [(0.0, 0.0), (0.5, 0.01)])
def test_sparse_and_dense_updates_match_reference(adapt, params, momentum, lmbd):
    rng = np.random.RandomState(0)
    W0 = rng.randn(6, 3).astype('float32')
    D0 = rng.randn(3, 2).astype('float32')
    W, D = pytensor.shared(W0.copy(), name='W'), pytensor.shared(D0.copy(), name='D')
    idx = pt.ivector('idx')
    rows, inv = pt.unique(idx, return_inverse=True)
    gathered = W[rows]
    cost = pt.sum(pt.tanh(pt.dot(gathered[inv], D)) ** 2)
    opt = Optimizer(0.1, adapt, params, momentum, lmbd, 0.0)
    step = compile_function([idx], cost, updates=opt.updates(cost, [D], [SparseParam(W, rows, gathered)]))
    Wf, Df = pt.matrix(dtype='float32'), pt.matrix(dtype='float32')
    full_cost = pt.sum(pt.tanh(pt.dot(Wf[idx], Df)) ** 2)
    grads = compile_function([Wf, Df, idx], pytensor.grad(full_cost, [Wf, Df]))
    names = {'adagrad': ['acc'], 'rmsprop': ['acc'], 'adam': ['m', 'v', 't'], 'adadelta': ['acc', 'upd']}.get(adapt, [])
    names = names + (['vel'] if momentum > 0 else [])
    sw = {n: np.zeros(6 if n == 't' else (6, 3)) for n in names}
    sd = {n: np.zeros(() if n == 't' else (3, 2)) for n in names}
    if adapt == 'adam':
        sd['t'] = np.zeros((3, 2))
    Wr, Dr = W0.astype(np.float64), D0.astype(np.float64)
    for batch in ([0, 2, 2, 5], [1, 2, 4, 4, 4]):
        b = np.array(batch, dtype='int32')
        gW, gD = grads(Wr.astype('float32'), Dr.astype('float32'), b)
        step(b)
        Wr = numpy_step(Wr, gW, sw, adapt, params, 0.1, momentum, lmbd, np.unique(b))
        Dr = numpy_step(Dr, gD, sd, adapt, params, 0.1, momentum, lmbd, np.arange(3))
        np.testing.assert_allclose(W.get_value(), Wr, rtol=2e-4, atol=2e-5)
        np.testing.assert_allclose(D.get_value(), Dr, rtol=2e-4, atol=2e-5)
    untouched = [3]
    np.testing.assert_array_equal(W.get_value()[untouched], W0[untouched])


def test_grad_cap_clips_global_norm():
    W = pytensor.shared(np.ones((2, 2), dtype='float32'))
    x = pt.matrix(dtype='float32')
    cost = pt.sum(pt.dot(x, W))
    step = compile_function([x], cost, updates=Optimizer(1.0, None, [], 0.0, 0.0, 0.5).updates(cost, [W], []))
    step(np.full((1, 2), 10.0, dtype='float32'))  # gradient norm 20 -> scaled to 0.5
    np.testing.assert_allclose(W.get_value(), 1.0 - 0.25, rtol=1e-6)


def numpy_occurrence_step(p, g, state, adapt, params, lr, momentum, lmbd, idx):
    """The Theano original's row-sparse step, written out per occurrence: g has one row per entry of
    idx (repeats allowed); every step is computed from the state before it and added to the row."""
    p0, old = p.copy(), {k: v.copy() for k, v in state.items()}
    steps = []
    lr = 1.0 if adapt == 'adadelta' else lr
    if adapt in ('rmsprop', 'adadelta', 'adam'):  # decayed once per row, every occurrence accumulated
        rho = params[0]
        decay = {'acc': rho, 'v': params[-1], 'm': params[0]}
        for name in (['m', 'v'] if adapt == 'adam' else ['acc']):
            state[name][np.unique(idx)] *= decay[name]
            for o, r in enumerate(idx):
                state[name][r] += (1 - decay[name]) * (g[o] if name == 'm' else g[o] ** 2)
    for o, r in enumerate(idx):
        gr = g[o]
        if adapt == 'adagrad':
            gr = gr / np.sqrt(old['acc'][r] + gr ** 2 + 1e-6)
            state['acc'][r] += g[o] ** 2
        elif adapt == 'rmsprop':
            gr = gr / np.sqrt(state['acc'][r] + 1e-6)
        elif adapt == 'adam':
            b1, b2 = params
            t = old['t'][r] + 1
            state['t'][r] += 1  # the original's set of t + 1, rewritten into an increment per occurrence
            gr = (state['m'][r] / (1 - b1 ** t)) / (np.sqrt(state['v'][r] / (1 - b2 ** t)) + 1e-6)
        elif adapt == 'adadelta':
            scaling = (old['upd'][r] + 1e-6) / (state['acc'][r] + 1e-6)
            steps.append((r, (1 - params[0]) * scaling * g[o] ** 2))
            gr = gr * np.sqrt(scaling)
        delta = lr * (gr + lmbd * p0[r])
        if momentum > 0:
            v = momentum * old['vel'][r] - delta
            state['vel'][r] = v  # the last occurrence's velocity survives
            p[r] += v
        else:
            p[r] -= delta
    if adapt == 'adadelta':
        state['upd'][np.unique(idx)] *= params[0]
        for r, added in steps:
            state['upd'][r] += added
    return p


@pytest.mark.parametrize('adapt,params,custom', [(None, [], True), ('adagrad', [], True), ('adagrad', [], False),
                                                 ('rmsprop', [0.9], True), ('adam', [0.9, 0.99], True),
                                                 ('adadelta', [0.95], True)])
@pytest.mark.parametrize('momentum,lmbd', [(0.0, 0.0), (0.5, 0.01)])
def test_per_occurrence_updates_follow_the_original(adapt, params, custom, momentum, lmbd):
    """A row used several times in a step: one update per occurrence, as the Theano graph computes it
    (adagrad: the fused Op with custom Ops on, the composition with them off; the other optimizers
    have only the composition)."""
    import gpu_ops
    gpu_ops.set_custom_ops(custom)
    try:
        rng = np.random.RandomState(1)
        W0 = rng.randn(6, 3).astype('float32')
        W = pytensor.shared(W0.copy(), name='W')
        idx, g = pt.ivector('idx'), pt.matrix('g', dtype='float32')
        rows, inv = gpu_ops.unique_inverse(idx)
        opt = Optimizer(0.1, adapt, params, momentum, lmbd, 0.0)
        step = compile_function([idx, g], [], updates=opt.updates(None, [], [SparseParam(W, rows, W[rows], inv)], grads=[g]))
    finally:
        gpu_ops.set_custom_ops(True)
    if custom and adapt == 'adagrad':  # the fused Op, switched to in place by its rewrite
        from gpu_ops.sparse_update import SparseAdagradOccurrences
        assert [n.op.inplace for n in step.maker.fgraph.apply_nodes if isinstance(n.op, SparseAdagradOccurrences)] == [True]
    names = {'adagrad': ['acc'], 'rmsprop': ['acc'], 'adam': ['m', 'v', 't'], 'adadelta': ['acc', 'upd']}.get(adapt, [])
    state = {n: np.zeros(6 if n == 't' else (6, 3)) for n in names + (['vel'] if momentum > 0 else [])}
    row_state = {n: np.zeros_like(v) for n, v in state.items()}
    Wr = Ws = W0.astype(np.float64)
    for batch in ([0, 2, 2, 5, 2], [4, 1, 4, 4, 0], [3, 2, 5]):
        b = np.array(batch, dtype='int32')
        grads = rng.randn(len(b), 3).astype('float32')
        step(b, grads)
        Wr = numpy_occurrence_step(Wr, grads.astype(np.float64), state, adapt, params, 0.1, momentum, lmbd, b)
        np.testing.assert_allclose(W.get_value(), Wr, rtol=2e-4, atol=2e-5)
        summed = np.zeros((6, 3))
        np.add.at(summed, b, grads)
        Ws = numpy_step(Ws, summed, row_state, adapt, params, 0.1, momentum, lmbd, np.unique(b))
    assert not np.allclose(Ws, Wr, rtol=1e-3)  # the per-row update of the summed gradients is another one
