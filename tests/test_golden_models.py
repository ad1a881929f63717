"""Golden numbers for NextItNet, CpRec (every use_softmax_type) and the baselines.

Fixed small synthetic data, fixed seeds, recorded per-epoch losses (``model.epoch_stats``) and
metrics: Recall/MRR@5,20 of recsys_core.evaluation.evaluate_sessions for every model and, for the
sequence models, HR/MRR/NDCG@5,20 of recsys_core.evaluation.evaluate_last_items. If a change
moves these numbers it changed behaviour: say why in the commit and re-record them
(``python tests/test_golden_models.py`` prints the current numbers in this file's format). The
tolerances only absorb floating-point noise; the numbers were checked to be identical with
OMP_NUM_THREADS=1 and 2.
"""
import os
import sys

import numpy as np
import pytest

if __name__ == '__main__':
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from recsys_core import backend
    backend.configure('cpu')

from baselines.bpr import BPR  # noqa: E402
from baselines.item_knn import ItemKNN  # noqa: E402
from baselines.pop import Pop  # noqa: E402
from baselines.random_pred import RandomPred  # noqa: E402
from baselines.session_pop import SessionPop  # noqa: E402
from cprec import CpRec  # noqa: E402
from nextitnet import NextItNet  # noqa: E402
from recsys_core.evaluation import evaluate_sessions  # noqa: E402
from recsys_core.evaluation import evaluate_last_items
from recsys_core.last_item_eval import last_item_cases  # noqa: E402
from recsys_core.synthetic import generate_sessions, split_by_time  # noqa: E402

CUTS = [5, 20]
# Small enough to train in seconds; 149 items, so the explicit CpRec boundaries 15/50 give a head
# and two tails and every block mode is exercised.
SEQ = dict(dilated_channels=16, dilations=[1, 2], max_len=8, batch_size=32, n_epochs=2)
SEQUENCE_MODELS = {
    'nextitnet': (NextItNet, {}),
    'nextitnet-negsample': (NextItNet, {'is_negsample': True}),
}
for _type in ('FullSoftmax', 'Block_Input_Full', 'Block_for_Softmax', 'Block_Input_Softmax',
              'Block_Input_Softmax_Inference'):
    SEQUENCE_MODELS['cprec-' + _type] = (CpRec, {'use_softmax_type': _type, 'block': [15, 50]})
BASELINES = {
    'pop': (Pop, {'top_n': 50}),
    'session_pop': (SessionPop, {'top_n': 50}),
    'item_knn': (ItemKNN, {'n_sims': 50}),
    'bpr': (BPR, {'n_factors': 16, 'n_iterations': 5, 'learning_rate': 0.05}),
    'random_pred': (RandomPred, {}),
}

# name: (epoch losses, [Recall@5, Recall@20, MRR@5, MRR@20],
#        [HR@5, HR@20, MRR@5, MRR@20, NDCG@5, NDCG@20] of the last-item protocol, sequence models only)
GOLDEN = {
    'nextitnet': ([4.683689, 4.152701], [0.491228, 0.761404, 0.328187, 0.355476],
        [0.391667, 0.725, 0.275, 0.308599, 0.303624, 0.399179]),
    'nextitnet-negsample': ([4.339558, 4.022852], [0.5, 0.719298, 0.331462, 0.353795],
        [0.441667, 0.633333, 0.287917, 0.306384, 0.32543, 0.379576]),
    'cprec-FullSoftmax': ([4.701205, 4.206747], [0.477193, 0.770175, 0.327047, 0.356321],
        [0.366667, 0.741667, 0.271806, 0.308751, 0.295473, 0.402044]),
    'cprec-Block_Input_Full': ([4.716153, 4.159382], [0.492982, 0.770175, 0.330146, 0.357825],
        [0.4, 0.741667, 0.28, 0.312748, 0.309676, 0.405672]),
    'cprec-Block_for_Softmax': ([3.095884, 2.691557], [0.449123, 0.707018, 0.318421, 0.345636],
        [0.358333, 0.65, 0.269306, 0.299626, 0.291519, 0.376481]),
    'cprec-Block_Input_Softmax': ([3.141881, 2.686996], [0.447368, 0.733333, 0.300205, 0.331068],
        [0.358333, 0.683333, 0.265694, 0.30053, 0.288542, 0.384175]),
    'cprec-Block_Input_Softmax_Inference': ([3.141881, 2.686996], [0.447368, 0.733333, 0.300205, 0.331068],
        [0.358333, 0.683333, 0.265694, 0.30053, 0.288542, 0.384175]),
    'pop': ([], [0.5, 0.763158, 0.331462, 0.357542], []),
    'session_pop': ([], [0.422807, 0.754386, 0.252456, 0.286865], []),
    'item_knn': ([], [0.524561, 0.749123, 0.304327, 0.327372], []),
    'bpr': ([0.693085, 0.691847, 0.682405, 0.631543, 0.532568], [0.461404, 0.724561, 0.305877, 0.330904], []),
    'random_pred': ([], [0.022807, 0.107018, 0.00962, 0.016884], []),
}

# CpRec's fast inference (top_k=5, the released rule) on the same model: rows of the 120 last-item
# cases that computed tail 1 and tail 2, HR@5 and MRR@5 of the pruned lists.
FAST_INFERENCE = ([120, 51], [0.358333, 0.265694])


def make_data():
    return split_by_time(generate_sessions(n_items=150, n_sessions=800, seed=7), 0.15)


_TRAINED = {}


def trained(name, train):
    """The model ``name`` fitted on ``train`` (once per process)."""
    if name not in _TRAINED:
        cls, params = SEQUENCE_MODELS.get(name) or BASELINES[name]
        if name in SEQUENCE_MODELS:
            params = dict(SEQ, **params)
        _TRAINED[name] = cls(**params).fit(train, verbose=False)
    return _TRAINED[name]


def measure(name, train, test):
    """(epoch losses, session metrics, last-item metrics) of one model, in GOLDEN's layout."""
    model = trained(name, train)
    recall, mrr = evaluate_sessions(model, test, cut_off=CUTS, verbose=False)
    last = []
    if name in SEQUENCE_MODELS:
        result = evaluate_last_items(model, test, cut_off=CUTS, verbose=False)
        last = result['hr'] + result['mrr'] + result['ndcg']
    losses = [s['loss'] for s in getattr(model, 'epoch_stats', [])]
    return tuple([float(x) for x in part] for part in (losses, list(recall) + list(mrr), last))


@pytest.fixture(scope='module')
def golden_data():
    return make_data()


@pytest.mark.parametrize('name', list(GOLDEN))
@pytest.mark.slow
def test_golden_numbers(golden_data, name):
    losses, session_metrics, last_item_metrics = measure(name, *golden_data)
    expected = GOLDEN[name]
    np.testing.assert_allclose(session_metrics, expected[1], atol=2e-3)
    np.testing.assert_allclose(last_item_metrics, expected[2], atol=2e-3)
    np.testing.assert_allclose(losses, expected[0], rtol=1e-3)


def fast_inference(train, test):
    """CpRec's fast inference at its top_k (5): rows that computed each tail, HR@5 and MRR@5 of
    the pruned lists over the last-item cases."""
    model = trained('cprec-Block_Input_Softmax_Inference', train)
    model.rank_last_items(*_cases(model, test), 'standard', 5, cut_offs=[5])
    stats = model.last_inference_stats
    ranks = stats['pruned_ranks']
    return stats['tails_evaluated'], [float(np.mean(ranks <= 5)), float(np.mean(1 / ranks))]


def _cases(model, test):
    """The last-item cases with a known target and history, as evaluate_last_items ranks them."""
    histories, targets = last_item_cases(model, test, 'SessionId', 'ItemId', 'Time')
    known = [i for i, h in enumerate(histories) if targets[i] >= 0 and len(h)]
    return [histories[i] for i in known], targets[known]


def test_golden_fast_inference(golden_data):
    tails, metrics = fast_inference(*golden_data)
    assert tails == FAST_INFERENCE[0]
    np.testing.assert_allclose(metrics, FAST_INFERENCE[1], atol=2e-3)


def test_every_model_has_golden_numbers():
    assert set(GOLDEN) == set(SEQUENCE_MODELS) | set(BASELINES)


if __name__ == '__main__':
    data = make_data()
    for key in list(SEQUENCE_MODELS) + list(BASELINES):
        losses, session_metrics, last_item_metrics = ([round(x, 6) for x in part] for part in measure(key, *data))
        wrap = ',\n        ' if last_item_metrics else ', '
        print('    {!r}: ({}, {}{}{}),'.format(key, losses, session_metrics, wrap, last_item_metrics))
    tails, metrics = fast_inference(*data)
    print('FAST_INFERENCE = ({}, {})'.format(tails, [round(x, 6) for x in metrics]))
