"""Optuna studies in RDB storage, shared by any number of paropt processes on any number of machines.

Optuna's RDB storage is the only coordination: workers pointed at one PostgreSQL/MySQL URL (or one
local SQLite file) ask it for trials. Trial bookkeeping (see ``TrialCounts``):

- ``-nt N`` is the size of the study, not of one run: a worker stops once N trials are done, so
  re-running a command resumes where it stopped and a second worker shares the same N.
- A trial whose worker dies stops sending heartbeats; the next worker that looks marks it failed
  and enqueues one retry with the same parameters (Optuna's RetryHeartbeatStaleTrialCallback). A
  trial whose run.py process crashes is retried the same way by its own worker.
- A failed trial that was retried counts once, through its retry.
"""
import hashlib
import json
import os
import re
import socket
import threading
import time
import warnings

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from ..errors import UserError

# Heartbeats and retries are marked experimental by Optuna; they are the documented way to do this.
warnings.filterwarnings('ignore', category=optuna.exceptions.ExperimentalWarning)

RETRY = RetryHeartbeatStaleTrialCallback(max_retry=1)
# Five failures in a row from one worker mean a systematic problem (bad data, bad fixed parameter
# the model only detects when training), not unlucky hyperparameters.
MAX_CONSECUTIVE_FAILURES = 5


def mask_password(url):
    return re.sub(r'(://[^:/@]+:)[^@]*@', r'\1***@', url)


def open_storage(url, heartbeat_interval):
    """RDBStorage with heartbeats; any failure to reach or set up the database is a UserError."""
    engine_kwargs = {}
    if url.startswith('sqlite'):
        engine_kwargs['connect_args'] = {'timeout': 120}  # parallel workers wait for the file lock
    elif url.startswith(('postgresql', 'mysql')):
        engine_kwargs['connect_args'] = {'connect_timeout': 15}
        engine_kwargs['pool_pre_ping'] = True
    try:
        for attempt in range(SCHEMA_ATTEMPTS):
            try:
                return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                                  grace_period=2 * heartbeat_interval, heartbeat_stale_trial_callback=RETRY)
            except Exception as e:
                # Workers started together on a fresh database race to create Optuna's tables: the
                # loser's CREATE TABLE fails (PostgreSQL: a unique violation on pg_type), and the
                # tables exist when it tries again.
                if attempt + 1 == SCHEMA_ATTEMPTS or not _schema_race(e):
                    raise
                time.sleep(0.5 * (attempt + 1))
    except Exception as e:  # sqlalchemy/driver errors of every kind: the URL is the user's
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError('Cannot open the Optuna storage {}: {}: {}'.format(mask_password(url), type(e).__name__,
                                                                            reason)) from None


SCHEMA_ATTEMPTS = 5


def _schema_race(error):
    """Whether ``error`` is another worker creating the same tables at the same moment."""
    text = str(error)
    return type(error).__name__ in ('IntegrityError', 'ProgrammingError', 'OperationalError') and (
        'already exists' in text or 'UniqueViolation' in text or 'duplicate key' in text)


def config_fingerprint(config):
    return hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def open_study(storage, name, config, seed=None):
    """Create the study or load it; refuse to mix a different search into an existing study."""
    sampler = optuna.samplers.TPESampler(seed=seed)
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction='maximize', sampler=sampler,
                                    load_if_exists=True)
    except Exception as e:
        raise UserError('Cannot create or load study {!r}: {}: {}'.format(name, type(e).__name__, e)) from None
    stored = study.user_attrs.get('paropt_config')
    if stored is None:
        study.set_user_attr('paropt_config', config)
    elif stored != config:
        diff = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
        raise UserError('Study {!r} already exists with a different search setup ({} differ); use another '
                        '--study-name or the original settings'.format(name, ', '.join(diff)))
    return study


class TrialCounts:
    """How far a study is: done (finished, retried failures counted once), running, waiting."""

    def __init__(self, trials):
        retried = {n for t in trials for n in t.system_attrs.get('retry_history', [])}
        finished = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        self.done = sum(1 for t in trials if t.state in finished and t.number not in retried)
        self.running = sum(1 for t in trials if t.state == TrialState.RUNNING)
        self.waiting = sum(1 for t in trials if t.state == TrialState.WAITING)
        self.complete = sum(1 for t in trials if t.state == TrialState.COMPLETE)

    @classmethod
    def of(cls, study):
        return cls(study.get_trials(deepcopy=False))


class TrialFailed(Exception):
    """Raised by the objective when run.py gave no value; Optuna records the trial as FAIL."""


def worker_id():
    return '{}:{}'.format(socket.gethostname(), os.getpid())


class Search:
    """Runs trials of one study in ``n_jobs`` threads (each trial is its own process) until N are done.

    ``evaluate(trial, params) -> TrialOutcome`` runs the trial; ``report(trial, counts)`` is called after
    each one. The lock makes "is another trial needed?" and "start it" one step for this process's
    threads, so they never overshoot N; workers in other processes may, by at most one trial each.
    """

    def __init__(self, study, space, n_trials, evaluate, report, poll_seconds=1.0):
        self.study, self.space, self.n_trials = study, space, n_trials
        self.evaluate, self.report, self.poll_seconds = evaluate, report, poll_seconds
        self._claim = threading.Lock()
        self._local = threading.local()
        self._fatal = None

    def run(self, n_jobs=1):
        threads = [threading.Thread(target=self._worker, name='paropt-{}'.format(i), daemon=True)
                   for i in range(n_jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self._fatal is not None:
            raise self._fatal

    def _release_claim(self):
        if getattr(self._local, 'holding', False):
            self._local.holding = False
            self._claim.release()

    def _worker(self):
        failures = 0
        try:
            while self._fatal is None:
                self._claim.acquire()
                self._local.holding = True
                self._local.last_ok, self._local.last_error = True, None
                try:
                    fail_stale_trials(self.study)
                    counts = TrialCounts.of(self.study)
                    if counts.done >= self.n_trials:
                        return
                    if not counts.waiting and counts.done + counts.running >= self.n_trials:
                        self._release_claim()
                        time.sleep(self.poll_seconds)  # the last trials run elsewhere: wait for them
                        continue
                    # the objective releases the claim as soon as Optuna has created the trial
                    self.study.optimize(self._objective, n_trials=1, catch=(TrialFailed,),
                                        callbacks=[self._after_trial])
                finally:
                    self._release_claim()
                failures = 0 if self._local.last_ok else failures + 1
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    raise UserError('{} trials in a row failed; the last error: {}'.format(
                        failures, self._local.last_error))
        except BaseException as e:  # stop every thread, report once from run()
            if self._fatal is None:
                self._fatal = e

    def _objective(self, trial):
        self._release_claim()
        self._local.last_ok, self._local.last_error = False, None
        params = {p.name: p.suggest(trial) for p in self.space}
        trial.set_user_attr('worker', worker_id())
        outcome = self.evaluate(trial, params)
        trial.set_user_attr('seconds', round(outcome.seconds, 2))
        if outcome.value is None:
            self._local.last_error = outcome.error
            trial.set_user_attr('error', outcome.error)
            trial.set_user_attr('retryable', outcome.retryable)
            raise TrialFailed(outcome.error)
        self._local.last_ok = True
        return outcome.value

    def _after_trial(self, study, frozen):
        if frozen.state == TrialState.FAIL and frozen.user_attrs.get('retryable'):
            RETRY(study, frozen)
        self.report(frozen, TrialCounts.of(study))
