"""Helpers the command-line front ends share: model selection by -g, and clean failure."""
import ctypes
import importlib
import os
import signal
import sys

from .errors import UserError


def model_class(module_name):
    """The class a model package exposes as ``MODEL_CLASS`` (run.py/paropt.py ``-g``)."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError('Cannot import model module {!r} given with -g: {}'.format(module_name, e)) from None
    cls = getattr(module, 'MODEL_CLASS', None)
    if cls is None:
        raise UserError('Module {!r} does not define MODEL_CLASS, so it cannot be used with -g'.format(module_name))
    return cls


def die_with_parent():
    """Let the kernel kill this process when the paropt worker that started it dies (Linux only).

    A trial process is told its worker's pid in RECSYS_PARENT_PID; without this, killing a worker
    would leave its training running, orphaned, for the rest of the trial.
    """
    parent = os.environ.get('RECSYS_PARENT_PID')
    if not parent or not sys.platform.startswith('linux'):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != parent:  # the worker died before prctl took effect
        os._exit(1)


def run_main(main):
    """Run ``main()``; a UserError prints one clear message and exits with status 1."""
    die_with_parent()
    try:
        code = main()
    except UserError as e:
        sys.stdout.flush()
        print('ERROR: {}'.format(e), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print('Interrupted', file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
