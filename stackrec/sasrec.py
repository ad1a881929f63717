"""SASRec as the StackRec release trains it (SASRec_Alpha.py, Modules.py, baseline_SASRec.py), with
the ReZero-style scales stacking needs; ``rezero=False`` and ``input_layer_norm=False`` give the
plain block stack other releases use (PeerCollab's SASRec).

As released (../shared/reference/stackrec.md, section 4.3): item and position embeddings N(0, 0.01)
(the position table has one row per row position, one more than the inputs use; no sqrt(d)
scaling), dropout then a LayerNorm on the input, blocks of recsys_core.blocks.SASRecBlock (no
attention output projection, post-LN, FFN width d, alpha on each sub-layer starting at 0), a
separate output layer with PyTorch's default initialisation, the full-softmax cross-entropy over
every position (padding targets included), PyTorch's Adam, lr 1e-3, batch 256, d = 64, one head.
Differences: the padding class is never recommended (as for NextItNet); the release leaves dropout
off for the rest of an epoch after its first evaluation (pitfall P16), here dropout is on for
every training step (it is 0 by default, so the default runs are the same).

``loss=bce`` trains with SASRec's own loss (Kang & McAuley's code) instead: at every position with
a real target, -log sigmoid(s(target)) - log sigmoid(-s(negative)) with one negative per position
drawn uniformly from the items that are not among the row's targets (Kang's: not in the user's
training sequence; the row's targets are that sequence but its first item when it fits in
max_len), averaged over those positions; s is the output layer's score.
Its output layer costs two columns per position instead of the whole vocabulary.

``block=kang`` is the network of Kang & McAuley's own code (recsys_core.blocks.KangSASRecBlock):
item embeddings scaled by sqrt(d) plus position embeddings, dropout, the padding positions zeroed;
pre-LN blocks whose residual is the normalised input, with keys and values from the unnormalised
one and padding keys masked; a final LayerNorm (eps 1e-8); the item embedding as the output layer,
without a bias; Glorot-uniform tables and kernels, zero biases, the padding row zero; TF's Adam with
beta2 0.98. With ``loss=bce`` it trains what their code trains, but for the rows: theirs are the
last max_len items of randomly drawn users, ours every window of every user in a fixed order (the
same rows as every sequence model here). Their max_len counts inputs; ours counts the window with
its target, so their maxlen=200 is our max_len=201.
"""
from collections import OrderedDict

import numpy as np
import pytensor.tensor as pt

from recsys_core.blocks import (LAYER_NORM_EPS, TORCH_LAYER_NORM_EPS, KangSASRecBlock, LayerNorm, Linear, SASRecBlock,
                                Scale, apply_stack, glorot_uniform, torch_uniform)
from recsys_core.optim import DenseAdam
from recsys_core.params import KEY_PARAMS, Param, non_negative, one_of, positive, probability
from recsys_core.randomness import dropout
from recsys_core.sequence_model import VOCABULARY, SequenceRecommender
from recsys_core.softmax import linear_cross_entropy


class SASRec(SequenceRecommender):
    """Self-attentive sequential recommendation (Kang & McAuley, ICDM 2018) as StackRec released it."""

    PARAMS = [
        Param('hidden', 64, positive, doc='d: embedding and block width'),
        Param('num_blocks', 12, positive),
        Param('num_heads', 1, positive),
        Param('dropout', 0.0, probability),
        Param('rezero', True, doc='a learnable scale (init 0) on each sub-layer, as StackRec'),
        Param('input_layer_norm', True, doc='LayerNorm after the input dropout, as StackRec'),
        Param('block', 'stackrec', one_of(('stackrec', 'kang')),
              doc="stackrec: the StackRec/PeerCollab block stack; kang: Kang & McAuley's own (pre-LN, embeddings "
                  "scaled by sqrt(d), padding masked, a final LayerNorm, the item embedding as the output layer, "
                  "Glorot initialisation, Adam beta2 0.98); rezero and input_layer_norm do not apply to it"),
        Param('learning_rate', 0.001, positive),
        Param('beta1', 0.9, probability),
        Param('batch_size', 256, positive),
        Param('n_epochs', 10, non_negative),
        Param('max_len', 0, non_negative, doc='sequence length T; 0 = the longest training sequence'),
        Param('seed', 10),
        Param('loss', 'softmax', one_of(('softmax', 'bce')),
              doc="softmax: the full-softmax cross-entropy over every position (StackRec's); bce: SASRec's, one "
                  "sampled negative per real target"),
        VOCABULARY,
    ] + KEY_PARAMS
    ALIASES = {'vocab': 'vocabulary'}

    def check_params(self, p):
        if p['hidden'] % p['num_heads']:
            return 'hidden={} must be divisible by num_heads={}'.format(p['hidden'], p['num_heads'])
        return None

    @property
    def kang(self):
        return getattr(self, 'block', 'stackrec') == 'kang'

    def _residual_blocks(self):
        if self.kang:
            return [KangSASRecBlock(Linear('b{}_q'.format(i)), Linear('b{}_k'.format(i)), Linear('b{}_v'.format(i)),
                                    LayerNorm('b{}_na'.format(i), LAYER_NORM_EPS), Linear('b{}_f1'.format(i)),
                                    Linear('b{}_f2'.format(i)), LayerNorm('b{}_nf'.format(i), LAYER_NORM_EPS),
                                    heads=self.num_heads)
                    for i in range(self.num_blocks)]

        def scale(name):
            return Scale(name) if self.rezero else None
        return [SASRecBlock(Linear('b{}_q'.format(i)), Linear('b{}_k'.format(i)), Linear('b{}_v'.format(i)),
                            LayerNorm('b{}_na'.format(i), TORCH_LAYER_NORM_EPS), Linear('b{}_f1'.format(i)),
                            Linear('b{}_f2'.format(i)), LayerNorm('b{}_nf'.format(i), TORCH_LAYER_NORM_EPS),
                            heads=self.num_heads, scale_attn=scale('b{}_sa'.format(i)), scale_ffn=scale('b{}_sf'.format(i)))
                for i in range(self.num_blocks)]

    def _init_weights(self):
        if self.kang:
            return self._kang_weights()
        rng = np.random.default_rng(self.seed)
        d, V = self.hidden, self.n_vocab
        w = OrderedDict()
        w['item_emb'] = (rng.standard_normal((V, d)) * 0.01).astype('float32')
        w['pos_emb'] = (rng.standard_normal((self.seq_len, d)) * 0.01).astype('float32')
        if self.input_layer_norm:
            w.update(LayerNorm('ln_pre').init(d))
        for block in self._residual_blocks():
            for part in block.parts():
                if isinstance(part, Linear):
                    w[part.name + '_W'] = torch_uniform(rng, (d, d), d)
                    w[part.name + '_b'] = torch_uniform(rng, (d,), d)
                elif isinstance(part, LayerNorm):
                    w.update(part.init(d))
                else:
                    w.update(part.init())
        w['final_W'] = torch_uniform(rng, (d, V), d)
        w['final_b'] = torch_uniform(rng, (V,), d)
        return w

    def _kang_weights(self):
        """TF's default (Glorot uniform) for the tables and dense kernels, zero biases, the padding
        row of the item table zero (it stays so: its input positions are zeroed and it is never a
        target or a negative)."""
        rng = np.random.default_rng(self.seed)
        d, V = self.hidden, self.n_vocab
        w = OrderedDict()
        w['item_emb'] = glorot_uniform(rng, (V, d))
        w['item_emb'][self.pad_index] = 0
        w['pos_emb'] = glorot_uniform(rng, (self.seq_len, d))
        for block in self._residual_blocks():
            for part in block.parts():
                if isinstance(part, Linear):
                    w[part.name + '_W'] = glorot_uniform(rng, (d, d))
                    w[part.name + '_b'] = np.zeros(d, dtype='float32')
                else:
                    w.update(part.init(d))
        w.update(LayerNorm('ln_final').init(d))
        return w

    def _embed(self, X):
        """Item plus position embeddings of a (B, T) index matrix (SSE-PT adds its user)."""
        return self.shared['item_emb'][X] + self.shared['pos_emb'][:X.shape[1]][None, :, :]

    def _input(self, X, random_source=None):
        if self.kang:
            e = self.shared['item_emb'][X] * np.float32(np.sqrt(self.hidden)) + self.shared['pos_emb'][:X.shape[1]][None]
            if random_source is not None:
                e = dropout(e, self.dropout, random_source)
            return e * pt.cast(pt.neq(X, self.pad_index), e.dtype)[:, :, None]
        e = self._embed(X)
        if random_source is not None:
            e = dropout(e, self.dropout, random_source)
        if self.input_layer_norm:
            e = LayerNorm('ln_pre', TORCH_LAYER_NORM_EPS)(self.shared, e)
        return e

    def _hidden(self, X):
        return self._top(apply_stack(self.shared, self._input(X), self._residual_blocks(), self._layouts))

    def _train_hidden(self, X, random_source):
        if not self.dropout:
            return self._hidden(X)
        return self._top(apply_stack(self.shared, self._input(X, random_source), self._residual_blocks(),
                                     self._layouts, p_drop=self.dropout, srng=random_source))

    def _top(self, h):
        return LayerNorm('ln_final', LAYER_NORM_EPS)(self.shared, h) if self.kang else h

    def _output_layer(self):
        """(W (d, V), b or None): Kang's scores with the item embedding itself, without a bias."""
        if self.kang:
            return self.shared['item_emb'].T, None
        return self.shared['final_W'], self.shared['final_b']

    def _loss_inputs(self):
        return [pt.imatrix('negatives')] if getattr(self, 'loss', 'softmax') == 'bce' else []

    def _loss_feed(self, labels):
        """loss=bce: per position a uniform item that is not among the row's targets (redrawn until so)."""
        if getattr(self, 'loss', 'softmax') != 'bce':
            return []
        items = np.flatnonzero(np.arange(self.n_vocab) != self.pad_index)
        negatives = items[self._rng.integers(0, len(items), labels.shape)]
        while True:
            bad = (negatives[:, :, None] == labels[:, None, :]).any(axis=2)
            if not bad.any():
                return [negatives.astype(np.int32)]
            negatives[bad] = items[self._rng.integers(0, len(items), int(bad.sum()))]

    def _train_loss(self, h, labels, extra):
        """Mean full-softmax cross-entropy over every position (padding targets included, as released);
        loss=bce: SASRec's binary cross-entropy of each real target against its sampled negative."""
        flat = h.reshape((-1, h.shape[2]))
        W, b = self._output_layer()
        if getattr(self, 'loss', 'softmax') != 'bce':
            return linear_cross_entropy(flat, W, b, labels.ravel())
        pos, neg = labels.ravel(), extra[0].ravel()
        s_pos, s_neg = (flat * W.T[pos]).sum(axis=1), (flat * W.T[neg]).sum(axis=1)
        if b is not None:
            s_pos, s_neg = s_pos + b[pos], s_neg + b[neg]
        real = pt.cast(pt.neq(pos, self.pad_index), 'float32')
        return ((pt.softplus(-s_pos) + pt.softplus(s_neg)) * real).sum() / pt.maximum(real.sum(), 1)

    def _log_scores(self, h_last):
        W, b = self._output_layer()
        return pt.dot(h_last, W) if b is None else pt.dot(h_last, W) + b

    def _optimizer(self, learning_rate=None):
        rate = self.learning_rate if learning_rate is None else learning_rate
        if self.kang:
            return DenseAdam(rate, self.beta1, beta2=0.98)  # Kang's: TF's Adam
        return DenseAdam(rate, self.beta1, torch_epsilon=True)


MODEL_CLASS = SASRec
