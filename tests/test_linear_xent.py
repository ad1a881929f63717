"""The output layer + softmax cross-entropy Op (gpu_ops.linear_xent) against the composition
cross_entropy(dot(h, W) + b) of recsys_core.softmax: values and gradients of h, W and b, float32 and
float64, masked rows, extreme logits, the sum form and no bias; more rows than one block and
threads; its C code against its ``perform``; and the routing of recsys_core.softmax."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode

import gpu_ops
from gpu_ops.linear_xent import ROWS, LinearCrossEntropy, linear_cross_entropy
from gpu_ops.softmax_xent import SoftmaxCrossEntropy
from recsys_core import softmax
from recsys_core.backend import compile_mode

TOL = {'float32': dict(rtol=5e-5, atol=1e-6), 'float64': dict(rtol=1e-10, atol=1e-13)}


def compiled(dtype, masked=True, mean=True, bias=True, custom=True, product=False, mode=None):
    """f(h, W, b, y, m) -> [loss, d/dh, d/dW, d/db] of cost = 1.5 loss + 1e-3 sum(W^2), with ReLU(h)
    into the layer (a gradient that flows on through another op, as in NextItNet). ``product``: the
    reference, the layer's product written out and its logits into cross_entropy / cross_entropy_sum."""
    gpu_ops.set_custom_ops(custom)
    try:
        h = pt.matrix('h', dtype=dtype)
        W = pt.matrix('W', dtype=dtype)
        b = pt.vector('b', dtype=dtype)
        y = pt.lvector('y')
        m = pt.vector('m', dtype=dtype)
        x, bb, mm = pt.maximum(h, 0), b if bias else None, m if masked else None
        if product:
            z = pt.dot(x, W) + b if bias else pt.dot(x, W)
            loss = softmax.cross_entropy(z, y, mm) if mean else softmax.cross_entropy_sum(z, y)
        else:
            loss = softmax.linear_cross_entropy(x, W, bb, y, mm) if mean else softmax.linear_cross_entropy_sum(x, W, bb, y)
        cost = loss * 1.5 + (W ** 2).sum() * 1e-3
        wrt = [h, W, b] if bias else [h, W]
        return pytensor.function([h, W, b, y, m], [loss] + pytensor.grad(cost, wrt), mode=mode or compile_mode(),
                                 on_unused_input='ignore')
    finally:
        gpu_ops.set_custom_ops(True)


def data(dtype, n=37, v=301, c=16, seed=0, extreme=False, keep=0.6):
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((n, c)).astype(dtype)
    W = (rng.standard_normal((c, v)) * (30 if extreme else 0.3)).astype(dtype)
    b = rng.standard_normal(v).astype(dtype)
    y = rng.integers(0, v, n).astype(np.int64)
    m = (rng.random(n) < keep).astype(dtype)
    m[0], m[1] = 1, 0
    return h, W, b, y, m


def ops_of(fn, cls):
    return [node for node in fn.maker.fgraph.toposort() if isinstance(node.op, cls)]


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('masked', [False, True], ids=['all-rows', 'masked'])
@pytest.mark.parametrize('extreme', [False, True], ids=['plain', 'extreme-logits'])
def test_values_and_gradients_match_the_composition(dtype, masked, extreme):
    fused, ref = compiled(dtype, masked), compiled(dtype, masked, product=True)
    plain = compiled(dtype, masked, custom=False)
    assert ops_of(fused, LinearCrossEntropy) and not ops_of(fused, SoftmaxCrossEntropy)
    assert not ops_of(ref, LinearCrossEntropy) and ops_of(ref, SoftmaxCrossEntropy)
    assert not ops_of(plain, LinearCrossEntropy) and not ops_of(plain, SoftmaxCrossEntropy)
    args = data(dtype, extreme=extreme)
    got, want, want_plain = fused(*args), ref(*args), plain(*args)
    if extreme:
        assert np.ptp(np.maximum(args[0], 0) @ args[1]) > 100 and all(np.isfinite(w).all() for w in want)
    for name, a, b, c in zip(['loss', 'dh', 'dW', 'db'], got, want, want_plain):
        assert a.dtype == b.dtype == np.dtype(dtype) and a.shape == b.shape, name
        np.testing.assert_allclose(a, b, err_msg=name, **TOL[dtype])
        np.testing.assert_allclose(a, c, err_msg=name, **TOL[dtype])
    if masked:  # a row left out has no gradient at all
        dh = got[1]
        assert not dh[args[4] == 0].any() and dh[args[4] == 1].any()


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('bias', [True, False], ids=['bias', 'no-bias'])
def test_the_sum_form_and_no_bias_match_the_composition(dtype, bias):
    fused, ref = compiled(dtype, mean=False, bias=bias), compiled(dtype, mean=False, bias=bias, product=True)
    assert ops_of(fused, LinearCrossEntropy)
    args = data(dtype, seed=3)
    for a, b in zip(fused(*args), ref(*args)):
        np.testing.assert_allclose(a, b, **TOL[dtype])


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_many_blocks_on_threads_match_perform(dtype):
    """More counted rows than several blocks (the C loop's round robin and per-thread dW sums)
    against the numpy ``perform``; every node of the Op ran as C."""
    c = compiled(dtype)
    ran_as_c = [getattr(th, 'cthunk', None) is not None for node, th in zip(c.vm.nodes, c.vm.thunks)
                if isinstance(node.op, LinearCrossEntropy)]
    assert ran_as_c and all(ran_as_c)
    py = compiled(dtype, mode=Mode(linker='py', optimizer='fast_run'))
    args = data(dtype, n=5 * ROWS + 7, v=1001, c=24, seed=5, keep=0.9)
    for a, b in zip(c(*args), py(*args)):
        np.testing.assert_allclose(a, b, **TOL[dtype])


def test_the_mean_is_over_the_counted_rows_and_an_all_masked_batch_is_zero():
    h, W, b = pt.matrix('h', dtype='float64'), pt.matrix('W', dtype='float64'), pt.vector('b', dtype='float64')
    y, m = pt.lvector('y'), pt.vector('m', dtype='float64')
    f = pytensor.function([h, W, b, y, m], linear_cross_entropy(h, W, b, y, m), mode=compile_mode())
    zv = np.log(np.array([[1, 1, 2], [1, 3, 0.5], [2, 2, 4]], dtype='float64'))
    eye, zero = np.eye(3), np.zeros(3)
    yv = np.array([2, 1, 0])
    nll = -np.log([0.5, 3 / 4.5, 0.25])
    np.testing.assert_allclose(f(zv, eye, zero, yv, np.array([1., 0, 1])), (nll[0] + nll[2]) / 2)
    np.testing.assert_allclose(f(zv, eye, zero, yv, np.ones(3)), nll.mean())
    assert f(zv, eye, zero, yv, np.zeros(3)) == 0
    assert f(np.zeros((0, 3)), eye, zero, np.zeros(0, dtype=np.int64), np.zeros(0)) == 0


def test_an_out_of_range_label_is_an_error_unless_its_row_is_masked():
    h, W, b = pt.matrix('h', dtype='float32'), pt.matrix('W', dtype='float32'), pt.vector('b', dtype='float32')
    y, m = pt.lvector('y'), pt.vector('m', dtype='float32')
    f = pytensor.function([h, W, b, y, m], linear_cross_entropy(h, W, b, y, m), mode=compile_mode())
    hv, Wv, bv = np.ones((2, 3), 'float32'), np.zeros((3, 4), 'float32'), np.zeros(4, 'float32')
    with pytest.raises(ValueError, match='out of range'):
        f(hv, Wv, bv, np.array([1, 4]), np.ones(2, dtype='float32'))
    np.testing.assert_allclose(f(hv, Wv, bv, np.array([1, 4]), np.array([1, 0], dtype='float32')), np.log(4),
                               rtol=1e-6)
    with pytest.raises(ValueError, match='do not fit'):
        f(hv, np.zeros((2, 4), 'float32'), bv, np.array([1, 2]), np.ones(2, dtype='float32'))
