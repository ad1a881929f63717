"""Golden numbers: fixed seeds, fixed small data, recorded metrics and epoch losses.

Training is deterministic (numpy seed 42 for weights, seeded PyTensor generators for dropout and
negative samples). If a change moves these numbers, it changed behaviour: say why in the commit and
re-record them. The tolerance only absorbs floating-point noise (e.g. BLAS threading).
"""
import numpy as np
import pytest

from gru4rec import GRU4Rec
from recsys_core.evaluation import evaluate_sessions
from recsys_core.synthetic import generate_sessions, split_by_time

SETTINGS = {
    'xe-shared-logq': dict(loss='cross-entropy', final_act='softmax', constrained_embedding=True, logq=1.0, dropout_p_embed=0.1),
    'bprmax-shared': dict(loss='bpr-max', final_act='elu-0.5', constrained_embedding=True, bpreg=1.0, momentum=0.3,
                          dropout_p_hidden=0.1),
    'bprmax-separate': dict(loss='bpr-max', final_act='elu-1', embedding=24, bpreg=0.5),
    'xe-onehot': dict(loss='cross-entropy', final_act='softmax', embedding=0),
}
# (setting, variant): Recall@5, Recall@20, MRR@5, MRR@20; the two epoch losses.
# 'default' is the original's step (gru_cell='theano', sparse_update='per_occurrence'). The two
# 'per_row' variants update a repeated item row once from its summed gradient (the official port's
# way): 'theano-per_row' are the numbers recorded before either parameter existed, 'pytorch-per_row'
# the port's cell and initialisation as well. Only the shared-embedding setting with momentum moves
# much between the two sparse updates: a row used k times gets k momentum terms in the original.
VARIANTS = {
    'default': {},
    'theano-per_row': dict(gru_cell='theano', sparse_update='per_row'),
    'pytorch-per_row': dict(gru_cell='pytorch', sparse_update='per_row'),
}
GOLDEN = {
    ('xe-shared-logq', 'default'): ([0.575482, 0.752141, 0.367059, 0.386575], [5.361471, 5.001242]),
    ('bprmax-shared', 'default'): ([0.304069, 0.511777, 0.168273, 0.188064], [0.661336, 0.631727]),
    ('bprmax-separate', 'default'): ([0.442184, 0.566916, 0.218924, 0.231587], [0.64319, 0.607776]),
    ('xe-onehot', 'default'): ([0.486617, 0.641328, 0.249447, 0.266895], [4.080689, 3.798625]),
    ('xe-shared-logq', 'theano-per_row'): ([0.562634, 0.75, 0.363526, 0.384072], [5.398201, 5.041875]),
    ('bprmax-shared', 'theano-per_row'): ([0.423448, 0.547109, 0.203176, 0.217385], [0.65459, 0.626446]),
    ('bprmax-separate', 'theano-per_row'): ([0.447002, 0.563704, 0.217024, 0.228871], [0.643443, 0.607763]),
    ('xe-onehot', 'theano-per_row'): ([0.493041, 0.645075, 0.251365, 0.267648], [4.083233, 3.801655]),
    ('xe-shared-logq', 'pytorch-per_row'): ([0.571199, 0.747323, 0.370102, 0.389689], [5.383215, 5.028568]),
    ('bprmax-shared', 'pytorch-per_row'): ([0.424518, 0.547645, 0.204354, 0.217243], [0.655197, 0.626237]),
    ('bprmax-separate', 'pytorch-per_row'): ([0.447002, 0.544433, 0.218059, 0.227981], [0.643398, 0.607087]),
    ('xe-onehot', 'pytorch-per_row'): ([0.48394, 0.650964, 0.248233, 0.266741], [4.082116, 3.801358]),
}


@pytest.fixture(scope='module')
def golden_data():
    return split_by_time(generate_sessions(n_items=500, n_sessions=3000, seed=11), 0.15)


@pytest.mark.parametrize('setting,variant', list(GOLDEN), ids=['{}-{}'.format(*k) for k in GOLDEN])
def test_golden_metrics(golden_data, setting, variant):
    train, test = golden_data
    metrics, losses = GOLDEN[setting, variant]
    m = GRU4Rec(layers=[48], batch_size=24, n_sample=64, n_epochs=2, learning_rate=0.05, **VARIANTS[variant],
                **SETTINGS[setting]).fit(train, verbose=False)
    recall, mrr = evaluate_sessions(m, test, cut_off=[5, 20], verbose=False)
    np.testing.assert_allclose(recall + mrr, metrics, atol=2e-3)
    np.testing.assert_allclose([s['loss'] for s in m.epoch_stats], losses, rtol=1e-3)


def test_synthetic_generator_is_deterministic_and_long_tailed():
    a = generate_sessions(n_items=400, n_sessions=800, seed=5)
    b = generate_sessions(n_items=400, n_sessions=800, seed=5)
    assert a.equals(b) and not a.equals(generate_sessions(n_items=400, n_sessions=800, seed=6))
    counts = a.ItemId.value_counts().values
    assert counts[: len(counts) // 10].sum() > 0.4 * counts.sum()  # top 10% of items: a large share of events
    assert (a.groupby('SessionId').size() >= 2).all()
    assert (a.groupby('SessionId').Time.diff().dropna() > 0).all()
    train, test = split_by_time(a, 0.2)
    assert set(test.ItemId) <= set(train.ItemId)
    assert train.groupby('SessionId').Time.min().max() <= test.groupby('SessionId').Time.min().min()
