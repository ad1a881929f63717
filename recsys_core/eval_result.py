"""What an evaluation returns (:class:`EvalResult`), and the names every front end and the trainer
check against: the protocols, the tie modes, the metrics. Both protocols' passes
(:mod:`recsys_core.evaluation`, :mod:`recsys_core.last_item_eval`) build on this module, so neither
imports the other's module to make its result."""
from collections import OrderedDict

from .errors import UserError

TIE_MODES = ('standard', 'conservative', 'median', 'tiebreaking')
PROTOCOLS = ('next', 'last')
METRIC_NAMES = {'recall': 'Recall', 'hr': 'HR', 'mrr': 'MRR', 'ndcg': 'NDCG'}


class EvalResult:
    """Metrics of one evaluation: ``metrics[name][i]`` at ``cut_offs[i]``.

    Names: 'recall' and 'mrr' (protocol next); 'hr', 'mrr' and 'ndcg' (protocol last, where 'recall'
    is accepted for 'hr'). ``cases``: how many ranked targets the averages are over. ``negatives``:
    under protocol last, the sampled items each target was ranked against (0: every item).
    ``pruned_cut_offs``: cut-offs whose numbers come from a pruned top-k list (CpRec's fast
    inference) rather than the exact ranking; :meth:`lines` marks them. ``notes``: the model's lines
    on how the numbers were computed (printed after the metric lines).
    """

    def __init__(self, protocol, cut_offs, metrics, cases, unknown_targets=0, pruned_cut_offs=(), notes=(),
                 negatives=0):
        self.protocol, self.cut_offs, self.notes = protocol, list(cut_offs), list(notes)
        self.negatives = negatives  # protocol last: each target ranked against this many sampled items (0: all)
        self.metrics = OrderedDict((k, list(v)) for k, v in metrics.items())
        self.cases, self.unknown_targets = cases, unknown_targets
        self.pruned_cut_offs = sorted(set(pruned_cut_offs))

    def _name(self, metric):
        if metric == 'recall' and 'recall' not in self.metrics:
            return 'hr'
        if metric == 'hr' and 'hr' not in self.metrics:
            return 'recall'
        if metric not in self.metrics:
            raise UserError('Metric {} is not measured under protocol {} (measured: {})'.format(
                metric, self.protocol, ', '.join(self.metrics)))
        return metric

    def protocol_name(self):
        """The protocol in words, as tables print it."""
        if self.protocol == 'next':
            return 'next event, all items'
        return 'last item, {}'.format('{} sampled negatives'.format(self.negatives) if self.negatives else 'all items')

    def value(self, metric, cut_off):
        """The value of ``metric`` at ``cut_off``."""
        if cut_off not in self.cut_offs:
            raise UserError('Cut-off {} was not measured (measured: {})'.format(cut_off, self.cut_offs))
        return self.metrics[self._name(metric)][self.cut_offs.index(cut_off)]

    def __getitem__(self, metric):
        if metric in ('cases', 'unknown_targets'):
            return getattr(self, metric)
        return self.metrics[self._name(metric)]

    def lines(self):
        """The output lines of run.py: one per cut-off, in the original's format."""
        out = []
        for i, c in enumerate(self.cut_offs):
            line = ' '.join('{}@{}: {:.6f}'.format(METRIC_NAMES[k], c, v[i]) for k, v in self.metrics.items())
            if c in self.pruned_cut_offs:
                line += '   (from the fast inference top-k list)'
            out.append(line)
        return out + self.notes
