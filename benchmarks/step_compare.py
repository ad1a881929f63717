"""Helpers shared by the step-by-step comparisons with reference implementations
(compare_official_steps.py: the PyTorch port; compare_original_steps.py: the Theano original).

Both scripts run the reference in a subprocess driver that saves its weights, mapped to this
project's names and layout, into an .npz file ('<snapshot>/<weight>' keys: 'init', 'step1', ...),
and train this project's GRU4Rec for the same steps with :func:`train_ours`.
"""
import contextlib
import io
import shutil
import subprocess
import tarfile
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def load_snapshots(path):
    """{snapshot: {weight: array}} from a driver's .npz file."""
    snaps = {}
    with np.load(path) as z:
        for key in z.files:
            step, name = key.split('/')
            snaps.setdefault(step, {})[name] = z[key]
    return snaps


def rel_diff(a, b):
    """Largest absolute difference relative to the largest magnitude of the reference ``b``."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def parse_params(text):
    """'key=value,key=value' -> dict; values are parsed as Python literals where they are one
    (numbers, True/False/None, lists), otherwise kept as strings."""
    import ast
    out = {}
    for item in filter(None, (text or '').split(',')):
        key, _, value = item.partition('=')
        try:
            out[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[key.strip()] = value.strip()
    return out


@contextlib.contextmanager
def _patched(module, name, value):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def mrg_dropout(mrg):
    """A stand-in for recsys_core.randomness.dropout whose keep mask is drawn as the Theano original
    draws it (``mrg.binomial(x.shape, p=keep)``, MRG31k3p streams in call order); the arithmetic is
    the library's."""
    import pytensor.tensor as pt  # noqa: F401  (the graph is PyTensor's)

    def dropout(x, p, source):
        if p <= 0 or x is None:
            return x
        keep = 1.0 - p
        return x * mrg.binomial(x.shape, p=keep, dtype=x.dtype) / np.float32(keep)
    return dropout


def train_ours(params, data, steps, init=None, samples=None, dropout=None, sample_store=10000000):
    """Train this project's GRU4Rec for ``steps`` mini-batches through its own training plan (the
    weights, sample store, compiled step and session-parallel batches that ``fit`` uses).

    init: {name: array} replacing the initial weights. samples: a (store rows, n_sample) matrix
    written into the negative-sample store in place of its own draws (the store must then not be
    refilled within ``steps``). dropout: a replacement for the dropout function the training graph
    is built with (e.g. :func:`mrg_dropout`). All three are applied from outside the library.

    Returns a dict: snaps ({'init', 'step1', ...: {name: array}}, every step), losses, batches
    ([(inputs, targets, reset flags)] per step), items (item ids in index order), sample_rows (the
    store row each step used, None without negatives), initial (the library's own initial weights).
    """
    from gru4rec import GRU4Rec
    from gru4rec import model as gru4rec_model
    from recsys_core.sampling import SampleStore
    from recsys_core.model import FitRequest

    used_rows = []

    class InjectedStore(SampleStore):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if samples is not None:
                if samples.shape != (self.length, self.n_sample):
                    raise ValueError('sample matrix {} does not fit the store ({}, {})'.format(
                        samples.shape, self.length, self.n_sample))
                self.store.set_value(np.asarray(samples, dtype='int64'))
                self._injected = True

        def _refill(self):
            if getattr(self, '_injected', False):
                raise RuntimeError('the sample store would be refilled: make it hold more batches')
            super()._refill()

        def next_index(self):
            i = super().next_index()
            used_rows.append(i)
            return i

    m = GRU4Rec(**params)
    with contextlib.ExitStack() as stack:
        stack.enter_context(_patched(gru4rec_model, 'SampleStore', InjectedStore))
        if dropout is not None:
            stack.enter_context(_patched(gru4rec_model, 'dropout', dropout))
        plan = m._training_plan(FitRequest(data, verbose=False, sample_store=sample_store))
    initial = {k: s.get_value().copy() for k, s in m.shared.items()}
    if init is not None:
        for k, s in m.shared.items():
            s.set_value(np.ascontiguousarray(init[k], dtype=s.get_value(borrow=True).dtype))
    snaps = {'init': {k: s.get_value().copy() for k, s in m.shared.items()}}
    losses, batches = [], []
    for rec, _ in plan.batches(0):
        losses.append(float(plan.step(rec)))
        batches.append((rec.inp.tolist(), rec.out.tolist(), rec.last.astype(bool).tolist()))
        snaps['step%d' % len(losses)] = {k: s.get_value().copy() for k, s in m.shared.items()}
        if len(losses) == steps:
            break
    return dict(snaps=snaps, losses=losses, batches=batches, items=[str(i) for i in m.itemidmap.index],
                sample_rows=used_rows if m.n_sample else None, initial=initial)


def add_original_arguments(ap):
    """The command-line options that locate the original Theano code and the tool that runs it."""
    src = ap.add_mutually_exclusive_group()
    src.add_argument('--orig-git-dir', help='(bare) git dir of hidasib/GRU4Rec')
    src.add_argument('--orig-src-dir', help='plain folder with the original files')
    ap.add_argument('--orig-ref', default='HEAD', help='commit to export from --orig-git-dir (default HEAD)')
    ap.add_argument('--theano-tool', default=os.path.normpath(os.path.join(ROOT, '..', 'shared', 'tools', 'theano_original')),
                    help='the theano shim folder (shim/, replacements/)')
    ap.add_argument('--python', default=sys.executable, help='python that runs the original (pytensor, pandas)')
    ap.add_argument('--compiledir', default='/tmp/orig_gru4rec_compiledir', help="the original's PyTensor compile cache")


def export_original(args, dest):
    """A pristine copy of the original in ``dest`` plus the shim's two CPU replacements; returns a description."""
    if args.orig_src_dir:
        shutil.copytree(args.orig_src_dir, dest, dirs_exist_ok=True)
        where = args.orig_src_dir
    else:
        tar = subprocess.run(['git', '--git-dir', args.orig_git_dir, 'archive', args.orig_ref], check=True,
                             capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as t:
            t.extractall(dest)
        commit = subprocess.run(['git', '--git-dir', args.orig_git_dir, 'rev-parse', args.orig_ref], check=True,
                                capture_output=True, text=True).stdout.strip()
        where = '{} @ {}'.format(args.orig_git_dir, commit[:7])
    for name in os.listdir(os.path.join(args.theano_tool, 'replacements')):
        if name.endswith('.py'):
            shutil.copy(os.path.join(args.theano_tool, 'replacements', name), dest)
    return where


def original_env(args):
    env = dict(os.environ)
    path = [os.path.join(args.theano_tool, 'shim')]
    if subprocess.run([args.python, '-c', 'import joblib'], capture_output=True).returncode != 0:
        path.append(os.path.join(args.theano_tool, 'shim_joblib'))  # only used for .pickle inputs
    env['PYTHONPATH'] = os.pathsep.join(path + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    os.makedirs(args.compiledir, exist_ok=True)
    env['PYTENSOR_FLAGS'] = ','.join(['base_compiledir=' + args.compiledir] +
                                     ([env['PYTENSOR_FLAGS']] if env.get('PYTENSOR_FLAGS') else []))
    env.setdefault('OMP_NUM_THREADS', '1')
    env.setdefault('PYTHONWARNINGS', 'ignore::UserWarning:pytensor.link.c.cmodule')
    return env
