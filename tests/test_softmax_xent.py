"""The fused full-softmax cross-entropy Op (gpu_ops.softmax_xent) against the plain composition of
recsys_core.softmax: values and gradients, float32 and float64, masked rows, extreme logits; its C
code against its ``perform``; and the routing (custom Ops on: the Op; off: the composition)."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode

import gpu_ops
from gpu_ops.softmax_xent import SoftmaxCrossEntropy, softmax_cross_entropy
from recsys_core import softmax
from recsys_core.backend import compile_mode

TOL = {'float32': dict(rtol=2e-5, atol=2e-7), 'float64': dict(rtol=1e-11, atol=1e-14)}


def graphs(dtype, masked, mean=True):
    """(inputs, [loss, dloss/dz, dloss/dW]) with the logits a product z = h W (so the gradient
    flows through the Op into a weight, as in a model)."""
    h = pt.matrix('h', dtype=dtype)
    W = pt.matrix('W', dtype=dtype)
    y = pt.lvector('y')
    m = pt.vector('m', dtype=dtype)
    z = pt.dot(h, W) * 3
    if mean:
        loss = softmax.cross_entropy(z, y, m if masked else None)
    else:
        loss = softmax.cross_entropy_sum(z, y)
    cost = loss * 1.5 + (W ** 2).sum() * 1e-3  # a cotangent that is not 1 and a second gradient term
    return [h, W, y, m], [loss, pytensor.grad(cost, z), pytensor.grad(cost, W)]


def compiled(dtype, masked, mean=True, custom=True, mode=None):
    gpu_ops.set_custom_ops(custom)
    try:
        inputs, outputs = graphs(dtype, masked, mean)
        return pytensor.function(inputs, outputs, mode=mode or compile_mode(), on_unused_input='ignore')
    finally:
        gpu_ops.set_custom_ops(True)


def data(dtype, n=37, v=301, c=16, seed=0, extreme=False):
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((n, c)).astype(dtype)
    W = (rng.standard_normal((c, v)) * (30 if extreme else 0.3)).astype(dtype)
    y = rng.integers(0, v, n).astype(np.int64)
    m = (rng.random(n) < 0.6).astype(dtype)
    m[0], m[1] = 1, 0
    return h, W, y, m


def ops_of(fn, cls=SoftmaxCrossEntropy):
    return [node for node in fn.maker.fgraph.toposort() if isinstance(node.op, cls)]


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('masked', [False, True], ids=['all-rows', 'masked'])
@pytest.mark.parametrize('extreme', [False, True], ids=['plain', 'extreme-logits'])
def test_values_and_gradients_match_the_composition(dtype, masked, extreme):
    fused, ref = compiled(dtype, masked), compiled(dtype, masked, custom=False)
    assert ops_of(fused) and not ops_of(ref)
    args = data(dtype, extreme=extreme)
    got, want = fused(*args), ref(*args)
    if extreme:  # logits spread over thousands: the composition is still finite (it shifts too)
        assert np.ptp(3 * np.dot(args[0], args[1])) > 1000 and all(np.isfinite(w).all() for w in want)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_allclose(a, b, **TOL[dtype])
    if masked:  # a row left out has no gradient at all
        dz = got[1]
        assert not dz[args[3] == 0].any() and dz[args[3] == 1].any()


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_the_sum_form_matches_the_composition(dtype):
    fused, ref = compiled(dtype, False, mean=False), compiled(dtype, False, mean=False, custom=False)
    args = data(dtype, seed=3)
    for a, b in zip(fused(*args), ref(*args)):
        np.testing.assert_allclose(a, b, **TOL[dtype])


def test_the_mean_is_over_the_counted_rows_and_an_all_masked_batch_is_zero():
    z = pt.matrix('z', dtype='float64')
    y = pt.lvector('y')
    m = pt.vector('m', dtype='float64')
    f = pytensor.function([z, y, m], softmax_cross_entropy(z, y, m), mode=compile_mode())
    zv = np.log(np.array([[1, 1, 2], [1, 3, 0.5], [2, 2, 4]], dtype='float64'))
    yv = np.array([2, 1, 0])
    nll = -np.log([0.5, 3 / 4.5, 0.25])
    np.testing.assert_allclose(f(zv, yv, np.array([1., 0, 1])), (nll[0] + nll[2]) / 2)
    np.testing.assert_allclose(f(zv, yv, np.ones(3)), nll.mean())
    assert f(zv, yv, np.zeros(3)) == 0
    assert f(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), np.zeros(0)) == 0


def test_an_out_of_range_label_is_an_error_unless_its_row_is_masked():
    z = pt.matrix('z', dtype='float32')
    y = pt.lvector('y')
    m = pt.vector('m', dtype='float32')
    f = pytensor.function([z, y, m], softmax_cross_entropy(z, y, m), mode=compile_mode())
    zv = np.zeros((2, 4), dtype='float32')
    with pytest.raises(ValueError, match='out of range'):
        f(zv, np.array([1, 4]), np.ones(2, dtype='float32'))
    np.testing.assert_allclose(f(zv, np.array([1, 4]), np.array([1, 0], dtype='float32')), np.log(4), rtol=1e-6)


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_c_code_matches_perform(dtype):
    c = compiled(dtype, True)
    ran_as_c = [getattr(th, 'cthunk', None) is not None for node, th in zip(c.vm.nodes, c.vm.thunks)
                if isinstance(node.op, SoftmaxCrossEntropy)]
    assert ran_as_c and all(ran_as_c)
    py = compiled(dtype, True, mode=Mode(linker='py', optimizer='fast_run'))
    args = data(dtype, n=300, v=1000, seed=5)  # large enough for the C loop to use its threads
    for a, b in zip(c(*args), py(*args)):
        np.testing.assert_allclose(a, b, **TOL[dtype])


def test_a_loss_that_is_the_cost_needs_no_extra_pass_over_the_gradient():
    """With cost = loss, the pullback's multiply by the cotangent 1 is rewritten away: the matrix
    the Op returns is what the weight gradient's product reads."""
    h = pt.matrix('h')
    W = pt.matrix('W')
    y = pt.lvector('y')
    loss = softmax.cross_entropy(pt.dot(h, W), y)
    f = pytensor.function([h, W, y], pytensor.grad(loss, W), mode=compile_mode())
    (op_node,) = ops_of(f)
    consumers = [node for node in f.maker.fgraph.toposort() if op_node.outputs[1] in node.inputs]
    assert consumers and all('Elemwise' not in type(node.op).__name__ for node in consumers), consumers
