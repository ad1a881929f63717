"""The parameter space of a search, in the original paropt's JSON-lines format, checked up front.

One JSON object per line: ``{"name": ..., "dtype": "int"|"float"|"categorical", "values": [lo, hi]
or [options...], "step": ..., "log": ...}``. Blank lines are ignored. Every problem is reported with
the file and line, before any trial starts.
"""
import json

from ..errors import UserError

DTYPES = ('int', 'float', 'categorical')


class SpaceParam:
    """One searched parameter; ``suggest`` asks an Optuna trial for its value."""

    def __init__(self, name, dtype, values, step=None, log=False):
        self.name, self.dtype, self.values, self.log = name, dtype, list(values), bool(log)
        self.step = 1 if step is None and dtype == 'int' else step

    def suggest(self, trial):
        if self.dtype == 'int':
            return trial.suggest_int(self.name, int(self.values[0]), int(self.values[1]), step=self.step, log=self.log)
        if self.dtype == 'float':
            return trial.suggest_float(self.name, float(self.values[0]), float(self.values[1]), step=self.step,
                                       log=self.log)
        return trial.suggest_categorical(self.name, self.values)

    def probe_values(self):
        """Values that must all be acceptable to the model: the bounds or every option."""
        return list(self.values)

    def describe(self):
        """The original's PARAMETER line."""
        text = 'PARAMETER {} \t type={}'.format(self.name, self.dtype)
        if self.dtype == 'categorical':
            return text + ' \t options: [{}]'.format(','.join(str(v) for v in self.values))
        return text + ' \t range=[{}..{}] (step={}) \t {} scale'.format(
            self.values[0], self.values[1], 'N/A' if self.step is None else self.step, 'LOG' if self.log else 'UNIFORM')

    def as_dict(self):
        return {'name': self.name, 'dtype': self.dtype, 'values': self.values, 'step': self.step, 'log': self.log}


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_space_line(obj, where):
    """Build a SpaceParam from one decoded JSON object; ``where`` names the file and line for errors."""
    if not isinstance(obj, dict):
        raise UserError('{}: expected a JSON object, got {}'.format(where, type(obj).__name__))
    unknown = set(obj) - {'name', 'dtype', 'values', 'step', 'log'}
    if unknown:
        raise UserError('{}: unknown key(s) {}; allowed: name, dtype, values, step, log'.format(
            where, ', '.join(sorted(unknown))))
    name, dtype, values = obj.get('name'), obj.get('dtype'), obj.get('values')
    step, log = obj.get('step'), obj.get('log', False)
    if not isinstance(name, str) or not name:
        raise UserError('{}: "name" must be a non-empty string'.format(where))
    if dtype not in DTYPES:
        raise UserError('{}: "dtype" of {} must be one of {}, not {!r}'.format(where, name, ', '.join(DTYPES), dtype))
    if not isinstance(values, list) or not values:
        raise UserError('{}: "values" of {} must be a non-empty list'.format(where, name))
    if not isinstance(log, bool):
        raise UserError('{}: "log" of {} must be true or false'.format(where, name))
    if dtype == 'categorical':
        if step is not None or log:
            raise UserError('{}: categorical parameter {} takes no "step" or "log"'.format(where, name))
        if len(set(map(repr, values))) != len(values):
            raise UserError('{}: categorical parameter {} lists an option twice'.format(where, name))
        if not all(v is None or isinstance(v, (str, int, float, bool)) for v in values):
            raise UserError('{}: options of {} must be strings, numbers or booleans'.format(where, name))
        return SpaceParam(name, dtype, values)
    if len(values) != 2 or not all(_is_number(v) for v in values):
        raise UserError('{}: "values" of {} must be [low, high] numbers'.format(where, name))
    lo, hi = values
    if dtype == 'int' and not all(float(v).is_integer() for v in values):
        raise UserError('{}: bounds of int parameter {} must be integers'.format(where, name))
    if lo > hi:
        raise UserError('{}: low bound {} of {} is above its high bound {}'.format(where, lo, name, hi))
    if step is not None and (not _is_number(step) or step <= 0 or (dtype == 'int' and not float(step).is_integer())):
        raise UserError('{}: "step" of {} must be a positive {}'.format(where, name, 'integer' if dtype == 'int' else 'number'))
    if log and lo <= 0:
        raise UserError('{}: log scale for {} needs a positive low bound'.format(where, name))
    if log and step is not None and not (dtype == 'int' and step == 1):
        raise UserError('{}: {} cannot have both "log" and "step" (Optuna does not support it)'.format(where, name))
    if dtype == 'int':
        values = [int(lo), int(hi)]
        step = None if step is None else int(step)
    return SpaceParam(name, dtype, values, step, log)


def load_space(path):
    """Read a parameter space file; raise UserError naming the file and line of any problem."""
    try:
        with open(path, 'rt', encoding='utf-8') as f:
            lines = f.readlines()
    except OSError as e:
        raise UserError('Cannot read parameter space file {}: {}'.format(path, e.strerror or e)) from None
    space = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = '{}, line {}'.format(path, i)
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError('{}: not valid JSON ({})'.format(where, e.msg)) from None
        par = parse_space_line(obj, where)
        if any(p.name == par.name for p in space):
            raise UserError('{}: parameter {} appears twice in the space'.format(where, par.name))
        space.append(par)
    if not space:
        raise UserError('Parameter space file {} defines no parameter'.format(path))
    return space


def format_space(space):
    """The PARAMETER SPACE block the original prints before the trials."""
    rule = '-' * 80
    return '\n'.join([rule, 'PARAMETER SPACE'] + ['\t' + p.describe() for p in space] + [rule])
