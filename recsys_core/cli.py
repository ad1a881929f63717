"""Helpers the command-line front ends share: model selection by -g, and clean failure."""
import importlib
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


def run_main(main):
    """Run ``main()``; a UserError prints one clear message and exits with status 1."""
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
