"""run.py and recommend.py end to end: the original's output lines, and one clear error for bad input."""
import os
import re

import pytest
from conftest import cli

from recsys_core.errors import UserError

PARAMS = 'loss=bpr-max,final_act=elu-0.5,constrained_embedding=True,layers=32,batch_size=16,n_sample=32,n_epochs=2'


@pytest.fixture(scope='module')
def files(tiny_files):
    return tiny_files


@pytest.fixture(scope='module')
def trained(files):
    model = str(files['dir'] / 'model.pickle')
    out = cli('run.py', files['train'], '-ps', PARAMS, '-t', files['test'], '-m', '1', '5', '20', '-s', model)
    assert out.returncode == 0, out.stderr
    return model, out.stdout


@pytest.mark.slow
def test_train_output_follows_original_format(trained):
    lines = trained[1].splitlines()
    assert lines[0].startswith('Using device: cpu (backend: c, BLAS: ')
    assert len(lines[0]) < 120 and '-L' not in lines[0]  # which BLAS and threads, not its link flags (issue 17)
    assert lines[1] == 'Creating GRU4Rec model'
    assert lines[2].startswith('SET   loss                    TO   bpr-max')
    order = ['Loading training data...', 'Started training', 'Total training time', 'Saving trained model to',
             'Loading test data...', 'Starting evaluation (cut-off=[1, 5, 20], using standard mode for tiebreaking)',
             'Evaluation took', 'Recall@1:', 'Recall@5:', 'Recall@20:']
    pos = [next(i for i, l in enumerate(lines) if l.startswith(o)) for o in order]
    assert pos == sorted(pos)
    epochs = [l for l in lines if l.startswith('Epoch')]
    assert len(epochs) == 2
    assert re.fullmatch(r'Epoch1 --> loss: \d+\.\d{6} \t\(\d+\.\d\ds\) \t\[\d+\.\d\d mb/s \| \d+ e/s\]', epochs[0])
    assert re.fullmatch(r'Recall@20: 0\.\d{6} MRR@20: 0\.\d{6}', lines[-1])


@pytest.mark.slow
def test_load_evaluate_several_test_files_and_primary_metric(files, trained):
    out = cli('run.py', trained[0], '-l', '-t', files['test'], files['test'], '-m', '5', '-e', 'conservative',
              '-pm', 'mrr', '-lpm')
    assert out.returncode == 0, out.stderr
    metric_lines = [l for l in out.stdout.splitlines() if l.startswith('Recall@5')]
    assert len(metric_lines) == 2 and metric_lines[0] == metric_lines[1]
    pm = [l for l in out.stdout.splitlines() if l.startswith('PRIMARY METRIC: ')]
    assert len(pm) == 2 and float(pm[0].split(': ')[1]) == pytest.approx(float(metric_lines[0].split()[-1]), abs=1e-6)


@pytest.mark.slow
def test_param_file_and_pickled_data(files):
    pf = files['dir'] / 'params.py'
    pf.write_text('from collections import OrderedDict\ngru4rec_params = OrderedDict([("loss", "cross-entropy"), '
                  '("final_act", "softmax"), ("layers", [32]), ("batch_size", 16), ("n_sample", 32), ("n_epochs", 1)])\n')
    out = cli('run.py', files['pickle'], '-pf', str(pf), '-t', files['test'])
    assert out.returncode == 0, out.stderr
    assert 'Loading data from pickle file' in out.stdout and 'Loaded parameters from file' in out.stdout
    assert re.search(r'Recall@20: 0\.\d+', out.stdout)


@pytest.mark.slow
def test_recommend_cli(trained, files):
    import pandas as pd
    item = str(pd.read_csv(files['test'], sep='\t').ItemId.iloc[0])
    out = cli('recommend.py', trained[0], item, '-k', '3')
    assert out.returncode == 0, out.stderr
    rows = out.stdout.strip().splitlines()
    assert rows[0] == 'session\trank\titem\tscore' and len(rows) == 4
    out = cli('recommend.py', trained[0], '--sessions', files['test'], '-k', '2')
    assert out.returncode == 0 and len(out.stdout.strip().splitlines()) > 10


def error_cases(files, trained):
    d = files['dir']
    (d / 'nocol.tsv').write_text('SessionId\tItem\tTime\n1\t2\t3\n')
    (d / 'empty.tsv').write_text('SessionId\tItemId\tTime\n')
    (d / 'unknown.tsv').write_text('SessionId\tItemId\tTime\n1\tzz\t1\n1\tyy\t2\n')
    (d / 'badparams.py').write_text('gru4rec_params = {"layers": [32], "loss": "nope"}\n')
    t = files['train']
    return [
        (['run.py', str(d / 'missing.tsv'), '-ps', PARAMS], 'not found'),
        (['run.py', str(d / 'nocol.tsv'), '-ps', PARAMS], '"ItemId" is not in the data file'),
        (['run.py', str(d / 'empty.tsv'), '-ps', PARAMS], 'no events'),
        (['run.py', t, '-ps', 'layers=32,,loss'], 'Malformed parameter string'),
        (['run.py', t, '-ps', 'layers=32,colour=red'], 'Unknown parameter'),
        (['run.py', t, '-ps', 'layers=32,batch_size=-4'], 'batch_size'),
        (['run.py', t, '-pf', str(d / 'badparams.py')], 'loss'),
        (['run.py', t, '-pf', str(d / 'nothere.py')], 'Parameter file not found'),
        (['run.py', t], 'Exactly one of'),
        (['run.py', t, '-ps', PARAMS, '-t', str(d / 'unknown.tsv')], 'None of the test items'),
        (['run.py', t, '-ps', PARAMS, '-g', 'no_such_model'], 'Cannot import model module'),
        (['run.py', t, '-ps', PARAMS, '-d', 'tpu'], 'Unknown device'),
        (['run.py', t, '-ps', PARAMS, '-d', 'cuda'], '-d cuda'),  # no GPU on test machines: says so
        (['run.py', trained[0], '-l', '-t', str(d / 'nocol.tsv')], 'ItemId'),
        (['run.py', t, '-l'], 'corrupt or not a model file'),
    ]


@pytest.mark.slow
def test_bad_input_gives_one_clear_error_and_exit_1(files, trained):
    for args, fragment in error_cases(files, trained):
        out = cli(*args)
        assert out.returncode == 1, (args, out.stdout, out.stderr)
        err = [l for l in out.stderr.splitlines() if l.strip()]
        assert len(err) == 1 and err[0].startswith('ERROR: ') and fragment in err[0], (args, out.stderr)
        assert 'Traceback' not in out.stdout + out.stderr


@pytest.mark.slow
def test_failed_training_writes_no_model_file(files):
    target = files['dir'] / 'never.pickle'
    (files['dir'] / 'only_header.tsv').write_text('SessionId\tItemId\tTime\n')
    out = cli('run.py', str(files['dir'] / 'only_header.tsv'), '-ps', PARAMS, '-s', str(target))
    assert out.returncode == 1 and not target.exists()
    assert not [f for f in os.listdir(files['dir']) if '.tmp-' in f]


def test_the_shared_flags_are_the_same_in_every_front_end():
    import paropt
    import recommend
    import run
    from recsys_core.cli import SHARED_ARGUMENTS

    def actions(parser):
        return {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    parsers = {'run.py': actions(run.build_parser()), 'paropt.py': actions(paropt.build_parser()),
               'recommend.py': actions(recommend.build_parser())}
    expected = {'run.py': set(SHARED_ARGUMENTS), 'paropt.py': set(SHARED_ARGUMENTS),
                'recommend.py': {'device', 'item_key', 'session_key', 'time_key'}}
    for script, names in expected.items():
        for name in names:
            flags, spec = SHARED_ARGUMENTS[name]
            a = parsers[script][flags[0]]
            assert tuple(a.option_strings) == flags, (script, name)
            assert (a.default, a.metavar, a.choices) == (spec['default'], spec['metavar'], spec.get('choices')), (script, name)
    run_defaults = run.build_parser().parse_args(['train.tsv', '-l'])
    assert (run_defaults.gru4rec_model, run_defaults.device, run_defaults.eval_type, run_defaults.primary_metric,
            run_defaults.protocol, run_defaults.item_key, run_defaults.session_key, run_defaults.time_key) == (
        'gru4rec', None, 'standard', 'recall', 'next', 'ItemId', 'SessionId', 'Time')


@pytest.mark.parametrize('argv,message', [
    (['t.tsv', '-l', '-m', '5', '0'], '-m/--measure values must be positive integers'),
    (['t.tsv', '-l', '-pm', 'ndcg'], '-pm ndcg needs --protocol last'),
])
def test_run_argument_checks(argv, message):
    import run
    with pytest.raises(UserError, match=re.escape(message)):
        run.main(argv)


def test_recommend_argument_checks():
    import recommend
    with pytest.raises(UserError, match='-k must be a positive integer'):
        recommend.main(['model.pickle', '7', '-k', '0'])
    with pytest.raises(UserError, match='not both'):
        recommend.main(['model.pickle'])


def test_shared_checks_messages():
    from recsys_core import cli
    for values in ([], [0], [5, -1], [None]):
        with pytest.raises(UserError, match=re.escape('-m and -fm values must be positive integers')):
            cli.check_cutoffs(values, '-m and -fm')
    cli.check_cutoffs([1, 20], '-m')
    with pytest.raises(UserError, match='^--heartbeat must be at least 1 second$'):
        cli.check_positive(0, '--heartbeat', 'at least 1 second')
    with pytest.raises(UserError, match='^-j/--jobs must be a positive integer$'):
        cli.check_positive(None, '-j/--jobs')
    assert cli.flag('item_key') == '-ik' and cli.flag('protocol') == '--protocol'
