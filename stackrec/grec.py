"""GRec as the StackRec release trains it (deep_GRec.py, generator_deep_GRec.py): not the WWW'20
encoder-decoder but StackRec's NextItNet stack (causal dilated blocks with a ReZero scale each)
trained on a masked "gap-filling" objective (../shared/reference/stackrec.md section 4.2, P9).

Each training batch, per row x[0..L-1] of the batch: m = min(50, max(1, int(round((L-1) * 0.2))))
distinct positions q among 1..L-1 (never 0; padding positions can be chosen) are replaced by the
mask id; the input is the whole masked row (length L, not shifted); the hidden state at q-1 (which,
the convolutions being causal, never sees x[q]) predicts the original x[q], with the sampled
softmax over the B*m masked rows (NextItNet's is_negsample sampler: one candidate set per batch,
drawn after the masks). Evaluation is NextItNet's: input x[:, :-1], unmasked, the last position.
Defaults as released: batch 1024, masked_lm_prob 0.2, max_predictions_per_seq 50, lr 1e-3, 64
channels, the StackNextItNet stack.

Differences from the release:
- the masks come from a numpy generator seeded with seed + 3 that is host state of the training
  plan (checkpointed with the sampler's generator), so a resumed run draws the masks the
  uninterrupted run would; the release draws them from an unseeded ``random.Random()`` (every run
  differs). The m positions of a row are a uniformly random m-subset of 1..L-1, as the release's
  shuffle-then-take, but not the release's draws;
- the mask id is the padding class (index ``pad_index``): the release masks with <UNK> = 0, which
  never occurs in its data, while its pad token '0' is an ordinary class of its own. This project's
  vocabulary has one padding class that is never recommended and never a real item, so it takes
  <UNK>'s role; a masked position therefore looks like a padding position to the network (in the
  release the two ids differ);
- every difference StackNextItNet lists (windows, complete batches, the padding class never
  recommended).
"""
import numpy as np
import pytensor.tensor as pt

from recsys_core.params import KEY_PARAMS, Param, fraction, positive

from .nextitnet import StackNextItNet, _defaults

MASK_SEED_OFFSET = 3   # the masks' generator: seed + 3 (seed + 1 is the sampler's, seed + 2 dropout's)


def n_masked(seq_len, masked_lm_prob=0.2, max_predictions_per_seq=50):
    """m, the masked positions per row of length ``seq_len``: the release's
    min(max_predictions_per_seq, max(1, int(round((L - 1) * masked_lm_prob)))) (Python's round)."""
    return min(max_predictions_per_seq, max(1, int(round((seq_len - 1) * masked_lm_prob))))


def mask_rows(rows, m, mask_id, rng):
    """(masked inputs (B, L), positions q - 1 (B, m), labels x[q] (B, m)) of a batch of rows.

    Per row, m distinct positions q among 1..L-1 (a uniform m-subset, in increasing order) are
    replaced by ``mask_id`` in a copy of the rows; ``rows`` is left as it is.
    """
    rows = np.asarray(rows)
    B, L = rows.shape
    keys = rng.random((B, L - 1))
    q = np.sort(np.argpartition(keys, m - 1, axis=1)[:, :m], axis=1) + 1
    r = np.arange(B)[:, None]
    inputs = rows.copy()
    inputs[r, q] = mask_id
    return inputs.astype(np.int32), (q - 1).astype(np.int32), rows[r, q].astype(np.int32)


class GRec(StackNextItNet):
    """StackRec's GRec: the StackNextItNet stack trained to fill masked gaps (section 4.2)."""

    PARAMS = [p for p in _defaults(StackNextItNet.PARAMS, batch_size=1024) if p not in KEY_PARAMS] + [
        Param('masked_lm_prob', 0.2, fraction, doc='masked positions per row as a fraction of L - 1'),
        Param('max_predictions_per_seq', 50, positive, doc='at most this many masked positions per row'),
    ] + KEY_PARAMS

    def __init__(self, **kwargs):
        self._mask_rng = None
        super().__init__(**kwargs)

    def n_masked(self):
        return n_masked(self.seq_len, self.masked_lm_prob, self.max_predictions_per_seq)

    def _describe(self):
        return super()._describe() + ', {} masked positions per row'.format(self.n_masked())

    def _training_plan(self, request):
        self._mask_rng = np.random.default_rng(self.seed + MASK_SEED_OFFSET)
        return super()._training_plan(request)

    def _batch_variables(self):
        """The whole masked row in; the hidden states at q - 1 predict x[q]."""
        X, prev, labels = pt.imatrix('X'), pt.imatrix('masked_prev'), pt.imatrix('masked_labels')

        def select(h):
            # (B, m, C): one flat row gather (C code forward and backward; a 2-d fancy index's
            # gradient runs in Python)
            flat = (pt.arange(h.shape[0])[:, None] * h.shape[1] + prev).ravel()
            return h.reshape((-1, h.shape[2]))[flat].reshape((prev.shape[0], prev.shape[1], h.shape[2]))
        return [X, prev, labels], X, labels, select

    def _batch_values(self, rows):
        inputs, prev, labels = mask_rows(rows, self.n_masked(), self.pad_index, self._mask_rng)
        return [inputs, prev, labels], labels

    def _targets_per_row(self):
        return self.n_masked()

    def _host_state(self):
        return {'sampler': self._rng, 'masks': self._mask_rng}

    def _set_host_state(self, state):
        self._rng, self._mask_rng = state['sampler'], state['masks']


MODEL_CLASS = GRec
