"""StackRec's TF scenario head (fineall.py, reference sections 2.5, 3.2 and 4.5): a pre-trained
NextItNet fine-tuned, all of it, on a target domain with a new target-item table.

Examples: each target item t of a ColdRec line ``s1,...,sn,,t1,...`` is one example (source
sequence, t); the examples are shuffled with numpy's legacy generator seeded 10 and split 80/20
(example level, so one user can be in both parts, as released, P5). The user vector u is the
pre-trained stack's top hidden state at the last source item; the loss is the mean of
-log sigmoid(u . e_pos) - log(1 - sigmoid(u . e_neg)) (one uniform negative in [1, |targets|),
not the positive, 1e-24 guards) plus 0.02 x 1/2 ||T||^2 on the target table (truncated normal,
std 0.02); TF's Adam over every weight but the pre-training softmax (which gets no gradient).
Evaluation: 99 uniform negatives (duplicates allowed, fresh each time) and the positive at index
99; the positive loses ties (TF's top_k prefers lower indices); HR@5 and MRR@5, the best MRR@5 over
all evaluations reported. Training and evaluation share one generator (seeded with the
fine-tuning's seed), checkpointed with the trainer's state.

Differences (documented choices): source items are mapped through the pre-trained model's
vocabulary (the release rebuilds a vocabulary from the fine-tune file, which matches only when the
first-appearance orders agree, P3; unknown source items are left out), and sources are
left-padded, so u sits on the last real item (the release right-pads, so u can sit on padding, P4).
The target table's ids: 0 = <UNK> (never a target), then targets in order of first appearance.
"""
import hashlib
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytensor.tensor as pt

from recsys_core.backend import compile_function
from recsys_core.blocks import truncated_normal
from recsys_core.errors import UserError
from recsys_core.sequences import left_pad
from recsys_core.trainer import CompileOnFirstUse, TrainingOptions, TrainingPlan

from .data import read_coldrec_file
from .nextitnet import StackNextItNet

N_NEGATIVES = 99


def coldrec_examples(path, seed=10):
    """(sources, targets, target vocabulary) of a ColdRec file, shuffled as released, then the
    80/20 split as (train_rows, test_rows)."""
    sources, targets = read_coldrec_file(path)
    pairs = [(s, t) for s, ts in zip(sources, targets) for t in ts]
    if len(pairs) < 5:
        raise UserError('{} has {} (source, target) examples; fine-tuning needs at least 5'.format(path, len(pairs)))
    vocab = ['<UNK>'] + list(pd.unique(np.asarray([t for _, t in pairs], dtype=object)))
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        order = np.random.permutation(len(pairs))
    finally:
        np.random.set_state(state)
    n_test = int(0.2 * len(pairs))
    return [pairs[i] for i in order], np.asarray(vocab, dtype=object), len(pairs) - n_test


class FineTunedNextItNet(StackNextItNet):
    """A pre-trained StackNextItNet with a target-item table, fine-tuned on (source, target) pairs.

    Its parameters are the fine-tuning's (epochs, batch size, learning rate, seed; the network's
    come from the pre-trained model). ``fit(COLDREC_FILE, training=tuned.held_out_options(...))``
    trains through the shared trainer on the file's first 80% and evaluates on the rest; every
    evaluation's MRR@5 and HR@5 are in ``training_history`` (``metrics``), checkpointed with it.
    """

    def __init__(self, **kwargs):
        self.targets = None
        self.pretrained = None
        self._held_out = None
        super().__init__(**kwargs)

    @classmethod
    def from_pretrained(cls, model, n_epochs=10, batch_size=512, learning_rate=0.001, seed=10):
        """A model to fine-tune from a trained StackNextItNet (fineall.py's defaults)."""
        params = dict(model.get_params(), n_epochs=n_epochs, batch_size=batch_size, learning_rate=learning_rate,
                      seed=seed)
        tuned = cls(**params)
        tuned.vocab, tuned.pad_index, tuned.seq_len = model.vocab, model.pad_index, model.seq_len
        tuned._set_itemidmap()
        tuned.pretrained = {k: np.array(v) for k, v in model.weight_values().items()}
        return tuned

    def held_out_options(self, eval_every=1000, **options):
        """TrainingOptions that evaluate on the held-out 20% every ``eval_every`` steps (MRR@5 kept
        best by, HR@5 beside it); ``options``: the trainer's others (checkpoint, patience, ...)."""
        return TrainingOptions(evaluator=self.evaluate_held_out, metric='mrr', cut_off=5, eval_every=eval_every,
                               **options)

    def encode(self, sources):
        """Left-padded windows of the sources in the pre-trained vocabulary (unknown items left out)."""
        rows = [self.itemidmap.reindex(pd.Index(s)).dropna().values.astype(np.int32) for s in sources]
        return left_pad(rows, self.seq_len - 1, self.pad_index)

    def _trainable(self):
        return [v for k, v in self.shared.items() if k not in ('Ws', 'bs')]  # the pre-training softmax is idle

    def _user_vectors(self, X):
        return self._hidden(X)[:, -1, :]

    def _examples(self, path):
        """(encoded sources, target indices, training rows) of a ColdRec file; sets the target table."""
        if self.pretrained is None:
            raise UserError('Fine-tuning starts from a trained model: use FineTunedNextItNet.from_pretrained(model)')
        pairs, self.targets, n_train = coldrec_examples(path)
        target_index = pd.Series(np.arange(len(self.targets), dtype=np.int32), index=self.targets)
        X = self.encode([s for s, _ in pairs])
        y = target_index[[t for _, t in pairs]].values.astype(np.int32)
        return X, y, n_train

    def _data_fingerprint(self, path):
        """The examples and the pre-trained weights: a checkpoint resumes only the same fine-tuning."""
        X, y, _ = self._examples(path)
        digest = hashlib.md5(np.ascontiguousarray(X).tobytes() + np.ascontiguousarray(y).tobytes())
        for k in sorted(self.pretrained):
            digest.update(np.ascontiguousarray(self.pretrained[k]).tobytes())
        return digest.hexdigest()

    def _negatives(self, targets, k):
        """k uniform target indices per row in [1, |targets|), anything but the row's positive
        (duplicates allowed), from the plan's generator (checkpointed)."""
        rng, n_targets = self._host['rng'], len(self.targets)
        draws = rng.integers(1, n_targets, size=(len(targets), k))
        clash = draws == targets[:, None]
        while clash.any():
            draws[clash] = rng.integers(1, n_targets, size=int(clash.sum()))
            clash = draws == targets[:, None]
        return draws.astype(np.int32)

    def _training_plan(self, request):
        X, y, n_train = self._examples(request.data)
        self._held_out = (X[n_train:], y[n_train:])
        self.weights = OrderedDict(self.pretrained)
        self.weights['T'] = truncated_normal(np.random.default_rng(self.seed), (len(self.targets),
                                                                                self.dilated_channels), 0.02)
        self._make_shared()
        self._host = {'rng': np.random.default_rng(self.seed)}
        Xs, pos, neg = pt.imatrix('X'), pt.ivector('pos'), pt.ivector('neg')
        u = self._user_vectors(Xs)
        T = self.shared['T']
        score_pos, score_neg = (u * T[pos]).sum(axis=1), (u * T[neg]).sum(axis=1)
        loss = -(pt.log(pt.sigmoid(score_pos) + 1e-24) + pt.log(1 - pt.sigmoid(score_neg) + 1e-24)).mean()
        cost = loss + np.float32(0.02) * 0.5 * (T ** 2).sum()
        updates = self._optimizer().updates(cost, self._trainable())
        step_fn = CompileOnFirstUse(lambda: compile_function([Xs, pos, neg], cost, updates=updates))
        batch = min(self.batch_size, n_train)

        def batches(epoch):
            for b in range(n_train // batch):
                yield slice(b * batch, (b + 1) * batch), batch

        def step(rows):
            return float(step_fn(X[rows], y[rows], self._negatives(y[rows], 1)[:, 0]))

        def set_host(state):
            self._host.update(state)

        return TrainingPlan(self.n_epochs, step, batches, step_function=step_fn, host_state=lambda: self._host,
                            set_host_state=set_host, finish=self._sync_weights)

    def evaluate_held_out(self, model=None):
        """{'mrr@5', 'hr@5'} of the held-out examples, each target ranked against 99 sampled
        negatives (fresh at every evaluation; the positive loses ties)."""
        def build():
            Xs, neg = pt.imatrix('X'), pt.ivector('neg')
            u = self._user_vectors(Xs)
            T = self.shared['T']
            return compile_function([Xs, neg], (u[:, None, :] * T[neg.reshape((u.shape[0], -1))]).sum(axis=2))
        score_fn = self._function('held_out_scores', build)
        X, y = self._held_out
        ranks = []
        for s in range(0, len(y), 512):
            rows = slice(s, s + 512)
            cand = np.concatenate([self._negatives(y[rows], N_NEGATIVES), y[rows][:, None]], axis=1)  # positive last
            scores = np.asarray(score_fn(X[rows], cand.ravel()))
            ranks.append((scores[:, :-1] >= scores[:, -1:]).sum(axis=1))
        rank = np.concatenate(ranks)
        hit = rank < 5
        return {'mrr@5': float((hit / (rank + 1)).mean()), 'hr@5': float(hit.mean())}

    def _model_state(self):
        return dict(super()._model_state(), targets=self.targets)

    def _restore_state(self, state):
        super()._restore_state(state)
        self.targets = state['targets']
