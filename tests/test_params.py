import pytest

from gru4rec import GRU4Rec
from recsys_core import params
from recsys_core.errors import UserError
from recsys_core.params import load_param_file, parse_param_string


def test_set_params_echo_matches_original_format(capsys):
    m = GRU4Rec()
    m.set_params(**parse_param_string('layers=224,batch_size=80,loss=bpr-max,constrained_embedding=True,final_act=elu-0.5'))
    out = capsys.readouterr().out.splitlines()
    # the README example's alignment: names padded to the longest name + 3, values to the longest given value + 3
    assert out[0] == "SET   layers                  TO   [224]     (type: <class 'list'>)"
    assert out[1] == "SET   batch_size              TO   80        (type: <class 'int'>)"
    assert out[3] == "SET   constrained_embedding   TO   True      (type: <class 'bool'>)"
    assert m.layers == [224] and m.batch_size == 80 and m.constrained_embedding is True


def test_casting_rules():
    m = GRU4Rec()
    m.set_params(verbose=False, layers='100/50', adapt_params='0.9/0.999', adapt='adam', time_sort='0',
                 learning_rate='0.05', n_sample=128, momentum=0)
    assert m.layers == [100, 50] and m.adapt_params == [0.9, 0.999] and m.time_sort is False
    assert isinstance(m.learning_rate, float) and isinstance(m.momentum, float)
    m.set_params(verbose=False, layers=64)  # paropt passes ints for list parameters
    assert m.layers == [64]
    m.set_params(verbose=False, adapt='None')
    assert m.adapt is None


def test_embedding_layersize_is_resolved_and_echoed(capsys):
    m = GRU4Rec()
    m.set_params(layers='96', embedding='layersize')
    assert m.embedding == 96
    assert capsys.readouterr().out.splitlines()[-1].startswith('SET   embedding')


@pytest.mark.parametrize('params,fragment', [
    ({'no_such_param': '1'}, 'Unknown parameter'),
    ({'loss': 'hinge'}, 'loss'),
    ({'final_act': 'elu-x'}, 'final_act'),
    ({'hidden_act': 'softmax'}, 'hidden_act'),
    ({'batch_size': '0'}, 'batch_size'),
    ({'batch_size': 'many'}, 'batch_size'),
    ({'dropout_p_hidden': '1.5'}, 'dropout_p_hidden'),
    ({'constrained_embedding': 'yes'}, 'constrained_embedding'),
    ({'layers': '0'}, 'layers'),
    ({'embedding': '-3'}, 'embedding'),
    ({'adapt': 'adam'}, 'adapt_params'),
    ({'loss': 'xe_logit'}, 'softmax_logit'),
])
def test_bad_parameters_give_clear_errors(params, fragment):
    m = GRU4Rec()
    before = m.get_params()
    with pytest.raises(UserError, match=fragment):
        m.set_params(verbose=False, **params)
    assert m.get_params() == before  # nothing half-set


@pytest.mark.parametrize('text', ['', 'layers', 'layers=1=2', '=3', 'a=1,,b=2'])
def test_malformed_param_strings(text):
    with pytest.raises(UserError):
        parse_param_string(text)


def test_param_files_of_the_original_format_load(root, tmp_path):
    params = load_param_file(root + '/paramfiles/retailrocket_bprmax_shared_best.py')
    m = GRU4Rec()
    m.set_params(verbose=False, **params)
    assert m.layers == [224] and m.final_act == 'elu-0.5' and m.bpreg == 1.95
    bad = tmp_path / 'bad.py'
    bad.write_text('gru4rec_params = [1, 2\n')
    with pytest.raises(UserError, match='Could not read parameter file'):
        load_param_file(str(bad))
    other = tmp_path / 'other.py'
    other.write_text('params = {}\n')
    with pytest.raises(UserError, match='gru4rec_params'):
        load_param_file(str(other))
    with pytest.raises(UserError, match='not found'):
        load_param_file(str(tmp_path / 'missing.py'))


def test_parameter_spaces_name_real_parameters(root):
    """GRU4Rec's spaces (the NextItNet/CpRec spaces: tests/test_sequence_models_cli.py)."""
    import json
    import os
    names = set(GRU4Rec.param_names())
    files = [f for f in os.listdir(os.path.join(root, 'paramspaces')) if f.startswith('gru4rec_')]
    assert len(files) == 2
    for fname in files:
        with open(os.path.join(root, 'paramspaces', fname)) as f:
            entries = [json.loads(line) for line in f if line.strip()]
        assert entries and all(e['name'] in names and e['dtype'] in ('int', 'float', 'categorical') for e in entries)
        m = GRU4Rec()
        m.set_params(verbose=False, **{e['name']: e['values'][0] for e in entries})  # every lower bound is a valid value


@pytest.mark.parametrize('check,good,bad,message', [
    (params.positive, [1, 0.5], [0, -1, -0.1], 'must be positive'),
    (params.non_negative, [0, 2.5], [-1, -1e-9], 'must be >= 0'),
    (params.probability, [0, 0.0, 0.999], [1, 1.0, -0.1], 'must be in [0, 1)'),
    (params.fraction, [1, 0.2], [0, 1.01, -1], 'must be in (0, 1]'),
    (params.unit_interval, [0, 1, 0.5], [-0.01, 1.01], 'must be in [0, 1]'),
    (params.all_positive, [[], [3, 1]], [[0], [2, -1]], 'values must be positive'),
    (params.one_of((None, 'adagrad', 'adam')), [None, 'adam'], ['sgd', 'None'], 'must be one of None, adagrad, adam'),
    (params.positive_list('sizes', '100/100'), [[1], [100, 50]], [[], [0], [5, -1]],
     'must be a non-empty list of positive sizes (e.g. 100/100)'),
    (params.non_negative.says('must be non-negative'), [0], [-1], 'must be non-negative'),
])
def test_shared_validators_accept_reject_and_keep_the_packages_messages(check, good, bad, message):
    assert all(check(v) is None for v in good)
    assert all(check(v) == message for v in bad)


def test_a_shared_validator_reports_through_set_params():
    class Toy(params.ParamSet):
        PARAMS = [params.Param('rate', 0.5, params.fraction), params.Param('mode', 'a', params.one_of('ab'))]

    with pytest.raises(UserError, match=r"Invalid value '0' for parameter rate: must be in \(0, 1\]"):
        Toy().set_params(verbose=False, rate='0')
    with pytest.raises(UserError, match='mode: must be one of a, b'):
        Toy(mode='c')
    assert Toy(rate=1, mode='b').get_params() == {'rate': 1.0, 'mode': 'b'}
