"""SSE-PT as the StackRec release trains it (SSEPT_Alpha.py, baseline_SSEPT.py): StackRec's SASRec
stack (stackrec.sasrec, ReZero scales, input LayerNorm) whose input carries the user
(../shared/reference/stackrec.md section 4.4):

    e_t = [UserEmb(u) (d/2) || ItemEmb(x_t) (d/2)] + PosEmb(t) (d),   the user vector repeated over t

all three tables N(0, 0.01); then dropout, LayerNorm, the blocks, a separate output layer, the
full-softmax cross-entropy over every position. Defaults as released: d = 128, dropout 0.2, batch
128, 24 blocks, one head, lr 1e-3.

Where the user comes from (``users``):
- ``'session'`` (default): the session id is the user (a TSV with one session per user, as run.py
  reads it: ``python run.py train.tsv -g stackrec.ssept -t test.tsv --protocol last ...``);
- ``'first'``: the first item token of each session is its user id: SSE-PT's released CSV
  ``user,i1,i2,...`` read as a sequence-per-line file (run.py, ``python -m stackrec.pipeline
  --model ssept``, whose model is :class:`SSEPTOnCSV` with this default); the token is not an item;
- any other value: the name of a column of the events holding each session's user (constant within
  a session; the DataFrame API: ``fit(events)`` and ``evaluate(model, events, 'last')``).
User ids are compared as strings and numbered in order of first appearance over the training
sessions (then ``vocab_data``'s, with vocabulary=all, which the release's U = every user of the
file corresponds to); a stacked model (``fit(vocabulary_of=)``) keeps its source's users. The
model's rows are user-prefixed: a training row is [user, x_0, ..., x_{L-1}], an evaluation window
[user, x_0, ..., x_{L-2}].

SSE regulariser (training batches only, ``sse``): with probability ``sse_user`` (0.8) the row's
user is replaced by a uniform id in [0, U); every non-padding item of x_0..x_{L-2} (never the last
one) is replaced with probability ``sse_item`` (0.01) by a uniform id in [0, V) (V counts the
padding class, so an item can become padding, as released); the replaced items are targets too.
With ``sse_cumulative`` (default, as released, P10) the replacements are written into the training
rows, so they accumulate over epochs; the rows' corruption and the generator (seed + 5) are host
state of the training plan, so a checkpointed run resumes exactly. ``sse_cumulative=False``
corrupts a copy of each batch instead.

Evaluation ranks with each test history's true user: protocol last only (run.py --protocol last;
the trainer's validation likewise), through ``last_item_cases``. A test user the model does not
know (users='session' with vocabulary=train: every test session) gets a zero user vector, as does
``recommend()``, which takes no user. The next-event protocol (session-parallel windows without
users) is refused.

Differences from the release: the generators (numpy, seeded, checkpointed) and draws are not the
release's (random.random and np.random, unseeded per run); users are numbered by first appearance
instead of used as embedding rows directly (the same model up to a permutation of the user table's
initial rows); the unknown user's zero vector (the release has every user of the file in its
table); dropout on for every training step (the release leaves it off after each epoch's first
evaluation, P16); and what stackrec.sasrec lists.
"""
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytensor.tensor as pt

from recsys_core.errors import UserError
from recsys_core.params import KEY_PARAMS, Param, probability
from recsys_core.sequences import left_pad, windows

from .nextitnet import _defaults
from .sasrec import SASRec

SSE_SEED_OFFSET = 5   # the SSE generator: seed + 5 (seed + 1 the base's, seed + 2 dropout's)
USER_MODES = ('session', 'first')


def sse_corrupt(rows, rng, n_users, n_vocab, pad_index, user_prob=0.8, item_prob=0.01):
    """SSE on user-prefixed rows (B, 1 + L), in place: column 0 the user, then the items.

    Each row's user becomes a uniform id in [0, n_users) with probability ``user_prob``; each
    non-padding item among columns 1..L-1 (never the last item) becomes a uniform id in
    [0, n_vocab) with probability ``item_prob``. Returns ``rows``.
    """
    B = len(rows)
    swap = rng.random(B) < user_prob
    rows[swap, 0] = rng.integers(0, n_users, int(swap.sum()))
    items = rows[:, 1:-1]                       # a view: the writes go into rows
    hit = (items != pad_index) & (rng.random(items.shape) < item_prob)
    items[hit] = rng.integers(0, n_vocab, int(hit.sum()))
    return rows


class SSEPT(SASRec):
    """SSE-PT (Wu et al., RecSys 2020) with ReZero scales, as StackRec released it."""

    PARAMS = [p for p in _defaults(SASRec.PARAMS, hidden=128, dropout=0.2, batch_size=128, num_blocks=24)
              if p not in KEY_PARAMS] + [
        Param('users', 'session', doc="the user of a session: 'session' (its id), 'first' (its first token, the "
                                      "released CSV read as a sequence file) or a column name"),
        Param('sse', True, doc='the SSE regulariser on training batches'),
        Param('sse_user', 0.8, probability, doc='probability of replacing a row\'s user'),
        Param('sse_item', 0.01, probability, doc='probability of replacing each non-padding item but the last'),
        Param('sse_cumulative', True, doc='write the replacements into the training rows (they accumulate, as '
                                          'released, P10); False: corrupt a copy of each batch'),
    ] + KEY_PARAMS

    def __init__(self, **kwargs):
        self.user_ids = None
        self._user_index = None
        self._train_rows = self._clean_items = self._sse_rng = None
        super().__init__(**kwargs)

    def check_params(self, p):
        if p['hidden'] % 2:
            return 'hidden={} must be even (user and item embeddings of hidden/2 each)'.format(p['hidden'])
        if not str(p['users']).strip():
            return "users must be 'session', 'first' or a column name"
        if p.get('block') == 'kang':
            return "block=kang is SASRec's own network; SSE-PT is built on StackRec's block (block=stackrec)"
        return super().check_params(p)

    @property
    def n_users(self):
        return len(self.user_ids)

    # ----------------------------------------------------------------- users
    def session_users(self, data, session_key=None, item_key=None, time_key=None):
        """(the events without user tokens, each session's user id as a string, indexed by session
        id in sorted order)."""
        s, i, t = session_key or self.session_key, item_key or self.item_key, time_key or self.time_key
        missing = [k for k in (s, i, t) if k not in data.columns]
        if self.users not in USER_MODES and self.users not in data.columns:
            missing.append(self.users)
        if missing:
            raise UserError('The events have no column(s): {}{}'.format(', '.join(missing), '' if self.users in USER_MODES
                            else " (SSE-PT's users={!r} names the user column)".format(self.users)))
        if self.users == 'session':
            sessions = np.unique(data[s].values)
            return data, pd.Series(sessions.astype(str), index=sessions)
        data = data.sort_values([s, t], kind='mergesort')
        if self.users == 'first':
            first = np.concatenate([[True], data[s].values[1:] != data[s].values[:-1]])
            users = pd.Series(data[i].values[first].astype(str), index=data[s].values[first])
            return data[~first], users
        column = data.groupby(s, sort=True)[self.users]
        if (column.nunique(dropna=False) > 1).any():
            bad = column.nunique(dropna=False)
            raise UserError('Session {} has more than one user in column {}'.format(bad.index[bad > 1][0], self.users))
        return data, column.first().astype(str)

    def _user_indices(self, user_ids, unknown_ok):
        idx = self._user_index.reindex(np.asarray(user_ids).astype(str)).values
        if np.isnan(idx).any() and not unknown_ok:
            raise UserError('The training data has users the given model lacks (e.g. {})'.format(
                np.asarray(user_ids)[np.isnan(idx)][0]))
        return np.where(np.isnan(idx), self.n_users, idx).astype(np.int32)   # n_users: the unknown user

    def _set_user_index(self):
        self._user_index = pd.Series(np.arange(len(self.user_ids), dtype=np.int32), index=self.user_ids)

    # ----------------------------------------------------------------- training rows
    def _training_rows(self, data, verbose, vocab_data=None, vocabulary_of=None):
        """User-prefixed rows [user, x_0, ..., x_{L-1}]; every window of a session has its user."""
        data, users = self.session_users(data)
        extra_users = []
        if vocab_data is not None:
            vocab_data, vocab_users = self.session_users(vocab_data)
            extra_users = list(vocab_users.values)
        rows = super()._training_rows(data, verbose, vocab_data, vocabulary_of)
        if vocabulary_of is not None:
            self.user_ids = vocabulary_of.user_ids
        else:
            self.user_ids = pd.unique(np.concatenate([users.values, np.asarray(extra_users, dtype=object)]).astype(str)
                                      ).astype(object)
        self._set_user_index()
        lengths = data.groupby(self.session_key, sort=True).size()
        n_windows = np.array([len(windows(np.arange(n), self.seq_len)) for n in lengths.values])
        row_users = np.repeat(self._user_indices(users.loc[lengths.index].values, False), n_windows)
        if len(row_users) != len(rows):
            raise RuntimeError('SSE-PT: {} users for {} training rows'.format(len(row_users), len(rows)))
        self._train_rows = np.concatenate([row_users[:, None], rows], axis=1).astype(np.int32)
        self._clean_items = self._train_rows[:, 1:].copy()
        if verbose:
            print('{} users (SSE{})'.format(self.n_users, ' off' if not self.sse else ': user {}, item {}{}'.format(
                self.sse_user, self.sse_item, ', cumulative' if self.sse_cumulative else '')))
        return self._train_rows

    def _init_weights(self):
        w = super()._init_weights()
        rng = np.random.default_rng(self.seed + 4)
        half = self.hidden // 2
        out = OrderedDict()
        out['user_emb'] = (rng.standard_normal((self.n_users, half)) * 0.01).astype('float32')
        out['item_emb'] = (rng.standard_normal((self.n_vocab, half)) * 0.01).astype('float32')
        out.update((k, v) for k, v in w.items() if k != 'item_emb')
        return out

    # ----------------------------------------------------------------- training step
    def _training_plan(self, request):
        self._sse_rng = np.random.default_rng(self.seed + SSE_SEED_OFFSET)
        return super()._training_plan(request)

    def _batch_variables(self):
        """Rows [user, x_0..x_{L-1}]: input [user, x_0..x_{L-2}], labels x_1..x_{L-1}."""
        X = pt.imatrix('X')
        return [X], X[:, :-1], X[:, 2:], lambda h: h

    def _batch_values(self, rows):
        if self.sse:
            if not self.sse_cumulative:
                rows = rows.copy()
            sse_corrupt(rows, self._sse_rng, self.n_users, self.n_vocab, self.pad_index, self.sse_user, self.sse_item)
        return [rows], rows[:, 2:]

    def _host_state(self):
        state = {'rng': self._rng, 'sse': self._sse_rng}
        if self.sse and self.sse_cumulative:   # the rows' corruption so far, as a difference from the clean rows
            items = self._train_rows[:, 1:]
            changed = np.flatnonzero(items != self._clean_items)
            state.update(users=self._train_rows[:, 0].copy(), changed=changed, values=items.ravel()[changed])
        return state

    def _set_host_state(self, state):
        self._rng, self._sse_rng = state['rng'], state['sse']
        if 'users' in state:
            items = self._train_rows[:, 1:]
            items[...] = self._clean_items
            r, c = np.unravel_index(state['changed'], items.shape)
            items[r, c] = state['values']
            self._train_rows[:, 0] = state['users']

    # ----------------------------------------------------------------- the network
    def _embed(self, X):
        """X: (B, 1 + T), the user then T items -> (B, T, d)."""
        half = self.hidden // 2
        users = pt.concatenate([self.shared['user_emb'], pt.zeros((1, half), dtype='float32')], axis=0)  # + unknown
        items = self.shared['item_emb'][X[:, 1:]]
        user = users[X[:, 0]][:, None, :] + pt.zeros_like(items)
        T = X.shape[1] - 1
        return pt.concatenate([user, items], axis=2) + self.shared['pos_emb'][:T][None, :, :]

    # ----------------------------------------------------------------- evaluation
    def windows_of(self, histories):
        """User-prefixed histories [user, items...] as (n, T) windows [user, T-1 left-padded items]."""
        users = np.array([h[0] for h in histories], dtype=np.int32)
        items = left_pad([np.asarray(h[1:]) for h in histories], self.seq_len - 1, self.pad_index)
        return np.concatenate([users[:, None], items], axis=1)

    def last_item_cases(self, test_data, session_key, item_key, time_key):
        """The last-item cases with each history's user first (a history with no known item stays
        empty: a miss)."""
        from recsys_core.last_item_eval import last_item_cases
        events, users = self.session_users(test_data, session_key, item_key, time_key)
        histories, targets = last_item_cases(self, events, session_key, item_key, time_key)
        lengths = events.groupby(session_key, sort=True).size()
        case_users = self._user_indices(users.loc[lengths.index[lengths.values >= 2]].values, True)
        return [np.concatenate([[u], h]).astype(np.int32) if len(h) else h
                for u, h in zip(case_users, histories)], targets

    def _history_scores(self, histories):
        """recommend(): histories without a user, scored with the unknown user's zero vector."""
        return super()._history_scores([np.concatenate([[self.n_users], h]).astype(np.int32) for h in histories])

    def session_ranker(self, batch_size, mode='standard', items=None):
        raise UserError("SSE-PT ranks each history with its user: evaluate under protocol last (--protocol last)")

    # ----------------------------------------------------------------- model files
    def _model_state(self):
        state = super()._model_state()
        state['user_ids'] = self.user_ids
        return state

    def _restore_state(self, state):
        super()._restore_state(state)
        self.user_ids = state['user_ids']
        self._set_user_index()


class SSEPTOnCSV(SSEPT):
    """SSE-PT reading the released CSV ``user,i1,i2,...`` as a sequence file: users='first' by
    default (the model of ``python -m stackrec.pipeline --model ssept``)."""

    PARAMS = _defaults(SSEPT.PARAMS, users='first')


MODEL_CLASS = SSEPT
