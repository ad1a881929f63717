import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from recsys_core import backend  # noqa: E402

backend.configure('cpu')


@pytest.fixture(scope='session')
def root():
    return ROOT


@pytest.fixture(scope='session')
def tiny_data():
    """Small synthetic train/test split shared by the model tests (fast to train on 2 cores)."""
    from recsys_core.synthetic import generate_sessions, split_by_time
    return split_by_time(generate_sessions(n_items=300, n_sessions=1500, seed=3), 0.15)


@pytest.fixture(scope='session')
def tiny_files(tiny_data, tmp_path_factory):
    """tiny_data written in run.py's formats: train/test TSV and a pickled training DataFrame."""
    d = tmp_path_factory.mktemp('tiny_files')
    train, test = tiny_data
    paths = {'train': str(d / 'train.tsv'), 'test': str(d / 'test.tsv'), 'pickle': str(d / 'train.pickle'), 'dir': d}
    train.to_csv(paths['train'], sep='\t', index=False)
    test.to_csv(paths['test'], sep='\t', index=False)
    train.to_pickle(paths['pickle'])
    return paths


def cli(*args, timeout=900, **kwargs):
    """Run a project script (run.py, paropt.py, ...) from the repository root with this Python."""
    return subprocess.run([sys.executable] + list(args), cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          **kwargs)


_RUNS = {}


def cli_shared(*args, backend, timeout=900):
    """cli() with the project's environment variables cleared but RECSYS_BACKEND=``backend``, run once
    per test session for each argument list: tests that compare the same run (the JAX backend's
    training of a model, against the C backend and against the -d cuda dry run) share it."""
    key = (args, backend)
    if key not in _RUNS:
        env = {k: v for k, v in os.environ.items() if not k.startswith('RECSYS_')}
        _RUNS[key] = cli(*args, env=dict(env, RECSYS_BACKEND=backend), timeout=timeout)
    return _RUNS[key]


class Interrupt(Exception):
    """Raised by :func:`interrupt_after` in place of a training step (an interrupted run)."""


def seq_frame(seqs):
    """A session frame (SessionId, ItemId as strings, Time = position) from lists of item ids."""
    import pandas as pd
    rows = [(i, str(item), t) for i, s in enumerate(seqs) for t, item in enumerate(s)]
    return pd.DataFrame(rows, columns=['SessionId', 'ItemId', 'Time'])


def kill_at_step(args, checkpoint, step, env, timeout=600):
    """Start ``python ARGS`` in the repository root, SIGKILL it once the training checkpoint file
    ``checkpoint`` records ``step`` or more steps (or when it ends or ``timeout`` passes), and
    return the last step read from the checkpoint."""
    import pickle
    import signal
    import time
    proc = subprocess.Popen([sys.executable] + list(args), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen, deadline = 0, time.time() + timeout
    while seen < step and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
        try:
            with open(checkpoint, 'rb') as f:
                seen = pickle.load(f)['step']
        except (OSError, EOFError, pickle.UnpicklingError):
            continue
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return seen


def interrupt_after(monkeypatch, cls, n_steps):
    """Make the next fits of ``cls`` raise Interrupt after ``n_steps`` training steps; returns a
    function that undoes it."""
    original = cls._training_plan

    def plan_that_fails(self, request):
        plan = original(self, request)
        step, calls = plan.step, [0]

        def failing(batch):
            calls[0] += 1
            if calls[0] > n_steps:
                raise Interrupt()
            return step(batch)
        plan.step = failing
        return plan
    monkeypatch.setattr(cls, '_training_plan', plan_that_fails)
    return lambda: monkeypatch.setattr(cls, '_training_plan', original)


def fit_interrupted_then_resumed(monkeypatch, cls, params, data, folder, n_steps, fit_args=None, **options):
    """Fit ``cls(**params)`` with a checkpoint in ``folder``, interrupted after ``n_steps`` steps,
    then fit again with the same arguments (which resumes); returns the resumed model."""
    from recsys_core.trainer import TrainingOptions
    fit_args = fit_args or {}
    restore = interrupt_after(monkeypatch, cls, n_steps)
    with pytest.raises(Interrupt):
        cls(**params).fit(data, training=TrainingOptions(checkpoint=folder, **options), **fit_args)
    restore()
    return cls(**params).fit(data, training=TrainingOptions(checkpoint=folder, **options), **fit_args)
