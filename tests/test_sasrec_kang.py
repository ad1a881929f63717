"""SASRec with block=kang: Kang & McAuley's own network (their TensorFlow code) re-derived in numpy,
and what their training keeps fixed (the padding row, the tied output layer, Adam's beta2)."""
import numpy as np
import pytensor.tensor as pt
import pytest

from recsys_core.backend import compile_function
from recsys_core.model import FitRequest
from stackrec.sasrec import SASRec

KANG = dict(block='kang', hidden=8, num_heads=2, num_blocks=2, max_len=8, batch_size=32, n_epochs=1, dropout=0.2,
            loss='bce')


def layer_norm(x, g, b):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-8) * g + b


def kang_network(w, X, pad, blocks, heads):
    """Kang's graph at inference, written from the code's description: embedding * sqrt(d) + position,
    padding zeroed; per block attention over normalize(seq) as queries and seq as keys with key,
    causal and query masks, residual on the queries, feed-forward on normalize(.) with its own
    residual, padding zeroed; a final normalize."""
    d = w['item_emb'].shape[1]
    mask = (X != pad)[:, :, None].astype(np.float64)
    seq = (w['item_emb'][X] * np.sqrt(d) + w['pos_emb'][:X.shape[1]]) * mask
    L = X.shape[1]
    for i in range(blocks):
        p = lambda name: w['b{}_{}'.format(i, name)]
        q = layer_norm(seq, p('na_g'), p('na_b'))
        Q, K, V = q @ p('q_W') + p('q_b'), seq @ p('k_W') + p('k_b'), seq @ p('v_W') + p('v_b')
        out = np.zeros_like(q)
        for h in range(heads):
            cols = slice(h * d // heads, (h + 1) * d // heads)
            scores = Q[:, :, cols] @ K[:, :, cols].transpose(0, 2, 1) / np.sqrt(d // heads)
            keep = (np.abs(seq).sum(-1) != 0)[:, None, :] & np.tril(np.ones((L, L), bool))[None]
            scores = np.where(keep, scores, -2.0 ** 32 + 1)
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            probs *= (np.abs(q).sum(-1) != 0)[:, :, None]
            out[:, :, cols] = probs @ V[:, :, cols]
        y = out + q
        z = layer_norm(y, p('nf_g'), p('nf_b'))
        seq = (np.maximum(z @ p('f1_W') + p('f1_b'), 0) @ p('f2_W') + p('f2_b') + z) * mask
    return layer_norm(seq, w['ln_final_g'], w['ln_final_b'])


@pytest.fixture(scope='module')
def kang_plan(tiny_data):
    model = SASRec(**KANG)
    return model, model._training_plan(FitRequest(tiny_data[0], verbose=False))


@pytest.mark.slow
def test_the_kang_block_stack_is_kangs_network(kang_plan):
    model, _ = kang_plan
    rng = np.random.default_rng(0)
    w = {}
    for name, shared in model.shared.items():  # every weight away from its initial value
        value = shared.get_value() + rng.normal(0, 0.3, shared.get_value().shape).astype('float32')
        if name == 'item_emb':
            value[model.pad_index] = 0
        shared.set_value(value)
        w[name] = value.astype(np.float64)
    windows = model.windows_of([[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11]])  # left-padded
    X = pt.imatrix('X')
    got = compile_function([X], model._hidden(X))(windows)
    expected = kang_network(w, windows, model.pad_index, model.num_blocks, model.num_heads)
    real = windows != model.pad_index
    np.testing.assert_allclose(got[real], expected[real], rtol=2e-4, atol=2e-4)
    scores = compile_function([X], model._log_scores(model._hidden(X)[:, -1, :]))(windows)
    np.testing.assert_allclose(scores, expected[:, -1] @ w['item_emb'].T, rtol=2e-4, atol=2e-4)  # tied, no bias


@pytest.mark.slow
def test_kang_training_keeps_the_padding_row_at_zero_and_descends_sasrecs_loss(kang_plan):
    model, plan = kang_plan
    assert 'final_W' not in model.shared and 'ln_pre_g' not in model.shared
    assert model._optimizer().beta2 == 0.98 and not model._optimizer().torch_epsilon
    batch = next(iter(plan.batches(0)))[0]
    losses = [plan.step(batch) for _ in range(6)]
    assert losses[-1] < losses[0]
    assert not model.shared['item_emb'].get_value()[model.pad_index].any()
