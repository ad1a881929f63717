"""The NextItNet model: causal dilated residual CNN over left-padded item sequences.

What is NextItNet's own is here: its parameters, weights and their initialisation, the residual
stack (a list of recsys_core.blocks.DilatedResidualBlock), the full or sampled softmax loss and the
scores. Vocabulary, windows, the training plan, masked scoring, last-item ranking, recommendation
and model files are recsys_core.sequence_model.SequenceRecommender's. CpRec subclasses it with its
own vocabulary order, weights, input layer, block sharing, loss and scores.
"""
from collections import OrderedDict

import numpy as np
import pytensor.tensor as pt

from recsys_core.blocks import Conv, DilatedResidualBlock, LayerNorm, apply_stack, distinct_parts, receptive_field
from recsys_core.blocks import truncated_normal
from recsys_core.params import KEY_PARAMS, Param, fraction, non_negative, positive, positive_list, probability
from recsys_core.sequence_model import PAD_TOKEN, PADDING_LOSS, VOCABULARY, SequenceRecommender  # noqa: F401
from recsys_core.softmax import linear_cross_entropy

from . import sampled_softmax

dilation_list = positive_list('dilations', '1/2/1/2')


class NextItNet(SequenceRecommender):
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
        Param('beta1', 0.9, probability),
        Param('batch_size', 128, positive),
        Param('n_epochs', 10, non_negative),
        Param('max_len', 0, non_negative, doc='sequence length T; 0 = the longest training sequence'),
        Param('is_negsample', False, doc='sampled softmax (TF log-uniform sampler) instead of the full softmax'),
        Param('sample_percentage', 0.2, fraction, doc='sampled candidates as a fraction of the vocabulary'),
        Param('tied_init', True, doc='same-shaped conv kernels start equal, as the release (op seed 1)'),
        Param('seed', 42),
        VOCABULARY,
        PADDING_LOSS,
    ] + KEY_PARAMS
    ALIASES = {'vocab': 'vocabulary'}

    def _describe(self):
        return ', receptive field {}'.format(receptive_field(self.dilations, self.kernel_size))

    # ----------------------------------------------------------------- the residual stack
    def _residual_blocks(self):
        """The stack: one DilatedResidualBlock per entry of ``dilations``, each with its own two
        convolutions and LayerNorms (CpRec's sharing schemes give blocks common Conv objects)."""
        return [DilatedResidualBlock(Conv('conv{}a'.format(i)), Conv('conv{}b'.format(i)), LayerNorm('ln{}a'.format(i)),
                                     LayerNorm('ln{}b'.format(i)), d) for i, d in enumerate(self.dilations)]

    # ----------------------------------------------------------------- weights
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
        """Each distinct convolution of the stack once (truncated normal, std 0.02; all equal with
        tied_init, as released), then every block's LayerNorms (1, 0)."""
        C, k = self.dilated_channels, self.kernel_size
        blocks = self._residual_blocks()
        w = OrderedDict()
        tied = truncated_normal(rng, (k, C, C), 0.02) if self.tied_init else None
        for conv in distinct_parts(blocks, Conv):
            w[conv.name + '_W'] = tied.copy() if tied is not None else truncated_normal(rng, (k, C, C), 0.02)
            w[conv.name + '_b'] = np.zeros(C, dtype='float32')
        for block in blocks:
            w.update(block.norm_a.init(C))
            w.update(block.norm_b.init(C))
        return w

    # ----------------------------------------------------------------- graph pieces
    def _embed(self, X):
        return self.shared['E'][X]

    def _hidden(self, X):
        """Final residual output for a (B, L) matrix of item indices: (B, L, C)."""
        return apply_stack(self.shared, self._embed(X), self._residual_blocks(), self._layouts)

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
        """Mean loss over every position (padding targets included, as released), or with
        padding_loss=skip over the positions with a real target, the only ones scored."""
        if self.is_negsample:
            sampled, true_logq, sampled_logq = extra
            flat, y, (true_logq,), mask = self._scored_rows(h.reshape((-1, h.shape[2])), labels.ravel(),
                                                            true_logq)
            return sampled_softmax.sampled_softmax_loss(flat, y, self.shared['Ws'], self.shared['bs'], sampled,
                                                        true_logq, sampled_logq, mask=mask)
        flat, y, _, mask = self._scored_rows(h.reshape((-1, h.shape[2])), labels.ravel())
        return linear_cross_entropy(pt.maximum(flat, 0), self.shared['Wo'], self.shared['bo'], y, mask)

    def _log_scores(self, h_last):
        """Scores over the whole vocabulary for the last position (monotone in its probability)."""
        if self.is_negsample:
            return pt.dot(h_last, self.shared['Ws'].T) + self.shared['bs']
        return pt.dot(pt.maximum(h_last, 0), self.shared['Wo']) + self.shared['bo']

    # ----------------------------------------------------------------- parameter counts
    def _report(self):
        return self.parameter_report()

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
