"""YouTubeDNN as the PeerCollab release trains it (``YoutubeDNN/``), and its peers.

    python run.py TRAIN -g peercollab.youtubednn -ps n_peers=2,cooperation=lw -t TEST --protocol last -m 5 20

The release's model (../shared/reference/peercollab.md, section 5): the same rows as its SASRec
(left-padded windows of T items: the first T-1 the input, the last the only target, one example
per window), an item embedding (PyTorch's N(0, 1) initialisation, the padding row zero and never
trained), dropout, an MLP of ``layer_num`` layers d -> d with ReLU and dropout, the mean over all
T-1 positions (padding ones included: they contribute relu(bias)), then an output layer d -> V with
a bias; the full-softmax cross-entropy of the last item; PyTorch's Adam (weight decay ``l2``). The
paper trains it at lr 1e-4 (the script's default is 1e-3); batch 128, d 256, one layer.

Left out: the release's optional BatchNorm in the MLP (``--use_bn``, off by default).
"""
from collections import OrderedDict

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import disconnected_grad

from recsys_core.blocks import torch_uniform
from recsys_core.optim import DenseAdam
from recsys_core.params import KEY_PARAMS, Param, non_negative, positive, probability
from recsys_core.randomness import dropout
from recsys_core.sequence_model import VOCABULARY, SequenceRecommender
from recsys_core.softmax import linear_cross_entropy

from . import cooperation
from .model import PeerModel, peer_params

DNN_PARAMS = [
    Param('hidden', 256, positive, doc='d: embedding and MLP width (the paper: 64 on Retailrocket)'),
    Param('layer_num', 1, non_negative, doc='hidden layers of the MLP (d -> d, ReLU)'),
    Param('dropout', 0.0, probability, doc='on the embeddings and after each MLP layer'),
    Param('learning_rate', 0.0001, positive, doc="the paper's rate for DNN (the script's default is 1e-3)"),
    Param('l2', 0.0, non_negative, doc="Adam's weight decay (the release's --L2)"),
    Param('batch_size', 128, positive),
    Param('n_epochs', 200, non_negative),
    Param('max_len', 100, non_negative, doc='sequence length T (rows of T items: T-1 inputs); 0 = the longest'),
    Param('seed', 10, doc='peer k draws its initialisation and its one data permutation from seed + k - 1'),
    VOCABULARY,
]


class YouTubeDNN(SequenceRecommender):
    """One YouTubeDNN peer. Trained by :class:`PeerYouTubeDNN`, which wires its vocabulary and shared
    variables; as a model it scores, ranks and is evaluated like any."""

    PARAMS = DNN_PARAMS + KEY_PARAMS
    ALIASES = {'vocab': 'vocabulary'}
    weight_kind = staticmethod(cooperation.layered_weight_kind)

    def _init_weights(self):
        rng = np.random.default_rng(self.seed)
        d, V = self.hidden, self.n_vocab
        w = OrderedDict()
        items = rng.standard_normal((V, d)).astype('float32')
        items[self.pad_index] = 0  # nn.Embedding(padding_idx=...) zeroes the row
        w['item_emb'] = items
        for layer in range(self.layer_num):
            w['mlp{}_W'.format(layer)] = torch_uniform(rng, (d, d), d)
            w['mlp{}_b'.format(layer)] = torch_uniform(rng, (d,), d)
        w['final_W'] = torch_uniform(rng, (d, V), d)
        w['final_b'] = torch_uniform(rng, (V,), d)
        return w

    def _pooled(self, X, random_source=None):
        """(B, 1, d): the mean over the window's positions of the MLP's output."""
        items = self.shared['item_emb']
        is_pad = pt.eq(pt.arange(items.shape[0]), self.pad_index)[:, None]
        h = pt.switch(is_pad, disconnected_grad(items), items)[X]  # the padding row gets no gradient
        if random_source is not None:
            h = dropout(h, self.dropout, random_source)
        for layer in range(self.layer_num):
            h = pt.maximum(pt.dot(h, self.shared['mlp{}_W'.format(layer)]) + self.shared['mlp{}_b'.format(layer)], 0)
            if random_source is not None:
                h = dropout(h, self.dropout, random_source)
        return h.mean(axis=1, keepdims=True)

    def _hidden(self, X):
        return self._pooled(X)

    def _train_hidden(self, X, random_source):
        return self._pooled(X, random_source if self.dropout else None)

    def _batch_variables(self):
        """One example per row: the first T-1 items in, the last item the target."""
        X = pt.imatrix('X')
        return [X], X[:, :-1], X[:, -1:], lambda h: h

    def _batch_values(self, rows):
        return [rows], rows[:, -1:]

    def _targets_per_row(self):
        return 1

    def _train_loss(self, h, labels, extra):
        return linear_cross_entropy(h[:, 0, :], self.shared['final_W'], self.shared['final_b'], labels.ravel())

    def _regularization(self):
        """Adam's coupled weight decay l2 * w is the gradient of l2 / 2 * |w|^2 (every weight, as torch)."""
        if not self.l2:
            return 0
        return 0.5 * self.l2 * sum((v ** 2).sum() for v in self.shared.values())

    def _log_scores(self, h_last):
        return pt.dot(h_last, self.shared['final_W']) + self.shared['final_b']

    def _optimizer(self, learning_rate=None):
        return DenseAdam(self.learning_rate if learning_rate is None else learning_rate, 0.9, torch_epsilon=True)


class PeerYouTubeDNN(PeerModel, SequenceRecommender):
    """Peers of the release's YouTubeDNN (``-g peercollab.youtubednn``); noise control defaults as
    DNN_Noise.py (rate 0.02, period 50)."""

    PEER_CLASS = YouTubeDNN
    PARAMS = DNN_PARAMS + peer_params(cooperation.LW_TYPES, noise_rate=0.02, noise_period=50) + KEY_PARAMS


MODEL_CLASS = PeerYouTubeDNN
