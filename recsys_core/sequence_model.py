"""What every model over left-padded item sequences shares (NextItNet, CpRec, and the SASRec-based
models that build on them): the vocabulary with its padding class, training rows cut into windows,
the training plan (fixed-order complete batches, TF's Adam), masked scoring of the last position,
last-item ranking and the sliding-window session ranker, and the model state.

A subclass defines its paper: parameters, ``_init_weights``, ``_hidden(X)`` (the (B, L, C) top
layer for a (B, L) index matrix), ``_train_loss(h, labels, extra)``, ``_log_scores(h_last)``, and
optionally ``_vocabulary`` (index order), ``_loss_inputs``/``_loss_feed`` (extra inputs of a step,
e.g. sampled candidates), ``_train_hidden`` (dropout while training), ``_regularization``,
``_optimizer`` and ``_describe``. A model whose training batch is not "input x[:, :-1], labels
x[:, 1:] at every position" (GRec's masked positions, SSE-PT's user column) overrides
``_batch_variables``/``_batch_values`` (and ``_targets_per_row``); host-side generators beyond the
sampler's ``_rng`` join the checkpoint through ``_host_state``/``_set_host_state``.

Padding targets (:data:`PADDING_LOSS`): the releases train on every position of a left-padded
window, padding targets included (``padding_loss=released``, the default). With
``padding_loss=skip`` a model's ``_train_loss`` passes its flattened hidden rows and labels through
:meth:`SequenceRecommender._scored_rows`, which keeps only the rows whose label is a real item (a
``nonzero`` gather before the output layer, so the (N, V) logits hold real targets only); the loss
is the mean over those, and a batch weighs its real targets in the epoch's average loss. Backends
that compile for fixed shapes (JAX) get the same loss and gradients as a mask over every row
instead (no saving there; a data-dependent row count would retrace for every batch).

What was not done, and why. Cutting a batch's leading all-padding columns is not exact for the
dilated causal CNNs: the padding embedding is a learned vector, while a cut column becomes the
convolution's zero padding, so every real position whose receptive field reaches a cut column
would change. It is exact only when at least R - 1 padding columns (R: the stack's receptive
field) stay before each row's first item; with NextItNet's 1/4/1/4 dilations (R = 61) and windows
of 43 or 50 that never cuts anything, and attention (SASRec) sees every key, so it is left out.
Batches bucketed by length would change the released fixed batch order (and the batches'
contents). The target side is where padding costs: the output layer over V classes is most of a
step.
"""
import numpy as np
import pandas as pd
import pytensor.tensor as pt

from gpu_ops.nonzero import flat_nonzero
from gpu_ops.ranking import rank_counts, rank_counts_at, ranks_from_counts

from .backend import compile_function, needs_static_shapes
from .data import TrainingEvents, session_offsets
from .errors import UserError
from .model import NeuralRecommender
from .optim import DenseAdam
from .params import Param, one_of
from .randomness import RandomSource
from .sequences import left_pad, sequences_from_events, windows
from .stacked import StackLayout
from .trainer import CompileOnFirstUse, TrainingPlan

PAD_TOKEN = '<PAD>'
EVAL_BATCH = 256

VOCABULARY = Param('vocabulary', 'train', one_of(('train', 'all')).says('must be train or all'),
                   doc="'all': ids, frequencies and T over the training data and fit()'s vocab_data, as the "
                       "releases (which build them before splitting); alias vocab")
"""The vocabulary parameter every sequence model declares (``ALIASES`` gives it the name vocab,
which is also the attribute holding the vocabulary itself)."""

PADDING_LOSS = Param('padding_loss', 'released', one_of(('released', 'skip')).says('must be released or skip'),
                     doc="'released': padding targets are scored and count in the mean loss, as the releases; "
                         "'skip': only real targets are scored against the vocabulary (mean over them)")
"""Whether positions whose target is the padding class are trained on (a model that declares it
applies it through :meth:`SequenceRecommender._scored_rows` in its ``_train_loss``)."""


class SequenceRecommender(NeuralRecommender):
    """Base of the sequence models: left-padded windows of at most ``seq_len`` items."""

    KEEPS_VOCABULARY_OF = True

    def __init__(self, **kwargs):
        self.vocab = None
        self.pad_index = None
        self.seq_len = None
        self._rng = None
        super().__init__(**kwargs)

    @property
    def n_vocab(self):
        return len(self.vocab)

    def index_ids(self):
        return self.vocab

    # ----------------------------------------------------------------- vocabulary and training rows
    def _vocabulary(self, item_ids, counts, n_pad):
        """Vocabulary tokens in index order and the padding index: index 0 is the padding class,
        items follow in order of first appearance (NextItNet's). ``counts`` are the items'
        frequencies in the training windows, ``n_pad`` the padding slots."""
        return np.concatenate([[PAD_TOKEN], item_ids]).astype(object), 0

    def _training_rows(self, data, verbose, vocab_data=None, vocabulary_of=None):
        """Left-padded (rows, T) matrix in model indices, building the vocabulary on the way.

        With vocabulary=all, ``vocab_data``'s sequences (cut into windows of the same T) also count
        for the vocabulary, the frequencies, the padding and, when max_len=0, T; rows are only the
        training data's. ``vocabulary_of``: a trained model whose vocabulary and T are taken as
        they are (a deeper model stacked on it indexes its items the same way).
        """
        events = TrainingEvents(data, self.session_key, self.item_key, self.time_key, verbose)
        seqs = sequences_from_events(events.items, events.offsets)
        if vocabulary_of is not None:
            return self._rows_in_vocabulary_of(vocabulary_of, events, seqs, verbose)
        item_ids = events.itemidmap.index.values
        extra = []
        if self.vocabulary == 'all':
            item_ids, extra = self._vocab_sequences(vocab_data, item_ids)
        longest = max(len(s) for s in seqs + extra)
        self.seq_len = self.max_len if self.max_len else longest
        if self.seq_len < 2:
            raise UserError('max_len must be at least 2 (an input and a target)')
        pieces = [w for s in seqs for w in windows(s, self.seq_len)]
        if not pieces:
            raise UserError('Training data has no sequence with at least two items')
        counted = pieces + [w for s in extra for w in windows(s, self.seq_len)]
        counts = np.bincount(np.concatenate(counted), minlength=len(item_ids))
        n_pad = sum(self.seq_len - len(p) for p in counted)
        literal_pad = item_ids == PAD_TOKEN  # a file's literal <PAD> is the padding class (CpRec's loader)
        n_pad += int(counts[literal_pad].sum())
        self.vocab, self.pad_index = self._vocabulary(item_ids[~literal_pad], counts[~literal_pad], n_pad)
        index = pd.Series(np.arange(len(self.vocab), dtype=np.int32), index=self.vocab)
        remap = index[item_ids].values.astype(np.int32)
        self._set_itemidmap()
        rows = left_pad([remap[p] for p in pieces], self.seq_len, self.pad_index)
        if verbose:
            print('{} training sequences of length {} ({} items, vocabulary {} with padding{})'.format(
                len(rows), self.seq_len, self.n_items, self.n_vocab, self._describe()))
        return rows

    def _rows_in_vocabulary_of(self, model, events, seqs, verbose):
        self.vocab, self.pad_index, self.seq_len = model.vocab, model.pad_index, model.seq_len
        self._set_itemidmap()
        remap = self.itemidmap.reindex(events.itemidmap.index.values).values
        if np.isnan(remap).any():
            raise UserError('The training data has items the vocabulary of the given model lacks (e.g. {})'.format(
                events.itemidmap.index.values[np.isnan(remap)][0]))
        remap = remap.astype(np.int32)
        pieces = [remap[w] for s in seqs for w in windows(s, self.seq_len)]
        if not pieces:
            raise UserError('Training data has no sequence with at least two items')
        rows = left_pad(pieces, self.seq_len, self.pad_index)
        if verbose:
            print('{} training sequences of length {} in the given model\'s vocabulary of {}'.format(
                len(rows), self.seq_len, self.n_vocab))
        return rows

    def _vocab_sequences(self, vocab_data, item_ids):
        """(item ids of the training data then vocab_data's new ones in order of first appearance,
        vocab_data's sequences as indices into them)."""
        if vocab_data is None:
            raise UserError('vocabulary=all builds the vocabulary over the whole data set, as the releases do: '
                            'fit() needs the other events (e.g. the test set) as vocab_data')
        keys = [self.session_key, self.item_key, self.time_key]
        missing = [k for k in keys if k not in vocab_data.columns]
        if missing:
            raise UserError('vocab_data has no column(s): {}'.format(', '.join(missing)))
        extra = vocab_data[keys].sort_values([self.session_key, self.time_key], kind='mergesort')
        ids = extra[self.item_key].astype(str).values
        item_ids = np.concatenate([item_ids, pd.unique(ids[~pd.Index(ids).isin(item_ids)])]).astype(object)
        idx = pd.Series(np.arange(len(item_ids), dtype=np.int32), index=item_ids)[ids].values
        return item_ids, sequences_from_events(idx, session_offsets(extra[self.session_key].values))

    def uses_vocab_data(self):
        return self.vocabulary == 'all'

    def _describe(self):
        """Extra text for the line that describes the training rows."""
        return ''

    def _set_itemidmap(self):
        keep = np.arange(len(self.vocab)) != self.pad_index
        self.itemidmap = pd.Series(np.flatnonzero(keep).astype(np.int32), index=self.vocab[keep], name='ItemIdx')

    # ----------------------------------------------------------------- training
    def _loss_inputs(self):
        """Extra symbolic inputs of the training step (e.g. sampled candidates)."""
        return []

    def _loss_feed(self, labels):
        """Numeric values of :meth:`_loss_inputs` for one batch of labels."""
        return []

    def _regularization(self):
        return 0

    @property
    def skips_padding(self):
        """True when padding targets are left out of the loss (``padding_loss=skip``)."""
        return getattr(self, 'padding_loss', 'released') == 'skip'

    def _scored_rows(self, flat, labels, *aligned):
        """(rows, labels, aligned, mask) of a flattened training batch that the loss scores.

        ``flat``: (N, C) hidden rows, ``labels``: (N,), ``aligned``: other (N, ...) tensors that go
        with the rows (e.g. the sampled softmax's true-class log q). padding_loss=released: all of
        them, mask None. skip: only the rows whose label is not the padding class (a gather), mask
        None; under backends with static shapes every row and a mask (1 = a real target) for the
        loss's mean instead.
        """
        if not self.skips_padding:
            return flat, labels, list(aligned), None
        real = pt.neq(labels, self.pad_index)
        if needs_static_shapes():
            return flat, labels, list(aligned), real
        keep = flat_nonzero(real)
        return flat[keep], labels[keep], [a[keep] for a in aligned], None

    def _batch_weight(self, batch):
        """The weight of a :class:`_Batch` in the epoch's average loss: its scored targets (every
        label under padding_loss=released, the real ones under skip, which makes the batch's inputs
        when the trainer asks for the batch rather than in its step: host generators draw in the
        same order either way)."""
        if self.skips_padding:
            return int(np.count_nonzero(np.asarray(batch.prepared()[1]) != self.pad_index))
        return len(batch) * self._targets_per_row()

    def _train_hidden(self, X, random_source):
        """The top layer while training (models with dropout draw it from ``random_source``)."""
        return self._hidden(X)

    def _trainable(self):
        return list(self.shared.values())

    def _stack_layouts(self):
        """A model with ``_residual_blocks()`` loops over them when they repeat a cycle
        (:mod:`recsys_core.stacked`)."""
        if not hasattr(self, '_residual_blocks'):
            return []
        layout = StackLayout.of(self._residual_blocks(), self.weights)
        return [layout] if layout is not None else []

    def _batch_variables(self):
        """(symbolic inputs of one training batch, the input of :meth:`_train_hidden`, the labels of
        :meth:`_train_loss`, a function selecting from the hidden layer the positions the labels
        belong to). Default, next-item prediction at every position: one (B, L) matrix X, input
        X[:, :-1], labels X[:, 1:], every position."""
        X = pt.imatrix('X')
        return [X], X[:, :-1], X[:, 1:], lambda h: h

    def _batch_values(self, rows):
        """(numeric values of :meth:`_batch_variables` for a batch of training rows, the numeric
        labels :meth:`_loss_feed` gets). Called once per step; host generators may advance here."""
        return [rows], rows[:, 1:]

    def _targets_per_row(self):
        """Labels per training row (the weight of a batch in the epoch's average loss)."""
        return self.seq_len - 1

    def _host_state(self):
        """Host-side state that changes between steps (checkpointed): the sampler's generator."""
        return self._rng

    def _set_host_state(self, state):
        self._rng = state

    def _optimizer(self, learning_rate=None):
        """TF 1.x's Adam, the optimizer NextItNet and CpRec were published with (``learning_rate``:
        a symbolic rate fed per step instead of the model's)."""
        return DenseAdam(self.learning_rate if learning_rate is None else learning_rate, self.beta1)

    def _report(self):
        """A line printed before training (e.g. the parameter counts)."""
        return None

    def _training_plan(self, request):
        """Rows, weights and the compiled step; batches are the complete batches in the rows' fixed
        order (as released)."""
        rows = self._training_rows(request.data, request.verbose,
                                   request.vocab_data if self.vocabulary == 'all' else None, request.vocabulary_of)
        self.weights = self._init_weights()
        self._make_shared()
        self._rng = np.random.default_rng(self.seed + 1)
        if request.verbose and self._report():
            print(self._report())
        batch = min(self.batch_size, len(rows))
        variables, cost, updates = self._step_graph()
        step_fn = CompileOnFirstUse(lambda: compile_function(variables, cost, updates=updates))

        def batches(epoch):
            for b in range(len(rows) // batch):
                xb = _Batch(self, rows[b * batch:(b + 1) * batch])
                yield xb, self._batch_weight(xb)

        def step(xb):
            values, numeric_labels = xb.prepared()
            return float(step_fn(*values, *self._loss_feed(numeric_labels)))

        return TrainingPlan(self.n_epochs, step, batches, step_function=step_fn, host_state=self._host_state,
                            set_host_state=self._set_host_state, finish=self._sync_weights)

    def _step_graph(self, learning_rate=None):
        """(symbolic inputs, cost, updates) of one training step: the batch's variables, then
        :meth:`_loss_inputs`. ``learning_rate``: a symbolic scalar the host feeds per step (a
        schedule), else the model's own rate."""
        variables, inputs, labels, select = self._batch_variables()
        extra = self._loss_inputs()
        random_source = RandomSource(self.seed + 2)
        h = select(self._train_hidden(inputs, random_source))
        cost = self._train_loss(h, labels, extra) + self._regularization()
        updates = self._optimizer(learning_rate).updates(cost, self._trainable())
        updates.update(random_source.updates())  # dropout's generator state, advanced by every step
        return variables + extra, cost, updates

    # ----------------------------------------------------------------- scoring and ranking
    def _masked_scores(self, X):
        """Scores of the last position of (B, L) windows over the vocabulary, the padding class at -inf."""
        scores = self._log_scores(self._hidden(X)[:, -1, :])
        return pt.set_subtensor(scores[:, self.pad_index], -np.inf)

    def _scores_fn(self):
        def build():
            X = pt.imatrix('X')
            return compile_function([X], self._masked_scores(X))
        return self._function('scores', build)

    def _rank_fn(self, with_items):
        """(B, L) windows, targets[, items] -> counts of items scoring above / equal to the target."""
        def build():
            X, target, items = pt.imatrix('X'), pt.ivector('target'), pt.ivector('items')
            scores = self._masked_scores(X)
            if not with_items:  # the target is the row's own column (what -d cuda's rank kernel takes)
                return compile_function([X, target, items], rank_counts_at(scores, target))
            return compile_function([X, target, items], rank_counts(scores[:, items],
                                                                    scores[pt.arange(X.shape[0]), target]))
        return self._function(('rank', with_items), build)

    def windows_of(self, histories):
        """Histories (lists of model indices, oldest first) as the model's (n, T-1) input windows."""
        return left_pad(histories, self.seq_len - 1, self.pad_index)

    def rank_last_items(self, histories, targets, mode, max_cut, cut_offs=None):
        """Ranks of each target after its history (the last-item protocol; batched). With
        ``cut_offs``, a (len(cut_offs), n) array, one row per cut-off (all equal here; CpRec's fast
        inference takes its top_k row from its pruned list)."""
        if cut_offs is not None:
            return np.tile(self.rank_last_items(histories, targets, mode, max_cut), (len(cut_offs), 1))
        fn = self._rank_fn(False)
        X = self.windows_of(histories)
        ranks = []
        for s in range(0, len(X), EVAL_BATCH):
            greater, equal = fn(X[s:s + EVAL_BATCH], np.asarray(targets[s:s + EVAL_BATCH], dtype=np.int32),
                                np.zeros(0, dtype=np.int32))
            ranks.append(ranks_from_counts(greater.astype(np.float64), equal.astype(np.float64), mode))
        return np.concatenate(ranks)

    def session_ranker(self, batch_size, mode='standard', items=None):
        """Evaluation stepper for recsys_core.evaluation: a sliding input window per slot."""
        self.check_trained()
        item_idx = None if items is None else self.item_indices(items)
        return WindowRanker(self, batch_size, item_idx)

    def _history_scores(self, histories):
        return np.asarray(self._scores_fn()(self.windows_of(histories)))

    # ----------------------------------------------------------------- model files
    def _model_state(self):
        return {'vocab': self.vocab, 'pad_index': self.pad_index, 'seq_len': self.seq_len,
                'weights': dict(self.weights or {})}

    def _restore_state(self, state):
        self.vocab, self.pad_index, self.seq_len = state['vocab'], state['pad_index'], state['seq_len']
        self.weights = dict(state['weights'])
        self._set_itemidmap()


class _Batch:
    """One training batch: its rows (``len`` is their count) and, made once on first use by the
    model's ``_batch_values``, the step's input values and the numeric labels."""

    __slots__ = ('model', 'rows', '_prepared')

    def __init__(self, model, rows):
        self.model, self.rows, self._prepared = model, rows, None

    def prepared(self):
        if self._prepared is None:
            self._prepared = self.model._batch_values(self.rows)
        return self._prepared

    def __len__(self):
        return len(self.rows)


class WindowRanker:
    """Per slot, the last T-1 items of its session (padding before); reset when a session ends."""

    def __init__(self, model, batch_size, items):
        self.model, self.items = model, items
        self.fn = model._rank_fn(items is not None)
        self.window = np.full((batch_size, model.seq_len - 1), model.pad_index, dtype=np.int32)

    def step(self, inp, out, last):
        self.window[:, :-1] = self.window[:, 1:]
        self.window[:, -1] = inp
        items = self.items if self.items is not None else np.zeros(0, dtype=np.int32)
        greater, equal = self.fn(self.window, np.asarray(out, dtype=np.int32), items)
        self.window[np.asarray(last, dtype=bool)] = self.model.pad_index
        return greater, equal

    def shrink(self, keep):
        self.window = self.window[keep]
