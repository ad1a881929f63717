"""The C code PyTensor compiles for this project keeps IEEE infinities: saturating functions give
their limits on extreme inputs instead of NaN (issue 16: sigmoid returned NaN below -88.7 under
-ffinite-math-only, which turned GRU training steps with saturated gates into NaN)."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from scipy.special import expit

from recsys_core.backend import compile_function

EXTREME = np.array([-1e30, -1e4, -1000, -100, -89, -88.5, -30, -1, 0, 1, 30, 88.5, 89, 100, 1000, 1e4, 1e30])


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_sigmoid_tanh_and_their_gradients_saturate_instead_of_nan(dtype):
    x = pt.vector('x', dtype=dtype)
    # 16 columns, so the vectorised loop body (not only its scalar remainder) sees every value
    vals = np.repeat(EXTREME.astype(dtype), 16)
    f = compile_function([x], [pt.sigmoid(x), pt.tanh(x), pytensor.grad(pt.sum(pt.sigmoid(x)), x),
                               pytensor.grad(pt.sum(pt.tanh(x)), x)])
    sig, tanh, dsig, dtanh = f(vals)
    np.testing.assert_allclose(sig, expit(vals), rtol=1e-5, atol=1e-30)
    np.testing.assert_allclose(tanh, np.tanh(vals), rtol=1e-5)
    s = expit(vals.astype('float64'))
    np.testing.assert_allclose(dsig, s * (1 - s), rtol=1e-4, atol=np.finfo(dtype).eps)
    np.testing.assert_allclose(dtanh, 1 - np.tanh(vals.astype('float64')) ** 2, rtol=1e-4, atol=np.finfo(dtype).eps)


def test_gru_step_with_saturated_gates_stays_finite():
    """Gate pre-activations far below -88.7 (large hidden states times trained weights) must give
    closed gates, not NaN: the GRU update and its gradient on such inputs."""
    a = pt.matrix('a', dtype='float32')
    H = pt.matrix('H', dtype='float32')
    z = pt.sigmoid(a)
    out = (1.0 - z) * pt.tanh(H * pt.sigmoid(-a)) + z * H
    f = compile_function([a, H], [out, pytensor.grad(pt.sum(out ** 2), [a, H])[0]])
    pre = np.tile(np.float32([-400, -120, -90, 0, 90, 120, 400, -1e4]), (8, 4))
    h = np.full_like(pre, 65.0)
    y, g = f(pre, h)
    assert np.isfinite(y).all() and np.isfinite(g).all()
    np.testing.assert_allclose(y[pre <= -90], np.tanh(65.0), rtol=1e-6)  # z = 0: the candidate
    np.testing.assert_allclose(y[pre >= 90], 65.0, rtol=1e-6)  # z = 1: the old state
