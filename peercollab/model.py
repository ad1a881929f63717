"""PeerCollab (PCRec: "Enhancing Top-N Item Recommendations by Peer Collaboration", SIGIR'22): two or
more peers of one model trained together, which after every epoch take knowledge from each other,
layer by layer (LW) or weight by weight (PW); one peer is deployed. The peers are the release's
SASRec (:class:`PeerCollab`), YouTubeDNN (:class:`peercollab.youtubednn.PeerYouTubeDNN`) or BPR
(:class:`peercollab.bpr.PeerBPR`); :class:`PeerModel` is what they share.

Released protocol (../shared/reference/peercollab.md, section 4), per peer k = 1..P:
- its own seed (``seed + k - 1`` unless ``peer_seeds``) draws its initialisation and the one
  permutation of the training rows it uses in every epoch (batches are consecutive slices, the last
  one shorter); its own Adam state;
- its initial rate lr * (1 + cos(pi (P - k) / P)) / 2 with ``difflr`` (P = 2: 0.5 lr and lr), and
  with ``cos`` the per-batch cosine decay lr_g = lr_k (1 + cos(pi g / (E S))) / 2 over all E
  epochs of S batches;
- after epoch e (after its evaluation) every peer takes a pre-merge snapshot and peer k merges
  with peer k-1's (peer 1 with peer P's): :func:`peercollab.cooperation.lw_merge` or
  :func:`~peercollab.cooperation.pw_merge`. The merge runs at the first step of the next epoch,
  so an interrupted run resumes to the same weights (a checkpoint is taken before it).

One model (``n_peers=1``) is the release's baseline (baseline.py): a constant learning rate and
the shuffle seed 10; ``single_schedule=peers`` trains it under the peers' schedule instead (cos,
difflr), the control that separates the cooperation's gain from the schedule's.
``cooperation=noise`` (one model) is the release's noise control (*_Noise.py): after each epoch's
evaluation, Gaussian noise on the weakest ``percent`` of each >= 2-D tensor, of standard deviation
``noise_rate ** (epoch // noise_period + 1)`` (:func:`peercollab.cooperation.add_noise`).
``cooperation=none`` with several peers trains them side by side, never merging.

By default the peers train in this process in lockstep (batch j of every peer, then the next).
With ``exchange=FOLDER, peer=k, run_id=ID`` a process trains peer k only and exchanges snapshots
with the others' processes through FOLDER (:mod:`peercollab.exchange`); the result is the same.

What run.py reports is the deployed peer's weights at the end of training (or, with -v and
--checkpoint, at the best validation); the release reports each metric's best over the epochs'
test evaluations, which ``python -m peercollab.release`` and run.py's --best_per_metric print.

Differences from the release: initialisation and the noise are seeded (the release's are not);
the padding class is never recommended (the release ranks it, though it is never a target); a
merge or noise after the last epoch (which no evaluation sees) is not done.
"""
import hashlib
import math
from collections import OrderedDict

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.compile.sharedvalue import SharedVariable

from recsys_core.backend import compile_function
from recsys_core.errors import UserError
from recsys_core.params import KEY_PARAMS, Check, Param, non_negative, one_of, positive
from recsys_core.sequence_model import SequenceRecommender
from recsys_core.trainer import TrainingPlan, updated_shared

from . import cooperation
from .exchange import DirectoryExchange
from .sasrec import SASREC_PARAMS, PeerSASRec

COOPERATIONS = ('lw', 'pw', 'none', 'noise')
SINGLE_SCHEDULES = ('release', 'peers')


def peer_params(lw_types, noise_rate, noise_period):
    """The parameters of peers of a model whose LW types are ``lw_types`` (the first the default)
    and whose noise control's release defaults are ``noise_rate`` and ``noise_period``."""
    aliases = tuple(cooperation.LW_ALIASES) if lw_types == cooperation.LW_TYPES else ()
    return [
        Param('n_peers', 2, positive, doc='P: peers trained together (1: the single-model baseline)'),
        Param('cooperation', 'lw', one_of(COOPERATIONS),
              doc='lw: layer-wise, pw: parameter-wise, none: independent peers, noise: the noise control (n_peers=1)'),
        Param('cooperation_type', lw_types[0], one_of(lw_types + aliases),
              doc='the LW rule{}'.format(' (alllayer_eL1norm is alllayer_L1norm)' if aliases else '')),
        Param('a', 30.0, doc="the gate's slope: w = b / (1 + exp(-a x)) (the README's 30)"),
        Param('b', 1.0, positive, doc="the gate's scale (1 as released)"),
        Param('percent', 50.0, Check(lambda v: 0 <= v <= 100, 'must be in [0, 100]'),
              doc='PW: the weakest percent of each >= 2-D tensor is taken from the peer; noise: gets noise'),
        Param('noise_rate', noise_rate, positive, doc='noise: standard deviation noise_rate ** (epoch // noise_period + 1)'),
        Param('noise_period', noise_period, positive, doc='noise: epochs per decay step of the standard deviation (T)'),
        Param('cos', True, doc='cosine decay of the learning rate per batch over all epochs'),
        Param('difflr', True, doc='peer k starts at lr * (1 + cos(pi (P - k) / P)) / 2'),
        Param('single_schedule', 'release', one_of(SINGLE_SCHEDULES),
              doc="n_peers=1: release (a constant rate, as baseline.py and *_Noise.py) or peers (cos and difflr as given)"),
        Param('peer_seeds', [], doc='one seed per peer, e.g. 10/11 (default: seed, seed + 1, ...)'),
        Param('deploy', 0, non_negative, doc='the peer that scores and is evaluated (0: peer P, the base-lr peer; a peer process: its own)'),
        Param('exchange', '', doc='a folder: train one peer (peer=k) in this process, exchanging through the folder'),
        Param('peer', 0, non_negative, doc='with exchange: the peer this process trains'),
        Param('run_id', '', doc='with exchange: the name shared by the processes of one run'),
        Param('exchange_timeout', 1800.0, positive, doc='with exchange: seconds to wait for a peer before failing'),
    ]


def prefix(k):
    return 'p{}.'.format(k)


class PeerModel:
    """Peers of ``PEER_CLASS`` trained together; the deployed peer scores and is saved with them.

    Mixed in before the class that holds the data state of the peers' model (the vocabulary, and
    for BPR the users): this model builds the training rows (``_training_rows``) and every peer
    gets a copy of that state (``_model_state`` without weights). A peer provides
    ``_step_graph(learning_rate)``, ``_batch_values(rows)`` (its step's inputs; a host generator
    in ``_rng`` may draw there, e.g. BPR's negatives), ``weight_kind(name)`` for LW and the scoring.
    """

    PEER_CLASS = None
    LW_TYPES = cooperation.LW_TYPES
    ALIASES = {'vocab': 'vocabulary'}
    LEGACY_DEFAULTS = {'single_schedule': 'peers'}  # model files from before the release's baseline schedule

    def __init__(self, **kwargs):
        self.peers = None
        self.epoch_of_last_step = None
        self._noise_rngs = {}
        super().__init__(**kwargs)

    def check_params(self, p):
        P = p['n_peers']
        problems = [
            (p['deploy'] > P, 'deploy={} but there are n_peers={} peers'.format(p['deploy'], P)),
            (p['peer'] > P, 'peer={} but there are n_peers={} peers'.format(p['peer'], P)),
            (p['peer_seeds'] and len(p['peer_seeds']) != P,
             'peer_seeds needs one seed per peer ({} for n_peers={})'.format(len(p['peer_seeds']), P)),
            (p['cooperation'] == 'noise' and P != 1,
             'cooperation=noise is the release\'s single-model control: set n_peers=1 (not {})'.format(P)),
            (p['exchange'] and not p['peer'], 'exchange=FOLDER trains one peer per process: give peer=k (1..{})'.format(P)),
            (p['peer'] and not p['exchange'], 'peer=k trains one peer of a multi-process run: give exchange=FOLDER'),
            (p['exchange'] and (P < 2 or p['cooperation'] in ('none', 'noise')),
             'exchange needs peers that cooperate (n_peers >= 2, cooperation lw or pw)'),
        ]
        message = next((message for bad, message in problems if bad), None)
        return message or self.PEER_CLASS.check_params(self, p)

    def get_params(self):
        """The parameters that define the run: exchange_timeout is left out, so a run resumed with a
        longer wait (after a peer was too slow) still matches its checkpoints."""
        params = super().get_params()
        params.pop('exchange_timeout')
        return params

    def after_set_params(self, names, maxk, maxv, verbose):
        self.cooperation_type = cooperation.canonical_type(self.cooperation_type, self.LW_TYPES)

    # ----------------------------------------------------------------- peers
    def local_peers(self):
        """The peers this process trains: all of them, or ``peer`` in a multi-process run."""
        return [self.peer] if self.peer else list(range(1, self.n_peers + 1))

    def deployed_peer(self):
        return self.peer or self.deploy or self.n_peers

    def seed_of(self, k):
        return int(self.peer_seeds[k - 1]) if self.peer_seeds else self.seed + k - 1

    def release_baseline(self):
        """One model trained as the release's baseline.py: a constant learning rate."""
        return self.n_peers == 1 and self.single_schedule == 'release'

    def initial_rate(self, k):
        """Peer k's learning rate at the first batch (difflr)."""
        if not self.difflr or self.release_baseline():
            return self.learning_rate
        return self.learning_rate * (1 + math.cos(math.pi * (self.n_peers - k) / self.n_peers)) / 2

    def scheduled_rate(self, k, step, total_steps):
        """Peer k's learning rate at global batch ``step`` (0-based) of ``total_steps``."""
        rate = self.initial_rate(k)
        if not self.cos or self.release_baseline():
            return rate
        return rate * (1 + math.cos(math.pi * step / total_steps)) / 2

    def source_of(self, k):
        """The peer whose snapshot peer k merges with: k - 1, and peer 1 takes peer P's."""
        return k - 1 if k > 1 else self.n_peers

    def _peer_model(self, k):
        params = {p.name: getattr(self, p.name) for p in self.PEER_CLASS.PARAMS}
        model = self.PEER_CLASS(**dict(params, seed=self.seed_of(k)))
        model._restore_state(dict(self._model_state(), weights={}))
        return model

    def _init_weights(self):
        weights = OrderedDict()
        for k in self.local_peers():
            weights.update((prefix(k) + name, v) for name, v in self._peer_model(k)._init_weights().items())
        return weights

    def _stack_layouts(self):
        """Each local peer's looped stack, under the peer's prefix."""
        layouts = []
        for k in self.local_peers():
            peer = self._peer_model(k)
            peer.weights = OrderedDict((n[len(prefix(k)):], v) for n, v in self.weights.items()
                                       if n.startswith(prefix(k)))
            layouts += [layout.prefixed(prefix(k)) for layout in peer._stack_layouts()]
        return layouts

    def _make_shared(self):
        """Shared variables of every local peer, and peer models that score through them."""
        super()._make_shared()
        self.peers = OrderedDict()
        for k in self.local_peers():
            model = self._peer_model(k)
            model.shared = OrderedDict((n[len(prefix(k)):], v) for n, v in self.shared.items()
                                       if n.startswith(prefix(k)))
            model._weight_order = [n[len(prefix(k)):] for n in self._weight_order if n.startswith(prefix(k))]
            model._layouts = [layout.unprefixed(prefix(k)) for layout in self._layouts
                              if layout.prefix == prefix(k)]
            self.peers[k] = model
        self._sync_peer_weights()

    def _sync_weights(self):
        super()._sync_weights()
        self._sync_peer_weights()

    def _sync_peer_weights(self):
        for k, model in (self.peers or {}).items():
            model.weights = OrderedDict((n, self.weights[prefix(k) + n]) for n in model._weight_order)

    def peer_model(self, k=None):
        """Peer k (default: the deployed one) as a single model sharing this model's weights."""
        self.check_trained()
        if self.shared is None:
            self._make_shared()
        k = k or self.deployed_peer()
        if k not in self.peers:
            raise UserError('This model holds peer(s) {}, not peer {}'.format(', '.join(map(str, self.peers)), k))
        return self.peers[k]

    # ----------------------------------------------------------------- scoring: the deployed peer's
    def rank_last_items(self, histories, targets, mode, max_cut, cut_offs=None):
        return self.peer_model().rank_last_items(histories, targets, mode, max_cut, cut_offs=cut_offs)

    def session_ranker(self, batch_size, mode='standard', items=None):
        return self.peer_model().session_ranker(batch_size, mode, items)

    def _history_scores(self, histories):
        return self.peer_model()._history_scores(histories)

    def _describe(self):
        return '; {} peer(s), {}'.format(self.n_peers, self._cooperation_text())

    def _cooperation_text(self):
        if self.cooperation == 'noise':
            return 'the noise control (percent {:g}, rate {:g}, period {:g})'.format(
                self.percent, self.noise_rate, self.noise_period)
        if self.n_peers < 2:
            return 'the single model{}'.format(
                ' (constant learning rate, as released)' if self.release_baseline() else " (the peers' schedule)")
        if self.cooperation == 'none':
            return 'no cooperation'
        if self.cooperation == 'pw':
            return 'cooperation pw (percent {:g})'.format(self.percent)
        return 'cooperation lw {} (a {:g})'.format(self.cooperation_type, self.a)

    def evaluation_notes(self):
        return ['(peer {} of {}, {}: one set of its weights, the last or with -v the best validation\'s; the release '
                'reports each metric\'s best over the epochs\' test evaluations: python -m peercollab.release, or '
                'run.py -v TEST --best_per_metric)'.format(
                    self.deployed_peer(), self.n_peers, self._cooperation_text())]

    # ----------------------------------------------------------------- training
    def cooperates(self):
        return self.n_peers > 1 and self.cooperation in ('lw', 'pw')

    def merge(self, own, peer):
        """Own weights after taking from a peer's snapshot (ordered dicts of arrays, the model's order)."""
        if self.cooperation == 'lw':
            return cooperation.lw_merge(own, peer, self.cooperation_type, self.a, self.b,
                                        weight_kind=self.PEER_CLASS.weight_kind)[0]
        return cooperation.pw_merge(own, peer, self.percent)

    def _after_epoch(self, epoch, exchange):
        """What happens to the weights between epoch ``epoch`` (0-based, evaluated) and the next."""
        if self.cooperates():
            self._cooperate(epoch, exchange)
        elif self.cooperation == 'noise':
            sigma = cooperation.noise_sigma(epoch, self.noise_rate, self.noise_period)
            for k in self.local_peers():
                peer = self.peers[k]
                peer.set_weight_values(cooperation.add_noise(peer.weight_values(), self.percent, sigma,
                                                             self._noise_rngs[k]))

    def _cooperate(self, epoch, exchange):
        """Every local peer merges with its source peer's snapshot taken after ``epoch``."""
        snapshots = {k: self.peers[k].weight_values() for k in self.local_peers()}
        if exchange is not None:
            k, source = self.peer, self.source_of(self.peer)
            exchange.publish(k, epoch, snapshots[k])
            snapshots[source] = self._checked_snapshot(exchange.receive(source, epoch, k), snapshots[k], source)
            reader = k + 1 if k < self.n_peers else 1
            if exchange.has(reader, epoch):  # the peer that reads k's snapshots is past the older ones
                exchange.discard(k, epoch)
        for k in self.local_peers():
            self.peers[k].set_weight_values(self.merge(snapshots[k], snapshots[self.source_of(k)]))

    def _swap(self, fn, source, k):
        """{shared variable of ``fn`` (peer ``source``'s step) -> peer k's}: its weights, fresh copies of
        the optimizer's state (zeros before the first step) and its own dropout generator."""
        by_variable = {v: name for name, v in self.peers[source].shared.items()}
        swap = {}
        for var in (i.variable for i in fn.maker.inputs if isinstance(i.variable, SharedVariable)):
            value = var.get_value(borrow=True)
            if var in by_variable:
                swap[var] = self.peers[k].shared[by_variable[var]]
            elif isinstance(value, np.random.Generator):
                swap[var] = pt.random.shared_rng(np.random.default_rng(self.seed_of(k) + 2))
            else:
                swap[var] = pytensor.shared(np.array(value), name=var.name)
        return swap

    @staticmethod
    def _checked_snapshot(received, own, source):
        bad = [n for n in own if n not in received or np.shape(received[n]) != own[n].shape]
        if bad:
            raise UserError('The weights peer {} sent do not fit this peer ({}): do both processes have the same '
                            'parameters and data?'.format(source, bad[0]))
        return OrderedDict((n, np.asarray(received[n], dtype=own[n].dtype)) for n in own)

    def _host_state(self):
        """Per local peer, the host generators that change between steps (checkpointed): the peer's
        own (e.g. BPR's negatives) and the noise control's."""
        return {k: (self.peers[k]._host_state(), self._noise_rngs.get(k)) for k in self.local_peers()}

    def _set_host_state(self, state):
        for k, (own, noise) in state.items():
            self.peers[k]._set_host_state(own)
            self._noise_rngs[k] = noise

    def _training_plan(self, request):
        """Every local peer's step (one graph, compiled once), the peers' own batch orders, the
        cosine schedule over the epochs' batches (capped by the trainer's per-epoch cap) and the
        merge (or noise) at the first step of each epoch."""
        rows = self._training_rows(request.data, request.verbose,
                                   request.vocab_data if self.uses_vocab_data() else None, request.vocabulary_of)
        verbose = request.verbose
        exchange = None
        if self.exchange:
            params = {k: v for k, v in self.get_params().items() if k != 'peer'}  # what every peer's process shares
            digest = hashlib.md5(repr(sorted(params.items())).encode())
            digest.update(np.ascontiguousarray(rows).tobytes())
            exchange = DirectoryExchange(self.exchange, self.run_id, self.exchange_timeout,
                                         fingerprint=digest.hexdigest())
        self.weights = self._init_weights()
        self._make_shared()
        local = self.local_peers()
        for k in local:
            self.peers[k]._rng = np.random.default_rng(self.seed_of(k) + 1)
            self._noise_rngs[k] = np.random.default_rng(self.seed_of(k) + 3)
        rate = pt.fscalar('learning_rate')
        variables, cost, updates = self.peers[local[0]]._step_graph(rate)
        steps = OrderedDict([(local[0], compile_function(variables + [rate], cost, updates=updates))])
        for k in local[1:]:  # the same graph on peer k's variables: compiled (rewritten) once, not per peer
            steps[k] = steps[local[0]].copy(swap=self._swap(steps[local[0]], local[0], k))
        batch = min(self.batch_size, len(rows))
        n_batches = -(-len(rows) // batch)
        if request.training.max_batches_per_epoch:
            n_batches = min(n_batches, request.training.max_batches_per_epoch)
        total_steps = max(1, self.n_epochs * n_batches)
        orders = {k: np.random.RandomState(self.seed_of(k)).permutation(len(rows)) for k in local}
        if verbose:
            for k in local:
                print('Peer {}: seed {}, learning rate {:g}{}'.format(
                    k, self.seed_of(k), self.initial_rate(k), ' (cosine decay over {} steps)'.format(total_steps)
                    if self.cos and not self.release_baseline() else ' (constant)'))
        if exchange is not None and verbose:
            print('Peer {} of {} exchanging through {} (run {})'.format(self.peer, self.n_peers, self.exchange,
                                                                     self.run_id))

        def batches(epoch):
            for j in range(n_batches):
                part = {k: rows[orders[k][j * batch:(j + 1) * batch]] for k in local}
                yield _PeerBatch(epoch, j, part), len(part[local[0]]) * self.peers[local[0]]._targets_per_row()

        def step(b):
            if b.index == 0 and b.epoch > 0:
                self._after_epoch(b.epoch - 1, exchange)
            g = b.epoch * n_batches + b.index
            self.epoch_of_last_step = b.epoch
            losses = []
            for k in local:
                values, labels = self.peers[k]._batch_values(b.rows[k])
                feed = list(values) + list(self.peers[k]._loss_feed(labels))
                losses.append(float(steps[k](*feed, np.float32(self.scheduled_rate(k, g, total_steps)))))
            return float(np.mean(losses))

        state = [v for fn in steps.values() for v in updated_shared(fn)]
        return TrainingPlan(self.n_epochs, step, batches, state=state, finish=self._sync_weights,
                            step_function=steps[local[0]], host_state=self._host_state,
                            set_host_state=self._set_host_state)


class PeerCollab(PeerModel, SequenceRecommender):
    """Peers of the release's SASRec (``-g peercollab``)."""

    PEER_CLASS = PeerSASRec
    PARAMS = SASREC_PARAMS + peer_params(cooperation.LW_TYPES, noise_rate=0.05, noise_period=30) + KEY_PARAMS


class _PeerBatch:
    """Batch ``index`` of ``epoch``: every local peer's rows (its own permutation)."""

    __slots__ = ('epoch', 'index', 'rows')

    def __init__(self, epoch, index, rows):
        self.epoch, self.index, self.rows = epoch, index, rows

    def __len__(self):
        return len(next(iter(self.rows.values())))
