"""The GRU4Rec model: the original's parameters, training semantics, prediction and model files.

By default a training step is the Theano original's (github hidasib/GRU4Rec, a4ed5fb), the code
every published GRU4Rec number was measured with. benchmarks/compare_original_steps.py runs the
original itself (through ../shared/tools/theano_original) beside this model from the same initial
weights and compares the losses and every weight step by step; benchmarks/compare_original.py
compares metrics over several seeds (numbers in benchmarks/RESULTS.md).

Two parameters select the official PyTorch port's step instead (github
hidasib/GRU4Rec_PyTorch_Official; benchmarks/compare_official_steps.py follows it step by step):
- ``gru_cell``: 'theano' (default) is the original's GRU step; 'pytorch' is torch.nn.GRUCell with the
  port's compatibility initialisation. They are different functions: the original applies the reset
  gate to the state before the hidden product, GRUCell to the product (plus a hidden-side bias).
  With one layer both train to the same accuracy; with two layers and momentum the port's cell
  trained to lower loss and up to 11% higher MRR@20 than the original's on generated data
  (benchmarks/RESULTS.md).
- ``sparse_update``: how an item row used several times in one step (an item that is an input, a
  target and sampled negatives at once) is updated. 'per_occurrence' (default) is the original's
  graph: every occurrence's step is computed from the state before the step and all are added to
  the row, so with momentum a row used k times gets k momentum terms and k L2 terms; the adagrad
  accumulator gets every occurrence's square (recsys_core.optim says exactly what each optimizer
  does). 'per_row' is the port's: the occurrences' gradients are summed and the row is updated once.
  With a shared embedding, momentum and thousands of popularity-sampled negatives this matters:
  on the golden data (bpr-max, momentum 0.3) 'per_row' gave 7% higher Recall@20 and 16% higher
  MRR@20 than the original's update.
Model files record both; files written before a parameter existed load with the step they were
trained with ('theano' cell, 'per_row' updates).

Other differences from the Theano original, all deliberate:
- adam uses beta2 for the second-moment bias correction and the gradient (not its square) for the
  first moment in the sparse update; the original had both slips. No published setting uses adam.
  Measured step by step (compare_original_steps.py, adam 0.9/0.999): the original's first step of a
  dense bias was 10x ours and its item bias moved by up to 14x ours, so the two adams train
  differently from the first step on. It is the only setting of that comparison that differs.
- Random streams (dropout, negative samples) are PyTensor's, seeded by ``seed`` (42 by default), so
  runs match the original in distribution, not bit for bit; weight initialisation uses numpy's seed
  42 in the original order whatever ``seed`` is, so initial weights are identical (the original's
  only other random source is its generator of dropout masks and negatives, seeded 12345).
- Repeated rows written by the original's ``set_subtensor`` (the momentum velocity) keep the last
  occurrence's value, as Theano does on the CPU; on a GPU which one survives was not defined.
- batch_size larger than the number of sessions is capped instead of failing.
"""
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt

import gpu_ops
from gpu_ops.layout import contiguous
from recsys_core import data as datatools
from recsys_core.activations import build_activation, check_activation
from recsys_core.backend import compile_function
from recsys_core.batching import Shrink, session_parallel
from recsys_core.errors import UserError
from recsys_core.optim import ADAPTS, N_ADAPT_PARAMS, Optimizer, SparseParam
from recsys_core.model import NeuralRecommender
from recsys_core.params import KEY_PARAMS, Param, format_set_line, non_negative, one_of, positive, positive_list, probability
from recsys_core.randomness import RandomSource, dropout
from recsys_core.sampling import SampleStore
from recsys_core.trainer import CompileOnFirstUse, TrainingPlan

from .losses import LOSSES, sampled_loss


_layers = positive_list('sizes', '100/100')
_NO_NEGATIVES = ('n_sample=0 uses only the other targets of the mini-batch as negatives, so it needs at least '
                 '2 sessions per mini-batch ({}): use batch_size >= 2 or n_sample > 0')


def _embedding(v):
    if v == 'layersize':
        return None
    try:
        return None if int(v) >= 0 else 'must be >= 0 or "layersize"'
    except (TypeError, ValueError):
        return 'must be an integer >= 0 or "layersize"'


class _EmbeddingParam(Param):
    """embedding is an int, or 'layersize' (the size of the first GRU layer)."""

    def cast(self, value):
        if value == 'layersize':
            return value
        if isinstance(value, str):
            return int(value)
        if isinstance(value, bool) or not float(value).is_integer():
            raise ValueError('expected an integer or "layersize"')
        return int(value)


class _AdaptParam(Param):
    """adapt is a string or None ('None' in a parameter string means plain SGD)."""

    def cast(self, value):
        return None if value in (None, 'None', 'none', 'sgd') else value


GRU_CELLS = ('theano', 'pytorch')
"""The two GRU steps of the reference implementations (see :meth:`GRU4Rec._gru_layer`)."""

SPARSE_UPDATES = ('per_occurrence', 'per_row')
"""How an item row used several times in one step is updated (recsys_core.optim)."""


class GRU4Rec(NeuralRecommender):
    """Session-based recommender with GRU layers, trained with session-parallel mini-batches."""

    PARAMS = [
        Param('loss', 'bpr-max', one_of(LOSSES)),
        Param('final_act', 'linear', check_activation(allow_softmax=True)),
        Param('hidden_act', 'tanh', check_activation(allow_softmax=False)),
        Param('layers', [100], _layers, item_type=int),
        Param('n_epochs', 10, non_negative),
        Param('batch_size', 32, positive),
        Param('dropout_p_hidden', 0.0, probability),
        Param('dropout_p_embed', 0.0, probability),
        Param('learning_rate', 0.1, positive),
        Param('momentum', 0.0, probability),
        Param('lmbd', 0.0, non_negative),
        _EmbeddingParam('embedding', 0, _embedding),
        Param('n_sample', 2048, non_negative),
        Param('sample_alpha', 0.75, non_negative),
        Param('smoothing', 0.0, probability),
        Param('constrained_embedding', False),
        _AdaptParam('adapt', 'adagrad', one_of(ADAPTS)),
        Param('adapt_params', [], item_type=float),
        Param('grad_cap', 0.0, non_negative),
        Param('bpreg', 1.0, non_negative),
        Param('logq', 0.0, non_negative),
        Param('sigma', 0.0, non_negative),
        Param('init_as_normal', False),
        Param('train_random_order', False),
        Param('time_sort', True),
        Param('gru_cell', 'theano', one_of(GRU_CELLS)),
        Param('sparse_update', 'per_occurrence', one_of(SPARSE_UPDATES)),
        Param('seed', 42, non_negative),
    ] + KEY_PARAMS

    # model files written before these parameters existed: the original's step, rows updated once
    LEGACY_DEFAULTS = {'gru_cell': 'theano', 'sparse_update': 'per_row'}

    def __init__(self, **kwargs):
        self._predict_state = None
        super().__init__(**kwargs)

    # ----------------------------------------------------------------- parameters
    def check_params(self, p):
        if p['final_act'] == 'softmax_logit' and p['loss'] != 'xe_logit':
            return 'final_act=softmax_logit only works with loss=xe_logit'
        if p['loss'] == 'xe_logit' and p['final_act'] != 'softmax_logit':
            return 'loss=xe_logit needs final_act=softmax_logit'
        if len(p['adapt_params']) < N_ADAPT_PARAMS[p['adapt']]:
            return 'adapt={} needs {} adapt_params (e.g. adapt_params=0.9/0.999)'.format(
                p['adapt'], N_ADAPT_PARAMS[p['adapt']])
        if p['n_sample'] == 0 and p['batch_size'] < 2:
            return _NO_NEGATIVES.format('batch_size={}'.format(p['batch_size']))
        return None

    def after_set_params(self, names, maxk, maxv, verbose):
        if self.embedding == 'layersize':
            self.embedding = self.layers[0]
            if verbose:
                print(format_set_line('embedding', self.embedding, maxk, maxv))

    # ----------------------------------------------------------------- weights
    def _init_weights(self):
        """Initial weights drawn from numpy's seed 42 in the reference implementation's order.

        gru_cell='theano': the Theano original's order and layout (identical values). gru_cell='pytorch':
        the official PyTorch port's compatibility initialisation (identical values wherever the port
        runs): per GRUCell layer three input and three hidden matrices drawn as (out, in) and
        transposed, the input blocks reordered from the port's (r, z, n) to this layout's (n | r | z);
        the one-hot input layer (the port's GRUEmbedding) draws Wx0, Wrz0, Wh0 in that order.
        """
        rng = np.random.RandomState(42)

        def matrix(shape):
            sigma = self.sigma if self.sigma != 0 else np.sqrt(6.0 / (shape[0] + shape[1]))
            if self.init_as_normal:
                return (rng.randn(*shape) * sigma).astype('float32')
            return (rng.rand(*shape) * sigma * 2 - sigma).astype('float32')

        w = OrderedDict()
        if self.constrained_embedding:
            n_in = self.layers[-1]
        elif self.embedding:
            w['E'] = matrix((self.n_items, self.embedding))
            n_in = self.embedding
        else:
            n_in = self.n_items
        for i, h in enumerate(self.layers):
            fan_in = self.layers[i - 1] if i > 0 else n_in
            names = ['Wx{}'.format(i), 'Wh{}'.format(i), 'Wrz{}'.format(i)]
            if self._torch_layer(i):
                r, z, n = (matrix((h, fan_in)).T for _ in range(3))
                hr, hz, hn = (matrix((h, h)).T for _ in range(3))
                w[names[0]], w[names[1]], w[names[2]] = np.hstack([n, r, z]), hn, np.hstack([hr, hz])
                w['Bhh{}'.format(i)] = np.zeros(3 * h, dtype='float32')
            elif self.gru_cell == 'pytorch':  # the port's GRUEmbedding: the original's step, its own draw order
                w[names[0]] = np.hstack([matrix((fan_in, h)) for _ in range(3)])
                w[names[2]] = np.hstack([matrix((h, h)) for _ in range(2)])
                w[names[1]] = matrix((h, h))
            else:
                w[names[0]] = np.hstack([matrix((fan_in, h)) for _ in range(3)])
                w[names[1]] = matrix((h, h))
                w[names[2]] = np.hstack([matrix((h, h)) for _ in range(2)])
            w['Bh{}'.format(i)] = np.zeros(3 * h, dtype='float32')
        w['Wy'] = matrix((self.n_items, self.layers[-1]))
        w['By'] = np.zeros(self.n_items, dtype='float32')
        return OrderedDict((k, np.ascontiguousarray(w[k])) for k in self._init_weight_names())

    def _torch_layer(self, i):
        """True for the layers that step as torch.nn.GRUCell (gru_cell='pytorch'; the port computes a
        one-hot input layer in the original's form)."""
        return self.gru_cell == 'pytorch' and not (i == 0 and self._input_mode() == 'onehot')

    # ----------------------------------------------------------------- network
    def _input_mode(self):
        if self.constrained_embedding:
            return 'shared'
        return 'embedding' if self.embedding else 'onehot'

    def _gru(self, x, H, R, drop_hidden, srng, first_layer_rows=None):
        """GRU layers on input rows ``x``; returns (last output, new hidden states).

        In the one-hot mode the first layer's input product is the gathered rows of Wx0
        (``first_layer_rows``) instead of ``x @ Wx0``. Rows with R == 1 are zeroed after the step.
        """
        S = self.shared
        H_new = []
        y = x
        for i in range(len(self.layers)):
            if i == 0 and first_layer_rows is not None:
                vec = first_layer_rows + S['Bh0']
            else:
                vec = pt.dot(y, S['Wx{}'.format(i)]) + S['Bh{}'.format(i)]
            y = self._gru_layer(i, vec, H[i])
            y = dropout(y, drop_hidden, srng)
            H_new.append(y if R is None else y * (1.0 - R[:, None]))
        return y, H_new

    def _gru_layer(self, i, vec, H):
        """One GRU step of layer ``i`` from its input pre-activations ``vec`` = x Wx + Bh (n | r | z).

        'theano' (the original): r, z = sigmoid(vec[:, h:] + H Wrz); c = act((r * H) Wh + vec[:, :h]);
        H' = (1 - z) H + z c.
        'pytorch' (torch.nn.GRUCell, used by the official port for every layer but a one-hot input
        layer): r, z = sigmoid(vec[:, h:] + H Wrz + Bhh[h:]); n = act(vec[:, :h] + r (H Wh + Bhh[:h]));
        H' = (1 - z) n + z H. The reset gate acts after the hidden product, and the hidden side has
        its own bias. The two are different functions; with two or more layers they train to
        different accuracy (benchmarks/RESULTS.md).
        """
        S = self.shared
        h = self.layers[i]
        act = build_activation(self.hidden_act)
        Wh, Wrz = S['Wh{}'.format(i)], S['Wrz{}'.format(i)]
        # contiguous(): see gpu_ops.layout (strided inputs, and the activation kept out of fused loops)
        if not self._torch_layer(i):
            rz = pt.sigmoid(contiguous(vec[:, h:]) + pt.dot(H, Wrz))
            cand = contiguous(act(pt.dot(H * contiguous(rz[:, :h]), Wh) + contiguous(vec[:, :h])))
            z = contiguous(rz[:, h:])
            return (1.0 - z) * H + z * cand
        Bhh = S['Bhh{}'.format(i)]
        rz = pt.sigmoid(contiguous(vec[:, h:]) + pt.dot(H, Wrz) + Bhh[h:])
        cand = contiguous(act(contiguous(vec[:, :h]) + contiguous(rz[:, :h]) * (pt.dot(H, Wh) + Bhh[:h])))
        z = contiguous(rz[:, h:])
        return (1.0 - z) * cand + z * H

    def _hidden_inputs(self):
        return [pt.matrix('H{}'.format(i), dtype='float32') for i in range(len(self.layers))]

    def _build_train(self, store):
        """Compile the training step: (X, Y, R, sample batch index, *H) -> (cost, *H_new)."""
        S = self.shared
        srng = RandomSource(self.seed)
        X, Y = pt.ivector('X'), pt.ivector('Y')
        R = pt.vector('R', dtype='float32')
        si = pt.lscalar('si')
        H = self._hidden_inputs()
        M = X.shape[0]
        Yall = pt.concatenate([Y, pt.cast(store.batch(si), 'int32')]) if store is not None else Y
        mode = self._input_mode()
        first_rows = None
        # the item-indexed tables this step updates: (table, distinct rows, their gathered values,
        # each occurrence's position among the distinct rows)
        if mode == 'shared':  # one table for inputs and outputs: the original's index vector is X then Y
            rows, inv = gpu_ops.unique_inverse(pt.concatenate([X, Yall]))
            gathered = S['Wy'][rows]
            x_rows = gathered[inv[:M]]
            x = dropout(x_rows, self.dropout_p_embed, srng)
            input_table = (S['Wy'], rows, gathered, inv)
            score_rows, score_cols = gathered, inv[M:]
        else:
            rows_x, inv_x = gpu_ops.unique_inverse(X)
            table = S['E'] if mode == 'embedding' else S['Wx0']
            gathered_x = table[rows_x]
            x_rows = gathered_x[inv_x]
            if mode == 'embedding':
                x = dropout(x_rows, self.dropout_p_embed, srng)
            else:
                x, first_rows = None, x_rows
            input_table = (table, rows_x, gathered_x, inv_x)
            rows_y, inv_y = gpu_ops.unique_inverse(Yall)
            gathered_y = S['Wy'][rows_y]
            output_table = (S['Wy'], rows_y, gathered_y, inv_y)
            score_rows, score_cols = gathered_y, inv_y
        rows_b, inv_b = gpu_ops.unique_inverse(Yall)
        gathered_b = S['By'][rows_b]
        bias = gathered_b[inv_b]
        h, H_new = self._gru(x, H, R, self.dropout_p_hidden, srng, first_rows)
        # each distinct item is scored once, then its column is repeated (gpu_ops.columns)
        offset = bias
        if self.logq:
            prior = self.shared_prior[Yall]
            if store is not None:
                prior = pt.concatenate([prior[:M], prior[M:] ** self.sample_alpha])
            offset = offset - self.logq * pt.log(prior)
        scores = gpu_ops.score_columns(pt.dot(score_rows, h.T), score_cols, offset)
        loss = sampled_loss(scores, self.loss, self.final_act, self.smoothing, self.bpreg)
        cost = pt.cast(loss / self.batch_size, 'float32')
        dense = [S[k] for k in S if k.startswith(('Wx', 'Wh', 'Wrz', 'Bh')) and not (k == 'Wx0' and mode == 'onehot')]
        opt = Optimizer(self.learning_rate, self.adapt, self.adapt_params, self.momentum, self.lmbd, self.grad_cap)
        if self.sparse_update == 'per_row':
            sparse = [SparseParam(*input_table[:3])]
            if mode != 'shared':
                sparse.append(SparseParam(*output_table[:3]))
            sparse.append(SparseParam(S['By'], rows_b, gathered_b))
            updates = opt.updates(cost, dense, sparse)
        else:  # the original's: one update per occurrence, with one gradient row per occurrence
            grads = pytensor.grad(cost, dense + [x_rows, scores, bias])
            g_x, g_scores, g_bias = grads[len(dense):]
            g_out = pt.dot(g_scores.T, h)  # the score of column j is h . Wy[Yall[j]] + By[Yall[j]]
            sparse, sparse_grads = [SparseParam(*input_table)], [g_x]
            if mode == 'shared':  # the input rows' gradients, then the output rows' (the Op reads both blocks)
                sparse_grads = [(g_x, g_out)]
            else:
                sparse.append(SparseParam(*output_table))
                sparse_grads.append(g_out)
            sparse.append(SparseParam(S['By'], rows_b, gathered_b, inv_b))
            sparse_grads.append(g_bias)
            updates = opt.updates(cost, dense, sparse, grads=grads[:len(dense)] + sparse_grads)
        updates.update(srng.updates())
        return compile_function([X, Y, R, si] + H, [cost] + H_new, updates=updates)

    def _scores(self, h, item_rows=None):
        """Prediction scores (final activation; softmax for softmax_logit; no logq)."""
        S = self.shared
        if item_rows is None:
            scores = pt.dot(h, S['Wy'].T) + S['By']
        else:
            scores = pt.dot(h, S['Wy'][item_rows].T) + S['By'][item_rows]
        act = 'softmax' if self.final_act == 'softmax_logit' else self.final_act
        return build_activation(act)(scores)

    def _input_rows(self, X):
        mode = self._input_mode()
        S = self.shared
        if mode == 'shared':
            return S['Wy'][X], None
        if mode == 'embedding':
            return S['E'][X], None
        return None, S['Wx0'][X]

    def _build_ranker(self, mode, with_items):
        """Compile an evaluation step: (X, Y, R, [items], *H) -> (greater, equal, *H_new)."""
        X, Y = pt.ivector('X'), pt.ivector('Y')
        R = pt.vector('R', dtype='float32')
        items = pt.ivector('items')
        H = self._hidden_inputs()
        x, first_rows = self._input_rows(X)
        h, H_new = self._gru(x, H, R, 0.0, None, first_rows)
        yhat = self._scores(h, pt.concatenate([Y, items]) if with_items else None)
        noise_source = RandomSource(42)
        if mode == 'tiebreaking':  # the original's tie breaking: tiny uniform noise on every score
            yhat = yhat + noise_source.uniform(yhat.shape) * 1e-10
        if with_items:
            greater, equal = gpu_ops.rank_counts(yhat[:, X.shape[0]:], gpu_ops.positive_diag(yhat))
        else:  # the target is the row's own column Y (what -d cuda's rank kernel takes)
            greater, equal = gpu_ops.rank_counts_at(yhat, Y)
        return compile_function([X, Y, R, items] + H, [greater, equal] + H_new, updates=noise_source.updates())

    def _build_advance(self):
        """Compile one GRU step without scoring: (X, *H) -> H_new."""
        X = pt.ivector('X')
        H = self._hidden_inputs()
        x, first_rows = self._input_rows(X)
        return compile_function([X] + H, self._gru(x, H, None, 0.0, None, first_rows)[1])

    def _build_score(self, with_items):
        """Compile the scores of all items (or of ``items``) for a last-layer state: (h, items) -> scores."""
        h = pt.matrix('h', dtype='float32')
        items = pt.ivector('items')
        return compile_function([h, items], self._scores(h, items if with_items else None))

    def _zero_state(self, n):
        return [np.zeros((n, h), dtype='float32') for h in self.layers]

    # ----------------------------------------------------------------- training
    def _training_plan(self, request):
        """Weights, sample store (``request.sample_store`` item ids, run.py -ss; its store_type is
        the original's interface and means host memory on the CPU) and the compiled step; batches
        are session-parallel mini-batches whose hidden states the plan carries from step to step."""
        verbose, sample_store = request.verbose, request.sample_store
        events = datatools.TrainingEvents(request.data, self.session_key, self.item_key, self.time_key, verbose)
        self._predict_state = None
        data, self.itemidmap = events.data, events.itemidmap
        item_idx, offsets = events.items, events.offsets
        n_sessions = len(offsets) - 1
        if self.n_sample == 0 and n_sessions < 2:  # the batch is capped at the number of sessions
            raise UserError(_NO_NEGATIVES.format('the training data has {} session'.format(n_sessions)))
        self.weights = self._init_weights()
        self._make_shared()
        support = np.bincount(item_idx, minlength=self.n_items).astype('float32')
        self.shared_prior = pytensor.shared(support, name='P0')
        store = SampleStore(support, self.sample_alpha, self.n_sample, sample_store, seed=self.seed, verbose=verbose) \
            if self.n_sample else None
        def build():
            fn = self._build_train(store)
            # Every argument below is built with the exact dtype and layout the graph declares, so the
            # per-call input checks (about a tenth of a CPU training step) are skipped.
            fn.trust_input = True
            return fn
        train = CompileOnFirstUse(build)
        item_idx = np.ascontiguousarray(item_idx, dtype=np.int32)
        if self.time_sort:  # the original's array (start times, sessions in id order) and default argsort
            first_time = data.groupby(self.session_key, sort=True)[self.time_key].min().values
            base_order = np.argsort(first_time)  # quicksort, unstable: equal start times in the original's order
        else:
            base_order = np.arange(n_sessions)
        min_valid = 2 if self.n_sample == 0 else 1
        host = {'H': None, 'shuffle': np.random.RandomState(42), 'store': store.get_state() if store else None}

        def batches(epoch):
            order = host['shuffle'].permutation(n_sessions) if self.train_random_order else base_order
            host['H'] = self._zero_state(min(self.batch_size, n_sessions))
            for rec in session_parallel(item_idx, offsets, order, self.batch_size, min_valid):
                if isinstance(rec, Shrink):
                    host['H'] = [h[rec.keep] for h in host['H']]
                    continue
                yield rec, len(rec.inp)

        def step(rec):
            si = np.asarray(store.next_index() if store is not None else 0, dtype=np.int64)
            out = train(rec.inp, rec.out, rec.last.astype(np.float32), si, *host['H'])
            host['H'] = out[1:]
            return out[0]

        def host_state():
            return dict(host, store=store.get_state() if store else None)

        def set_host_state(state):
            host.update(state)
            if store is not None:
                store.set_state(state['store'])

        return TrainingPlan(self.n_epochs, step, batches, step_function=train, host_state=host_state,
                            set_host_state=set_host_state, finish=self._sync_weights)

    # ----------------------------------------------------------------- evaluation interface
    def session_ranker(self, batch_size, mode='standard', items=None):
        """Evaluation stepper used by recsys_core.evaluation (hidden state per slot, zeroed by R)."""
        self.check_trained()
        self._ensure_shared()
        item_idx = np.zeros(0, dtype=np.int32) if items is None else self.item_indices(items)
        fn = self._function(('rank', mode, items is not None), lambda: self._build_ranker(mode, items is not None))
        return _Ranker(fn, self._zero_state(batch_size), item_idx)

    def _ensure_shared(self):
        if self.shared is None:
            self._make_shared()

    # ----------------------------------------------------------------- prediction
    def predict_next_batch(self, session_ids, input_item_ids, predict_for_item_ids=None, batch=100):
        """Scores for the next item of ``batch`` parallel sessions (the original's semantics).

        A slot keeps its hidden state while its session id stays the same between calls and is reset
        when it changes. Returns a DataFrame: rows are items, columns are the slots.
        """
        self.check_trained()
        self._ensure_shared()
        session_ids = np.asarray(session_ids)
        if len(session_ids) != batch or len(input_item_ids) != batch:
            raise UserError('predict_next_batch needs exactly batch={} session ids and items'.format(batch))
        st = self._predict_state
        if st is None or st['batch'] != batch:
            st = self._predict_state = {'batch': batch, 'H': self._zero_state(batch),
                                        'session': np.full(batch, None, dtype=object)}
        changed = np.asarray([a != b for a, b in zip(session_ids, st['session'])], dtype=bool)
        for h in st['H']:
            h[changed] = 0
        st['session'] = session_ids.astype(object).copy()
        X = self.item_indices(input_item_ids)
        with_items = predict_for_item_ids is not None
        items = self.item_indices(predict_for_item_ids) if with_items else np.zeros(0, dtype=np.int32)
        advance = self._function('advance', self._build_advance)
        score = self._function(('score', with_items), lambda: self._build_score(with_items))
        st['H'] = [np.array(h) for h in advance(X, *st['H'])]
        scores = score(st['H'][-1], items)
        index = pd.Index(predict_for_item_ids) if with_items else self.itemidmap.index
        return pd.DataFrame(data=np.asarray(scores).T, index=index)

    def _history_scores(self, idx):
        """Scores of every item after each history: all histories step together, finished ones keep
        their state."""
        self._ensure_shared()
        advance = self._function('advance', self._build_advance)
        score = self._function(('score', False), lambda: self._build_score(False))
        H = self._zero_state(len(idx))
        lengths = np.array([len(s) for s in idx])
        for t in range(lengths.max()):
            active = (t < lengths)[:, None]
            X = np.array([s[min(t, len(s) - 1)] for s in idx], dtype=np.int32)
            H = [np.where(active, np.asarray(new), old) for new, old in zip(advance(X, *H), H)]
        return np.array(score(H[-1], np.zeros(0, dtype=np.int32)))

    # ----------------------------------------------------------------- model files
    def _model_state(self):
        return {'item_ids': self.itemidmap.index.values, 'weights': dict(self.weights)}

    def _restore_state(self, state):
        self.itemidmap = pd.Series(np.arange(len(state['item_ids']), dtype=np.int32),
                                   index=state['item_ids'], name='ItemIdx')
        self.weights = OrderedDict(state['weights'])
        if set(self.weights) != set(self._init_weight_names()):
            raise UserError('model file weights do not match its parameters')

    def _init_weight_names(self):
        names = ['E'] if (not self.constrained_embedding and self.embedding) else []
        for i in range(len(self.layers)):
            names += ['Wx{}'.format(i), 'Wh{}'.format(i), 'Wrz{}'.format(i), 'Bh{}'.format(i)]
            if self._torch_layer(i):
                names.append('Bhh{}'.format(i))
        return names + ['Wy', 'By']


class _Ranker:
    """Holds the evaluation state of one session-parallel pass."""

    def __init__(self, fn, H, items):
        self.fn, self.H, self.items = fn, H, items

    def step(self, inp, out, last):
        res = self.fn(inp, out, last.astype('float32'), self.items, *self.H)
        self.H = list(res[2:])
        return res[0], res[1]

    def shrink(self, keep):
        self.H = [h[keep] for h in self.H]

