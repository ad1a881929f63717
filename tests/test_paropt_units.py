"""paropt's building blocks: the space file format, trial bookkeeping, and the retry of crashed trials."""
import json

import optuna
import pytest
from optuna.trial import TrialState

from recsys_core.errors import UserError
from recsys_core.tuning.space import format_space, load_space
from recsys_core.tuning.study import Search, TrialCounts, open_storage, open_study
from recsys_core.tuning.trial_process import TrialOutcome, join_params, run_py_command

optuna.logging.set_verbosity(optuna.logging.WARNING)


def write_lines(path, *objs):
    path.write_text('\n'.join(o if isinstance(o, str) else json.dumps(o) for o in objs) + '\n')
    return str(path)


def test_bundled_spaces_load_and_echo_as_the_original(root):
    space = load_space(root + '/paramspaces/gru4rec_bprmax_standard_parspace.json')
    assert [p.name for p in space][:2] == ['layers', 'batch_size'] and space[-1].dtype == 'categorical'
    text = format_space(space).splitlines()
    assert text[0] == '-' * 80 and text[1] == 'PARAMETER SPACE' and text[-1] == '-' * 80
    assert text[2] == '\tPARAMETER layers \t type=int \t range=[64..512] (step=32) \t UNIFORM scale'
    assert text[-2] == '\tPARAMETER final_act \t type=categorical \t options: [elu-0.5,elu-1,linear]'


def test_int_step_defaults_to_one_and_log_scale_is_echoed(tmp_path):
    space = load_space(write_lines(tmp_path / 's.json', {'name': 'a', 'dtype': 'int', 'values': [1, 9]}, '',
                                   {'name': 'b', 'dtype': 'float', 'values': [0.001, 1], 'log': True}))
    assert space[0].step == 1 and space[1].step is None
    assert space[1].describe() == 'PARAMETER b \t type=float \t range=[0.001..1] (step=N/A) \t LOG scale'


@pytest.mark.parametrize('line, message', [
    ('{"name": "a", "dtype": "int", "values": [1, 2]', 'not valid JSON'),
    ({'name': 'a', 'dtype': 'double', 'values': [1, 2]}, '"dtype" of a must be one of'),
    ({'name': 'a', 'dtype': 'int', 'values': [5, 2]}, 'above its high bound'),
    ({'name': 'a', 'dtype': 'int', 'values': [1.5, 2]}, 'must be integers'),
    ({'name': 'a', 'dtype': 'float', 'values': [0.1, 1], 'step': 0.1, 'log': True}, 'both "log" and "step"'),
    ({'name': 'a', 'dtype': 'float', 'values': [0, 1], 'log': True}, 'positive low bound'),
    ({'name': 'a', 'dtype': 'float', 'values': [0, 1, 2]}, '[low, high]'),
    ({'name': 'a', 'dtype': 'categorical', 'values': ['x', 'x']}, 'twice'),
    ({'name': 'a', 'dtype': 'int', 'values': [1, 2], 'scale': 'log'}, 'unknown key'),
    ([1, 2], 'expected a JSON object'),
])
def test_bad_space_lines_are_reported_with_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / 'bad.json', {'name': 'ok', 'dtype': 'int', 'values': [1, 2]}, line)
    with pytest.raises(UserError) as e:
        load_space(path)
    assert '{}, line 2'.format(path) in str(e.value) and message in str(e.value)


def test_duplicate_and_empty_spaces_are_errors(tmp_path):
    with pytest.raises(UserError, match='appears twice'):
        load_space(write_lines(tmp_path / 'd.json', *[{'name': 'a', 'dtype': 'int', 'values': [1, 2]}] * 2))
    with pytest.raises(UserError, match='defines no parameter'):
        load_space(write_lines(tmp_path / 'e.json', ''))


def test_param_strings_use_the_original_list_separator():
    assert join_params({'layers': [96, 64], 'loss': 'bpr-max', 'lr': 0.05}) == 'layers=96/64,loss=bpr-max,lr=0.05'


@pytest.mark.parametrize('device,protocol', [(None, 'next'), ('cpu', 'last')])
def test_a_trial_command_passes_the_shared_flags_on_to_run_py(device, protocol):
    import run
    cfg = {'train': 'tr.tsv', 'test': 'te.tsv', 'model': 'nextitnet', 'primary_metric': 'mrr',
           'eval_type': 'conservative', 'item_key': 'I', 'session_key': 'S', 'time_key': 'T', 'device': device,
           'protocol': protocol}
    cmd = run_py_command(cfg, {'layers': [8, 4]}, [5, 10], log_primary_metric=True)
    args = run.build_parser().parse_args(cmd[3:])
    assert (args.path, args.test, args.gru4rec_model, args.parameter_string, args.measure) == (
        'tr.tsv', ['te.tsv'], 'nextitnet', 'layers=8/4', [5, 10])
    assert all(getattr(args, k) == cfg[k] for k in ('primary_metric', 'eval_type', 'item_key', 'session_key',
                                                    'time_key', 'device', 'protocol'))
    assert args.log_primary_metric
    assert ('--protocol' in cmd) == (protocol != 'next') and ('-d' in cmd) == (device is not None)


def frozen(number, state, history=()):
    attrs = {'retry_history': list(history)} if history else {}
    t = optuna.trial.create_trial(state=state, value=1.0 if state == TrialState.COMPLETE else None,
                                  params={}, distributions={}, system_attrs=attrs)
    t.number = number
    return t


def test_trial_counts_count_a_retried_failure_once():
    trials = [frozen(0, TrialState.COMPLETE), frozen(1, TrialState.FAIL), frozen(2, TrialState.FAIL),
              frozen(3, TrialState.COMPLETE, history=[1]), frozen(4, TrialState.RUNNING),
              frozen(5, TrialState.WAITING, history=[2])]
    counts = TrialCounts(trials)
    assert (counts.done, counts.running, counts.waiting, counts.complete) == (2, 1, 1, 2)


class ScriptedEvaluations:
    """Stands in for run.py: values from a function of the parameters, a crash on chosen calls."""

    def __init__(self, crash_calls=(), diagnosed_calls=()):
        self.calls, self.crash_calls, self.diagnosed_calls = [], set(crash_calls), set(diagnosed_calls)

    def __call__(self, trial, params):
        self.calls.append(dict(params))
        n = len(self.calls)
        if n in self.crash_calls:
            return TrialOutcome(None, -9, 'run.py was killed by signal 9', 0.1)
        if n in self.diagnosed_calls:
            return TrialOutcome(None, 1, 'The model failed during training (NaN loss)', 0.1)
        return TrialOutcome(1.0 - (params['x'] - 0.3) ** 2, 0, None, 0.1)


@pytest.fixture
def study_and_space(tmp_path):
    space = load_space(write_lines(tmp_path / 's.json', {'name': 'x', 'dtype': 'float', 'values': [0, 1]}))
    storage = open_storage('sqlite:///' + str(tmp_path / 'study.db'), heartbeat_interval=1)
    return open_study(storage, 'unit', {'k': 1}, seed=0), space


def test_crashed_trial_is_retried_once_with_the_same_parameters(study_and_space):
    study, space = study_and_space
    evaluate = ScriptedEvaluations(crash_calls={2, 3}, diagnosed_calls={5})
    reports = []
    Search(study, space, 6, evaluate, lambda t, c: reports.append((t.number, t.state, c.done)), 0.01).run()
    states = [t.state for t in study.trials]
    # call 2 crashed -> retried as call 3, which crashed too -> no second retry; call 5 diagnosed -> no retry
    assert evaluate.calls[1] == evaluate.calls[2]
    assert states.count(TrialState.FAIL) == 3 and states.count(TrialState.COMPLETE) == 4
    assert study.trials[2].system_attrs['retry_history'] == [1]
    assert not any(study.trials[n].system_attrs.get('retry_history') for n in range(3, len(study.trials)))
    assert TrialCounts.of(study).done == 6 and [r[2] for r in reports][-1] == 6
    # resuming a finished study runs nothing more
    Search(study, space, 6, evaluate, lambda t, c: None, 0.01).run()
    assert len(evaluate.calls) == 7


def test_parallel_threads_never_overshoot_the_trial_budget(study_and_space):
    study, space = study_and_space
    Search(study, space, 7, ScriptedEvaluations(), lambda t, c: None, 0.01).run(n_jobs=3)
    assert len(study.trials) == 7 and all(t.state == TrialState.COMPLETE for t in study.trials)


def test_systematic_failures_stop_the_search(study_and_space):
    study, space = study_and_space
    with pytest.raises(UserError, match='5 trials in a row failed; the last error: The model failed'):
        Search(study, space, 50, ScriptedEvaluations(diagnosed_calls=range(1, 100)), lambda t, c: None, 0.01).run()


def test_a_study_refuses_a_different_search_setup(tmp_path):
    storage = open_storage('sqlite:///' + str(tmp_path / 'study.db'), heartbeat_interval=1)
    open_study(storage, 'same', {'space': [1], 'fixed': 'a=1'})
    open_study(storage, 'same', {'space': [1], 'fixed': 'a=1'})
    with pytest.raises(UserError, match=r'different search setup \(fixed differ\)'):
        open_study(storage, 'same', {'space': [1], 'fixed': 'a=2'})


def test_workers_racing_to_create_the_tables_retry(tmp_path, monkeypatch):
    """A worker that loses the race to create Optuna's tables on a fresh database (PostgreSQL's unique
    violation on pg_type) opens the storage on its next attempt; any other error is one UserError."""
    from recsys_core.tuning import study as study_module
    real, calls = study_module.RDBStorage, []

    class IntegrityError(Exception):
        pass

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError('duplicate key value violates unique constraint "pg_type_typname_nsp_index" '
                                 'DETAIL: Key (typname, typnamespace)=(alembic_version, 2200) already exists.')
        return real(*args, **kwargs)
    monkeypatch.setattr(study_module, 'RDBStorage', racing)
    monkeypatch.setattr(study_module.time, 'sleep', lambda s: None)
    assert open_storage('sqlite:///' + str(tmp_path / 'study.db'), heartbeat_interval=1) is not None
    assert len(calls) == 2

    def broken(*args, **kwargs):
        calls.append(1)
        raise IntegrityError('some other constraint')
    monkeypatch.setattr(study_module, 'RDBStorage', broken)
    calls.clear()
    with pytest.raises(UserError, match='Cannot open the Optuna storage'):
        open_storage('sqlite:///' + str(tmp_path / 'other.db'), heartbeat_interval=1)
    assert len(calls) == 1
