"""The shared trainer with the real models: an interrupted GRU4Rec run (sample-store refills,
dropout, a shuffled session order, momentum) resumes to the same weights as an uninterrupted one,
and validation with early stopping drives it like any other model."""
import numpy as np
import pytest

from gru4rec import GRU4Rec
from conftest import fit_interrupted_then_resumed
from recsys_core.trainer import TrainingOptions


GRU_PARAMS = dict(layers=[16], batch_size=16, n_sample=8, n_epochs=2, learning_rate=0.05, momentum=0.2,
                  dropout_p_hidden=0.2, train_random_order=True, loss='cross-entropy', final_act='softmax')


def test_gru4rec_resumes_to_the_same_weights(tiny_data, tmp_path, monkeypatch):
    train, valid = tiny_data
    options = dict(valid=valid, eval_every=20, cut_off=5)
    fit_args = dict(sample_store=8 * 7, verbose=False)  # a store of 7 batches: refilled many times
    whole = GRU4Rec(**GRU_PARAMS).fit(train, training=TrainingOptions(**options), **fit_args)
    # interrupted after step 47, last checkpoint at step 40, inside epoch 1
    resumed = fit_interrupted_then_resumed(monkeypatch, GRU4Rec, GRU_PARAMS, train, str(tmp_path / 'ck'), 47, fit_args,
                                           **options)
    assert len(whole.epoch_stats) == len(resumed.epoch_stats) == 2
    for k in whole.weights:
        np.testing.assert_allclose(resumed.weights[k], whole.weights[k], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose([s['loss'] for s in resumed.epoch_stats], [s['loss'] for s in whole.epoch_stats],
                               rtol=1e-6)
    assert [h['value'] for h in resumed.training_history] == pytest.approx(
        [h['value'] for h in whole.training_history], abs=1e-9)


@pytest.mark.slow
def test_a_killed_run_py_resumes_with_the_same_command(tiny_files, tmp_path):
    """Kill run.py (SIGKILL) in the middle of training; the same command again resumes from
    --checkpoint and ends in the weights of an uninterrupted run."""
    import os
    from conftest import cli, kill_at_step
    from recsys_core.persistence import load_model
    from recsys_core.trainer import LAST
    params = ('layers=16,batch_size=16,n_sample=8,n_epochs=8,learning_rate=0.05,momentum=0.2,dropout_p_hidden=0.2,'
              'loss=cross-entropy,final_act=softmax')

    def command(model, folder):
        return ['run.py', tiny_files['train'], '-ps', params, '-ss', '80', '-s', model, '-v', tiny_files['test'],
                '--eval_every', '150', '--valid_metric', 'mrr@5', '--checkpoint', folder, '--checkpoint_every', '40']
    env = dict(os.environ, RECSYS_THREAD_TUNING='0')
    whole = cli(*command(str(tmp_path / 'whole.model'), str(tmp_path / 'whole')), env=env)
    assert whole.returncode == 0, whole.stderr
    folder, model = str(tmp_path / 'killed'), str(tmp_path / 'killed.model')
    step = kill_at_step(command(model, folder), os.path.join(folder, LAST), 200, env)
    assert 200 <= step < 8 * 100 and not os.path.exists(model)  # killed mid-training, nothing saved yet
    again = cli(*command(model, folder), env=env)
    assert again.returncode == 0, again.stderr
    assert 'Resuming from' in again.stdout
    a, b = load_model(str(tmp_path / 'whole.model')), load_model(model)
    for k in a.weights:
        np.testing.assert_allclose(b.weights[k], a.weights[k], rtol=1e-5, atol=1e-6)
    lines = [line for line in whole.stdout.splitlines() if line.startswith('Restored')]
    assert lines and lines == [line for line in again.stdout.splitlines() if line.startswith('Restored')]


def test_nextitnet_sampled_softmax_resumes_and_stops_early(tiny_data, tmp_path, monkeypatch):
    """The sequence models train through the same trainer: the sampler's generator is host state,
    validation under the last-item protocol selects the best weights."""
    from nextitnet import NextItNet
    train, valid = tiny_data
    params = dict(dilated_channels=8, dilations=[1, 2], max_len=8, batch_size=32, n_epochs=2, is_negsample=True)
    options = dict(valid=valid, protocol='last', metric='mrr', cut_off=5, eval_every=10)
    whole = NextItNet(**params).fit(train, verbose=False, training=TrainingOptions(**options))
    resumed = fit_interrupted_then_resumed(monkeypatch, NextItNet, params, train, str(tmp_path / 'ck'), 25,
                                           dict(verbose=False), **options)
    for k in whole.weights:
        np.testing.assert_allclose(resumed.weights[k], whole.weights[k], rtol=1e-6, atol=1e-7)
    best = max(h['value'] for h in whole.training_history)
    from recsys_core.evaluation import evaluate
    assert evaluate(whole, valid, 'last', [5], verbose=False).value('mrr', 5) == pytest.approx(best, abs=1e-9)
