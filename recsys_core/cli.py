"""What the command-line front ends (run.py, paropt.py, recommend.py) share: the flags they have in
common (defined once here, with their help texts and defaults), the checks of those flags, model
selection by -g, and clean failure."""
import ctypes
import importlib
import os
import signal
import sys

from .errors import UserError
from .eval_result import PROTOCOLS

EVAL_TYPES = ('standard', 'conservative', 'median', 'tiebreaking')
PRIMARY_METRICS = ('recall', 'mrr', 'ndcg')
KEYS = ('item_key', 'session_key', 'time_key')
"""The column-key flags -ik, -sk, -tk (in this order)."""

SHARED_ARGUMENTS = {
    'model': (('-g', '--gru4rec_model'), dict(
        metavar='GRFILE', type=str, default='gru4rec',
        help='Model package to use (any package exposing MODEL_CLASS). (Default: gru4rec)')),
    'device': (('-d', '--device'), dict(
        metavar='D', type=str, default=None, help='Device: cpu or cuda (Default: $RECSYS_DEVICE or cpu)')),
    'eval_type': (('-e', '--eval_type'), dict(
        metavar='EVAL_TYPE', choices=list(EVAL_TYPES), default='standard',
        help='How to rank items with the same score as the target: standard, conservative, median or tiebreaking. '
             '(Default: standard)')),
    'item_key': (('-ik', '--item_key'), dict(
        metavar='IK', type=str, default='ItemId', help='Column name of the item IDs (default: ItemId).')),
    'session_key': (('-sk', '--session_key'), dict(
        metavar='SK', type=str, default='SessionId', help='Column name of the session IDs (default: SessionId).')),
    'time_key': (('-tk', '--time_key'), dict(
        metavar='TK', type=str, default='Time', help='Column name of the timestamps (default: Time).')),
    'primary_metric': (('-pm', '--primary_metric'), dict(
        metavar='METRIC', choices=list(PRIMARY_METRICS), default='recall',
        help='Primary metric, recall or mrr (e.g. for paropt); ndcg with --protocol last, where recall means HR. '
             '(Default: recall)')),
    'protocol': (('--protocol',), dict(
        metavar='P', choices=list(PROTOCOLS), default='next',
        help='next: rank every next event of the test sessions (GRU4Rec, Recall/MRR); last: rank only the last item '
             'of each test sequence (NextItNet/CpRec, HR/MRR/NDCG). (Default: next)')),
}
"""name -> (flags, add_argument keywords) of every flag two or more front ends take (the dest is the long flag's
name: -g sets ``gru4rec_model``, as in the original)."""


def add_shared_arguments(parser, *names, helps=None):
    """Add the shared flags ``names`` (keys of :data:`SHARED_ARGUMENTS`) to ``parser``, in that order.

    ``helps`` maps a name to a help text worded for this front end (paropt's -d is the device of
    its trial processes); flags, metavars, types, choices and defaults are always the shared ones.
    """
    helps = helps or {}
    unknown = set(helps) - set(names)
    if unknown:
        raise ValueError('help given for flags not added: {}'.format(', '.join(sorted(unknown))))
    for name in names:
        flags, spec = SHARED_ARGUMENTS[name]
        spec = dict(spec, help=helps[name]) if name in helps else spec
        parser.add_argument(*flags, **spec)


def flag(name):
    """The short flag of a shared argument (``flag('item_key') == '-ik'``), e.g. to build a run.py command."""
    return SHARED_ARGUMENTS[name][0][0]


def check_positive(value, flags, what='a positive integer'):
    """``-k must be a positive integer`` unless ``value`` is a number >= 1."""
    if value is None or value < 1:
        raise UserError('{} must be {}'.format(flags, what))


def check_cutoffs(values, flags):
    """Recommendation list lengths (-m, -fm): at least one, all positive."""
    if not values or any(v is None or v < 1 for v in values):
        raise UserError('{} values must be positive integers'.format(flags))


def check_metric(args):
    """-pm ndcg only exists for --protocol last."""
    if args.primary_metric == 'ndcg' and args.protocol != 'last':
        raise UserError('-pm ndcg needs --protocol last')


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
