"""The experimental JAX backend (the candidate route to the GPU) trains and evaluates GRU4Rec,
NextItNet, CpRec and StackRec's four base models on the CPU to the C backend's numbers: same data, parameters and seeds. They differ by
float summation order and, for GRU4Rec, by the negative samples (JAX draws the sample store with its
own generator), so losses agree within 1% and metrics within 10% on this small data: the C backend's
own GRU4Rec MRR@20 spans 0.360-0.383 over seeds 42-44 here, 6% of the mean."""
import re

import pytest

from conftest import cli_shared

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('jax')]  # run.py on two backends; JAX runs shared

pytest.importorskip('jax')

GRU4REC = ('loss=cross-entropy,final_act=softmax,constrained_embedding=True,layers=32,batch_size=16,n_sample=64,'
           'logq=1.0,momentum=0.2,dropout_p_hidden=0,n_epochs=2')
NEXTITNET = 'dilated_channels=16,dilations=1/2,batch_size=64,max_len=12,n_epochs=2'
STACKREC_NEXTITNET = 'dilated_channels=16,dilations=1/4/1/4/1/4,batch_size=64,max_len=12,n_epochs=2'  # looped
STACKREC_SASREC = 'hidden=16,num_blocks=2,batch_size=64,max_len=12,n_epochs=2,dropout=0.1'
STACKREC_GREC = 'dilated_channels=16,dilations=1/4,batch_size=64,max_len=12,n_epochs=2,masked_lm_prob=0.3'
STACKREC_SSEPT = 'hidden=16,num_blocks=2,batch_size=64,max_len=12,n_epochs=2,dropout=0.1'
CPREC = NEXTITNET + ',use_softmax_type=Block_Input_Softmax_Inference,use_parametersharing_type=adjacent-block,block=auto'


def _run(backend, *args):
    out = cli_shared('run.py', *args, backend=backend, timeout=600)  # the JAX runs also serve test_cuda_route
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'backend: {}'.format(backend) in out.stdout
    losses = [float(x) for x in re.findall(r'--> loss: ([\d.]+)', out.stdout)]
    metrics = [float(x) for x in re.findall(r'(?:Recall|HR|MRR)@20: ([\d.]+)', out.stdout)]
    assert len(losses) == 2 and len(metrics) == 2
    return losses, metrics


@pytest.mark.parametrize('model, params, extra', [('gru4rec', GRU4REC, []),
                                                  ('nextitnet', NEXTITNET, ['--protocol', 'last']),
                                                  ('cprec', CPREC, ['--protocol', 'last']),
                                                  ('stackrec.nextitnet', STACKREC_NEXTITNET, ['--protocol', 'last']),
                                                  ('stackrec.sasrec', STACKREC_SASREC, ['--protocol', 'last']),
                                                  ('stackrec.grec', STACKREC_GREC, ['--protocol', 'last']),
                                                  ('stackrec.ssept', STACKREC_SSEPT, ['--protocol', 'last'])])
def test_jax_backend_matches_the_c_backend(tiny_files, model, params, extra):
    args = [tiny_files['train'], '-t', tiny_files['test'], '-g', model, '-ps', params, '-m', '5', '20'] + extra + \
        ['-d', 'cpu']
    jax_losses, jax_metrics = _run('jax', *args)
    c_losses, c_metrics = _run('c', *args)
    for a, b in zip(jax_losses, c_losses):
        assert abs(a - b) <= 0.01 * b
    assert jax_losses[1] < jax_losses[0]  # it learns
    for a, b in zip(jax_metrics, c_metrics):
        assert abs(a - b) <= 0.1 * b
