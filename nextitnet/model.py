"""The NextItNet model: causal dilated residual CNN over left-padded item sequences.

The class is also the base of CpRec: subclasses change the vocabulary order (``_vocabulary``), the
weights (``_init_weights``), the input layer (``_embed``), which kernels each convolution uses
(``_conv_names``), the training loss (``_train_loss``) and the evaluation scores (``_log_scores``).
"""
import time
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt

from gpu_ops.ranking import rank_counts, ranks_from_counts
from recsys_core import data as datatools
from recsys_core.backend import compile_function
from recsys_core.data import TrainingEvents, session_offsets
from recsys_core.errors import UserError
from recsys_core.optim import DenseAdam
from recsys_core.params import KEY_PARAMS, Param, ParamSet
from recsys_core.persistence import load_model, save_model
from recsys_core.sequences import left_pad, sequences_from_events, windows
from recsys_core.threads import ThreadTuner

from . import sampled_softmax
from .backbone import receptive_field, residual_stack, truncated_normal

PAD_TOKEN = '<PAD>'
EVAL_BATCH = 256


def positive(v):
    return None if v > 0 else 'must be positive'


def non_negative(v):
    return None if v >= 0 else 'must be >= 0'


def dilation_list(v):
    return None if v and all(d > 0 for d in v) else 'must be a non-empty list of positive dilations (e.g. 1/2/1/2)'


def fraction(v):
    return None if 0 < v <= 1 else 'must be in (0, 1]'


class NextItNet(ParamSet):
    """NextItNet (Yuan et al., WSDM 2019) as released in fajieyuan/WSDM2019-nextitnet.

    ``dilations`` lists one entry per residual block; a block's second convolution uses twice
    that dilation ([1, 4] = layers with dilations 1, 2, 4, 8). Differences from the release:
    - independent Python RNG: initial weights have the released distributions (and, with
      ``tied_init``, the released identical start of same-shaped conv kernels), not TF's values;
    - training uses every complete batch (the release's strict ``<`` also skipped the last full
      batch when the row count was a multiple of the batch size); the fixed order is kept;
    - sequences longer than ``max_len`` are cut into windows from their end (the README's advice)
      instead of the loader's truncation;
    - the padding/UNK class is never recommended: evaluation ranks real items only;
    - a literal ``<PAD>`` token in the data is the padding class (the release's tokenizer would
      make an ordinary token ``PAD`` of it; CpRec's loader counts it as padding);
    - ``vocabulary=train`` (default) builds the vocabulary (and CpRec's frequencies, and T when
      max_len=0) from the training data only; the releases build them from the whole file before
      splitting, so test-only items are classes (never trained as targets) and count for T and the
      padding: ``vocabulary=all`` (alias ``vocab``) with ``fit(train, vocab_data=test)`` does that.
      The release numbers its first-appearance ids over the unsplit file; here the training data's
      items come first, then vocab_data's new ones (which only changes which initial row an item
      gets).
    """

    PARAMS = [
        Param('dilated_channels', 100, positive, doc='residual width C (= embedding size)'),
        Param('dilations', [1, 2, 1, 2, 1, 2], dilation_list, item_type=int),
        Param('kernel_size', 3, positive),
        Param('learning_rate', 0.001, positive),
        Param('beta1', 0.9, lambda v: None if 0 <= v < 1 else 'must be in [0, 1)'),
        Param('batch_size', 128, positive),
        Param('n_epochs', 10, non_negative),
        Param('max_len', 0, non_negative, doc='sequence length T; 0 = the longest training sequence'),
        Param('is_negsample', False, doc='sampled softmax (TF log-uniform sampler) instead of the full softmax'),
        Param('sample_percentage', 0.2, fraction, doc='sampled candidates as a fraction of the vocabulary'),
        Param('tied_init', True, doc='same-shaped conv kernels start equal, as the release (op seed 1)'),
        Param('seed', 42),
        Param('vocabulary', 'train', lambda v: None if v in ('train', 'all') else 'must be train or all',
              doc="'all': ids, frequencies and T over the training data and fit()'s vocab_data, as the "
                  "releases (which build them before splitting); alias vocab"),
    ] + KEY_PARAMS
    ALIASES = {'vocab': 'vocabulary'}
    """Other names set_params accepts (``vocab`` is the attribute holding the vocabulary itself)."""

    def __init__(self, **kwargs):
        self.weights = None
        self.itemidmap = None
        self.vocab = None
        self.pad_index = None
        self.seq_len = None
        self.error_during_train = False
        self.shared = None
        self._compiled = {}
        super().__init__(**kwargs)

    # ----------------------------------------------------------------- vocabulary and data
    @property
    def n_vocab(self):
        return len(self.vocab)

    @property
    def n_items(self):
        return len(self.itemidmap)

    def _vocabulary(self, item_ids, counts, n_pad):
        """Vocabulary tokens in index order and the padding index.

        NextItNet: index 0 is the padding/UNK class, items follow in order of first appearance.
        item_ids are in first-appearance order; counts are their frequencies in the training rows.
        """
        return np.concatenate([[PAD_TOKEN], item_ids]).astype(object), 0

    def set_params(self, verbose=True, **kwargs):
        """ParamSet.set_params, also under the names of ``ALIASES`` (echoed and kept under the
        canonical name)."""
        for alias, name in self.ALIASES.items():
            if alias in kwargs:
                if name in kwargs:
                    raise UserError('Parameter {} is given twice (as {} and as {})'.format(name, alias, name))
                kwargs = OrderedDict((name if k == alias else k, v) for k, v in kwargs.items())
        super().set_params(verbose=verbose, **kwargs)

    def _training_rows(self, data, verbose, vocab_data=None):
        """Left-padded (rows, T) matrix in model indices, building the vocabulary on the way.

        With vocabulary=all, ``vocab_data``'s sequences (cut into windows of the same T) also count
        for the vocabulary, the frequencies, the padding and, when max_len=0, T; rows are only the
        training data's.
        """
        events = TrainingEvents(data, self.session_key, self.item_key, self.time_key, verbose)
        seqs = sequences_from_events(events.items, events.offsets)
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
            print('{} training sequences of length {} ({} items, vocabulary {} with padding, receptive field {})'.format(
                len(rows), self.seq_len, self.n_items, self.n_vocab, receptive_field(self.dilations, self.kernel_size)))
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

    def _set_itemidmap(self):
        keep = np.arange(len(self.vocab)) != self.pad_index
        self.itemidmap = pd.Series(np.flatnonzero(keep).astype(np.int32), index=self.vocab[keep], name='ItemIdx')

    # ----------------------------------------------------------------- weights
    def _conv_names(self, block):
        """Names of the (W, b) pairs of block ``block``'s two convolutions (no sharing)."""
        return ('conv{}a'.format(block), 'conv{}b'.format(block))

    def _distinct_convs(self):
        return list(dict.fromkeys(name for i in range(len(self.dilations)) for name in self._conv_names(i)))

    def _init_weights(self):
        rng = np.random.default_rng(self.seed)
        C, V = self.dilated_channels, self.n_vocab
        w = OrderedDict()
        w['E'] = truncated_normal(rng, (V, C), 0.02)
        w.update(self._init_convs(rng))
        if self.is_negsample:
            w['Ws'] = (rng.standard_normal((V, C)) * 0.01).astype('float32')
            w['bs'] = np.full(V, 0.1, dtype='float32')
        else:
            w['Wo'] = truncated_normal(rng, (C, V), 0.02)
            w['bo'] = np.zeros(V, dtype='float32')
        return w

    def _init_convs(self, rng):
        C, k = self.dilated_channels, self.kernel_size
        w = OrderedDict()
        tied = truncated_normal(rng, (k, C, C), 0.02) if self.tied_init else None
        for name in self._distinct_convs():
            w[name + '_W'] = tied.copy() if tied is not None else truncated_normal(rng, (k, C, C), 0.02)
            w[name + '_b'] = np.zeros(C, dtype='float32')
        for i in range(len(self.dilations)):
            for part in 'ab':
                w['ln{}{}_g'.format(i, part)] = np.ones(C, dtype='float32')
                w['ln{}{}_b'.format(i, part)] = np.zeros(C, dtype='float32')
        return w

    def _make_shared(self):
        self.shared = OrderedDict((k, pytensor.shared(v, name=k)) for k, v in self.weights.items())

    def _sync_weights(self):
        self.weights = OrderedDict((k, v.get_value()) for k, v in self.shared.items())

    # ----------------------------------------------------------------- graph pieces
    def _embed(self, X):
        return self.shared['E'][X]

    def _hidden(self, X):
        """Final residual output for a (B, L) matrix of item indices: (B, L, C)."""
        s = self.shared
        kernels = [[(s[n + '_W'], s[n + '_b']) for n in self._conv_names(i)] for i in range(len(self.dilations))]
        norms = [[(s['ln{}{}_g'.format(i, p)], s['ln{}{}_b'.format(i, p)]) for p in 'ab']
                 for i in range(len(self.dilations))]
        return residual_stack(self._embed(X), self.dilations, kernels, norms)

    def _loss_inputs(self):
        """Extra symbolic inputs of the training function (the sampled-softmax candidates)."""
        if not self.is_negsample:
            return []
        return [pt.ivector('sampled'), pt.fvector('true_logq'), pt.fvector('sampled_logq')]

    def _loss_feed(self, labels):
        if not self.is_negsample:
            return []
        n = max(1, int(self.sample_percentage * self.n_vocab))
        return list(sampled_softmax.draw(self._rng, labels.ravel(), n, self.n_vocab))

    def _train_loss(self, h, labels, extra):
        """Mean loss over every position (padding targets included, as released)."""
        flat = h.reshape((-1, h.shape[2]))
        y = labels.ravel()
        if self.is_negsample:
            return sampled_softmax.sampled_softmax_loss(flat, y, self.shared['Ws'], self.shared['bs'], *extra)
        logits = pt.dot(pt.maximum(flat, 0), self.shared['Wo']) + self.shared['bo']
        return cross_entropy(logits, y)

    def _log_scores(self, h_last):
        """Scores over the whole vocabulary for the last position (monotone in its probability)."""
        if self.is_negsample:
            return pt.dot(h_last, self.shared['Ws'].T) + self.shared['bs']
        return pt.dot(pt.maximum(h_last, 0), self.shared['Wo']) + self.shared['bo']

    def _regularization(self):
        return 0

    def _trainable(self):
        return list(self.shared.values())

    # ----------------------------------------------------------------- training
    def fit(self, data, sample_store=None, store_type=None, verbose=True, max_batches=None, vocab_data=None):
        """Train on a DataFrame of events (run.py's sample_store/store_type are unused here).

        max_batches stops each epoch early (benchmarks time a fixed number of steps with it).
        vocab_data: events with the same columns (e.g. the test set) that join the vocabulary, its
        frequencies and T without being trained on; required with vocabulary=all, unused with
        vocabulary=train.
        """
        rows = self._training_rows(data, verbose, vocab_data)
        self.weights = self._init_weights()
        self._make_shared()
        self._compiled = {}
        self._rng = np.random.default_rng(self.seed + 1)
        if verbose:
            print(self.parameter_report())
        batch = min(self.batch_size, len(rows))
        n_batches = len(rows) // batch if max_batches is None else min(len(rows) // batch, max_batches)
        X = pt.imatrix('X')
        extra = self._loss_inputs()
        h = self._hidden(X[:, :-1])
        loss = self._train_loss(h, X[:, 1:], extra)
        cost = loss + self._regularization()
        optimizer = DenseAdam(self.learning_rate, self.beta1)
        step = compile_function([X] + extra, cost, updates=optimizer.updates(cost, self._trainable()))
        self.error_during_train = False
        self.epoch_stats = []
        positions = batch * (self.seq_len - 1)
        with ThreadTuner() as tuner:  # fewer threads while another process takes the cores (recsys_core.threads)
            self._epochs(step, rows, batch, n_batches, positions, tuner, verbose)
        self._sync_weights()
        return self

    def _epochs(self, step, rows, batch, n_batches, positions, tuner, verbose):
        """The epoch loop of :meth:`fit` (stops, model marked failed, on a NaN loss)."""
        for epoch in range(self.n_epochs):
            t0 = time.time()
            total = 0.0
            for b in range(n_batches):
                xb = rows[b * batch:(b + 1) * batch]
                total += float(step(xb, *self._loss_feed(xb[:, 1:])))
                tuner.tick()
            avg = total / max(n_batches, 1)
            dt = time.time() - t0
            if np.isnan(avg):
                print('Epoch {}: NaN error!'.format(epoch))
                self.error_during_train = True
                break
            self.epoch_stats.append({'loss': avg, 'seconds': dt, 'minibatches': n_batches})
            if verbose:
                print('Epoch{} --> loss: {:.6f} \t({:.2f}s) \t[{:.2f} mb/s | {:.0f} e/s]'.format(
                    epoch + 1, avg, dt, n_batches / dt, n_batches * positions / dt))

    # ----------------------------------------------------------------- parameter counts
    def parameter_counts(self):
        """Parameters by part (input, middle, output), shared tensors counted once."""
        counts = OrderedDict([('input', 0), ('middle', 0), ('output', 0)])
        for name, value in self.weights.items():
            counts[self._part(name)] += int(np.prod(value.shape))
        counts['total'] = sum(counts.values())
        return counts

    def _part(self, name):
        if name.startswith(('conv', 'ln')):
            return 'middle'
        return 'input' if name.startswith(('E', 'in_')) else 'output'

    def parameter_report(self):
        c = self.parameter_counts()
        return 'Parameters: {:,} (input {:,}, middle {:,}, output {:,})'.format(
            c['total'], c['input'], c['middle'], c['output'])

    # ----------------------------------------------------------------- evaluation and recommendation
    def check_trained(self):
        if self.weights is None:
            raise UserError('The model has not been trained')
        if self.error_during_train:
            raise UserError('The model failed during training (NaN loss) and cannot be used')

    def _function(self, key, build):
        if self.shared is None:
            self._make_shared()
        if key not in self._compiled:
            self._compiled[key] = build()
        return self._compiled[key]

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
            target_score = scores[pt.arange(X.shape[0]), target]
            return compile_function([X, target, items], rank_counts(scores[:, items] if with_items else scores,
                                                                    target_score))
        return self._function(('rank', with_items), build)

    def windows_of(self, histories):
        """Histories (lists of model indices, oldest first) as the model's (n, T-1) input windows."""
        return left_pad(histories, self.seq_len - 1, self.pad_index)

    def rank_last_items(self, histories, targets, mode, max_cut, cut_offs=None):
        """Ranks of each target after its history (the paper protocol; batched). With ``cut_offs``,
        a (len(cut_offs), n) array, one row per cut-off (all equal here; CpRec's fast inference
        takes its top_k row from its pruned list)."""
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
        return _WindowRanker(self, batch_size, item_idx)

    def item_indices(self, item_ids, skip_unknown=False):
        """Map item ids (any type; compared as strings) to model indices."""
        return datatools.map_item_ids(self.itemidmap, item_ids, skip_unknown)

    def recommend(self, sessions, k=20, exclude_seen=False, skip_unknown=False):
        """Top-k next items for each session history: (item_ids, scores) pairs, best first."""
        self.check_trained()
        single = len(sessions) == 0 or not isinstance(sessions[0], (list, tuple, np.ndarray))
        histories = [sessions] if single else sessions
        idx = [self.item_indices(s, skip_unknown) for s in histories]
        if any(len(s) == 0 for s in idx):
            raise UserError('Every session needs at least one known item')
        scores = np.asarray(self._scores_fn()(self.windows_of(idx)))
        k = min(k, self.n_items)
        results = []
        for s, row in zip(idx, scores):
            if exclude_seen:
                row[s] = -np.inf
            top = datatools.top_k_indices(row, k)
            results.append((self.vocab[top], row[top]))
        return results[0] if single else results

    # ----------------------------------------------------------------- model files
    def get_state(self):
        return {'params': dict(self.get_params()), 'vocab': self.vocab, 'pad_index': self.pad_index,
                'seq_len': self.seq_len, 'weights': dict(self.weights), 'error_during_train': self.error_during_train}

    @classmethod
    def from_state(cls, state):
        model = cls()
        for k, v in state['params'].items():
            setattr(model, k, v)
        model.vocab, model.pad_index, model.seq_len = state['vocab'], state['pad_index'], state['seq_len']
        model.weights = OrderedDict(state['weights'])
        model.error_during_train = state['error_during_train']
        model._set_itemidmap()
        return model

    def savemodel(self, path):
        if self.weights is None:
            raise UserError('Cannot save a model that has not been trained')
        save_model(self, path)

    @classmethod
    def loadmodel(cls, path):
        return load_model(path, cls)


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy of integer labels, in log-sum-exp form."""
    top = logits.max(axis=1, keepdims=True)
    shifted = logits - top
    log_norm = pt.log(pt.exp(shifted).sum(axis=1))
    return (log_norm - shifted[pt.arange(labels.shape[0]), labels]).mean()


class _WindowRanker:
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
