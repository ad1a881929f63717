"""-d cuda without a GPU (issue 18): one clear error; its dry run (RECSYS_CUDA_DRY_RUN=cpu, the same
route on JAX's CPU device) trains and evaluates like the JAX backend, with the weights held as
device arrays; the rank-count substitution behind -d cuda's evaluation; benchmarks/gpu_run.py's
Python parts in the dry run."""
import json
import os
import re

import numpy as np
import pytensor.tensor as pt
import pytest

import gpu_ops
from conftest import cli, cli_shared
from recsys_core import backend
from recsys_core.errors import UserError


def _has_gpu():
    import ctypes
    try:
        ctypes.CDLL('libcuda.so.1')
        return True
    except OSError:
        return False


needs_no_gpu = pytest.mark.skipif(_has_gpu(), reason='this machine has an NVIDIA driver')


@needs_no_gpu
def test_cuda_without_a_gpu_is_one_clear_error_and_changes_nothing(monkeypatch):
    monkeypatch.delenv('RECSYS_CUDA_DRY_RUN', raising=False)
    monkeypatch.delenv('RECSYS_BACKEND', raising=False)
    before = backend.current()
    for device, env in (('cuda', None), (None, 'cuda')):
        if env:
            monkeypatch.setenv('RECSYS_DEVICE', env)
        with pytest.raises(UserError, match=r'^-d cuda(: no NVIDIA driver| runs the JAX backend and needs JAX)'):
            backend.configure(device)
    monkeypatch.setenv('RECSYS_BACKEND', 'c')
    with pytest.raises(UserError, match='-d cuda runs the JAX backend; RECSYS_BACKEND=c is a CPU backend'):
        backend.configure('cuda')
    monkeypatch.setenv('RECSYS_CUDA_DRY_RUN', 'gpu')
    monkeypatch.setenv('RECSYS_BACKEND', 'jax')
    pytest.importorskip('jax')
    with pytest.raises(UserError, match='the only dry-run device is cpu'):
        backend.configure('cuda')
    assert backend.current() == before


def test_rank_counts_at_is_counted_by_the_device_counter_through_compile_function():
    """The substitution -d cuda's evaluation relies on, under the current (CPU) backend: the compiled
    function returns the score matrix and int64 target columns to the counter, other outputs as
    they are; the counts equal the in-graph ones."""
    scores, index, x = pt.matrix('s', dtype='float32'), pt.ivector('i'), pt.vector('x', dtype='float32')
    greater, equal = gpu_ops.rank_counts_at(scores, index)
    seen = []

    def counter(s, t):
        seen.append((s.dtype, t.dtype, s.shape))
        s, t = np.asarray(s), np.asarray(t)
        return gpu_ops.ranking.rank_counts_numpy(s, s[np.arange(len(t)), t])

    wrapped = backend._CountedOnDevice([scores, index, x], [x * 2, greater, equal], None, counter, {})
    plain = backend.compile_function([scores, index, x], [x * 2, greater, equal])
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, (6, 40)).astype(np.float32)
    i = rng.integers(0, 40, 6).astype(np.int32)
    v = np.ones(3, dtype=np.float32)
    got, want = wrapped(s, i, v), plain(s, i, v)
    assert seen == [(np.float32, np.int64, (6, 40))]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert want[1].sum() > 0 and want[2].min() >= 1  # ties and higher scores present


GRU4REC = ('loss=cross-entropy,final_act=softmax,constrained_embedding=True,layers=32,batch_size=16,n_sample=64,'
           'logq=1.0,momentum=0.2,dropout_p_hidden=0,n_epochs=2')


@pytest.mark.slow
@pytest.mark.xdist_group('jax')  # with test_jax_backend, whose JAX runs it reads
@pytest.mark.parametrize('model, params, extra', [
    ('gru4rec', GRU4REC, []),
    ('nextitnet', 'dilated_channels=16,dilations=1/2,batch_size=64,max_len=12,n_epochs=2', ['--protocol', 'last'])])
def test_the_dry_run_trains_and_evaluates_exactly_like_the_jax_backend(tiny_files, model, params, extra):
    """-d cuda in the dry run is the JAX backend's graphs on JAX's CPU device, its evaluation counted
    outside the graph on a host copy: the same losses and metrics to the last digit."""
    pytest.importorskip('jax')
    args = ['run.py', tiny_files['train'], '-t', tiny_files['test'], '-g', model, '-ps', params, '-m', '5', '20'] + extra
    env = {k: v for k, v in os.environ.items() if not k.startswith('RECSYS_')}
    dry = cli(*args, '-d', 'cuda', env=dict(env, RECSYS_CUDA_DRY_RUN='cpu'), timeout=600)
    jax = cli_shared(*args, '-d', 'cpu', backend='jax', timeout=600)  # test_jax_backend's run of the model
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert jax.returncode == 0, jax.stderr[-3000:]
    assert "DRY RUN on JAX's CPU device" in dry.stdout and 'ranking: CPU counts on a host copy' in dry.stdout

    def numbers(out):
        return (re.findall(r'--> loss: ([\d.]+)', out), re.findall(r'(?:Recall|HR|MRR|NDCG)@\d+: [\d.]+', out))
    assert numbers(dry.stdout) == numbers(jax.stdout)
    losses, metrics = numbers(dry.stdout)
    assert len(losses) == 2 and len(metrics) >= 4


@pytest.mark.slow
def test_gpu_run_python_parts_run_in_the_dry_run(tmp_path):
    """benchmarks/gpu_run.py's data and residency steps on the CPU: the weights, optimizer state and
    sample store of a -d cuda training are JAX arrays on JAX's default device afterwards."""
    pytest.importorskip('jax')
    env = {k: v for k, v in os.environ.items() if not k.startswith('RECSYS_')}
    env['GPU_RUN_WORK'] = str(tmp_path / 'work')
    out = tmp_path / 'out'
    for step in ('data', 'residency'):
        res = cli('benchmarks/gpu_run.py', step, '--out', str(out), '--dry-run', env=env, timeout=600)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    summary = json.loads((out / 'summary.json').read_text())
    residency = summary['residency']
    assert residency['all_on_default_device']
    names = set(sum(residency['shared_values'].values(), []))
    assert {'Wy', 'By', 'sample_store'} <= names and len(names) > 8  # weights, accumulators, the store
