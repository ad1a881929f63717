"""Looped residual stacks (recsys_core.stacked): the layout of stored weights, the same training
as the unrolled graph, one forward pass per block in the compiled step, and per-block names on
the host."""
import numpy as np
import pytest
from pytensor.scan.op import Scan

from cprec import CpRec
from cprec.sharing import residual_blocks
from nextitnet import NextItNet
from peercollab import PeerCollab
from recsys_core import stacked
from recsys_core.model import FitRequest
from recsys_core.trainer import TrainingOptions
from stackrec.nextitnet import StackNextItNet
from stackrec.sasrec import SASRec


@pytest.fixture
def unrolled():
    """Build graphs unrolled inside the test, and the default form again after it."""
    stacked.set_form('unrolled')
    yield
    stacked.set_form('scan')


def test_layout_stores_each_role_once_per_repeat_and_shared_weights_once():
    blocks = residual_blocks('original', [1, 4] * 3)
    layout = stacked.StackLayout.of(blocks)
    assert (layout.period, layout.repeats) == (2, 3)
    assert layout.storage['conv0a_W[stack]'] == ['conv0a_W', 'conv2a_W', 'conv4a_W']
    assert layout.where['conv3b_b'] == ('conv1b_b[stack]', 1)
    shared = stacked.StackLayout.of(residual_blocks('cross-layer', [1, 4] * 3))
    conv = [members for key, members in shared.storage.items() if key.startswith('conv_all')]
    assert conv == [['conv_all_W'], ['conv_all_b']]  # one kernel for every convolution of the stack
    pairs = stacked.StackLayout.of(residual_blocks('adjacent-block', [1, 4] * 3))
    assert pairs.storage['conv_pair0a_W[stack]'] == ['conv_pair0a_W', 'conv_pair1a_W', 'conv_pair2a_W']
    slots = [(name, index) for name, key, index in pairs.slots if key == 'conv_pair0a_W[stack]']
    assert slots == [('conv_pair0a_W', [0, 1, 2])]  # both blocks of a repeat read their pair's kernel once
    cross = [(name, index) for name, key, index in shared.slots if key.startswith('conv_all')]
    assert cross == [('conv_all_W', [0, 0, 0]), ('conv_all_b', [0, 0, 0])]
    assert stacked.StackLayout.of(residual_blocks('original', [1, 2, 4])) is None  # no repeated cycle
    assert stacked.StackLayout.of(residual_blocks('original', [1, 4] * 2)) is None  # twice: unrolled
    weights = {n: np.zeros(2) for n in layout.names()}
    assert layout.unstack(layout.stack(weights)).keys() == weights.keys()


def steps(cls, params, data, n=4):
    model = cls(**params)
    model.fit(data, verbose=False, training=TrainingOptions(max_batches_per_epoch=n))
    return model


LOOPED = {
    'nextitnet': (NextItNet, dict(dilated_channels=8, dilations=[1, 2] * 3, max_len=8, batch_size=32, n_epochs=2)),
    'cprec adjacent-block': (CpRec, dict(dilated_channels=8, dilations=[1, 2] * 3, max_len=8, batch_size=32,
                                         n_epochs=2, use_parametersharing_type='adjacent-block', block=[40, 120],
                                         l2_reg=0.01)),
    'stackrec.sasrec dropout': (SASRec, dict(hidden=8, num_blocks=3, max_len=8, batch_size=32, n_epochs=2,
                                             dropout=0.3)),
    # PW: its choice per element is by magnitude; LW's gates weigh whole layers, key biases included,
    # whose values are rounding noise scaled by Adam (below), so LW's merge differs beyond rounding
    'peercollab pw': (PeerCollab, dict(hidden=8, num_blocks=3, max_len=8, batch_size=32, n_epochs=2,
                                       cooperation='pw')),
}


@pytest.mark.parametrize('name', [n if n == 'nextitnet' else pytest.param(n, marks=pytest.mark.slow) for n in LOOPED])
def test_the_loop_trains_as_the_unrolled_stack(tiny_data, name):
    """Same losses and weights after training (float rounding aside): shared kernels, L2 over the
    stored tensors and dropout masks drawn in the unrolled order included."""
    cls, params = LOOPED[name]
    looped = steps(cls, params, tiny_data[0])
    assert looped._layouts
    stacked.set_form('unrolled')
    try:
        plain = steps(cls, params, tiny_data[0])
    finally:
        stacked.set_form('scan')
    assert not plain._layouts
    np.testing.assert_allclose([s['loss'] for s in looped.epoch_stats], [s['loss'] for s in plain.epoch_stats],
                               rtol=1e-5)
    for k, v in plain.weights.items():
        if k.endswith('_k_b'):  # the attention key bias has a zero gradient up to rounding (softmax ignores a
            continue            # shift of every key's score), which Adam's normalisation turns into lr-sized steps
        np.testing.assert_allclose(looped.weights[k], v, rtol=1e-4, atol=1e-6, err_msg=k)


def test_the_compiled_step_runs_each_block_forward_once(tiny_data):
    """The backward loop reads the saved activations: its matrix products are the two per
    convolution of the backward pass (input and kernel gradients), none of the forward's."""
    model = StackNextItNet(dilated_channels=8, dilations=[1, 4] * 3, max_len=8, batch_size=32, n_epochs=1)
    plan = model._training_plan(FitRequest(tiny_data[0], verbose=False))
    loops = {n.op.name: n.op.fgraph.apply_nodes for n in plan.step_function.maker.fgraph.apply_nodes
             if isinstance(n.op, Scan)}
    assert sorted(loops) == ['stack_backward', 'stack_forward']

    def products(nodes):
        return sum(any(k in type(n.op).__name__ for k in ('Dot', 'Gemm', 'Gemv')) for n in nodes)
    assert products(loops['stack_forward']) == 4  # one cycle: two blocks of two convolutions
    assert products(loops['stack_backward']) == 8


def test_a_model_file_holds_per_block_weights_and_loads_in_either_form(tiny_data, tmp_path, unrolled):
    plain = steps(NextItNet, LOOPED['nextitnet'][1], tiny_data[0], n=2)
    path = str(tmp_path / 'm.pkl')
    plain.savemodel(path)
    stacked.set_form('scan')
    loaded = NextItNet.loadmodel(path)
    assert sorted(loaded.weights) == sorted(plain.weights) and 'conv3a_W' in loaded.weights
    history = list(tiny_data[0].ItemId.unique()[:5])
    a, b = plain.recommend(history, k=5), loaded.recommend(history, k=5)
    assert loaded._layouts and list(a[0]) == list(b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5)
    values = loaded.weight_values()
    values['conv2b_W'] = values['conv2b_W'] + 1
    loaded.set_weight_values({'conv2b_W': values['conv2b_W']})
    np.testing.assert_array_equal(loaded.weight_values()['conv2b_W'], values['conv2b_W'])
    np.testing.assert_array_equal(loaded.weight_values()['conv0b_W'], plain.weights['conv0b_W'])
