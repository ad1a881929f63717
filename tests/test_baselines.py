"""The original's baselines: scores against direct re-statements of the original's formulas,
evaluation against brute-force ranking, run.py and paropt.py with -g, model files."""
import collections
import os

import numpy as np
import pandas as pd
import pytest
from conftest import cli

from baselines.bpr import BPR
from baselines.item_knn import ItemKNN
from baselines.pop import Pop
from baselines.random_pred import RandomPred
from baselines.session_pop import SessionPop
from recsys_core.evaluation import evaluate_sessions
from recsys_core.persistence import load_model


def reference_pop(train, top_n, by=None):
    supp = train.groupby('ItemId').size() if by is None else train.groupby('ItemId')[by].nunique()
    pop = (supp / (supp + 1)).sort_values(ascending=False, kind='mergesort')
    return pop.head(top_n)


def reference_knn(train, n_sims, lmbd, alpha):
    """The original's ItemKNN loop: per event of item i, +1 for every event of that session."""
    sessions = {s: g.ItemId.tolist() for s, g in train.groupby('SessionId')}
    supp = train.groupby('ItemId').size()
    items = train.ItemId.unique()
    sims = {}
    for i in items:
        acc = collections.Counter()
        for s in train.SessionId[train.ItemId == i]:
            acc.update(sessions[s])
        acc[i] = 0
        sim = pd.Series({j: acc.get(j, 0) / ((supp[i] + lmbd) ** alpha * (supp[j] + lmbd) ** (1 - alpha))
                         for j in items})
        sims[i] = sim.sort_values(ascending=False, kind='mergesort').head(n_sims)
    return sims


def reference_scores(model, history, items):
    """Scores of ``items`` for a session with this ``history``, written from the original's formulas."""
    name = type(model).__name__
    if name in ('Pop', 'SessionPop'):
        pop = model._reference.reindex(items).fillna(0).values
        if name == 'SessionPop':
            pop = pop + pd.Series(collections.Counter(history)).reindex(items).fillna(0).values
        return pop
    if name == 'ItemKNN':
        return model._reference[history[-1]].reindex(items).fillna(0).values
    if name == 'BPR':
        I = model.weights['I']
        idx = model.itemidmap[items].values
        return I[idx] @ I[model.itemidmap[history].values].mean(axis=0)
    raise AssertionError(name)


def brute_force(model, test_df, cut_offs, mode):
    items = model.itemidmap.index.values
    test_df = test_df.assign(ItemId=test_df.ItemId.astype(str))
    known = test_df[test_df.ItemId.isin(items)].sort_values(['SessionId', 'Time', 'ItemId'])
    ranks = []
    for _, sess in known.groupby('SessionId', sort=True):
        ids = sess.ItemId.values
        for i in range(len(ids) - 1):
            scores = reference_scores(model, list(ids[:i + 1]), items)
            target = scores[list(items).index(ids[i + 1])]
            better, ties = (scores > target).sum(), (scores == target).sum()
            ranks.append({'standard': better + 1, 'conservative': better + ties}[mode])
    ranks = np.array(ranks, dtype=float)
    return [np.mean(ranks <= c) for c in cut_offs], [np.mean((ranks <= c) / ranks) for c in cut_offs]


@pytest.fixture(scope='module')
def small(tiny_data):
    train, test = tiny_data
    train = train.assign(ItemId=train.ItemId.astype(str))
    test = test[test.SessionId.isin(test.SessionId.unique()[:60])]
    return train, test


def fitted(cls, train, **params):
    m = cls(**params).fit(train, verbose=False)
    if cls in (Pop, SessionPop):
        m._reference = reference_pop(train, params.get('top_n', 100), params.get('support_by_key'))
    if cls is ItemKNN:
        m._reference = reference_knn(train, params['n_sims'], params['lmbd'], params['alpha'])
    return m


@pytest.mark.parametrize('cls, params', [
    (Pop, {'top_n': 30}), (Pop, {'top_n': 50, 'support_by_key': 'SessionId'}), (SessionPop, {'top_n': 40}),
    (ItemKNN, {'n_sims': 12, 'lmbd': 5.0, 'alpha': 0.7}), (BPR, {'n_factors': 8, 'n_iterations': 2}),
])
@pytest.mark.parametrize('mode', ['standard', 'conservative'])
def test_evaluation_equals_the_original_formulas_ranked_by_brute_force(small, cls, params, mode):
    train, test = small
    model = fitted(cls, train, **params)
    got = evaluate_sessions(model, test, cut_off=[1, 5, 20], batch_size=9, mode=mode, verbose=False)
    np.testing.assert_allclose(got, brute_force(model, test, [1, 5, 20], mode), rtol=1e-9)


def test_baselines_order_as_expected_on_sequential_data(tiny_data):
    train, test = tiny_data
    recall = {cls.__name__: evaluate_sessions(cls(**p).fit(train, verbose=False), test, cut_off=[20],
                                              verbose=False)[0][0]
              for cls, p in [(RandomPred, {}), (Pop, {}), (ItemKNN, {}), (BPR, {'n_iterations': 5})]}
    n_items = train.ItemId.nunique()
    assert recall['RandomPred'] == pytest.approx(20 / n_items, abs=0.03)
    assert recall['RandomPred'] < recall['Pop'] < recall['ItemKNN']
    assert recall['BPR'] > 2 * recall['RandomPred']


def test_bpr_training_improves_its_objective(tiny_data, capsys):
    """BPR trains through the shared trainer: one epoch line per iteration, its loss (-log sigmoid) falls."""
    model = BPR(n_factors=16, n_iterations=4, learning_rate=0.05).fit(tiny_data[0])
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith('Epoch')]
    losses = [s['loss'] for s in model.epoch_stats]
    assert len(lines) == len(losses) == 4 and losses[-1] < losses[0]
    assert sum(s['events'] for s in model.epoch_stats) == 4 * len(tiny_data[0])


def test_support_by_key_must_be_a_key_column(tiny_data):
    from recsys_core.errors import UserError
    with pytest.raises(UserError, match='support_by_key must be None or the session or time column'):
        Pop(support_by_key='Price').fit(tiny_data[0], verbose=False)


@pytest.mark.slow
def test_run_py_trains_saves_loads_and_evaluates_a_baseline(tiny_files, tmp_path):
    path = str(tmp_path / 'knn.pickle')
    out = cli('run.py', tiny_files['train'], '-g', 'baselines.item_knn', '-ps', 'n_sims=50,alpha=0.6',
              '-t', tiny_files['test'], '-m', '5', '20', '-s', path)
    assert out.returncode == 0, out.stderr
    assert 'Creating ItemKNN model' in out.stdout and 'SET   n_sims   TO   50' in out.stdout
    metrics = [l for l in out.stdout.splitlines() if l.startswith('Recall@')]
    loaded = cli('run.py', path, '-l', '-t', tiny_files['test'], '-m', '5', '20')
    assert loaded.returncode == 0, loaded.stderr
    assert [l for l in loaded.stdout.splitlines() if l.startswith('Recall@')] == metrics
    assert isinstance(load_model(path), ItemKNN)


@pytest.mark.slow
def test_paropt_tunes_a_baseline_through_g(tiny_files, tmp_path):
    (tmp_path / 'space.json').write_text('{"name": "alpha", "dtype": "float", "values": [0.0, 1.0], "step": 0.25}\n'
                                         '{"name": "lmbd", "dtype": "float", "values": [0.0, 50.0]}\n')
    out = cli('paropt.py', tiny_files['train'], tiny_files['test'], '-g', 'baselines.item_knn', '-fp', 'n_sims=30',
              '-opf', str(tmp_path / 'space.json'), '-nt', '3', '-fm', '5', '20', '--seed', '0', '-o', str(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count('Creating ItemKNN model') == 4
    assert out.stdout.splitlines()[-1].startswith('Recall@20: ')
    (folder,) = [d for d in os.listdir(str(tmp_path)) if d.startswith('baselines.item_knn-')]
    assert 'n_sims' in (tmp_path / folder / 'best_params.py').read_text()
    bad = cli('paropt.py', tiny_files['train'], tiny_files['test'], '-g', 'baselines.item_knn', '-fp', 'top_n=3',
              '-opf', str(tmp_path / 'space.json'), '-o', str(tmp_path))
    assert bad.returncode == 1 and 'Unknown parameter(s) for ItemKNN: top_n' in bad.stderr
