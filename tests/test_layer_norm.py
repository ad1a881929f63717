"""The LayerNorm Ops (gpu_ops.layer_norm) against the composition in recsys_core.blocks: values and
gradients of x, gamma and beta, float32 and float64, 2-d and 3-d inputs, constant rows and large
offsets; the C code against ``perform``; the routing (custom Ops on: the Ops; off: the composition)."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.compile.mode import Mode

import gpu_ops
from gpu_ops.layer_norm import LayerNorm, LayerNormGrad
from recsys_core.backend import compile_mode
from recsys_core.blocks import LAYER_NORM_EPS, TORCH_LAYER_NORM_EPS, layer_norm

TOL = {'float32': dict(rtol=1e-4, atol=2e-5), 'float64': dict(rtol=1e-10, atol=1e-12)}


def compiled(dtype, ndim, eps=LAYER_NORM_EPS, custom=True, mode=None):
    """f(x, gamma, beta, up) -> [y, d/dx, d/dgamma, d/dbeta] of cost = sum(y * up) + 0.1 sum(y^2)."""
    gpu_ops.set_custom_ops(custom)
    try:
        x = pt.tensor(dtype=dtype, shape=(None,) * ndim, name='x')
        up = pt.tensor(dtype=dtype, shape=(None,) * ndim, name='up')
        g, b = pt.vector('g', dtype=dtype), pt.vector('b', dtype=dtype)
        y = layer_norm(x, g, b, eps)
        cost = (y * up).sum() + 0.1 * (y ** 2).sum()
        return pytensor.function([x, g, b, up], [y] + pytensor.grad(cost, [x, g, b]), mode=mode or compile_mode())
    finally:
        gpu_ops.set_custom_ops(True)


def data(dtype, shape, seed=0, offset=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * scale + offset).astype(dtype)
    g = rng.standard_normal(shape[-1]).astype(dtype)
    b = rng.standard_normal(shape[-1]).astype(dtype)
    up = rng.standard_normal(shape).astype(dtype)
    return x, g, b, up


def ops_of(fn, cls):
    return [node for node in fn.maker.fgraph.toposort() if isinstance(node.op, cls)]


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
@pytest.mark.parametrize('shape', [(37, 16), (5, 43, 64)], ids=['2d', '3d'])
@pytest.mark.parametrize('offset,scale', [(0.0, 1.0), (50.0, 0.01)], ids=['plain', 'offset-rows'])
def test_values_and_gradients_match_the_composition(dtype, shape, offset, scale):
    fused, ref = compiled(dtype, len(shape)), compiled(dtype, len(shape), custom=False)
    assert ops_of(fused, LayerNorm) and ops_of(fused, LayerNormGrad)
    assert not ops_of(ref, LayerNorm) and not ops_of(ref, LayerNormGrad)
    args = data(dtype, shape, offset=offset, scale=scale)
    got, want = fused(*args), ref(*args)
    for name, a, b in zip(['y', 'dx', 'dgamma', 'dbeta'], got, want):
        assert a.dtype == b.dtype == np.dtype(dtype) and a.shape == b.shape, name
        if offset and dtype == 'float32':  # x - mean loses the offset's digits in both, not in the same way
            continue
        tol = dict(TOL[dtype])
        if dtype == 'float64':  # entries near 0 that are differences of large terms: relative to the largest
            tol['atol'] = max(tol['atol'], 1e-12 * np.abs(b).max())
        np.testing.assert_allclose(a, b, err_msg=name, **tol)
    if offset and dtype == 'float32':  # then both are as close to the float64 result as each other
        exact = compiled('float64', len(shape))(*(v.astype('float64') for v in args))
        for name, a, b, e in zip(['y', 'dx', 'dgamma', 'dbeta'], got, want, exact):
            assert np.abs(a - e).max() <= 2 * np.abs(b - e).max() + 1e-6 * np.abs(e).max(), name


def test_gradients_match_finite_differences():
    f = compiled('float64', 2, eps=TORCH_LAYER_NORM_EPS)
    x, g, b, up = data('float64', (4, 7), seed=2)

    def cost(xv, gv, bv):
        y = f(xv, gv, bv, up)[0]
        return float((y * up).sum() + 0.1 * (y ** 2).sum())
    _, dx, dg, db = f(x, g, b, up)
    h = 1e-6
    for arr, grad, pos in ((x, dx, (1, 3)), (x, dx, (3, 0)), (g, dg, (2,)), (b, db, (5,))):
        plus, minus = arr.copy(), arr.copy()
        plus[pos] += h
        minus[pos] -= h
        args_p = [plus if a is arr else a for a in (x, g, b)]
        args_m = [minus if a is arr else a for a in (x, g, b)]
        numeric = (cost(*args_p) - cost(*args_m)) / (2 * h)
        np.testing.assert_allclose(grad[pos], numeric, rtol=1e-6, atol=1e-8)


def test_a_constant_row_normalises_to_beta_with_a_finite_gradient():
    f = compiled('float32', 2)
    x, g, b, up = data('float32', (3, 8))
    x[1] = 2.5
    y, dx, dg, db = f(x, g, b, up)
    np.testing.assert_allclose(y[1], b, rtol=1e-6)
    assert all(np.isfinite(v).all() for v in (y, dx, dg, db))


def test_an_empty_normalised_axis_is_an_error():
    f = compiled('float32', 2)
    with pytest.raises(ValueError, match='empty'):
        f(np.zeros((3, 0), 'float32'), np.zeros(0, 'float32'), np.zeros(0, 'float32'), np.zeros((3, 0), 'float32'))


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_c_code_matches_perform(dtype):
    c = compiled(dtype, 3)
    ran_as_c = [getattr(th, 'cthunk', None) is not None for node, th in zip(c.vm.nodes, c.vm.thunks)
                if isinstance(node.op, (LayerNorm, LayerNormGrad))]
    assert len(ran_as_c) == 2 and all(ran_as_c)
    py = compiled(dtype, 3, mode=Mode(linker='py', optimizer='fast_run'))
    args = data(dtype, (9, 301, 32), seed=5)  # more rows than one gradient block, and the loops' threads
    for a, b in zip(c(*args), py(*args)):
        np.testing.assert_allclose(a, b, **TOL[dtype])
