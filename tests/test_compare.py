"""compare.py and what it stands on: the splits of the real data sets (on slices of them), the
last-item protocol with sampled negatives against a brute-force count, and a comparison that is
interrupted, resumed and tabulated."""
import csv
import json
import os

import numpy as np
import pandas as pd
import pytest

from recsys_core.errors import UserError
from recsys_core.evaluation import evaluate
from recsys_core.last_item_eval import last_item_cases, sample_negatives

SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '..', 'shared', 'data')
ML1M = os.path.join(SHARED, 'ml-1m', 'ml-1m.tsv')
DIGINETICA = os.path.join(SHARED, 'diginetica_srgnn', 'train.tsv')


def head_of(path, rows):
    return pd.read_csv(path, sep='\t', nrows=rows, dtype={'ItemId': str})


def test_leave_one_out_of_movielens_users():
    from recsys_core.splits import leave_one_out
    events = head_of(ML1M, 20000)
    train, valid, test = leave_one_out(events, min_item_count=5)
    counts = events.ItemId.value_counts()
    kept = events[events.ItemId.isin(counts.index[counts >= 5])]
    assert len(test) == len(kept) and set(test.ItemId) == set(kept.ItemId)
    for user, seq in test.groupby('SessionId'):
        items = list(seq.sort_values('Time').ItemId)
        assert list(valid[valid.SessionId == user].sort_values('Time').ItemId) == items[:-1]
        assert list(train[train.SessionId == user].sort_values('Time').ItemId) == items[:-2]


def test_last_sessions_of_diginetica_validate_on_the_latest_sessions():
    from recsys_core.splits import last_sessions
    events = head_of(DIGINETICA, 5000)
    train, valid = last_sessions(events, 0.2)
    order = list(events.SessionId.drop_duplicates())
    assert set(valid.SessionId) == set(order[-round(0.2 * len(order)):]) and len(train) + len(valid) == len(events)
    with pytest.raises(UserError, match='between 0 and 1'):
        last_sessions(events, 1.5)


@pytest.fixture(scope='module')
def small_model(tiny_data):
    from nextitnet import NextItNet
    return NextItNet(dilated_channels=8, dilations=[1, 2], max_len=8, batch_size=32, n_epochs=1).fit(
        tiny_data[0], verbose=False)


def test_sampled_negatives_are_items_the_sequence_never_has_and_ranks_are_a_brute_force_count(small_model, tiny_data):
    model, test = small_model, tiny_data[1]
    histories, targets = last_item_cases(model, test, 'SessionId', 'ItemId', 'Time')
    keep = targets >= 0
    histories, targets = [h for h, k in zip(histories, keep) if k], targets[keep]
    candidates = sample_negatives(model, histories, targets, 30, seed=7)
    assert candidates.shape == (len(targets), 30)
    for h, t, c in zip(histories, targets, candidates):
        assert not set(c) & (set(h) | {t})
    assert np.array_equal(candidates, sample_negatives(model, histories, targets, 30, seed=7))  # seeded
    assert len(np.unique(candidates)) > 0.8 * model.n_items  # drawn from every item
    scores = model._history_scores(histories)
    brute = np.array([1 + sum(scores[i, j] > scores[i, t] for j in c)
                      for i, (t, c) in enumerate(zip(targets, candidates))])
    res = evaluate(model, test, protocol='last', cut_off=[5, 10], negatives=30, negatives_seed=7, verbose=False)
    assert res.value('hr', 10) == pytest.approx(np.sum(brute <= 10) / len(keep))  # unknown targets are misses
    assert res.value('mrr', 5) == pytest.approx(np.sum((brute <= 5) / brute) / len(keep))
    assert res.negatives == 30 and res.protocol_name() == 'last item, 30 sampled negatives'
    assert '30 sampled negatives' in res.lines()[-1]
    with pytest.raises(UserError, match='protocol last'):
        evaluate(model, test, protocol='next', negatives=30, verbose=False)


def test_targets_tied_with_sampled_negatives_are_reported_with_the_tie_mode(tiny_data, small_model):
    from baselines.pop import Pop
    train, test = tiny_data
    model = Pop(top_n=3).fit(train)  # every other item scores 0: most targets tie with most negatives
    standard = evaluate(model, test, protocol='last', cut_off=[10], negatives=30, verbose=False)
    note = [line for line in standard.lines() if line.startswith('(tied scores')]
    assert len(note) == 1 and "standard tie mode counts a tie in the target's favour" in note[0]
    conservative = evaluate(model, test, protocol='last', cut_off=[10], negatives=30, mode='conservative', verbose=False)
    assert conservative.value('hr', 10) < 0.5 * standard.value('hr', 10)
    assert 'counts a tie against the target' in conservative.lines()[-1]
    scored = evaluate(small_model, test, protocol='last', cut_off=[10], negatives=30, verbose=False)
    assert not [line for line in scored.lines() if line.startswith('(tied scores')]


def write_config(folder, **fields):
    config = dict({'title': 'tiny', 'train': 'train.tsv', 'test': 'test.tsv', 'protocol': 'last', 'negatives': 50,
                   'cut_offs': [5, 10], 'seeds': [1, 2], 'out': 'out', 'primary': 'ndcg@10',
                   'published': [{'name': 'Paper', 'metrics': {'hr@10': 0.9}, 'source': 'Table 1'}],
                   'models': [{'name': 'Popularity', 'model': 'baselines.pop'},
                              {'name': 'NextItNet', 'model': 'nextitnet',
                               'params': 'dilated_channels=8,dilations=1/2,max_len=8,batch_size=32,n_epochs=2'}]},
                  **fields)
    path = os.path.join(folder, 'config.json')
    with open(path, 'w') as f:
        json.dump(config, f)
    return path


@pytest.fixture
def split_files(tiny_data, tmp_path):
    tiny_data[0].to_csv(tmp_path / 'train.tsv', sep='\t', index=False)
    tiny_data[1].to_csv(tmp_path / 'test.tsv', sep='\t', index=False)
    return tmp_path


@pytest.mark.slow
def test_an_interrupted_comparison_resumes_and_tabulates_every_run(split_files, monkeypatch, capsys):
    import compare
    from conftest import Interrupt, interrupt_after
    from nextitnet import NextItNet
    config = write_config(str(split_files))
    restore = interrupt_after(monkeypatch, NextItNet, 45)  # the first NextItNet run stops in its second epoch
    with pytest.raises(Interrupt):
        compare.main([config])
    restore()
    out = split_files / 'out'
    assert os.path.isfile(out / 'runs' / 'Popularity' / 'once' / 'result.json')
    assert os.path.isfile(out / 'runs' / 'NextItNet' / 'seed-1' / 'checkpoint' / 'last.ckpt')
    assert not os.path.exists(out / 'table.md')
    capsys.readouterr()
    assert compare.main([config]) == 0
    printed = capsys.readouterr().out
    assert 'Popularity done earlier' in printed and 'NextItNet seed 1 resuming' in printed
    assert 'NextItNet seed 2 training' in printed
    results = [json.loads((out / 'runs' / 'NextItNet' / 'seed-{}'.format(s) / 'result.json').read_text())
               for s in (1, 2)]
    rows = {r['model']: r for r in csv.DictReader(open(out / 'table.csv'))}
    assert sorted(rows) == ['NextItNet', 'Paper', 'Popularity']
    assert float(rows['NextItNet']['ndcg@10']) == pytest.approx(np.mean([r['metrics']['ndcg@10'] for r in results]))
    assert float(rows['NextItNet']['ndcg@10 sd']) == pytest.approx(
        np.std([r['metrics']['ndcg@10'] for r in results], ddof=1))
    assert rows['Paper']['published'] == '1' and float(rows['Paper']['hr@10']) == 0.9
    assert int(rows['NextItNet']['parameters']) > 0 and rows['Popularity']['runs'] == '1'
    table = (out / 'table.md').read_text()
    assert '50 sampled negatives (seed 42)' in table and '| Paper (published) |' in table
    assert (out / 'plot.png').read_bytes()[:4] == b'\x89PNG'
    # the same command again trains nothing; a changed setting is refused, not mixed in
    capsys.readouterr()
    assert compare.main([config]) == 0
    assert 'training' not in capsys.readouterr().out
    with pytest.raises(UserError, match='other settings'):
        compare.main([write_config(str(split_files), negatives=20)])


@pytest.mark.parametrize('fields, message', [
    (dict(protocol='next', negatives=100), 'last-item protocol'),
    (dict(models=[{'name': 'x', 'model': 'no_such_module'}]), 'Cannot import model module'),
    (dict(models=[{'name': 'x', 'model': 'nextitnet', 'params': 'dilations=0'}]), 'dilations'),
    (dict(primary='recall@20'), '"primary" must be one of'),
    (dict(test='missing.tsv'), 'was not found'),
    (dict(colour='blue'), 'unknown field'),
])
def test_bad_comparisons_give_one_error_before_anything_is_written(split_files, fields, message):
    import compare
    with pytest.raises(UserError, match=message):
        compare.main([write_config(str(split_files), **fields)])
    assert not os.path.exists(split_files / 'out')
