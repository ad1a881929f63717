"""BPR as the PeerCollab release trains it (``BPR/``), and its peers.

    python -m peercollab.split DATA.csv OUT --model bpr        # the BPR loader's split
    python run.py OUT/DATA_train.txt -g peercollab.bpr -ps n_peers=2,cooperation=lw \\
        -t OUT/DATA_test.txt --protocol last -m 5 20

The release's model (../shared/reference/peercollab.md, section 5): a user table and an item table
(d 256, both N(0, 0.01)), optional towers of ``layer_num`` linear layers (no activation) on each;
x_ui = u . i; per batch of (user, item) training pairs, one negative item per pair drawn uniformly
from every item, redrawn while it is one of the user's training items; the loss
-sum log sigmoid(x_ui - x_uj) + l2 (|u|^2 + |i|^2 + |j|^2), summed over the batch (printed as its
mean per pair); PyTorch's Adam at lr 1e-3; batch 2048. A user's score of every item ranks the
items, the user's training items last (the release multiplies their sigmoid by 0); the validation
item is not excluded.

The user of a session is its session id (the split's files number users by line, as the release by
position); the last-item protocol takes each test session's last item as the target, so a test
session of one event counts too, and a user the model does not know is a miss. The next-event
protocol (scores after each event of a session) does not apply to a user model and is refused.

LW (BPR_LW.py, which does not run as published: its import names a module ``bpr`` beside a file
``BPR.py``, and its chain of merge types starts with ``elif``): the two types its chain names,
``embed_entropy`` and ``embed_L1norm`` (the default, ``cooperation_embed_entropy``, matches
neither and would print "error": we take it to mean ``embed_entropy``); every weight (the tables,
the towers' weights) computes its own gate and the towers' biases carry it.

Left out: the release's ``--reg_type all`` (the L2 norm of every weight instead of the batch's
embeddings).
"""
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytensor.tensor as pt

from gpu_ops.ranking import rank_counts_at, ranks_from_counts
from recsys_core.backend import compile_function
from recsys_core.data import TrainingEvents, session_offsets
from recsys_core.errors import UserError
from recsys_core.model import NeuralRecommender
from recsys_core.optim import DenseAdam
from recsys_core.params import KEY_PARAMS, Param, non_negative, positive
from recsys_core.sequence_model import VOCABULARY

from . import cooperation
from .model import PeerModel, peer_params

EVAL_BATCH = 256

BPR_PARAMS = [
    Param('hidden', 256, positive, doc='d: the user and item factors'),
    Param('layer_num', 0, non_negative, doc='linear layers d -> d on each side (the release\'s --layer)'),
    Param('l2', 0.0, non_negative, doc='lambda of the L2 term on the batch\'s user, positive and negative factors'),
    Param('learning_rate', 0.001, positive),
    Param('batch_size', 2048, positive),
    Param('n_epochs', 200, non_negative, doc='200 as BPR_PW.py and baseline.py (BPR_LW.py: 300)'),
    Param('seed', 10, doc='peer k draws its initialisation, its one permutation and its negatives from seed + k - 1'),
    VOCABULARY,
]


class ReleaseBPR(NeuralRecommender):
    """One BPR peer: users, items and their factors. Trained by :class:`PeerBPR` (which builds the
    training pairs and wires the shared variables); as a model it ranks its users' next items."""

    PARAMS = BPR_PARAMS + KEY_PARAMS
    ALIASES = {'vocab': 'vocabulary'}
    weight_kind = staticmethod(cooperation.layered_weight_kind)

    def __init__(self, **kwargs):
        self.user_ids = None       # the session id of each user index
        self.user_offsets = None   # user u's training items: user_items[user_offsets[u]:user_offsets[u + 1]]
        self.user_items = None
        self._seen_keys = None
        self._rng = None
        super().__init__(**kwargs)

    @property
    def n_users(self):
        return len(self.user_ids)

    def uses_vocab_data(self):
        return self.vocabulary == 'all'

    # ----------------------------------------------------------------- data
    def _training_rows(self, data, verbose, vocab_data=None, vocabulary_of=None):
        """(user, item) training pairs, users in session order and their events in time order;
        items numbered by first appearance (then vocab_data's new items, with vocabulary=all: every
        item is a possible negative, as the release's item table covers the whole file)."""
        events = TrainingEvents(data, self.session_key, self.item_key, self.time_key, verbose)
        item_ids = events.itemidmap.index.values
        if self.vocabulary == 'all':
            if vocab_data is None:
                raise UserError('vocabulary=all builds the item table over the whole data set, as the release does: '
                                'fit() needs the other events (e.g. the test set) as vocab_data')
            if self.item_key not in vocab_data.columns:
                raise UserError('vocab_data has no column {}'.format(self.item_key))
            ids = vocab_data[self.item_key].astype(str).values
            item_ids = np.concatenate([item_ids, pd.unique(ids[~pd.Index(ids).isin(item_ids)])])
        self.itemidmap = pd.Series(np.arange(len(item_ids), dtype=np.int32), index=item_ids.astype(object),
                                   name='ItemIdx')
        sessions = events.data[self.session_key].values
        offsets = events.offsets
        self.user_ids = np.array([str(s) for s in sessions[offsets[:-1]]], dtype=object)
        users = np.repeat(np.arange(len(offsets) - 1, dtype=np.int32), np.diff(offsets))
        per_user = [np.unique(events.items[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
        self.user_offsets = np.concatenate([[0], np.cumsum([len(p) for p in per_user])]).astype(np.int64)
        self.user_items = np.concatenate(per_user).astype(np.int32)
        self._seen_keys = None
        if verbose:
            print('{} training pairs of {} users and {} items (the item table: {})'.format(
                len(users), self.n_users, events.n_items, self.n_items))
        return np.stack([users, events.items.astype(np.int32)], axis=1)

    def _model_state(self):
        return {'item_ids': None if self.itemidmap is None else self.itemidmap.index.values,
                'user_ids': self.user_ids, 'user_offsets': self.user_offsets, 'user_items': self.user_items,
                'weights': dict(self.weights or {})}

    def _restore_state(self, state):
        ids = state['item_ids']
        self.itemidmap = None if ids is None else pd.Series(np.arange(len(ids), dtype=np.int32), index=ids,
                                                            name='ItemIdx')
        self.user_ids, self.user_offsets, self.user_items = state['user_ids'], state['user_offsets'], state['user_items']
        self._seen_keys = None
        self.weights = dict(state['weights'])

    # ----------------------------------------------------------------- training
    def _init_weights(self):
        rng = np.random.default_rng(self.seed)
        d = self.hidden
        w = OrderedDict()
        w['user_emb'] = (rng.standard_normal((self.n_users, d)) * 0.01).astype('float32')
        for side in ('user', 'item'):
            if side == 'item':
                w['item_emb'] = (rng.standard_normal((self.n_items, d)) * 0.01).astype('float32')
            for layer in range(self.layer_num):
                bound = 1.0 / np.sqrt(d)
                w['{}_mlp{}_W'.format(side, layer)] = rng.uniform(-bound, bound, (d, d)).astype('float32')
                w['{}_mlp{}_b'.format(side, layer)] = rng.uniform(-bound, bound, (d,)).astype('float32')
        return w

    def _tower(self, side, x):
        for layer in range(self.layer_num):
            x = pt.dot(x, self.shared['{}_mlp{}_W'.format(side, layer)]) + self.shared['{}_mlp{}_b'.format(side, layer)]
        return x

    def negatives(self, users, rng):
        """One uniform item per user, drawn again while it is one of the user's training items."""
        if self._seen_keys is None:  # user * n_items + item of every training pair, sorted
            owner = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.user_offsets))
            self._seen_keys = owner * self.n_items + self.user_items
        j = rng.integers(0, self.n_items, len(users)).astype(np.int32)
        while True:
            keys = users.astype(np.int64) * self.n_items + j
            pos = np.minimum(np.searchsorted(self._seen_keys, keys), len(self._seen_keys) - 1)
            seen = self._seen_keys[pos] == keys
            if not seen.any():
                return j
            j[seen] = rng.integers(0, self.n_items, int(seen.sum()))

    def _batch_values(self, rows):
        users = rows[:, 0]
        return [users, rows[:, 1], self.negatives(users, self._rng)], None

    def _loss_feed(self, labels):
        return []

    def _targets_per_row(self):
        return 1

    def _host_state(self):
        return self._rng

    def _set_host_state(self, state):
        self._rng = state

    def _step_graph(self, learning_rate=None):
        """(inputs u, i, j; the mean loss per pair, printed; Adam's updates of the summed loss)."""
        u, i, j = pt.ivector('u'), pt.ivector('i'), pt.ivector('j')
        eu = self._tower('user', self.shared['user_emb'][u])
        ei = self._tower('item', self.shared['item_emb'][i])
        ej = self._tower('item', self.shared['item_emb'][j])
        x = (eu * ei).sum(axis=1) - (eu * ej).sum(axis=1)
        loss = pt.softplus(-x).sum()  # -log sigmoid(x), computed stably
        if self.l2:
            loss = loss + self.l2 * ((eu ** 2).sum() + (ei ** 2).sum() + (ej ** 2).sum())
        rate = self.learning_rate if learning_rate is None else learning_rate
        updates = DenseAdam(rate, 0.9, torch_epsilon=True).updates(loss, list(self.shared.values()))
        return [u, i, j], loss / u.shape[0], updates

    def _training_plan(self, request):
        raise UserError('A BPR peer is trained by peercollab.bpr.PeerBPR (n_peers=1 is the single model)')

    # ----------------------------------------------------------------- scoring
    def _user_scores(self, users):
        """(len(users), n_items) scores x_ui of user indices."""
        return pt.dot(self._tower('user', self.shared['user_emb'][users]),
                      self._tower('item', self.shared['item_emb']).T)

    def _seen_matrix(self, users):
        """Each user's training items, padded with its first one (as the release pads its mask)."""
        lists = [self.user_items[self.user_offsets[u]:self.user_offsets[u + 1]] for u in users]
        width = max(len(x) for x in lists)
        return np.array([np.concatenate([np.full(width - len(x), x[0]), x]) for x in lists], dtype=np.int32)

    def _rank_fn(self):
        def build():
            users, targets, seen = pt.ivector('users'), pt.ivector('targets'), pt.imatrix('seen')
            scores = self._user_scores(users)
            scores = pt.set_subtensor(scores[pt.arange(users.shape[0])[:, None], seen], -np.inf)
            return compile_function([users, targets, seen], rank_counts_at(scores, targets))
        return self._function('rank', build)

    def last_item_cases(self, test_data, session_key, item_key, time_key):
        """(histories, targets): a history is [the session's user index] (empty for an unknown user),
        the target its last item (-1 when unknown)."""
        for key in (session_key, item_key, time_key):
            if key not in test_data.columns:
                raise UserError('Test data has no column "{}"'.format(key))
        data = test_data.sort_values([session_key, time_key], kind='mergesort')
        offsets = session_offsets(data[session_key].values)
        last = data.iloc[offsets[1:] - 1]
        user_index = pd.Series(np.arange(self.n_users, dtype=np.int32), index=self.user_ids)
        users = user_index.reindex(last[session_key].astype(str).values).values
        targets = self.itemidmap.reindex(last[item_key].astype(str).values).values
        histories = [np.array([] if np.isnan(u) else [u], dtype=np.int32) for u in users]
        return histories, np.where(np.isnan(targets), -1, targets).astype(np.int64)

    def rank_last_items(self, histories, targets, mode, max_cut, cut_offs=None):
        if cut_offs is not None:
            return np.tile(self.rank_last_items(histories, targets, mode, max_cut), (len(cut_offs), 1))
        fn = self._rank_fn()
        users = np.array([h[0] for h in histories], dtype=np.int32)
        ranks = []
        for s in range(0, len(users), EVAL_BATCH):
            batch = users[s:s + EVAL_BATCH]
            greater, equal = fn(batch, np.asarray(targets[s:s + EVAL_BATCH], dtype=np.int32), self._seen_matrix(batch))
            ranks.append(ranks_from_counts(greater.astype(np.float64), equal.astype(np.float64), mode))
        return np.concatenate(ranks)

    def session_ranker(self, batch_size, mode='standard', items=None):
        raise UserError('BPR scores a user\'s items, not the next item after each event of a session: evaluate it with '
                        '--protocol last (its test sessions\' users and last items)')

    def _history_scores(self, histories):
        raise UserError('BPR recommends to its users, not after a list of items: rank a user with the last-item '
                        'protocol (run.py --protocol last)')


class PeerBPR(PeerModel, ReleaseBPR):
    """Peers of the release's BPR (``-g peercollab.bpr``); noise control defaults as BPR_Noise.py
    (rate 0.02, period 50)."""

    PEER_CLASS = ReleaseBPR
    LW_TYPES = cooperation.BPR_LW_TYPES
    PARAMS = BPR_PARAMS + peer_params(cooperation.BPR_LW_TYPES, noise_rate=0.02, noise_period=50) + KEY_PARAMS

    def last_item_cases(self, test_data, session_key, item_key, time_key):
        return self.peer_model().last_item_cases(test_data, session_key, item_key, time_key)


MODEL_CLASS = PeerBPR
