"""Model parameters: declaration, casting from strings, validation and the original's echo.

A model declares its parameters as a list of :class:`Param`; :class:`ParamSet` gives it the
GRU4Rec ``set_params`` surface: values given as strings (from ``-ps``) are cast to the type of the
default ('True'/'1', 'False'/'0' for booleans, '/' separated lists), each set parameter is echoed as
``SET   name   TO   value   (type: <class '...'>)`` with the original's column alignment, and an
unknown name or a bad value raises :class:`UserError`.

The validators a ``Param`` takes as ``check`` (:data:`positive`, :data:`non_negative`,
:data:`probability`, :data:`fraction`, :data:`unit_interval`, :data:`all_positive`,
:func:`one_of`, :func:`positive_list`) are defined here once for every model package.
"""
import importlib.util
import os
from collections import OrderedDict

from .errors import UserError


class Param:
    """One parameter: its default, how a string becomes a value, and what values are valid.

    ``check`` returns None when the value is fine or a short text saying what is wrong.
    ``item_type`` is the element type of list parameters.
    """

    def __init__(self, name, default, check=None, item_type=int, doc=''):
        self.name, self.default, self.check, self.item_type, self.doc = name, default, check, item_type, doc

    def cast(self, value):
        """Cast ``value`` the way the original does: strings go to the type of the default."""
        default = self.default
        if isinstance(value, str):
            if isinstance(default, bool):
                if value in ('True', '1'):
                    return True
                if value in ('False', '0'):
                    return False
                raise ValueError('expected True/False (or 1/0)')
            if isinstance(default, list):
                return [self.item_type(v) for v in value.split('/') if v != '']
            if default is None or isinstance(default, str):
                return value
            return type(default)(value)
        if isinstance(default, bool):
            if isinstance(value, (bool, int)) and value in (0, 1):
                return bool(value)
            raise ValueError('expected a boolean')
        if isinstance(default, list):
            if isinstance(value, (list, tuple)):
                return [self.item_type(v) for v in value]
            return [self.item_type(value)]
        if isinstance(default, float) and isinstance(value, (int, float)):
            return float(value)
        if isinstance(default, int) and isinstance(value, (int,)) and not isinstance(value, bool):
            return value
        if isinstance(default, int) and isinstance(value, float) and value.is_integer():
            return int(value)
        if default is None or isinstance(default, str):
            return value
        raise ValueError('expected {}'.format(type(default).__name__))


class Check:
    """A parameter validator: ``check(value)`` is None when the value is fine, else ``message``.

    ``says(message)`` gives the same test with another message (for a model whose error messages
    have always read differently, e.g. ``non_negative.says('must be non-negative')``).
    """

    def __init__(self, test, message):
        self.test, self.message = test, message

    def __call__(self, value):
        return None if self.test(value) else self.message

    def says(self, message):
        return Check(self.test, message)

    def __repr__(self):
        return 'Check({!r})'.format(self.message)


positive = Check(lambda v: v > 0, 'must be positive')
non_negative = Check(lambda v: v >= 0, 'must be >= 0')
probability = Check(lambda v: 0 <= v < 1, 'must be in [0, 1)')
"""A probability that must leave something: dropout, momentum, smoothing, Adam's beta1."""
fraction = Check(lambda v: 0 < v <= 1, 'must be in (0, 1]')
unit_interval = Check(lambda v: 0 <= v <= 1, 'must be in [0, 1]')
all_positive = Check(lambda v: all(x > 0 for x in v), 'values must be positive')
"""Every element of a list positive (an empty list is fine)."""


def one_of(options):
    """The value must be one of ``options`` (listed with str(), so None prints as None)."""
    options = tuple(options)
    return Check(lambda v: v in options, 'must be one of {}'.format(', '.join(map(str, options))))


def positive_list(what, example):
    """A non-empty list of positive numbers, e.g. ``positive_list('sizes', '100/100')``."""
    return Check(lambda v: bool(v) and all(x > 0 for x in v),
                 'must be a non-empty list of positive {} (e.g. {})'.format(what, example))


KEY_PARAMS = [Param('session_key', 'SessionId'), Param('item_key', 'ItemId'), Param('time_key', 'Time')]
"""The column names every model takes (run.py's -sk/-ik/-tk set them)."""


class ParamSet:
    """Mixin giving a model declared parameters with defaults and ``set_params``."""

    PARAMS = []
    ALIASES = {}
    """Other names set_params accepts for a parameter (e.g. a README's spelling), echoed and kept
    under the canonical name."""

    def __init__(self, **kwargs):
        for p in self.PARAMS:
            setattr(self, p.name, list(p.default) if isinstance(p.default, list) else p.default)
        if kwargs:
            self.set_params(verbose=False, **kwargs)

    @classmethod
    def param_names(cls):
        return [p.name for p in cls.PARAMS]

    def get_params(self):
        return OrderedDict((p.name, getattr(self, p.name)) for p in self.PARAMS)

    def set_params(self, verbose=True, **kwargs):
        """Set parameters by name (or an alias of ``ALIASES``), casting strings; echo each as the
        original does."""
        if not kwargs:
            return
        for alias, name in self.ALIASES.items():
            if alias in kwargs:
                if name in kwargs:
                    raise UserError('Parameter {} is given twice (as {} and as {})'.format(name, alias, name))
                kwargs = OrderedDict((name if k == alias else k, v) for k, v in kwargs.items())
        spec = {p.name: p for p in self.PARAMS}
        unknown = [k for k in kwargs if k not in spec]
        if unknown:
            raise UserError('Unknown parameter(s) for {}: {}. Known parameters: {}'.format(
                type(self).__name__, ', '.join(unknown), ', '.join(spec)))
        values = OrderedDict()
        for k, v in kwargs.items():
            p = spec[k]
            try:
                cast = p.cast(v)
            except (ValueError, TypeError) as e:
                raise UserError('Invalid value {!r} for parameter {}: {}'.format(v, k, e)) from None
            problem = p.check(cast) if p.check else None
            if problem:
                raise UserError('Invalid value {!r} for parameter {}: {}'.format(v, k, problem))
            values[k] = cast
        problem = self.check_params(OrderedDict(self.get_params(), **values))
        if problem:
            raise UserError('Invalid parameters: {}'.format(problem))
        maxk = max(len(str(k)) for k in kwargs)
        maxv = max(len(str(v)) for v in kwargs.values())
        for k, v in values.items():
            setattr(self, k, v)
            if verbose:
                print(format_set_line(k, v, maxk, maxv))
        self.after_set_params(kwargs.keys(), maxk, maxv, verbose)

    def check_params(self, params):
        """Cross-parameter validation hook; return None or a message."""
        return None

    def after_set_params(self, names, maxk, maxv, verbose):
        """Hook for derived settings (e.g. GRU4Rec's embedding='layersize')."""


def format_set_line(name, value, maxk, maxv):
    """The original's echo line, column widths taken from the whole call's names and values."""
    return 'SET   {}{}TO   {}{}(type: {})'.format(name, ' ' * (maxk - len(name) + 3), value,
                                                 ' ' * (maxv - len(str(value)) + 3), type(value))


def parse_param_string(text):
    """``name1=value1,name2=value2`` -> OrderedDict of strings (values cast later by the model)."""
    params = OrderedDict()
    if text is None or not text.strip():
        raise UserError('Empty parameter string')
    for part in text.split(','):
        if part.count('=') != 1 or not part.split('=')[0].strip():
            raise UserError('Malformed parameter string near {!r}: expected name=value pairs separated by commas '
                            '(e.g. loss=bpr-max,layers=100/100)'.format(part))
        k, v = part.split('=')
        params[k.strip()] = v.strip()
    return params


def load_param_file(path, variable='gru4rec_params'):
    """Load the OrderedDict named ``variable`` from a Python parameter file (the original's -pf format)."""
    if not os.path.isfile(path):
        raise UserError('Parameter file not found: {}'.format(path))
    try:
        spec = importlib.util.spec_from_file_location('paramfile_' + os.path.basename(path).split('.')[0], path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except Exception as e:  # a user's file may fail in any way; report it as theirs
        raise UserError('Could not read parameter file {}: {}: {}'.format(path, type(e).__name__, e)) from None
    params = getattr(module, variable, None)
    if not isinstance(params, dict):
        raise UserError('Parameter file {} does not define a dict named `{}`'.format(path, variable))
    return OrderedDict(params)

