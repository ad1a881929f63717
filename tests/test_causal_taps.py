"""The causal-convolution taps Ops (gpu_ops.causal_taps) against the composition in
recsys_core.blocks.causal_conv: the convolution's values and gradients (input, weights, bias),
float32 and float64, kernel sizes and dilations including a dilation longer than the sequence;
the C code against ``perform``; the routing (custom Ops on: the Ops; off: the Joins)."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode
from pytensor.tensor.basic import Join

import gpu_ops
from gpu_ops.causal_taps import CausalTaps, CausalTapsGrad, causal_taps
from recsys_core.backend import compile_mode
from recsys_core.blocks import causal_conv

TOL = {'float32': dict(rtol=1e-5, atol=1e-6), 'float64': dict(rtol=1e-12, atol=1e-13)}


def compiled(dtype, k, d, custom=True, mode=None):
    """f(x, W, b, up) -> [y, dx, dW, db] of cost = sum(y * up) + 0.1 sum(y^2) for y = causal_conv(x)."""
    gpu_ops.set_custom_ops(custom)
    try:
        x = pt.tensor3('x', dtype=dtype)
        up = pt.tensor3('up', dtype=dtype)
        Wi = pt.tensor('W', dtype=dtype, shape=(k, 3, 5))  # the kernel size is static, as for a weight
        b = pt.vector('b', dtype=dtype)
        y = causal_conv(x, Wi, b, d)
        cost = (y * up).sum() + 0.1 * (y ** 2).sum()
        return pytensor.function([x, Wi, b, up], [y] + pytensor.grad(cost, [x, Wi, b]), mode=mode or compile_mode())
    finally:
        gpu_ops.set_custom_ops(True)


def data(dtype, k, B=4, L=9, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, L, 3)).astype(dtype), rng.standard_normal((k, 3, 5)).astype(dtype),
            rng.standard_normal(5).astype(dtype), rng.standard_normal((B, L, 5)).astype(dtype))


def ops_of(fn, cls):
    return [node for node in fn.maker.fgraph.toposort() if isinstance(node.op, cls)]


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('k,d', [(3, 1), (3, 4), (2, 2), (3, 5)], ids=['k3d1', 'k3d4', 'k2d2', 'k3d5-beyond'])
def test_the_convolution_and_its_gradients_match_the_composition(dtype, k, d):
    fused, ref = compiled(dtype, k, d), compiled(dtype, k, d, custom=False)
    assert ops_of(fused, CausalTaps) and ops_of(fused, CausalTapsGrad) and not ops_of(fused, Join)
    assert not ops_of(ref, CausalTaps) and ops_of(ref, Join)
    args = data(dtype, k)
    for name, a, b in zip(['y', 'dx', 'dW', 'db'], fused(*args), ref(*args)):
        assert a.dtype == b.dtype == np.dtype(dtype) and a.shape == b.shape, name
        np.testing.assert_allclose(a, b, err_msg=name, **TOL[dtype])


def test_taps_are_the_shifted_copies_and_the_gradient_their_adjoint():
    x = np.arange(2 * 5 * 2, dtype='float64').reshape(2, 5, 2) + 1
    v = pt.tensor3('v', dtype='float64')
    f = pytensor.function([v], causal_taps(v, 3, 2), mode=compile_mode())
    taps = f(x)
    np.testing.assert_array_equal(taps[:, :, 4:], x)                      # the current step last
    np.testing.assert_array_equal(taps[:, 2:, 2:4], x[:, :3])            # one dilation back
    np.testing.assert_array_equal(taps[:, 4:, 0:2], x[:, :1])            # two back
    assert not taps[:, :2, 2:4].any() and not taps[:, :4, 0:2].any()     # zero before the start
    g = np.random.default_rng(1).standard_normal(taps.shape)
    grad = pytensor.function([v], pytensor.grad((causal_taps(v, 3, 2) * g).sum(), v), mode=compile_mode())(x)
    # <taps(x), g> = <x, taps^T(g)> for every x: the gradient is the adjoint
    np.testing.assert_allclose((taps * g).sum(), (x * grad).sum(), rtol=1e-12)


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_c_code_matches_perform(dtype):
    c = compiled(dtype, 3, 2)
    ran_as_c = [getattr(th, 'cthunk', None) is not None for node, th in zip(c.vm.nodes, c.vm.thunks)
                if isinstance(node.op, (CausalTaps, CausalTapsGrad))]
    assert len(ran_as_c) == 2 and all(ran_as_c)
    py = compiled(dtype, 3, 2, mode=Mode(linker='py', optimizer='fast_run'))
    args = data(dtype, 3, B=64, L=43, seed=4)  # enough rows for the loops' threads
    for a, b in zip(c(*args), py(*args)):
        np.testing.assert_allclose(a, b, **TOL[dtype])


def test_bad_sizes_are_errors():
    with pytest.raises(ValueError, match='at least 1'):
        CausalTaps(0, 1)
    with pytest.raises(TypeError, match='channels'):
        causal_taps(pt.matrix('m'), 3, 1)
