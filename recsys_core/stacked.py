"""Residual stacks compiled once per block: a stack whose blocks repeat a cycle (NextItNet's
dilations 1, 4, 1, 4, ...; SASRec's identical blocks) is applied as a loop over the cycle's
repeats, so the graph PyTensor rewrites and compiles holds one cycle, forward and backward,
whatever the depth.

Storage (:class:`StackLayout`): the weights a role of the cycle has in each repeat (e.g. the first
convolution's kernel of every block with dilation 1) live in one shared variable, stacked along a
leading axis (``conv0a_W[stack]``: conv0a_W, conv2a_W, ...). Weights that blocks share (CpRec's
schemes) are stored once; each role then reads its repeats' weights through an index map. The
host sees the weights under their per-block names as before (model files, warm starts, stacking
maps, peer merges): :meth:`StackLayout.stack` and :meth:`StackLayout.unstack` convert.

The loop (:func:`apply_scanned`): PyTensor's Scan over the repeats, inside an OpFromGraph whose
gradient is a second, reverse Scan. Scan's own gradient would recompute every block's forward
pass inside the backward loop (a third more matrix products per step); here the forward loop
also outputs the activations the backward pass reads, and the backward loop takes them as
sequences, so each block's forward runs once per step, as in the unrolled graph. Dropout masks
are drawn before the loop, in one draw whose order is the unrolled graph's (the same numbers).

``RECSYS_STACK=unrolled`` (or :func:`set_form`) builds the unrolled graph instead (n copies of
the block), for comparison; the results are the same up to float rounding.
"""
import copy
import os
from collections import OrderedDict

import numpy as np
import pytensor.tensor as pt
from pytensor.compile.builders import OpFromGraph
from pytensor.gradient import DisconnectedType, grad
from pytensor.graph.traversal import ancestors, vars_between
from pytensor.graph.replace import graph_replace
from pytensor.scan.basic import scan
from pytensor.tensor.basic import Join
from pytensor.tensor.elemwise import DimShuffle, Elemwise
from pytensor.tensor.shape import Reshape, SpecifyShape
from pytensor.tensor.subtensor import Subtensor

FORMS = ('scan', 'unrolled')
_form = os.environ.get('RECSYS_STACK', 'scan')
MIN_REPEATS = 3
"""A stack is looped only when its cycle repeats at least this often (a cycle repeated twice
compiles and steps as fast unrolled: benchmarks/RESULTS.md)."""

STACK_SUFFIX = '[stack]'

_RECOMPUTED = (Elemwise, DimShuffle, Reshape, SpecifyShape, Subtensor, Join)
"""Ops whose outputs the backward loop recomputes from the saved ones (cheap, elementwise or views);
every other forward output it reads (products, LayerNorms, reductions) is saved by the forward loop."""


def set_form(form):
    """'scan' (the default) or 'unrolled': how stacks in graphs built from now on are applied."""
    global _form
    if form not in FORMS:
        raise ValueError('stack form must be one of {}'.format(FORMS))
    _form = form


def form():
    return _form if _form in FORMS else 'scan'


def _signature(block):
    """What must be equal for two blocks to be one step of the loop (weights aside)."""
    return (type(block), getattr(block, 'dilation', None), getattr(block, 'heads', None),
            tuple((type(p).__name__, getattr(p, 'eps', None), len(p.weight_names())) for p in block.parts()))


def _period(blocks):
    """The shortest cycle the blocks repeat (len(blocks) when none)."""
    n = len(blocks)
    signatures = [_signature(b) for b in blocks]
    for p in range(1, n + 1):
        if n % p == 0 and all(signatures[i] == signatures[i % p] for i in range(n)):
            return p
    return n


def block_weight_names(block):
    return [name for part in block.parts() for name in part.weight_names()]


class StackLayout:
    """Which stored array holds each per-block weight of a looped stack.

    ``slots``: one per (cycle position j, role k): the template name (block j's) and, per repeat,
    the index into its storage. ``storage``: stacked name -> the per-block names it holds, in order.
    """

    def __init__(self, blocks, period):
        self.blocks, self.period = blocks, period
        self.repeats = len(blocks) // period
        names = [[block_weight_names(blocks[c * period + j]) for c in range(self.repeats)] for j in range(period)]
        roles = [(j, k) for j in range(period) for k in range(len(names[j][0]))]
        # roles that share a weight share a storage (union of their names, first appearance order)
        parent = {r: r for r in roles}

        def find(r):
            while parent[r] != r:
                r = parent[r]
            return r
        owner = {}
        for r in roles:
            for c in range(self.repeats):
                name = names[r[0]][c][r[1]]
                if name in owner:
                    parent[find(r)] = find(owner[name])
                else:
                    owner[name] = r
        members = OrderedDict()
        for c in range(self.repeats):  # storage order: by repeat, then by role: the unrolled first-use order
            for r in roles:
                members.setdefault(find(r), [])
                name = names[r[0]][c][r[1]]
                if name not in members[find(r)]:
                    members[find(r)].append(name)
        self.storage = OrderedDict((m[0] + STACK_SUFFIX, m) for m in members.values())
        self.where = {name: (key, i) for key, m in self.storage.items() for i, name in enumerate(m)}
        self.slots = []  # one per distinct template name: roles that read the same weight read it once
        for r in roles:
            template = names[r[0]][0][r[1]]
            if any(template == name for name, _, _ in self.slots):
                continue
            per_repeat = [names[r[0]][c][r[1]] for c in range(self.repeats)]
            key = self.where[per_repeat[0]][0]
            self.slots.append((template, key, [self.where[n][1] for n in per_repeat]))

    prefix = ''

    def prefixed(self, prefix):
        """The same layout with every name (per-block and stored) under ``prefix`` (PeerCollab's peers)."""
        out = copy.copy(self)
        out.prefix = prefix + self.prefix
        out.storage = OrderedDict((prefix + k, [prefix + n for n in m]) for k, m in self.storage.items())
        out.where = {prefix + n: (prefix + k, i) for n, (k, i) in self.where.items()}
        out.slots = [(prefix + name, prefix + key, index) for name, key, index in self.slots]
        return out

    def unprefixed(self, prefix):
        """The layout of :meth:`prefixed` without ``prefix`` again."""
        assert self.prefix.startswith(prefix)
        out = copy.copy(self)
        cut = len(prefix)
        out.prefix = self.prefix[cut:]
        out.storage = OrderedDict((k[cut:], [n[cut:] for n in m]) for k, m in self.storage.items())
        out.where = {n[cut:]: (k[cut:], i) for n, (k, i) in self.where.items()}
        out.slots = [(name[cut:], key[cut:], index) for name, key, index in self.slots]
        return out

    @classmethod
    def of(cls, blocks, weights=None):
        """The layout of ``blocks`` when they loop (a cycle repeated at least MIN_REPEATS times,
        every stored group of one shape), else None; None also under the unrolled form."""
        if form() != 'scan' or not blocks:
            return None
        period = _period(blocks)
        if len(blocks) // period < MIN_REPEATS:
            return None
        layout = cls(blocks, period)
        if weights is not None:
            for members in layout.storage.values():
                if len({np.shape(weights[n]) for n in members}) != 1:
                    return None
        return layout

    def matches(self, blocks):
        """True when ``blocks`` are this layout's stack (the same weights in the same places)."""
        return len(blocks) == len(self.blocks) and all(
            _signature(a) == _signature(b) and block_weight_names(a) == block_weight_names(b)
            for a, b in zip(blocks, self.blocks))

    def names(self):
        """Every per-block name the layout stores."""
        return set(self.where)

    def stack(self, weights):
        """{stacked name: array} of per-block ``weights``."""
        return OrderedDict((key, np.stack([np.asarray(weights[n]) for n in members]))
                           for key, members in self.storage.items())

    def unstack(self, stacked):
        """{per-block name: array} of stacked arrays (copies)."""
        out = OrderedDict()
        for key, members in self.storage.items():
            value = np.asarray(stacked[key])
            out.update((n, np.array(value[i])) for i, n in enumerate(members))
        return out

    def sequences(self, shared):
        """Per slot, the (repeats, ...) weights the loop reads (the storage, or a gather by its index
        map) and one repeat's static shape (what a block's graph may read, e.g. a kernel's width)."""
        out, shapes = [], []
        for _, key, index in self.slots:
            var = shared[key]
            out.append(var if index == list(range(len(self.storage[key]))) else var[np.asarray(index, dtype='int64')])
            shapes.append(tuple(var.get_value(borrow=True).shape[1:]))
        return out, shapes


class _Draws:
    """A dropout source that hands out consecutive pieces of one uniform vector (the loop's
    pre-drawn numbers for one repeat), or only records the sizes asked for."""

    def __init__(self, uniforms=None):
        self.uniforms, self.offset, self.sizes = uniforms, 0, []

    def uniform(self, size, dtype='float32'):
        n = pt.prod(pt.as_tensor(size))
        self.sizes.append(n)
        if self.uniforms is None:
            return pt.zeros(size, dtype=dtype)
        piece = self.uniforms[self.offset:self.offset + n].reshape(size, ndim=len(size) if isinstance(size, (list, tuple))
                                                                     else pt.as_tensor(size).type.shape[0])
        self.offset = self.offset + n
        return pt.cast(piece, dtype)


def _cycle(layout, local, x, kwargs, source):
    """One repeat of the cycle on ``x`` with the weights ``local`` (template name -> variable)."""
    for j in range(layout.period):
        extra = dict(kwargs, srng=source) if source is not None else kwargs
        x = layout.blocks[j](local, x, **extra)
    return x


def apply_scanned(shared, x, layout, mode=None, **kwargs):
    """The stack of ``layout`` applied to ``x`` as a loop (see the module docstring).

    kwargs go to each block (SASRec's ``p_drop`` and ``srng``; with a dropout source, its masks
    are drawn here, before the loop, in the unrolled graph's order)."""
    srng = kwargs.pop('srng', None)
    p_drop = kwargs.get('p_drop', 0.0)
    dropping = srng is not None and p_drop > 0
    if srng is not None and not dropping:
        kwargs['srng'] = None
    seqs, shapes = layout.sequences(shared)
    uniforms = None
    if dropping:
        recorder = _Draws()
        _cycle(layout, {name: pt.specify_shape(seq[0], shape) for (name, _, _), seq, shape
                        in zip(layout.slots, seqs, shapes)}, x, kwargs, recorder)
        per_repeat = sum(recorder.sizes)
        uniforms = srng.uniform((layout.repeats, per_repeat), dtype='float64')
    op = _stack_op(layout, x, seqs, shapes, uniforms, kwargs, mode)
    inputs = [x] + seqs + ([uniforms] if dropping else [])
    return op(*inputs)[0]


def _stack_op(layout, x, seqs, shapes, uniforms, kwargs, mode):
    """An OpFromGraph: (x, weight sequences[, uniforms]) -> (last output, all outputs, saved
    activations), whose gradient is the reverse loop over the saved activations."""
    x_in = x.type()
    w_in = [pt.tensor(dtype=s.dtype, shape=shape) for s, shape in zip(seqs, shapes)]
    u_in = pt.dvector('u') if uniforms is not None else None
    local = {name: w for (name, _, _), w in zip(layout.slots, w_in)}
    y = _cycle(layout, local, x_in, kwargs, _Draws(u_in) if u_in is not None else None)
    step_inputs = [x_in] + w_in + ([u_in] if u_in is not None else [])
    gy = y.type()
    grads = grad(None, [x_in] + w_in, known_grads={y: gy})
    forward = {v for v in vars_between(step_inputs, [y]) if v.owner is not None}
    kept = {v for v in forward if v.ndim >= 2 and not isinstance(v.owner.op, _RECOMPUTED)}
    saved = [v for v in ancestors(grads, blockers=kept) if v in kept]
    saved_in = [v.type() for v in saved]
    backward = graph_replace(grads, dict(zip(saved, saved_in)), strict=False)

    # the op's own inputs (an OpFromGraph is built on fresh variables)
    X0 = x.type()
    W = [s.type() for s in seqs]
    U = uniforms.type() if uniforms is not None else None

    def forward_step(*args):
        ws, rest = list(args[:len(W)]), list(args[len(W):])
        u = rest.pop(0) if U is not None else None
        x_prev = rest[0]
        repl = dict(zip(w_in, ws))
        repl[x_in] = x_prev
        if u is not None:
            repl[u_in] = u
        outs = graph_replace([y] + saved, repl, strict=False)
        return outs

    sequences = W + ([U] if U is not None else [])
    outs = scan(forward_step, sequences=sequences, outputs_info=[X0] + [None] * len(saved), mode=mode,
                name='stack_forward', return_updates=False, strict=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    ys, saved_seqs = outs[0], list(outs[1:])

    def lop(inputs, outputs, output_grads):
        x0, ws = inputs[0], list(inputs[1:1 + len(W)])
        u = inputs[1 + len(W)] if U is not None else None
        ys_out, saved_out = outputs[1], list(outputs[2:])
        g_last = output_grads[0]
        if isinstance(g_last.type, DisconnectedType):
            g_last = pt.zeros_like(x0)
        g_all = output_grads[1]
        xs_in = pt.concatenate([x0[None], ys_out[:-1]], axis=0)  # each repeat's input

        def backward_step(*args):
            args = list(args)
            x_t = args.pop(0)
            ws_t = [args.pop(0) for _ in W]
            u_t = args.pop(0) if U is not None else None
            s_t = [args.pop(0) for _ in saved]
            g_y = args.pop(0) if not isinstance(g_all.type, DisconnectedType) else None
            g_carry = args.pop(0)
            g_total = g_carry if g_y is None else g_carry + g_y
            repl = dict(zip(w_in, ws_t))
            repl[x_in] = x_t
            repl.update(zip(saved_in, s_t))
            repl[gy] = g_total
            if u_t is not None:
                repl[u_in] = u_t
            return graph_replace(backward, repl, strict=False)

        rev = [xs_in[::-1]] + [w[::-1] for w in ws] + ([u[::-1]] if u is not None else []) + \
            [s[::-1] for s in saved_out]
        if not isinstance(g_all.type, DisconnectedType):
            rev.append(g_all[::-1])
        results = scan(backward_step, sequences=rev, outputs_info=[g_last] + [None] * len(W), mode=mode,
                       name='stack_backward', return_updates=False, strict=False)
        g_xs, g_ws = results[0], results[1:]
        out = [g_xs[-1]] + [g[::-1] for g in g_ws]
        if U is not None:
            out.append(DisconnectedType()())
        return out

    op_inputs = [X0] + W + ([U] if U is not None else [])
    n_out = 2 + len(saved_seqs)
    connection = [[True] * n_out for _ in op_inputs]
    if U is not None:
        connection[-1] = [False] * n_out  # the dropout numbers are drawn, not learned
    return OpFromGraph(op_inputs, [ys[-1], ys] + saved_seqs, pullback=lop, inline=True,
                       connection_pattern=connection, name='ScannedStack')
