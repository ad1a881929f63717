"""Every model has the one surface of recsys_core.model: trained check, id mapping, recommend (top-k,
exclude_seen, skip_unknown), atomic save and load, and one evaluation entry point for both protocols."""
import numpy as np
import pytest

from baselines.bpr import BPR
from baselines.item_knn import ItemKNN
from baselines.pop import Pop
from baselines.random_pred import RandomPred
from baselines.session_pop import SessionPop
from cprec import CpRec
from gru4rec import GRU4Rec
from nextitnet import NextItNet
from peercollab import PeerCollab
from peercollab.bpr import PeerBPR
from peercollab.youtubednn import PeerYouTubeDNN
from recsys_core.errors import UserError
from recsys_core.evaluation import EvalResult, evaluate
from recsys_core.model import NeuralRecommender, Recommender
from recsys_core.trainer import TrainingOptions
from stackrec.grec import GRec
from stackrec.nextitnet import StackNextItNet
from stackrec.sasrec import SASRec
from stackrec.ssept import SSEPT
from conftest import fit_interrupted_then_resumed

SEQUENCE = dict(max_len=8, batch_size=32, n_epochs=1)
TRAINED = {  # the models trained by steps through recsys_core.trainer
    'gru4rec': (GRU4Rec, dict(layers=[16], batch_size=16, n_sample=16, n_epochs=1)),
    'nextitnet': (NextItNet, dict(dilated_channels=8, dilations=[1, 2], **SEQUENCE)),
    'cprec': (CpRec, dict(dilated_channels=8, dilations=[1, 2], block=[40, 120], **SEQUENCE)),
    'stackrec.nextitnet': (StackNextItNet, dict(dilated_channels=8, dilations=[1, 2], **SEQUENCE)),
    'stackrec.grec': (GRec, dict(dilated_channels=8, dilations=[1, 4], **SEQUENCE)),
    'stackrec.sasrec': (SASRec, dict(hidden=8, num_blocks=1, **SEQUENCE)),
    'stackrec.ssept': (SSEPT, dict(hidden=8, num_blocks=1, **SEQUENCE)),
    'peercollab': (PeerCollab, dict(hidden=8, num_blocks=1, **SEQUENCE)),
    'peercollab.youtubednn': (PeerYouTubeDNN, dict(hidden=8, **SEQUENCE)),
    'peercollab.bpr': (PeerBPR, dict(hidden=8, batch_size=256, n_epochs=1)),
    'bpr': (BPR, dict(n_factors=8, n_iterations=2)),
}
MODELS = dict(TRAINED, **{'pop': (Pop, {}), 'session_pop': (SessionPop, {}), 'item_knn': (ItemKNN, {}),
                          'random': (RandomPred, {})})
USER_MODELS = {'peercollab.bpr'}  # rank a user's items (its session id), not the items after a history


@pytest.fixture(scope='module')
def fitted(tiny_data):
    train, _ = tiny_data
    return {name: cls(**params).fit(train, verbose=False) for name, (cls, params) in MODELS.items()}


@pytest.mark.parametrize('name', list(MODELS))
def test_untrained_models_refuse_to_recommend_and_save(name, tmp_path):
    cls, params = MODELS[name]
    model = cls(**params)
    assert isinstance(model, Recommender)
    with pytest.raises(UserError, match='not been trained'):
        model.recommend(['1'])
    with pytest.raises(UserError, match='not been trained'):
        model.savemodel(str(tmp_path / 'm'))


def test_every_model_has_the_one_fit_signature(fitted, tiny_data):
    """One fit for every model (no subclass redefines it); another model's vocabulary is taken only
    by the sequence models, and an unknown fit argument is a TypeError, not silently ignored."""
    import inspect
    assert all(type(m).fit is Recommender.fit for m in fitted.values())
    with pytest.raises(UserError, match='vocabulary_of'):
        GRU4Rec(**TRAINED['gru4rec'][1]).fit(tiny_data[0], verbose=False, vocabulary_of=fitted['nextitnet'])
    with pytest.raises(UserError, match='vocabulary_of'):
        Pop().fit(tiny_data[0], verbose=False, vocabulary_of=fitted['nextitnet'])
    with pytest.raises(TypeError):
        NextItNet(**TRAINED['nextitnet'][1]).fit(tiny_data[0], max_batches=2)
    assert 'sample_store' in inspect.signature(Recommender.fit).parameters  # the original GRU4Rec's interface


@pytest.mark.parametrize('name', list(MODELS))
def test_recommend_ids_exclusion_and_unknown_items(fitted, tiny_data, name):
    model = fitted[name]
    known = list(tiny_data[0].ItemId.unique()[:3])
    if name in USER_MODELS:
        with pytest.raises(UserError, match='recommends to its users'):
            model.recommend(known, k=7)
        return
    ids, scores = model.recommend(known, k=7)
    assert len(ids) == 7 and np.all(np.diff(scores) <= 0)
    assert set(ids) <= set(model.itemidmap.index)  # real items only (never a padding class)
    ids, _ = model.recommend(known, k=model.n_items, exclude_seen=True)
    assert not set(known) & set(ids[:model.n_items - len(known)])
    with pytest.raises(UserError, match='Unknown item'):
        model.recommend(known + ['no-such-item'])
    batch = model.recommend([known, known[:1] + ['no-such-item']], k=3, skip_unknown=True)
    assert len(batch) == 2 and all(len(ids) == 3 for ids, _ in batch)


@pytest.mark.parametrize('name', list(MODELS))
def test_saved_models_load_with_the_same_recommendations(fitted, tiny_data, name, tmp_path):
    model = fitted[name]
    path = str(tmp_path / 'model.pkl')
    model.savemodel(path)
    loaded = type(model).loadmodel(path)
    if name in USER_MODELS:  # the same ranks of an item each user has not seen, below its unseen items' count
        peer = model.peer_model()
        users = list(range(10))
        seen = [set(peer.user_items[peer.user_offsets[u]:peer.user_offsets[u + 1]]) for u in users]
        targets = np.array([min(set(range(model.n_items)) - s) for s in seen])
        a, b = (m.rank_last_items([[u] for u in users], targets, 'standard', 20) for m in (model, loaded))
        assert np.array_equal(a, b) and all(1 <= r <= model.n_items - len(s) for r, s in zip(a, seen))
        return
    history = list(tiny_data[0].ItemId.unique()[:4])
    a, b = model.recommend(history, k=5), loaded.recommend(history, k=5)
    assert list(a[0]) == list(b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5)
    assert isinstance(model, NeuralRecommender) == (name in TRAINED)


@pytest.mark.parametrize('name', [n if n in ('gru4rec', 'nextitnet', 'bpr') else pytest.param(n, marks=pytest.mark.slow)
                                  for n in TRAINED])
def test_training_checkpoints_and_resumes_through_the_shared_trainer(fitted, tiny_data, name, tmp_path, monkeypatch):
    """Interrupted after its third step (checkpoints every two), the same fit resumes and ends in the
    weights of the uninterrupted fit; both protocols evaluate it (SSE-PT, which ranks with the user of
    each history, refuses the every-next-item protocol with one error)."""
    cls, params = TRAINED[name]
    train, test = tiny_data
    resumed = fit_interrupted_then_resumed(monkeypatch, cls, params, train, str(tmp_path / 'ck'), 3,
                                           dict(verbose=False), checkpoint_every=2)
    assert len(resumed.epoch_stats) == len(fitted[name].epoch_stats) >= 1
    whole = fitted[name].weight_values()
    for k, v in resumed.weight_values().items():
        np.testing.assert_allclose(v, whole[k], rtol=1e-6, atol=1e-7, err_msg=k)
    assert 0 <= evaluate(resumed, test, protocol='last', cut_off=[5], verbose=False).value('mrr', 5) <= 1
    if name in ('stackrec.ssept', 'peercollab.bpr'):
        with pytest.raises(UserError, match='protocol last'):
            evaluate(resumed, test, protocol='next', cut_off=[5], verbose=False)
    else:
        assert 0 <= evaluate(resumed, test, protocol='next', cut_off=[5], verbose=False).value('mrr', 5) <= 1


@pytest.mark.parametrize('name', ['gru4rec', 'nextitnet', 'item_knn'])
def test_one_evaluation_entry_point_for_both_protocols(fitted, tiny_data, name):
    model, test = fitted[name], tiny_data[1]
    nxt, last = (evaluate(model, test, protocol=p, cut_off=[5, 20], verbose=False) for p in ('next', 'last'))
    assert isinstance(nxt, EvalResult) and isinstance(last, EvalResult)
    assert list(nxt.metrics) == ['recall', 'mrr'] and list(last.metrics) == ['hr', 'mrr', 'ndcg']
    assert nxt.lines()[0].startswith('Recall@5: ') and last.lines()[1].startswith('HR@20: ')
    assert last.value('recall', 20) == last.value('hr', 20) >= last.value('hr', 5)
    assert 0 < nxt.value('mrr', 20) <= nxt.value('recall', 20) <= 1
    with pytest.raises(UserError, match='not measured'):
        nxt.value('ndcg', 5)
    with pytest.raises(UserError, match='Cut-off 10'):
        last.value('hr', 10)


def test_cprec_fast_inference_numbers_are_marked_and_only_at_top_k(tiny_data):
    """Block_Input_Softmax_Inference: the cut-off equal to top_k comes from the pruned list (marked),
    every other cut-off from the exact ranking (equal to the same network evaluated exactly)."""
    train, test = tiny_data
    params = dict(dilated_channels=8, dilations=[1, 2], max_len=8, batch_size=32, n_epochs=1, block=[40, 120],
                  use_softmax_type='Block_Input_Softmax_Inference', top_k=5)
    fast = CpRec(**params).fit(train, verbose=False)
    res = evaluate(fast, test, protocol='last', cut_off=[5, 20], verbose=False)
    assert res.pruned_cut_offs == [5]
    assert res.lines()[0].endswith('(from the fast inference top-k list)') and 'fast' not in res.lines()[1]
    assert res.lines()[2].startswith('Fast inference (rule released') and '@5 from its pruned top-5' in res.lines()[2]
    exact = CpRec(**dict(params, use_softmax_type='Block_Input_Softmax'))
    exact._training_rows(train, verbose=False)
    exact.weights, exact.bounds = dict(fast.weights), fast.bounds
    exact_res = evaluate(exact, test, protocol='last', cut_off=[5, 20], verbose=False)
    assert exact_res.value('hr', 20) == res.value('hr', 20) and exact_res.pruned_cut_offs == []
    assert exact_res.value('mrr', 5) >= res.value('mrr', 5) - 1e-12  # the pruned list can only miss items
    none = evaluate(fast, test, protocol='last', cut_off=[10], verbose=False)
    assert none.pruned_cut_offs == [] and 'no cut-off equals top_k=5' in none.lines()[-1]
