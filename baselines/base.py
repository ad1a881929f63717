"""What every baseline shares: fitting on TrainingEvents, its statistics as the model state, and
the session ranker that recsys_core.evaluation drives (scores in numpy, ranks by counting); the
rest of the model surface (ids, recommend, model files) is recsys_core.model.Recommender's."""
import time

import numpy as np
import pandas as pd

from gpu_ops.ranking import rank_counts_numpy
from recsys_core.data import TrainingEvents
from recsys_core.errors import UserError
from recsys_core.model import Recommender
from recsys_core.params import non_negative as _non_negative

non_negative = _non_negative.says('must be non-negative')  # the baselines' wording


class SessionScoring:
    """Evaluation and recommendation from ``_scores(histories, inp)`` (numpy scores of every item for
    each session so far): what every baseline shares, whether fitted from counts or trained."""

    def session_ranker(self, batch_size, mode='standard', items=None):
        self.check_trained()
        item_idx = np.zeros(0, dtype=np.int32) if items is None else self.item_indices(items)
        return BaselineRanker(self, batch_size, mode, item_idx)

    def _history_scores(self, histories):
        return self._scores([list(h) for h in histories], np.asarray([h[-1] for h in histories]))


class SessionBaseline(SessionScoring, Recommender):
    """A model that scores every item for each session from statistics of the training data.

    Subclasses implement ``_statistics(events, verbose) -> dict of numpy arrays`` and
    ``_scores(histories, inp) -> (n, n_items) float64`` where ``histories[i]`` lists the item
    indices of slot i's session so far (the current item last) and ``inp`` holds the current items.
    """

    def __init__(self, **kwargs):
        self.stats = None
        super().__init__(**kwargs)

    def _fit(self, request):
        """Fitted in one pass, not by gradient steps, so the trainer's options (validation every N
        steps, early stopping, checkpoints) do not apply."""
        training, data, verbose = request.training, request.data, request.verbose
        if training is not None and (training.valid is not None or training.checkpoint or training.warm_start):
            raise UserError('{} is fitted in one pass from counts: validation during training, checkpoints and '
                            'warm starts do not apply to it'.format(type(self).__name__))
        t0 = time.time()
        events = TrainingEvents(data, self.session_key, self.item_key, self.time_key, verbose)
        self.itemidmap = events.itemidmap
        self.stats = self._statistics(events, verbose)
        if verbose:
            print('Fitted {} on {} events of {} items in {:.2f}s'.format(type(self).__name__, len(events.items),
                                                                        self.n_items, time.time() - t0))

    def is_trained(self):
        return self.stats is not None

    def _model_state(self):
        return {'item_ids': self.itemidmap.index.values, 'stats': dict(self.stats)}

    def _restore_state(self, state):
        self.itemidmap = pd.Series(np.arange(len(state['item_ids']), dtype=np.int32), index=state['item_ids'],
                                   name='ItemIdx')
        self.stats = dict(state['stats'])


class BaselineRanker:
    """Per-slot session histories; each step scores, counts items above/equal to the target."""

    def __init__(self, model, batch_size, mode, items):
        self.model, self.items = model, items
        self.histories = [[] for _ in range(batch_size)]
        self.rng = np.random.RandomState(42) if mode == 'tiebreaking' else None

    def step(self, inp, out, last):
        for h, x in zip(self.histories, inp):
            h.append(int(x))
        scores = self.model._scores(self.histories, np.asarray(inp))
        if self.rng is not None:  # the original's tie breaking: tiny uniform noise on every score
            scores = scores + self.rng.rand(*scores.shape) * 1e-10
        rows = np.arange(len(inp))
        target = scores[rows, np.asarray(out)]
        others = scores[:, self.items] if len(self.items) else scores
        greater, equal = rank_counts_numpy(others, target)
        for i in np.flatnonzero(last):
            self.histories[i] = []
        return greater, equal

    def shrink(self, keep):
        self.histories = [h for h, k in zip(self.histories, keep) if k]
