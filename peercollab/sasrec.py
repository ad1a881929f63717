"""The SASRec each PeerCollab peer is (reference section 2): StackRec's SASRec without its ReZero
scales and input LayerNorm, which is the release's block stack (no attention output projection,
post-LN, FFN width d, separate output layer with a bias, full-softmax cross-entropy over every
position, padding targets included), with PeerCollab's defaults (d 256, 2 blocks, 1 head,
dropout 0, batch 128, max_len 100, PyTorch's Adam at lr 1e-3).

PeerCollab compiles the step of :meth:`_step_graph` with the learning rate as a scalar input, so
the host feeds the cosine schedule and each peer's own rate (difflr) per batch.
"""
import pytensor.tensor as pt
from pytensor.gradient import disconnected_grad

from recsys_core.params import KEY_PARAMS, Param, non_negative, positive, probability
from recsys_core.sequence_model import VOCABULARY
from stackrec.sasrec import SASRec

from .cooperation import sasrec_weight_kind

SASREC_PARAMS = [
    Param('hidden', 256, positive, doc='d: embedding and block width (the paper: 64 on Retailrocket)'),
    Param('num_blocks', 2, positive),
    Param('num_heads', 1, positive),
    Param('dropout', 0.0, probability),
    Param('learning_rate', 0.001, positive, doc="the base rate (the peers' with difflr: lr * (1 + cos(pi (P-k)/P)) / 2)"),
    Param('batch_size', 128, positive),
    Param('n_epochs', 200, non_negative),
    Param('max_len', 100, non_negative, doc='sequence length T (rows of T items: T-1 inputs); 0 = the longest'),
    Param('seed', 10, doc='peer k draws its initialisation and its one data permutation from seed + k - 1'),
    VOCABULARY,
]


class PeerSASRec(SASRec):
    """One peer: the release's SASRec. Trained by :class:`peercollab.model.PeerCollab`, which wires
    its vocabulary and shared variables; as a model it scores, ranks and is evaluated like any."""

    PARAMS = SASREC_PARAMS + KEY_PARAMS
    rezero = False            # the release has no branch scales ...
    input_layer_norm = False  # ... and no LayerNorm on the input
    beta1 = 0.9               # PyTorch's Adam defaults (the release ignores --beta1)
    weight_kind = staticmethod(sasrec_weight_kind)  # for LW: the kind of each weight, by name

    def _embed(self, X):
        """SASRec's item plus position embeddings, with the padding row frozen as released: the
        release builds its embedding with padding_idx, so the row is its random initial vector in
        every forward pass and gets no gradient (only peer merges change it)."""
        items = self.shared['item_emb']
        is_pad = pt.eq(pt.arange(items.shape[0]), self.pad_index)[:, None]
        table = pt.switch(is_pad, disconnected_grad(items), items)
        return table[X] + self.shared['pos_emb'][:X.shape[1]][None, :, :]
