"""PeerCollab compiles under the JAX backend: two cooperating peers (the second peer's step a copy of
the first's compiled function on its own variables, merges written into the shared variables
between epochs) train and evaluate on the CPU to the C backend's numbers. Float summation order
differs, so losses agree within 1% and metrics within 6% (as tests/test_jax_backend.py)."""
import os
import re

import pytest

from conftest import cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('jax')]  # trains through run.py on two backends

pytest.importorskip('jax')

PARAMS = 'hidden=16,num_blocks=2,max_len=12,batch_size=64,n_epochs=3,dropout=0.1,cooperation={}'


def _run(backend, *args):
    out = cli('run.py', *args, env=dict(os.environ, RECSYS_BACKEND=backend), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'backend: {}'.format(backend) in out.stdout
    losses = [float(x) for x in re.findall(r'--> loss: ([\d.]+)', out.stdout)]
    metrics = [float(x) for x in re.findall(r'(?:HR|MRR|NDCG)@20: ([\d.]+)', out.stdout)]
    assert len(losses) == 3 and len(metrics) == 3
    return losses, metrics


def test_peercollab_under_jax_matches_the_c_backend(tiny_files):
    # LW and PW write their merges into the shared variables through the same code (PeerCollab.merge);
    # their arithmetic is tested on the C backend (tests/test_peercollab.py)
    args = [tiny_files['train'], '-t', tiny_files['test'], '-g', 'peercollab', '-ps', PARAMS.format('lw'),
            '-m', '20', '--protocol', 'last']
    jax_losses, jax_metrics = _run('jax', *args)
    c_losses, c_metrics = _run('c', *args)
    for a, b in zip(jax_losses, c_losses):
        assert abs(a - b) <= 0.01 * b
    assert jax_losses[2] < jax_losses[0]  # it learns, across the merges
    for a, b in zip(jax_metrics, c_metrics):
        assert abs(a - b) <= 0.06 * b
