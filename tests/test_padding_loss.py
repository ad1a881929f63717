"""padding_loss (issue 21 item 2): 'released' trains on padding targets as the releases do (the
default), 'skip' scores only the real targets against the vocabulary: the same loss and gradients
as the masked composition, from fewer rows."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

import cprec.model
import nextitnet.model
from cprec import CpRec, blockwise
from nextitnet import NextItNet, sampled_softmax
from recsys_core import sequence_model
from recsys_core.backend import compile_function
from recsys_core.errors import UserError
from recsys_core.softmax import cross_entropy, linear_cross_entropy
from stackrec.nextitnet import StackNextItNet

from conftest import cli, seq_frame

CONFIGS = [
    (NextItNet, dict(is_negsample=False)),
    (NextItNet, dict(is_negsample=True, sample_percentage=0.3)),
    (CpRec, dict(use_softmax_type='FullSoftmax')),
    (CpRec, dict(use_softmax_type='Block_Input_Softmax', block='auto', use_embedding_type_factor=2)),
]
IDS = ['nextitnet-full', 'nextitnet-sampled', 'cprec-full', 'cprec-block']



@pytest.fixture(scope='module')
def data():
    """Sessions of 2 to 8 items over 40 ids: windows of 8 carry 0 to 6 padding targets each."""
    rng = np.random.default_rng(4)
    return seq_frame([list(rng.integers(0, 40, size=rng.integers(2, 9))) for _ in range(60)])


def prepared(cls, data, **params):
    model = cls(dilated_channels=8, dilations=[1, 2], max_len=8, batch_size=16, **params)
    rows = model._training_rows(data, verbose=False)
    model.weights = model._init_weights()
    model._make_shared()
    return model, rows


def masked_reference(model, flat, y, extra):
    """The plain composition over every row, padding rows masked out of the mean."""
    mask = pt.neq(y, model.pad_index)
    s = model.shared
    if isinstance(model, CpRec):
        if model.block_output:
            logp = blockwise.block_log_probs(flat, s['out_head'], model._tails('out_down'), model._tails('out_tail'),
                                             model.bounds)[pt.arange(y.shape[0]), y]
            m = pt.cast(mask, 'float32')
            return -(logp * m).sum() / m.sum()
        return cross_entropy(pt.dot(flat, s['Wf']) + s['bf'], y, mask)
    if model.is_negsample:
        return sampled_softmax.sampled_softmax_loss(flat, y, s['Ws'], s['bs'], *extra, mask=mask)
    return cross_entropy(pt.dot(pt.maximum(flat, 0), s['Wo']) + s['bo'], y, mask)


def loss_and_grads(model, rows, static=False, monkeypatch=None):
    """[skip loss, its gradients..., reference loss, its gradients...] on ``rows``."""
    if static:
        monkeypatch.setattr(sequence_model, 'needs_static_shapes', lambda: True)
        monkeypatch.setattr(cprec.model, 'needs_static_shapes', lambda: True)
    X = pt.imatrix('X')
    h = model._hidden(X[:, :-1])
    labels = X[:, 1:]
    extra = model._loss_inputs()
    params = model._trainable()
    skip = model._train_loss(h, labels, extra)
    ref = masked_reference(model, h.reshape((-1, h.shape[2])), labels.ravel(), extra)
    fn = compile_function([X] + extra, [skip] + pytensor.grad(skip, params) + [ref] + pytensor.grad(ref, params))
    feed = model._loss_feed(rows[:, 1:])
    out = fn(rows, *feed)
    n = len(params) + 1
    return out[:n], out[n:]


@pytest.mark.parametrize('cls,params', CONFIGS, ids=IDS)
@pytest.mark.parametrize('static', [False, pytest.param(True, marks=pytest.mark.slow)], ids=['gathered', 'static-shapes'])
def test_skip_is_the_masked_composition_values_and_gradients(data, cls, params, static, monkeypatch):
    model, rows = prepared(cls, data, padding_loss='skip', **params)
    model._rng = np.random.default_rng(1)
    batch = rows[:16]
    assert (batch[:, 1:] == model.pad_index).any() and (batch[:, 1:] != model.pad_index).any()
    skip, ref = loss_and_grads(model, batch, static, monkeypatch)
    for a, b in zip(skip, ref):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7)
    assert np.isfinite(skip[0]) and skip[0] > 0


def _scored_row_count(model, rows, monkeypatch):
    """Rows of the matrix the output layer scores in the training loss, for ``rows``."""
    seen = []
    if isinstance(model, CpRec) and model.block_output:
        inner = blockwise.block_softmax_loss
        monkeypatch.setattr(cprec.model.blockwise, 'block_softmax_loss',
                            lambda h, *a, **k: seen.append(h) or inner(h, *a, **k))
    elif isinstance(model, CpRec):
        monkeypatch.setattr(cprec.model, 'linear_cross_entropy',
                            lambda h, *a: seen.append(h) or linear_cross_entropy(h, *a))
    elif model.is_negsample:
        inner = sampled_softmax.sampled_softmax_loss
        monkeypatch.setattr(nextitnet.model.sampled_softmax, 'sampled_softmax_loss',
                            lambda h, *a, **k: seen.append(h) or inner(h, *a, **k))
    else:
        monkeypatch.setattr(nextitnet.model, 'linear_cross_entropy',
                            lambda h, *a: seen.append(h) or linear_cross_entropy(h, *a))
    X = pt.imatrix('X')
    model._train_loss(model._hidden(X[:, :-1]), X[:, 1:], model._loss_inputs())
    assert len(seen) == 1
    return int(compile_function([X], seen[0].shape[0])(rows))


@pytest.mark.parametrize('cls,params', CONFIGS, ids=IDS)
def test_skip_scores_only_the_real_targets(data, cls, params, monkeypatch):
    model, rows = prepared(cls, data, padding_loss='skip', **params)
    batch = rows[:16]
    real = int((batch[:, 1:] != model.pad_index).sum())
    assert real < batch[:, 1:].size
    assert _scored_row_count(model, batch, monkeypatch) == real
    model.padding_loss = 'released'
    assert _scored_row_count(model, batch, monkeypatch) == batch[:, 1:].size  # as released: every position


@pytest.mark.parametrize('cls', [NextItNet, CpRec, StackNextItNet])
def test_released_is_the_default_and_a_bad_value_is_one_clear_error(cls):
    assert cls().padding_loss == 'released'
    with pytest.raises(UserError, match="Invalid value 'none' for parameter padding_loss: must be released or skip"):
        cls(padding_loss='none')


def test_released_loss_is_the_unmasked_mean_over_every_position(data):
    model, rows = prepared(NextItNet, data)
    X = pt.imatrix('X')
    h = model._hidden(X[:, :-1])
    flat = h.reshape((-1, h.shape[2]))
    s = model.shared
    ref = cross_entropy(pt.dot(pt.maximum(flat, 0), s['Wo']) + s['bo'], X[:, 1:].ravel())
    fn = compile_function([X], [model._train_loss(h, X[:, 1:], []), ref])
    a, b = fn(rows[:16])
    assert a == b


@pytest.mark.slow
@pytest.mark.parametrize('cls,params', [CONFIGS[1], CONFIGS[3]], ids=[IDS[1], IDS[3]])
def test_skip_trains_and_weighs_batches_by_their_real_targets(data, cls, params):
    model = cls(dilated_channels=8, dilations=[1, 2], max_len=8, batch_size=16, n_epochs=2, padding_loss='skip',
                **params)
    model.fit(data, verbose=False)
    rows = model._training_rows(data, verbose=False)
    n_batches = len(rows) // 16
    real = int((rows[:n_batches * 16, 1:] != model.pad_index).sum())
    assert [e['events'] for e in model.epoch_stats] == [real, real]
    assert model.epoch_stats[-1]['loss'] < model.epoch_stats[0]['loss']


@pytest.mark.slow
def test_stacked_nextitnet_trains_with_skip(data):
    model = StackNextItNet(dilated_channels=8, dilations=[1, 4], max_len=8, batch_size=16, n_epochs=1,
                           padding_loss='skip')
    model.fit(data, verbose=False)
    assert np.isfinite(model.epoch_stats[-1]['loss'])


def test_run_py_takes_padding_loss(tiny_files):
    common = [tiny_files['train'], '-t', tiny_files['test'], '-g', 'nextitnet', '--protocol', 'last', '-m', '20']
    out = cli('run.py', *common, '-ps', 'dilated_channels=8,dilations=1/2,max_len=10,n_epochs=1,padding_loss=skip')
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'SET   padding_loss' in out.stdout and 'HR@20' in out.stdout
    bad = cli('run.py', *common, '-ps', 'padding_loss=sometimes')
    assert bad.returncode != 0 and 'Traceback' not in bad.stderr
    assert 'padding_loss: must be released or skip' in bad.stdout + bad.stderr
