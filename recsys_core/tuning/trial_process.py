"""One trial = one run.py process, as in the original paropt: crash isolation for free, and the
trial's full output kept in a log file. The value is read from run.py's ``PRIMARY METRIC:`` line."""
import os
import re
import subprocess
import sys
import time

from ..cli import KEYS, flag

RUN_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'run.py')
METRIC_LINE = re.compile(r'^PRIMARY METRIC: (\S+)\s*$')
# run.py exits with 1 after printing ``ERROR: ...`` for a problem it diagnosed (e.g. NaN loss): such a
# trial is a result (failed), not an accident, so it is not retried.
DIAGNOSED_EXIT = 1


class TrialOutcome:
    """What a run.py process left behind: its value, or why there is none."""

    def __init__(self, value, returncode, error, seconds):
        self.value, self.returncode, self.error, self.seconds = value, returncode, error, seconds

    @property
    def retryable(self):
        """A crash or kill (not an error run.py diagnosed itself) is worth one more try."""
        return self.value is None and self.returncode not in (0, DIAGNOSED_EXIT)


def join_params(params):
    """``name=value`` pairs joined with commas; lists in the original's ``a/b`` form."""
    def fmt(v):
        return '/'.join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)
    return ','.join('{}={}'.format(k, fmt(v)) for k, v in params.items())


def run_py_command(cfg, params, measure, log_primary_metric):
    """The run.py command line of a trial (one cut-off, -lpm) or of the final evaluation."""
    cmd = [sys.executable, '-u', RUN_PY, cfg['train'], '-t', cfg['test'], flag('model'), cfg['model'],
           '-ps', join_params(params), '-m'] + [str(m) for m in measure]
    for name in ('primary_metric', 'eval_type') + KEYS:  # the flags paropt shares with run.py, passed on
        cmd += [flag(name), cfg[name]]
    if cfg.get('device'):
        cmd += [flag('device'), cfg['device']]
    if cfg.get('protocol', 'next') != 'next':
        cmd += [flag('protocol'), cfg['protocol']]
    if log_primary_metric:
        cmd.append('-lpm')
    return cmd


def child_environment(threads=None):
    """Environment for a trial: unbuffered, dies with its worker, optionally fewer BLAS threads."""
    env = dict(os.environ, PYTHONUNBUFFERED='1', RECSYS_PARENT_PID=str(os.getpid()))
    if threads:
        for var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
            env.setdefault(var, str(threads))
    return env


def run_process(cmd, log_path, echo=None, env=None):
    """Run ``cmd``, writing its merged output to ``log_path`` and passing each line to ``echo``.

    Returns a TrialOutcome: the first PRIMARY METRIC value, or the last ``ERROR:`` line / exit status.
    """
    t0 = time.time()
    value, error = None, None
    with open(log_path, 'w', encoding='utf-8') as log:
        log.write('$ ' + ' '.join(cmd) + '\n')
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                env=env if env is not None else child_environment(), errors='replace')
        try:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                line = line.rstrip('\n')
                if echo is not None:
                    echo(line)
                m = METRIC_LINE.match(line.strip())
                if m and value is None:
                    try:
                        value = float(m.group(1))
                    except ValueError:
                        error = 'unreadable metric line: {}'.format(line.strip())
                elif line.startswith('ERROR:'):
                    error = line[len('ERROR:'):].strip()
            returncode = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if returncode != 0:
        value = None
        if error is None:
            error = 'run.py exited with status {}'.format(returncode) if returncode > 0 else \
                'run.py was killed by signal {}'.format(-returncode)
    elif value is None and error is None:
        error = 'run.py printed no PRIMARY METRIC line'
    elif value is not None and value != value:
        value, error = None, 'the primary metric is NaN'
    return TrialOutcome(value, returncode, error, time.time() - t0)
