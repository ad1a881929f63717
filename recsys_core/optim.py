"""Symbolic parameter updates with row-sparse updates for item-indexed weights.

Dense weights get the adaptive scaling over the whole matrix; item-indexed weights (embeddings,
output rows) are updated only at the rows a step touched, with per-row optimizer state, as in the
original GRU4Rec. A row can be used several times in one step (an item that is an input, a target
and a sampled negative). Two ways to update such a row, chosen per :class:`SparseParam`:

- per row (``inv`` None): the occurrences' gradients are summed and the row is updated once, so the
  update equals the dense update restricted to the touched rows (the official PyTorch port's way);
- per occurrence (``inv`` given, gradients one row per occurrence): the Theano original's way. Every
  occurrence's step is computed from the state before the step and all of them are added to the
  weight row. Adagrad's accumulator gets every occurrence's square (the original writes
  ``set_subtensor(acc[i], acc[i] + g^2)``, which Theano's and PyTensor's local_set_to_inc_subtensor
  rewrite into an increment; adam's step count likewise counts occurrences); rmsprop's, adadelta's
  and adam's moments decay once and accumulate every occurrence (the original's "accurate when an
  index occurs multiple times" form); the momentum velocity keeps the last occurrence's value
  (``set_subtensor`` of repeated rows on the CPU). With momentum, a row used k times gets k
  momentum terms and k L2 terms.

Supported: adapt None (plain SGD), 'adagrad', 'rmsprop', 'adam', 'adadelta'; momentum; L2 (lmbd);
global-norm gradient clipping (grad_cap). With custom ops on, adagrad updates (row-sparse and dense,
the latter as an update of every row) run as one in-place Op each (gpu_ops.sparse_update); the
composition here is its reference.
"""
from collections import OrderedDict

import numpy as np
import pytensor
import pytensor.tensor as pt

import gpu_ops
from gpu_ops.sparse_update import SparseAdagrad, SparseAdagradOccurrences

EPSILON = 1e-6
ADAPTS = (None, 'adagrad', 'rmsprop', 'adam', 'adadelta')
N_ADAPT_PARAMS = {None: 0, 'adagrad': 0, 'rmsprop': 1, 'adam': 2, 'adadelta': 1}


class SparseParam:
    """An item-indexed weight: the full shared matrix, the unique rows used, and those rows gathered.

    ``inv`` (optional): for every occurrence of a row in the step, its position in ``rows``; given,
    the update is per occurrence and its gradient has one row per occurrence (module docstring).
    """

    def __init__(self, full, rows, gathered, inv=None):
        self.full, self.rows, self.gathered, self.inv = full, rows, gathered, inv


def _zeros_like_shared(param, shape=None, name=''):
    value = param.get_value(borrow=True)
    shape = value.shape if shape is None else shape
    return pytensor.shared(np.zeros(shape, dtype=value.dtype), name='{}_{}'.format(param.name, name))


class Optimizer:
    """Builds the update dictionary for one training function."""

    def __init__(self, learning_rate, adapt='adagrad', adapt_params=(), momentum=0.0, lmbd=0.0, grad_cap=0.0):
        if adapt not in ADAPTS:
            raise ValueError('unknown adapt {!r}'.format(adapt))
        if len(adapt_params) < N_ADAPT_PARAMS[adapt]:
            raise ValueError('adapt={} needs {} adapt_params'.format(adapt, N_ADAPT_PARAMS[adapt]))
        if adapt == 'adadelta' and learning_rate != 1.0:
            print('Warn: learning_rate is not 1.0 while using adadelta. Setting learning_rate to 1.0')
            learning_rate = 1.0
        self.lr, self.adapt, self.adapt_params = learning_rate, adapt, list(adapt_params)
        self.momentum, self.lmbd, self.grad_cap = momentum, lmbd, grad_cap
        self.state = []  # every shared optimizer-state variable, so callers can reset or save them

    def _state(self, param, shape=None, name=''):
        var = _zeros_like_shared(param, shape, name)
        self.state.append(var)
        return var

    def updates(self, cost, dense, sparse, grads=None):
        """Return an OrderedDict of updates for dense shared params and :class:`SparseParam` s.

        ``grads``: the gradients in the same order (dense, then sparse), when the caller builds them;
        a per-occurrence :class:`SparseParam` needs them (one row per occurrence, as one matrix or a
        tuple of blocks whose rows follow each other). By default the gradients of ``cost`` with
        respect to the dense params and the gathered rows.
        """
        if grads is None:
            if any(s.inv is not None for s in sparse):
                raise ValueError('per-occurrence sparse updates need their gradients passed in')
            grads = pytensor.grad(cost, list(dense) + [s.gathered for s in sparse])
        grads = [tuple(g) if isinstance(g, (tuple, list)) else g for g in grads]
        if self.grad_cap > 0:
            blocks = [b for g in grads for b in (g if isinstance(g, tuple) else (g,))]
            norm = pt.sqrt(sum(pt.sum(b ** 2) for b in blocks))
            scale = pt.switch(pt.ge(norm, self.grad_cap), self.grad_cap / norm, 1.0)
            grads = [tuple(pt.cast(b * scale, b.dtype) for b in g) if isinstance(g, tuple) else pt.cast(g * scale, g.dtype)
                     for g in grads]
        updates = OrderedDict()
        for p, g in zip(dense, grads[:len(dense)]):
            if self.adapt == 'adagrad' and gpu_ops.custom_ops_enabled():
                every_row = pt.constant(np.arange(p.get_value(borrow=True).shape[0], dtype='int64'))
                self._fused_adagrad(SparseParam(p, every_row, p), g, updates)
                continue
            g = self._scale(p, g, updates, rows=None)
            self._apply(p, p, g, updates, rows=None)
        for s, g in zip(sparse, grads[len(dense):]):
            if s.inv is not None:
                self._occurrence_update(s, g, updates)
                continue
            if self.adapt == 'adagrad' and gpu_ops.custom_ops_enabled():
                self._fused_adagrad(s, g, updates)
                continue
            g = self._scale(s.full, g, updates, rows=s.rows)
            self._apply(s.full, s.gathered, g, updates, rows=s.rows)
        return updates

    def _fused_adagrad(self, s, g, updates):
        """The same adagrad step as _scale + _apply, done in place by one custom Op (gpu_ops)."""
        state = [s.full, self._state(s.full, name='acc')]
        if self.momentum > 0:
            state.append(self._state(s.full, name='vel'))
        new = SparseAdagrad(self.lr, self.momentum, self.lmbd, EPSILON)(*state, s.rows, g)
        for var, value in zip(state, new if isinstance(new, list) else [new]):
            updates[var] = value

    def _occurrence_update(self, s, g, updates):
        """The Theano original's row-sparse step: one update per occurrence (module docstring)."""
        blocks = g if isinstance(g, tuple) else (g,)
        if self.adapt == 'adagrad' and gpu_ops.custom_ops_enabled():
            state = [s.full, self._state(s.full, name='acc')]
            if self.momentum > 0:
                state.append(self._state(s.full, name='vel'))
            new = SparseAdagradOccurrences(self.lr, self.momentum, self.lmbd, EPSILON)(*state, s.rows, s.inv, *blocks)
            for var, value in zip(state, new if isinstance(new, list) else [new]):
                updates[var] = value
            return
        g = pt.concatenate(blocks) if len(blocks) > 1 else blocks[0]
        idx = s.rows[s.inv]
        g = self._scale_occurrences(s.full, g, idx, updates)
        delta = self.lr * (g + self.lmbd * s.full[idx]) if self.lmbd > 0 else self.lr * g
        if self.momentum > 0:
            vel = self._state(s.full, name='vel')
            step = self.momentum * vel[idx] - delta
            updates[vel] = pt.set_subtensor(vel[idx], step)  # repeated rows: the last occurrence's
        else:
            step = -delta
        updates[s.full] = pt.inc_subtensor(s.full[idx], pt.cast(step, s.full.dtype))

    def _scale_occurrences(self, p, g, idx, updates):
        """Adaptive scaling of per-occurrence gradients ``g`` at rows ``idx`` (repeats allowed)."""
        if self.adapt is None:
            return g

        def decay_then_add(var, decay, added):  # every occurrence's term added to the once-decayed row
            return pt.inc_subtensor(pt.set_subtensor(var[idx], var[idx] * decay)[idx], added)

        if self.adapt == 'adagrad':
            acc = self._state(p, name='acc')
            updates[acc] = pt.inc_subtensor(acc[idx], g ** 2)  # the original's set of acc + g^2, as rewritten
            return g / pt.sqrt(acc[idx] + g ** 2 + EPSILON)
        if self.adapt == 'rmsprop':
            rho = self.adapt_params[0]
            acc = self._state(p, name='acc')
            updates[acc] = decay_then_add(acc, rho, (1.0 - rho) * g ** 2)
            return g / pt.sqrt(updates[acc][idx] + EPSILON)
        if self.adapt == 'adam':
            b1, b2 = self.adapt_params[:2]
            m, v = self._state(p, name='m'), self._state(p, name='v')
            t = self._state(p, shape=(p.get_value(borrow=True).shape[0],), name='t')
            updates[m] = decay_then_add(m, b1, (1.0 - b1) * g)
            updates[v] = decay_then_add(v, b2, (1.0 - b2) * g ** 2)
            t_new = t[idx] + 1.0
            updates[t] = pt.inc_subtensor(t[idx], 1.0)  # the original's set of t + 1, as rewritten
            t_new = t_new.dimshuffle(0, *(['x'] * (g.ndim - 1)))
            return (updates[m][idx] / (1.0 - b1 ** t_new)) / (pt.sqrt(updates[v][idx] / (1.0 - b2 ** t_new)) + EPSILON)
        rho = self.adapt_params[0]  # adadelta
        acc, upd = self._state(p, name='acc'), self._state(p, name='upd')
        updates[acc] = decay_then_add(acc, rho, (1.0 - rho) * g ** 2)
        scaling = (upd[idx] + EPSILON) / (updates[acc][idx] + EPSILON)
        updates[upd] = decay_then_add(upd, rho, (1.0 - rho) * scaling * g ** 2)
        return g * pt.sqrt(scaling)

    def _write(self, var, new, rows, updates):
        updates[var] = new if rows is None else pt.set_subtensor(var[rows], new)

    def _read(self, var, rows):
        return var if rows is None else var[rows]

    def _scale(self, p, g, updates, rows):
        """Adaptive gradient scaling; optimizer state is per element, read/written at ``rows``."""
        if self.adapt is None:
            return g
        if self.adapt == 'adagrad':
            acc = self._state(p, name='acc')
            acc_new = self._read(acc, rows) + g ** 2
            self._write(acc, acc_new, rows, updates)
            return g / pt.sqrt(acc_new + EPSILON)
        if self.adapt == 'rmsprop':
            rho = self.adapt_params[0]
            acc = self._state(p, name='acc')
            acc_new = rho * self._read(acc, rows) + (1.0 - rho) * g ** 2
            self._write(acc, acc_new, rows, updates)
            return g / pt.sqrt(acc_new + EPSILON)
        if self.adapt == 'adam':
            b1, b2 = self.adapt_params[:2]
            m, v = self._state(p, name='m'), self._state(p, name='v')
            shape = (p.get_value(borrow=True).shape[0],) if rows is not None else ()
            t = self._state(p, shape=shape, name='t')
            m_new = b1 * self._read(m, rows) + (1.0 - b1) * g
            v_new = b2 * self._read(v, rows) + (1.0 - b2) * g ** 2
            t_new = self._read(t, rows) + 1.0
            self._write(m, m_new, rows, updates)
            self._write(v, v_new, rows, updates)
            self._write(t, t_new, rows, updates)
            if rows is not None:
                t_new = t_new.dimshuffle(0, *(['x'] * (g.ndim - 1)))
            return (m_new / (1.0 - b1 ** t_new)) / (pt.sqrt(v_new / (1.0 - b2 ** t_new)) + EPSILON)
        rho = self.adapt_params[0]  # adadelta
        acc, upd = self._state(p, name='acc'), self._state(p, name='upd')
        acc_new = rho * self._read(acc, rows) + (1.0 - rho) * g ** 2
        scaling = (self._read(upd, rows) + EPSILON) / (acc_new + EPSILON)
        self._write(acc, acc_new, rows, updates)
        self._write(upd, rho * self._read(upd, rows) + (1.0 - rho) * scaling * g ** 2, rows, updates)
        return g * pt.sqrt(scaling)

    def _apply(self, full, current, g, updates, rows):
        """p <- p - lr * (g + lmbd * p), through a velocity when momentum > 0."""
        delta = self.lr * (g + self.lmbd * current) if self.lmbd > 0 else self.lr * g
        if self.momentum > 0:
            vel = self._state(full, name='vel')
            vel_new = self.momentum * self._read(vel, rows) - delta
            self._write(vel, vel_new, rows, updates)
            step = vel_new
        else:
            step = -delta
        step = pt.cast(step, full.dtype)
        updates[full] = full + step if rows is None else pt.inc_subtensor(full[rows], step)


def mean_l2(tensors):
    """TF's L2 term as the NextItNet family's releases write it: the mean over tensors (not
    elements) of each tensor's 1/2 ||v||^2 (tf.nn.l2_loss). A looped stack's stored array
    (recsys_core.stacked) counts as the tensors it holds."""
    count = sum(getattr(v.tag, 'n_tensors', 1) for v in tensors)
    return sum(0.5 * (v ** 2).sum() for v in tensors) / np.float32(count)


class DenseAdam:
    """Adam with every element updated every step, in TensorFlow 1.x's form (NextItNet, CpRec,
    StackRec's TF models) or PyTorch's (``torch_epsilon``: the SASRec releases).

    TF: p <- p - lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps) (TF's sparse Adam decays m
    and v of all rows too, so embeddings are updated densely as well). PyTorch adds eps to the
    bias-corrected sqrt(v / (1 - b2^t)) instead; the two differ only in how eps is scaled.
    """

    def __init__(self, learning_rate, beta1=0.9, beta2=0.999, epsilon=1e-8, torch_epsilon=False):
        self.lr, self.beta1, self.beta2, self.epsilon = learning_rate, beta1, beta2, epsilon
        self.torch_epsilon = torch_epsilon
        self.state = []

    def updates(self, cost, params):
        grads = pytensor.grad(cost, list(params))
        t = pytensor.shared(np.float32(0), name='adam_t')
        self.state.append(t)
        t_new = t + 1
        lr_t = self.lr * pt.sqrt(1 - self.beta2 ** t_new) / (1 - self.beta1 ** t_new)
        # PyTorch's eps on sqrt(v_hat) = sqrt(v) / sqrt(1 - b2^t) is eps * sqrt(1 - b2^t) on sqrt(v)
        eps = self.epsilon * pt.sqrt(1 - self.beta2 ** t_new) if self.torch_epsilon else self.epsilon
        updates = OrderedDict([(t, t_new)])
        for p, g in zip(params, grads):
            m, v = _zeros_like_shared(p, name='m'), _zeros_like_shared(p, name='v')
            self.state += [m, v]
            m_new = self.beta1 * m + (1 - self.beta1) * g
            v_new = self.beta2 * v + (1 - self.beta2) * g ** 2
            updates[m], updates[v] = m_new, v_new
            updates[p] = p - pt.cast(lr_t * m_new / (pt.sqrt(v_new) + eps), p.dtype)
        return updates
