"""The model surface every recommender shares, written once.

:class:`Recommender` (every model): declared parameters (``set_params``), the trained check, the
item-id mapping (``item_indices`` with ``skip_unknown``), ``recommend`` (top-k with
``exclude_seen``), the model state and atomic ``savemodel`` / ``loadmodel``, and the one ``fit``
signature (what it was given reaches the model as a :class:`FitRequest`). A model implements
``is_trained()``, ``_fit(request)``, ``_history_scores(histories)`` (scores of every index for each
history), ``index_ids()`` (the item id of every index) and its own part of the state.

:class:`NeuralRecommender` (models trained by gradient steps): weights as named arrays, their
PyTensor shared variables, compiled functions cached per model, and ``fit`` through the one
trainer (:mod:`recsys_core.trainer`). Such a model implements ``_training_plan(data, verbose,
request)`` and ``_init_weights()``.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pytensor

from . import data as datatools
from .errors import UserError
from .params import ParamSet
from .persistence import load_model, save_model


@dataclass
class FitRequest:
    """What :meth:`Recommender.fit` was given, as the model's training code receives it."""
    data: Any
    verbose: bool = True
    training: Any = None               # recsys_core.trainer.TrainingOptions (None: the defaults)
    sample_store: int = 10000000       # GRU4Rec's negative-sample store (run.py -ss)
    store_type: str = 'gpu'            # GRU4Rec's original interface; host memory on the CPU
    vocab_data: Any = None             # events that join a sequence model's vocabulary (vocabulary=all)
    vocabulary_of: Optional[Any] = None  # a trained sequence model whose vocabulary is kept (stacking)

    def __post_init__(self):
        if self.training is None:
            from .trainer import TrainingOptions
            self.training = TrainingOptions()


class Recommender(ParamSet):
    """Base of every model: the GRU4Rec surface users know, the same for every package."""

    # parameter values for model files written before a parameter existed (e.g. GRU4Rec's gru_cell)
    LEGACY_DEFAULTS = {}

    def __init__(self, **kwargs):
        self.itemidmap = None
        self.error_during_train = False
        super().__init__(**kwargs)

    @property
    def n_items(self):
        return len(self.itemidmap)

    # ----------------------------------------------------------------- trained check and item ids
    def is_trained(self):
        raise NotImplementedError

    def check_trained(self):
        if not self.is_trained():
            raise UserError('The model has not been trained')
        if self.error_during_train:
            raise UserError('The model failed during training (NaN loss) and cannot be used')

    def item_indices(self, item_ids, skip_unknown=False):
        """Map item ids (any type; compared as strings) to model indices."""
        return datatools.map_item_ids(self.itemidmap, item_ids, skip_unknown)

    def index_ids(self):
        """The item id of each model index (indices that are no item, e.g. padding, included)."""
        return self.itemidmap.index.values

    def uses_vocab_data(self):
        """True when fit() needs the test events too (vocabularies built over the whole data set,
        as some releases do); run.py then passes its -t files as ``vocab_data``."""
        return False

    def evaluation_notes(self):
        """Lines about how the last evaluation was computed (e.g. a pruned fast inference)."""
        return []

    # ----------------------------------------------------------------- training
    def fit(self, data, sample_store=10000000, store_type='gpu', verbose=True, training=None, vocab_data=None,
            vocabulary_of=None):
        """Train on ``data`` (a DataFrame of events with the model's session, item and time keys).

        sample_store (run.py -ss) and store_type (--sample_store_on_cpu): GRU4Rec's negative-sample
        store, in the original's interface; other models take no samples from a store.
        training: :class:`recsys_core.trainer.TrainingOptions` (validation, early stopping,
        checkpoints, warm start, step caps); gradient-trained models only.
        vocab_data: other events (e.g. the test set) that join a sequence model's vocabulary,
        frequencies and length without being trained on (required with vocabulary=all, unused
        otherwise). vocabulary_of: a trained sequence model of the same family whose vocabulary
        and length are kept (a stacked model indexes items as its source does).
        Returns the model.
        """
        if vocabulary_of is not None and not self.KEEPS_VOCABULARY_OF:
            raise UserError('{} does not take another model\'s vocabulary (vocabulary_of)'.format(type(self).__name__))
        self._fit(FitRequest(data, verbose, training, sample_store, store_type, vocab_data, vocabulary_of))
        return self

    KEEPS_VOCABULARY_OF = False
    """Whether ``fit(vocabulary_of=...)`` applies (the sequence models)."""

    def _fit(self, request):
        raise NotImplementedError

    # ----------------------------------------------------------------- recommendation
    def recommend(self, sessions, k=20, exclude_seen=False, skip_unknown=False):
        """Top-k next items for each session history.

        sessions: one list of item ids (a single session) or a list of such lists. Returns a list of
        (item_ids, scores) pairs, best first (a single pair for a single session).
        """
        self.check_trained()
        single = len(sessions) == 0 or not isinstance(sessions[0], (list, tuple, np.ndarray))
        histories = [sessions] if single else sessions
        idx = [self.item_indices(s, skip_unknown) for s in histories]
        if any(len(s) == 0 for s in idx):
            raise UserError('Every session needs at least one known item')
        scores = np.array(self._history_scores(idx), dtype=np.float64)
        k = min(k, self.n_items)
        ids = self.index_ids()
        results = []
        for s, row in zip(idx, scores):
            if exclude_seen:
                row[s] = -np.inf
            top = datatools.top_k_indices(row, k)
            results.append((ids[top], row[top]))
        return results[0] if single else results

    def _history_scores(self, histories):
        """(len(histories), n_indices) scores of every index after each history of model indices;
        indices that are no item score -inf."""
        raise NotImplementedError

    # ----------------------------------------------------------------- model files
    def get_state(self):
        state = {'params': dict(self.get_params()), 'error_during_train': self.error_during_train}
        state.update(self._model_state())
        return state

    @classmethod
    def from_state(cls, state):
        model = cls()
        for k, v in cls.LEGACY_DEFAULTS.items():
            setattr(model, k, v)
        for k, v in state['params'].items():
            setattr(model, k, v)
        model.error_during_train = state.get('error_during_train', False)
        model._restore_state(state)
        return model

    def _model_state(self):
        """The model's own part of its file (plain numpy arrays and Python values)."""
        raise NotImplementedError

    def _restore_state(self, state):
        raise NotImplementedError

    def savemodel(self, path):
        """Write the model atomically; it loads in a fresh process on any backend."""
        if not self.is_trained():
            raise UserError('Cannot save a model that has not been trained')
        save_model(self, path)

    @classmethod
    def loadmodel(cls, path):
        return load_model(path, cls)


class NeuralRecommender(Recommender):
    """A model with named weights, trained by gradient steps through :class:`recsys_core.trainer.Trainer`."""

    def __init__(self, **kwargs):
        self.weights = None
        self.shared = None
        self._layouts = []
        self._weight_order = []
        self._compiled = {}
        super().__init__(**kwargs)

    def is_trained(self):
        return self.weights is not None

    # ----------------------------------------------------------------- weights
    def _stack_layouts(self):
        """The :class:`recsys_core.stacked.StackLayout` of each residual stack the model loops over
        (weights stored stacked); none by default."""
        return []

    def _make_shared(self):
        """Shared variables of the weights: one per weight, except the weights of a looped stack,
        which are stored stacked (``name[stack]``, :mod:`recsys_core.stacked`)."""
        self._layouts = self._stack_layouts()
        self._weight_order = list(self.weights)
        where = {n: layout for layout in self._layouts for n in layout.names()}
        self.shared = OrderedDict()
        for k, v in self.weights.items():
            if k not in where:
                self.shared[k] = pytensor.shared(v, name=k)
                continue
            key, _ = where[k].where[k]
            if key not in self.shared:
                members = where[k].storage[key]
                var = pytensor.shared(np.stack([np.asarray(self.weights[n]) for n in members]), name=key)
                var.tag.n_tensors = len(members)  # what it counts as in a mean over tensors (mean_l2)
                self.shared[key] = var

    def _shared_values(self, borrow=False):
        return OrderedDict((k, s.get_value(borrow=borrow)) for k, s in self.shared.items())

    def _per_block(self, values):
        """Weights by their own names, in the model's order, from values of the shared variables."""
        names = set(self._weight_order)
        out = {k: v for k, v in values.items() if k in names}
        for layout in self._layouts:
            out.update(layout.unstack(values))
        return OrderedDict((k, np.array(out[k])) for k in self._weight_order)

    def _sync_weights(self):
        """Copy trained values back from the shared variables (plain arrays for saving; numpy
        copies also of the JAX device arrays the JAX backend keeps there)."""
        self.weights = self._per_block(self._shared_values(borrow=True))

    def weight_values(self):
        """Current weights by name (copies), from the shared variables while they exist."""
        if self.shared is not None:
            return self._per_block(self._shared_values())
        return OrderedDict((k, np.array(v)) for k, v in self.weights.items())

    def set_weight_values(self, values):
        """Overwrite the named weights (shapes must match); the others keep their values."""
        current = self.weight_values()
        for k, v in values.items():
            if k not in current or np.shape(v) != current[k].shape:
                raise UserError('Weight {} {} does not fit this model'.format(k, np.shape(v)))
        if self.shared is not None:
            stacked = {}
            for k, v in values.items():
                v = np.asarray(v, dtype=current[k].dtype)
                layout = next((lay for lay in self._layouts if k in lay.where), None)
                if layout is None:
                    self.shared[k].set_value(v)
                    continue
                key, i = layout.where[k]
                if key not in stacked:
                    stacked[key] = np.array(self.shared[key].get_value())
                stacked[key][i] = v
            for key, value in stacked.items():
                self.shared[key].set_value(value)
            self._sync_weights()
        else:
            self.weights.update((k, np.asarray(v, dtype=current[k].dtype)) for k, v in values.items())

    def _function(self, key, build):
        """A compiled function, built once per model and key."""
        if self.shared is None:
            self._make_shared()
        if key not in self._compiled:
            self._compiled[key] = build()
        return self._compiled[key]

    # ----------------------------------------------------------------- training
    def _fit(self, request):
        """Through the shared trainer: the model's plan, run under ``request.training``.

        Sets ``epoch_stats`` (one dict per epoch) and ``training_history`` (one per validation:
        step, epoch, value, best, seconds since the start, and the evaluator's other metrics).
        """
        from .trainer import Trainer
        trainer = Trainer(request.training, request.verbose)  # options are checked before anything is built
        self._compiled = {}
        plan = self._training_plan(request)
        fingerprint = None
        if trainer.options.checkpoint:  # what a checkpoint must match to be resumed
            fingerprint = {'model': '{}.{}'.format(type(self).__module__, type(self).__name__),
                           'parameters': repr(sorted(self.get_params().items())),
                           'training data': self._data_fingerprint(request.data)}
        self.training_history = trainer.run(self, plan, fingerprint)
        self._compiled = {}

    def _data_fingerprint(self, data):
        """A short hash of the training data, so that a checkpoint is only resumed on the same data."""
        from .trainer import data_fingerprint
        return data_fingerprint(data, [k for k in (self.session_key, self.item_key, self.time_key)
                                       if k in data.columns])

    def _training_plan(self, request):
        """The :class:`recsys_core.trainer.TrainingPlan` of a :class:`FitRequest`."""
        raise NotImplementedError
