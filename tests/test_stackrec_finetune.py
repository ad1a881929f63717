"""StackRec's TF scenario: the ColdRec examples and split, the fine-tuning head with its
sampled-candidate evaluation, and the tf pipeline (pre-training stages each fine-tuned)."""
import json
import os

import numpy as np
import pytest

from conftest import Interrupt, interrupt_after
from stackrec import pipeline
from stackrec.finetune import FineTunedNextItNet, coldrec_examples
from stackrec.nextitnet import StackNextItNet

pytestmark = pytest.mark.slow  # trains several small models


@pytest.fixture(scope='module')
def coldrec(tiny_data, tmp_path_factory):
    """A ColdRec file whose targets depend on the last source item (so a fine-tuned model can learn
    them) and the matching source sequences."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp('coldrec')
    train = tiny_data[0]
    lines, seqs = [], []
    for _, g in train.groupby('SessionId'):
        items = list(map(str, g.ItemId))
        targets = ['t{}'.format(int(items[-1]) % 30)] + (['t{}'.format(int(items[0]) % 30)] if rng.random() < 0.3 else [])
        lines.append(','.join(items) + ',,' + ','.join(targets))
        seqs.append(','.join(items))
    (d / 'target.csv').write_text('\n'.join(lines) + '\n')
    (d / 'source.csv').write_text('\n'.join(seqs) + '\n')
    return {'target': str(d / 'target.csv'), 'source': str(d / 'source.csv')}


def test_examples_are_every_target_shuffled_and_split_80_20(coldrec):
    pairs, vocab, n_train = coldrec_examples(coldrec['target'])
    lines = open(coldrec['target']).read().split()
    assert len(pairs) == sum(len(line.split(',,')[1].split(',')) for line in lines)
    assert n_train == len(pairs) - int(0.2 * len(pairs))
    assert vocab[0] == '<UNK>' and set(vocab[1:]) == {t for _, t in pairs}
    again, _, _ = coldrec_examples(coldrec['target'])
    assert [t for _, t in again] == [t for _, t in pairs]  # the released seed-10 shuffle, repeatable


def test_fine_tuning_learns_the_target_domain(coldrec, tiny_data):
    base = StackNextItNet(dilated_channels=16, dilations=[1, 4], max_len=10, batch_size=64, n_epochs=1)
    base.fit(tiny_data[0], verbose=False)
    tuned = FineTunedNextItNet.from_pretrained(base, n_epochs=12, batch_size=64)
    tuned.fit(coldrec['target'], verbose=False, training=tuned.held_out_options(eval_every=30))
    history = tuned.training_history
    values = [h['value'] for h in history]
    random_mrr5 = sum(1 / r for r in range(1, 6)) / 100  # 99 negatives and the positive
    assert max(values) > 5 * random_mrr5 and max(values) > values[0]
    assert all(h['metrics']['mrr@5'] == h['value'] and h['value'] <= h['metrics']['hr@5'] <= 1 for h in history)
    for k in ('Ws', 'bs'):  # the pre-training softmax gets no gradient
        np.testing.assert_array_equal(tuned.weights[k], base.weights[k])
    assert not np.array_equal(tuned.weights['E'], base.weights['E'])  # everything else is fine-tuned


def test_fine_tuning_resumes_to_the_same_weights_and_history(coldrec, tiny_data, tmp_path, monkeypatch):
    """An interrupted fine-tuning resumes from its checkpoint (generator, Adam state, every
    evaluation's MRR@5 and HR@5) to what an uninterrupted one ends with; other examples are refused."""
    from recsys_core.errors import UserError
    base = StackNextItNet(dilated_channels=8, dilations=[1, 4], max_len=8, batch_size=64, n_epochs=1)
    base.fit(tiny_data[0], verbose=False)

    def tune(folder, **options):
        tuned = FineTunedNextItNet.from_pretrained(base, n_epochs=3, batch_size=32)
        tuned.fit(coldrec['target'], verbose=False, training=tuned.held_out_options(eval_every=4, checkpoint=folder,
                                                                                     **options))
        return tuned

    whole = tune(str(tmp_path / 'whole'))
    restore = interrupt_after(monkeypatch, FineTunedNextItNet, 6)
    with pytest.raises(Interrupt):
        tune(str(tmp_path / 'cut'), checkpoint_every=3)
    restore()
    resumed = tune(str(tmp_path / 'cut'), checkpoint_every=3)
    assert len(resumed.training_history) >= 2
    for k, v in whole.weights.items():
        np.testing.assert_array_equal(resumed.weights[k], v, err_msg=k)
    assert [h['metrics'] for h in resumed.training_history] == [h['metrics'] for h in whole.training_history]
    other = tmp_path / 'other.csv'
    other.write_text(open(coldrec['target']).read().replace(',,t1', ',,t2'))
    tuned = FineTunedNextItNet.from_pretrained(base, n_epochs=3, batch_size=32)
    with pytest.raises(UserError, match='training data'):
        tuned.fit(str(other), verbose=False, training=tuned.held_out_options(eval_every=4,
                                                                             checkpoint=str(tmp_path / 'cut')))


def test_tf_pipeline_fine_tunes_every_stage_and_resumes(coldrec, tmp_path, capsys):
    args = ['tf', coldrec['source'], '--finetune', coldrec['target'], '--out', str(tmp_path / 'tf'), '--blocks', '2',
            '--step_cap', '20', '--eval_every', '10', '--finetune_epochs', '2', '--finetune_batch', '64',
            '--finetune_eval_every', '15', '-ps', 'dilated_channels=8,max_len=8,batch_size=32']
    assert pipeline.main(args) == 0
    for k in (1, 2):
        summary = json.load(open(tmp_path / 'tf' / 'stage{}_finetune'.format(k) / 'summary.json'))
        assert summary['blocks'] == 2 * k and 0 < summary['best_mrr5'] <= summary['hr5_at_best'] <= 1
    capsys.readouterr()
    assert pipeline.main(args) == 0
    out = capsys.readouterr().out
    assert out.count('done earlier') == 4
    with pytest.raises(Exception, match='needs --finetune'):
        pipeline.main(['tf', coldrec['source'], '--out', str(tmp_path / 'x')])
    assert not os.path.exists(tmp_path / 'x')
