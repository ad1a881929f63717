"""paropt.py end to end on tiny data: a search that improves, resuming, reports, and clean errors."""
import os
import re

import optuna
import pytest
from conftest import cli

from recsys_core.params import load_param_file

pytestmark = pytest.mark.slow  # every test runs paropt.py in a subprocess

FIXED = 'loss=bpr-max,constrained_embedding=True,batch_size=16,n_sample=32,n_epochs=2'
SPACE = ('{"name": "layers", "dtype": "int", "values": [16, 48], "step": 16}\n'
         '{"name": "learning_rate", "dtype": "float", "values": [0.0005, 0.5], "log": true}\n'
         '{"name": "final_act", "dtype": "categorical", "values": ["elu-0.5", "linear"]}\n')


@pytest.fixture(scope='module')
def search(tiny_files, tmp_path_factory):
    d = tmp_path_factory.mktemp('paropt')
    (d / 'space.json').write_text(SPACE)
    args = ['paropt.py', tiny_files['train'], tiny_files['test'], '-fp', FIXED, '-opf', str(d / 'space.json'),
            '-nt', '5', '-m', '10', '-fm', '5', '10', '-pm', 'mrr', '--seed', '3', '-o', str(d / 'out')]
    out = cli(*args)
    assert out.returncode == 0, out.stderr[-3000:]
    folders = os.listdir(str(d / 'out'))
    assert len(folders) == 1
    folder = d / 'out' / folders[0]
    study = optuna.load_study(study_name=folders[0], storage='sqlite:///' + str(folder / 'study.db'))
    return {'args': args, 'out': out, 'folder': folder, 'study': study}


def test_search_prints_space_trials_and_final_evaluation(search):
    stdout = search['out'].stdout.splitlines()
    assert stdout[0] == '-' * 80 and stdout[1] == 'PARAMETER SPACE'
    assert stdout[2] == '\tPARAMETER layers \t type=int \t range=[16..48] (step=16) \t UNIFORM scale'
    assert sum(l == 'Creating GRU4Rec model' for l in stdout) == 6  # 5 trials + the final run
    assert sum(l.startswith('PRIMARY METRIC: ') for l in stdout) == 5
    final = stdout[stdout.index('Running final eval @[5, 10]:'):]
    assert final[-2].startswith('Recall@5: ') and final[-1].startswith('Recall@10: ')
    progress = [l for l in search['out'].stderr.splitlines() if l.startswith('[paropt] trial ')]
    assert len(progress) == 5 and re.match(r'\[paropt\] trial 4 \(5/5 done, 0 running\): value 0\.\d{6} \| best '
                                           r'0\.\d{6} \(trial \d\) \| \d+\.\ds', progress[-1])


def test_search_improves_on_its_first_trial_and_values_are_the_runs_metric(search):
    trials = search['study'].trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 5
    assert search['study'].best_value > trials[0].value
    log = (search['folder'] / 'trials' / 'trial_00002.log').read_text()
    mrr = float(re.search(r'MRR@10: (\S+)', log).group(1))
    assert trials[2].value == pytest.approx(mrr, abs=1e-6)


def test_best_parameters_file_plots_and_final_run_agree(search):
    best = search['study'].best_trial
    params = load_param_file(str(search['folder'] / 'best_params.py'))
    assert params['layers'] == [best.params['layers']] and params['final_act'] == best.params['final_act']
    assert params['loss'] == 'bpr-max' and params['constrained_embedding'] is True and params['n_epochs'] == 2
    for png in ('history.png', 'importance.png'):
        with open(str(search['folder'] / png), 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    final = search['out'].stdout.split('Running final eval')[1]
    mrr10 = float(re.search(r'Recall@10: \S+ MRR@10: (\S+)', final).group(1))
    assert mrr10 == pytest.approx(best.value, abs=1e-6)  # training is deterministic


def test_rerunning_the_command_resumes_without_repeating_trials(search):
    out = cli(*search['args'], '--no-final-eval', '-nt', '6')
    assert out.returncode == 0, out.stderr[-3000:]
    assert '5/6 trials done' in out.stderr
    assert sum(l == 'Creating GRU4Rec model' for l in out.stdout.splitlines()) == 1
    study = optuna.load_study(study_name=search['study'].study_name,
                              storage='sqlite:///' + str(search['folder'] / 'study.db'))
    assert len(study.trials) == 6 and study.trials[5].state == optuna.trial.TrialState.COMPLETE


def test_parallel_workers_in_one_process(tiny_files, tmp_path):
    (tmp_path / 'space.json').write_text(SPACE)
    out = cli('paropt.py', tiny_files['train'], tiny_files['test'], '-fp', FIXED, '-opf', str(tmp_path / 'space.json'),
              '-nt', '3', '-j', '2', '--no-final-eval', '-o', str(tmp_path / 'out'), '--study-name', 'par')
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name='par', storage='sqlite:///' + str(tmp_path / 'out' / 'par' / 'study.db'))
    assert len(study.trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    assert sorted(re.findall(r'^---- trial (\d) ----$', out.stdout, re.M)) == ['0', '1', '2']


@pytest.mark.parametrize('change, message', [
    ({'space': '{"name": "layers", "dtype": "int", "values": [64, 32]}\n'}, 'line 1: low bound 64 of layers is above'),
    ({'space': '{"name": "layers" "dtype": "int"}\n'}, 'line 1: not valid JSON'),
    ({'space': '{"name": "no_such", "dtype": "int", "values": [1, 2]}\n'}, 'no_such is not a parameter of GRU4Rec'),
    ({'space': '{"name": "final_act", "dtype": "categorical", "values": ["linear", "bogus"]}\n'},
     "value 'bogus' of final_act is not accepted"),
    ({'fixed': 'loss=no-such-loss'}, "Invalid value 'no-such-loss' for parameter loss"),
    ({'fixed': 'learning_rat=0.1'}, 'Unknown parameter(s) for GRU4Rec: learning_rat'),
    ({'fixed': 'loss=bpr-max,,'}, 'Malformed parameter string'),
    ({'fixed': 'layers=32'}, 'layers is both fixed (-fp) and searched'),
    ({'storage': 'postgresql://nobody:secret@127.0.0.1:1/none'}, 'Cannot open the Optuna storage '
                                                                'postgresql://nobody:***@127.0.0.1:1/none'),
    ({'storage': 'nosuchdb://x'}, 'Cannot open the Optuna storage nosuchdb://x'),
    ({'train': '/no/such/train.tsv'}, 'Training data not found: /no/such/train.tsv'),
    ({'args': ['-nt', '0']}, '-nt/--ntrials must be a positive integer'),
    ({'args': ['-fm', '5', '0']}, '-m and -fm values must be positive integers'),
    ({'args': ['-pm', 'ndcg']}, '-pm ndcg needs --protocol last'),
    ({'args': ['--heartbeat', '0']}, '--heartbeat must be at least 1 second'),
    ({'args': ['-d', 'cuda']}, '-d cuda'),  # test machines have no GPU: refused before any study file
])
def test_bad_input_gives_one_clear_error_and_exit_1(tiny_files, tmp_path, change, message):
    (tmp_path / 'space.json').write_text(change.get('space', SPACE))
    args = ['paropt.py', change.get('train', tiny_files['train']), tiny_files['test'], '-fp', change.get('fixed', FIXED),
            '-opf', str(tmp_path / 'space.json'), '-o', str(tmp_path / 'out')] + change.get('args', [])
    if 'storage' in change:
        args += ['--storage', change['storage']]
    out = cli(*args, timeout=120)
    assert out.returncode == 1
    errors = [l for l in out.stderr.splitlines() if l.startswith('ERROR:')]
    assert len(errors) == 1 and message in errors[0], out.stderr
    assert 'Traceback' not in out.stderr
    assert not os.path.exists(str(tmp_path / 'out'))  # nothing was started
