"""The CpRec model: NextItNet with block-wise embedding/softmax and layer-wise parameter sharing."""
from collections import OrderedDict

import numpy as np
import pytensor.tensor as pt

from nextitnet.model import NextItNet
from recsys_core.backend import compile_function, needs_static_shapes
from recsys_core.blocks import glorot_uniform
from recsys_core.errors import UserError
from recsys_core.optim import mean_l2
from recsys_core.params import KEY_PARAMS, Param, all_positive, non_negative, one_of, positive
from recsys_core.sequence_model import PAD_TOKEN
from recsys_core.softmax import linear_cross_entropy

from . import blockwise
from .sharing import SCHEMES, middle_parameters, residual_blocks

SOFTMAX_TYPES = ('FullSoftmax', 'Block_Input_Full', 'Block_for_Softmax', 'Block_Input_Softmax',
                 'Block_Input_Softmax_Inference')
BLOCK_INPUT = ('Block_Input_Full', 'Block_Input_Softmax', 'Block_Input_Softmax_Inference')
BLOCK_OUTPUT = ('Block_for_Softmax', 'Block_Input_Softmax', 'Block_Input_Softmax_Inference')


class _BlockParam(Param):
    """block: 'default', 'auto' or boundaries separated by / (e.g. 7000/15000)."""

    def cast(self, value):
        if value in ('default', 'auto'):
            return value
        if isinstance(value, str):
            return [int(v) for v in value.split('/') if v != '']
        if isinstance(value, (list, tuple)):
            return [int(v) for v in value]
        raise ValueError("expected 'default', 'auto' or a list of boundaries")


def _check_block(v):
    if v in ('default', 'auto'):
        return None
    return None if v and all(b > 0 for b in v) else "must be 'default', 'auto' or positive boundaries (e.g. 7000/15000)"


class CpRec(NextItNet):
    """CpRec (Sun et al., SIGIR 2020) as released in siat-nlp/CpRec (nextitrec_eval.py), intended behaviour."""

    PARAMS = [p for p in NextItNet.PARAMS if p.name not in ('is_negsample', 'sample_percentage', 'dilated_channels',
                                                            'dilations') and p not in KEY_PARAMS] + [
        Param('dilated_channels', 512, positive, doc='d: embedding, residual and softmax width'),
        Param('dilations', [1, 4, 1, 4], NextItNet.PARAMS[1].check, item_type=int),
        Param('use_softmax_type', 'Block_Input_Softmax', one_of(SOFTMAX_TYPES)),
        Param('use_parametersharing_type', 'original', one_of(SCHEMES)),
        Param('use_embedding_type_factor', 4, positive),
        _BlockParam('block', 'default', _check_block),
        Param('block_dims', [], all_positive.says('sizes must be positive'), item_type=int),
        Param('l2_reg', 0.001, non_negative, doc='weight of the mean over tensors of 1/2 ||v||^2'),
        Param('top_k', 5, positive, doc='k of the fast inference (Block_Input_Softmax_Inference)'),
        Param('inference_rule', 'released', one_of(('released', 'exact'))),
        Param('pad_token', '0', doc="the padding token of pre-padded files (NextItNet's README pads with 0): an "
                                    "ordinary class, as released, but no share in block=auto; '' = none"),
    ] + KEY_PARAMS
    ALIASES = dict(NextItNet.ALIASES, softmax_type='use_softmax_type')  # the CpRec README's flag name

    def __init__(self, **kwargs):
        self.bounds = None
        self.last_inference_stats = None
        super().__init__(**kwargs)

    # ----------------------------------------------------------------- vocabulary: frequency ranks
    def _vocabulary(self, item_ids, counts, n_pad):
        """Ids are frequency ranks (count descending, ties by token), <PAD> counted as its padding slots."""
        tokens = np.concatenate([np.asarray(item_ids, dtype=object), [PAD_TOKEN]])
        freq = np.concatenate([counts, [n_pad]])
        order = sorted(range(len(tokens)), key=lambda i: (-freq[i], tokens[i]))
        vocab = tokens[order]
        self._freq = freq[order]
        return vocab, int(np.flatnonzero(vocab == PAD_TOKEN)[0])

    def _share_counts(self):
        """Frequencies in id order for block=auto, padding left out: the <PAD> class and the file's
        literal pad token (``pad_token``) keep their frequency rank but hold no share, so heavy
        padding cannot fill the head alone and push every real item into a compressed tail."""
        counts = np.asarray(self._freq, dtype=np.float64).copy()
        counts[self.pad_index] = 0
        if self.pad_token:
            counts[self.vocab == self.pad_token] = 0
        return counts

    @property
    def plain(self):
        """use_embedding_type_factor=1 without block_dims: the release's 'basic embedding' (its help
        text), so every use_softmax_type is the uncompressed FullSoftmax network."""
        return self.use_embedding_type_factor == 1 and not self.block_dims

    @property
    def block_input(self):
        return self.use_softmax_type in BLOCK_INPUT and not self.plain

    @property
    def block_output(self):
        return self.use_softmax_type in BLOCK_OUTPUT and not self.plain

    # ----------------------------------------------------------------- weights
    def _residual_blocks(self):
        """The stack with the convolutions shared as use_parametersharing_type says (cprec.sharing)."""
        return residual_blocks(self.use_parametersharing_type, self.dilations)

    def _init_weights(self):
        rng = np.random.default_rng(self.seed)
        d, V = self.dilated_channels, self.n_vocab
        if self.block_input or self.block_output:
            self.bounds = blockwise.resolve_boundaries(self.block, self._share_counts())
        n_tails = len(self.bounds) - 1 if self.bounds else 0
        w = OrderedDict()
        if self.block_input:
            w['in_head'] = glorot_uniform(rng, (self.bounds[0], d))
            dims = blockwise.tail_dims(d, n_tails, self.use_embedding_type_factor, self.block_dims, softmax=False)
            for j, dj in enumerate(dims):
                w['in_tail{}'.format(j + 1)] = glorot_uniform(rng, (self.bounds[j + 1] - self.bounds[j], dj))
                w['in_proj{}'.format(j + 1)] = glorot_uniform(rng, (dj, d))
        else:
            limit = np.sqrt(1.0 / V)
            w['E'] = rng.uniform(-limit, limit, (V, d)).astype('float32')
        w.update(self._init_convs(rng))
        if self.block_output:
            w['out_head'] = glorot_uniform(rng, (d, self.bounds[0] + n_tails))
            dims = blockwise.tail_dims(d, n_tails, self.use_embedding_type_factor, self.block_dims, softmax=True)
            for j, dj in enumerate(dims):
                w['out_down{}'.format(j + 1)] = glorot_uniform(rng, (d, dj))
                w['out_tail{}'.format(j + 1)] = glorot_uniform(rng, (dj, self.bounds[j + 1] - self.bounds[j]))
        else:
            w['Wf'] = (rng.standard_normal((d, V)) * 0.01).astype('float32')
            w['bf'] = np.full(V, 0.1, dtype='float32')
        return w

    def _tails(self, prefix):
        return [self.shared['{}{}'.format(prefix, j)] for j in range(1, len(self.bounds))]

    # ----------------------------------------------------------------- graph pieces
    def _embed(self, X):
        if not self.block_input:
            return self.shared['E'][X]
        return blockwise.block_embedding(X, self.shared['in_head'], self._tails('in_tail'), self._tails('in_proj'),
                                         self.bounds)

    def _loss_inputs(self):  # no sampled softmax in CpRec: its softmaxes are full or block-wise
        return []

    def _loss_feed(self, labels):
        return []

    def _train_loss(self, h, labels, extra):
        """Mean over every position (padding targets included, as released), or with
        padding_loss=skip over the real targets only, the only rows the softmax scores (the
        padding class is ``pad_index``; a pre-padded file's literal pad token is an item)."""
        flat, y, _, mask = self._scored_rows(h.reshape((-1, h.shape[2])), labels.ravel())
        if self.block_output:
            return blockwise.block_softmax_loss(flat, y, self.shared['out_head'], self._tails('out_down'),
                                                self._tails('out_tail'), self.bounds, needs_static_shapes(), mask)
        return linear_cross_entropy(flat, self.shared['Wf'], self.shared['bf'], y, mask)

    def _log_scores(self, h_last):
        if self.block_output:
            return blockwise.block_log_probs(h_last, self.shared['out_head'], self._tails('out_down'),
                                             self._tails('out_tail'), self.bounds)
        return pt.dot(h_last, self.shared['Wf']) + self.shared['bf']

    def _regularization(self):
        """0.001 x the mean over variable tensors of 1/2 ||v||^2, as released (tensors, not elements)."""
        if self.l2_reg == 0:
            return 0
        return np.float32(self.l2_reg) * mean_l2(self._trainable())

    # ----------------------------------------------------------------- parameter counts
    def _part(self, name):
        if name.startswith('in_'):
            return 'input'
        if name.startswith(('out_', 'Wf', 'bf')):
            return 'output'
        return super()._part(name)

    def uncompressed_parameters(self):
        """Parameters of the same network without compression: full embedding and softmax, no sharing."""
        d, V = self.dilated_channels, self.n_vocab
        return V * d + middle_parameters('original', len(self.dilations), d, self.kernel_size) + d * V + V

    def parameter_report(self):
        """NextItNet's counts, the uncompressed network's and the compression rate."""
        total = self.parameter_counts()['total']
        full = self.uncompressed_parameters()
        blocks = '' if self.bounds is None else '; block boundaries {}'.format('/'.join(map(str, self.bounds)))
        return '{}; uncompressed: {:,}; compression rate {:.2f}x{}'.format(
            super().parameter_report(), full, full / total, blocks)

    # ----------------------------------------------------------------- fast inference
    def check_params(self, p):
        if p['block_dims'] and p['block_dims'][0] != p['dilated_channels']:
            return 'block_dims must start with the head width, dilated_channels={}'.format(p['dilated_channels'])
        return None

    def _fast_fns(self):
        def build():
            X, H, rows = pt.imatrix('X'), pt.fmatrix('H'), pt.ivector('rows')
            h_last = self._hidden(X)[:, -1, :]
            head = compile_function([X], [h_last, blockwise.head_probs(h_last, self.shared['out_head'])])
            tails = [compile_function([H, rows], blockwise.tail_probs(H[rows], U, O))
                     for U, O in zip(self._tails('out_down'), self._tails('out_tail'))]
            return head, tails
        return self._function('fast', build)

    def fast_top_k(self, windows, k=None):
        """Top-k (ids, probabilities) for (B, T-1) input windows with the early-stopping inference."""
        if not self.block_output:
            raise UserError('The fast inference needs the block-wise softmax (use_softmax_type={}, '
                            'use_embedding_type_factor={})'.format(self.use_softmax_type,
                                                                    self.use_embedding_type_factor))
        head_fn, tail_fns = self._fast_fns()
        h, p_head = head_fn(windows)
        ids, probs, evaluated = blockwise.fast_top_k(
            np.asarray(p_head), lambda j, rows: tail_fns[j - 1](h, rows.astype(np.int32)), self.bounds,
            k or self.top_k, self.inference_rule, self.pad_index)
        self.last_inference_stats = {'rows': len(windows), 'tails_evaluated': evaluated}
        return ids, probs

    def rank_last_items(self, histories, targets, mode, max_cut, cut_offs=None):
        """Ranks of each target after its history (the paper protocol).

        Block_Input_Softmax_Inference also runs the fast inference at its own ``top_k`` and keeps
        that pruned list's ranks (inf = not in the list; ties in list order) in
        ``last_inference_stats['pruned_ranks']``. Only the cut-off equal to top_k may take its
        numbers from that list: it is what the release computes and reports at its top_k. Any
        other cut-off c ranks exactly (the tree's log-probabilities): a list pruned at top_k is not
        the release's fast inference at c (that would prune at k = c), and for c < top_k its first
        c entries can still miss items of skipped tails, so neither would be a faithful number.

        cut_offs=None: 1-D exact ranks, for a caller that applies one rank to every cut-off (so
        nothing is taken from the pruned list). With cut_offs: a (len(cut_offs), n) array, row i
        from the pruned list when cut_offs[i] == top_k, exact otherwise; :meth:`pruned_cut_offs`
        then names those cut-offs.
        """
        fast = self.use_softmax_type == 'Block_Input_Softmax_Inference' and self.block_output
        cuts = None if cut_offs is None else [int(c) for c in cut_offs]
        need_exact = not fast or cuts is None or any(c != self.top_k for c in cuts)
        exact = super().rank_last_items(histories, targets, mode, max_cut) if need_exact else None
        if fast:
            pruned = self._pruned_ranks(histories, targets)
            self.last_inference_stats['pruned_cut_offs'] = sorted({c for c in cuts or () if c == self.top_k})
            self.last_inference_stats['pruned_ranks'] = pruned
        if cuts is None:
            return exact
        return np.stack([pruned if fast and c == self.top_k else exact for c in cuts])

    def pruned_cut_offs(self, cut_offs):
        """The cut-offs among ``cut_offs`` whose ranks the last :meth:`rank_last_items` call took
        from the fast inference's pruned top_k list (empty unless it was given its cut-offs)."""
        stats = self.last_inference_stats or {}
        return [int(c) for c in cut_offs if int(c) in stats.get('pruned_cut_offs', ())]

    def _pruned_ranks(self, histories, targets):
        """1-based positions of the targets in the fast inference's top_k lists (inf = not there);
        ``last_inference_stats`` gets rows, top_k, inference_rule and tails_evaluated (how many rows
        computed each tail)."""
        X = self.windows_of(histories)
        ranks = np.full(len(X), np.inf)
        tails = np.zeros(len(self.bounds) - 1, dtype=np.int64)
        for s in range(0, len(X), 256):
            ids, _ = self.fast_top_k(X[s:s + 256], self.top_k)
            tails += self.last_inference_stats['tails_evaluated']
            hit = ids == np.asarray(targets[s:s + 256])[:, None]
            found = hit.any(axis=1)
            ranks[s:s + 256][found] = hit[found].argmax(axis=1) + 1
        self.last_inference_stats = {'rows': len(X), 'top_k': self.top_k, 'inference_rule': self.inference_rule,
                                     'tails_evaluated': tails.tolist()}
        return ranks

    def evaluation_notes(self):
        """Which numbers came from the fast inference's pruned list, and how many rows computed each tail."""
        stats = self.last_inference_stats or {}
        if 'pruned_cut_offs' not in stats:
            return []
        which = ('@{} from its pruned top-{} lists, every other cut-off from the exact ranking'.format(
            stats['top_k'], stats['top_k']) if stats['pruned_cut_offs'] else
                 'not reported (no cut-off equals top_k={}): every number is from the exact ranking'.format(
                     stats['top_k']))
        return ['Fast inference (rule {}; tails computed for {} of {} rows): {}'.format(
            stats['inference_rule'], '/'.join(map(str, stats['tails_evaluated'])), stats['rows'], which)]

    # ----------------------------------------------------------------- model files
    def _model_state(self):
        return dict(super()._model_state(), bounds=self.bounds)

    def _restore_state(self, state):
        super()._restore_state(state)
        self.bounds = state['bounds']

    def _training_rows(self, data, verbose, vocab_data=None, vocabulary_of=None):
        rows = super()._training_rows(data, verbose, vocab_data, vocabulary_of)
        if self.block_output and self.n_vocab < 3:
            raise UserError('The block-wise softmax needs a vocabulary of at least 3 ids')
        return rows
