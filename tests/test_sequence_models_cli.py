"""NextItNet and CpRec through the shared front ends: split, run.py (both protocols, both file
formats, model files) and paropt.py."""
import os
import re

import pytest
from conftest import cli

LASTFM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '..', 'shared', 'data',
                      'lastfm_sessions', 'user-filter-20000items-session5.csv')


@pytest.fixture(scope='module')
def lastfm_files(tmp_path_factory):
    d = tmp_path_factory.mktemp('lastfm')
    out = cli('-m', 'nextitnet.split', LASTFM, str(d))
    assert out.returncode == 0, out.stderr
    train, test = d / 'user-filter-20000items-session5_train.txt', d / 'user-filter-20000items-session5_test.txt'
    assert len(train.read_text().splitlines()) == 1444 and len(test.read_text().splitlines()) == 360
    return {'train': str(train), 'test': str(test), 'dir': d}


def metric_lines(stdout, prefix):
    return [l for l in stdout.splitlines() if l.startswith(prefix)]


@pytest.mark.slow
def test_nextitnet_sequence_files_paper_protocol_then_loaded_with_the_gru4rec_protocol(lastfm_files):
    model = str(lastfm_files['dir'] / 'nextitnet.pickle')
    out = cli('run.py', lastfm_files['train'], '-g', 'nextitnet', '-ps', 'dilated_channels=32,dilations=1/2,n_epochs=2',
              '-t', lastfm_files['test'], '--protocol', 'last', '-m', '5', '20', '-s', model, '-pm', 'ndcg', '-lpm')
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'Creating NextItNet model' in out.stdout
    assert re.search(r'^Parameters: [\d,]+ \(input [\d,]+, middle [\d,]+, output [\d,]+\)$', out.stdout, re.M)
    assert len(metric_lines(out.stdout, 'Epoch')) == 2
    hr = metric_lines(out.stdout, 'HR@')
    assert [l.split(':')[0] for l in hr] == ['HR@5', 'HR@20']
    ndcg5 = float(hr[0].split('NDCG@5: ')[1])
    primary = metric_lines(out.stdout, 'PRIMARY METRIC: ')
    assert len(primary) == 1 and abs(float(primary[0].split(': ')[1]) - ndcg5) < 1e-6  # -pm ndcg at the first cut-off
    loaded = cli('run.py', model, '-l', '-t', lastfm_files['test'], '-m', '20')
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert re.match(r'^Recall@20: [\d.]+ MRR@20: [\d.]+$', metric_lines(loaded.stdout, 'Recall@')[0])


@pytest.mark.slow
def test_cprec_on_session_tsv_with_a_parameter_file_fast_inference_and_compression_report(tiny_files, tmp_path):
    params = tmp_path / 'cprec_params.py'
    params.write_text("from collections import OrderedDict\ngru4rec_params = OrderedDict([('dilated_channels', 32), "
                      "('dilations', [1, 2]), ('n_epochs', 1), ('max_len', 10), "
                      "('use_softmax_type', 'Block_Input_Softmax_Inference'), "
                      "('use_parametersharing_type', 'adjacent-block'), ('block', 'auto'), ('top_k', 10)])\n")
    out = cli('run.py', tiny_files['train'], '-g', 'cprec', '-pf', str(params),
              '-t', tiny_files['test'], '--protocol', 'last', '-m', '5', '10')
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'SET   use_softmax_type' in out.stdout
    report = re.search(r'uncompressed: ([\d,]+); compression rate ([\d.]+)x; block boundaries (\d+)/(\d+)/(\d+)',
                       out.stdout)
    assert report and float(report.group(2)) > 1
    assert len(metric_lines(out.stdout, 'HR@')) == 2


@pytest.mark.parametrize('args,message', [
    (['-ps', 'n_epochs=1', '-pm', 'ndcg'], '-pm ndcg needs --protocol last'),
    (['-ps', 'use_softmax_type=Blocky'], 'Invalid value'),
    (['-ps', 'block=9/3,n_epochs=1,dilated_channels=8,dilations=1'], 'does not fit a vocabulary'),
    (['-ps', 'block_dims=64/16/4,dilated_channels=32'], 'block_dims must start with the head width'),
])
@pytest.mark.slow
def test_bad_cprec_input_gives_one_error(tiny_files, args, message):
    out = cli('run.py', tiny_files['train'], '-g', 'cprec', '-t', tiny_files['test'], *args)
    assert out.returncode == 1
    errors = [l for l in out.stderr.splitlines() if l.startswith('ERROR: ')]
    assert len(errors) == 1 and message in errors[0] and 'Traceback' not in out.stderr


@pytest.mark.slow
def test_paropt_tunes_cprec_on_the_paper_protocol(lastfm_files, tmp_path):
    space = tmp_path / 'space.json'
    space.write_text('{"name": "use_parametersharing_type", "dtype": "categorical", "values": ["cross-layer", "original"]}\n'
                     '{"name": "learning_rate", "dtype": "float", "values": [0.001, 0.01], "log": true}\n')
    out = cli('paropt.py', lastfm_files['train'], lastfm_files['test'], '-g', 'cprec', '-opf', str(space),
              '-fp', 'dilated_channels=16,dilations=1/2,n_epochs=1,use_softmax_type=Block_Input_Softmax',
              '-nt', '2', '-m', '20', '-fm', '5', '20', '-pm', 'ndcg', '--protocol', 'last', '--seed', '1',
              '-o', str(tmp_path / 'out'))
    assert out.returncode == 0, out.stderr[-3000:]
    assert sum(l == 'Creating CpRec model' for l in out.stdout.splitlines()) == 3
    assert len(metric_lines(out.stdout, 'PRIMARY METRIC: ')) == 2
    assert metric_lines(out.stdout, 'HR@')[-2:][0].startswith('HR@5: ')


@pytest.mark.parametrize('package,space', [('nextitnet', 'nextitnet_parspace.json'), ('cprec', 'cprec_parspace.json'),
                                           ('stackrec.nextitnet', 'stackrec_nextitnet_parspace.json'),
                                           ('stackrec.sasrec', 'stackrec_sasrec_parspace.json'),
                                           ('stackrec.grec', 'stackrec_grec_parspace.json'),
                                           ('stackrec.ssept', 'stackrec_ssept_parspace.json')])
def test_bundled_parameter_spaces_are_valid_for_their_models(root, package, space):
    from paropt import check_parameters
    from recsys_core.cli import model_class
    from recsys_core.tuning.space import load_space
    check_parameters(model_class(package), {}, load_space(os.path.join(root, 'paramspaces', space)))


@pytest.mark.slow
def test_split_creates_a_missing_output_folder_and_refuses_a_file(tmp_path):
    """The README's example splits into a folder that does not exist yet (issue 17, item 10)."""
    out = cli('-m', 'nextitnet.split', LASTFM, str(tmp_path / 'new' / 'lastfm'))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / 'new' / 'lastfm' / 'user-filter-20000items-session5_test.txt').is_file()
    (tmp_path / 'file').write_text('x')
    out = cli('-m', 'nextitnet.split', LASTFM, str(tmp_path / 'file'))
    assert out.returncode == 1 and 'Output folder is a file' in out.stderr and (tmp_path / 'file').read_text() == 'x'


@pytest.mark.slow
def test_vocabulary_all_takes_the_test_files_and_needs_them(tiny_files, tmp_path):
    """vocabulary=all: run.py passes its -t files as vocab_data (the vocabulary grows by the test-only
    items); without -t it says so."""
    import pandas as pd
    train, test = (pd.read_csv(tiny_files[k], sep='\t', dtype={'ItemId': str}) for k in ('train', 'test'))
    extra = pd.DataFrame({'SessionId': [-1, -1, -1], 'ItemId': ['new1', 'new2', train.ItemId[0]], 'Time': [1, 2, 3]})
    test = pd.concat([test, extra], ignore_index=True)
    test_path = str(tmp_path / 'test_with_new_items.tsv')
    test.to_csv(test_path, sep='\t', index=False)
    params = 'dilated_channels=8,dilations=1/2,max_len=8,n_epochs=1'
    sizes = {}
    for vocabulary in ('train', 'all'):
        out = cli('run.py', tiny_files['train'], '-g', 'nextitnet', '-ps', params + ',vocab=' + vocabulary,
                  '-t', test_path, '--protocol', 'last')
        assert out.returncode == 0, out.stderr[-3000:]
        assert ('Loading test data for the vocabulary' in out.stdout) == (vocabulary == 'all')
        sizes[vocabulary] = int(re.search(r'vocabulary (\d+) with padding', out.stdout).group(1))
    assert sizes['train'] == train.ItemId.nunique() + 1
    assert sizes['all'] == len(set(train.ItemId) | set(test.ItemId)) + 1 == sizes['train'] + 2
    out = cli('run.py', tiny_files['train'], '-g', 'nextitnet', '-ps', params + ',vocabulary=all')
    assert out.returncode == 1 and 'give -t TEST_PATH' in out.stderr
