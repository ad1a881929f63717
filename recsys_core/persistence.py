"""Model files: written atomically, read back with one clear error for anything wrong.

A model file is a pickle of a dict with a format tag, a version, the model class path and the
model's state (plain numpy arrays and Python values, so it loads on any backend or device).
"""
import importlib
import os
import pickle

from .atomic import atomic_write, write_bytes_atomic  # noqa: F401  (write_bytes_atomic: for its users)
from .errors import UserError

FORMAT_TAG = 'pytensor-recsys-model'
FORMAT_VERSION = 1


def write_atomic(path, payload):
    """Pickle ``payload`` to ``path`` atomically (see :func:`recsys_core.atomic.atomic_write`)."""
    with atomic_write(path, 'wb') as f:
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)


def save_model(model, path):
    cls = type(model)
    write_atomic(path, {'format': FORMAT_TAG, 'version': FORMAT_VERSION,
                        'class': '{}:{}'.format(cls.__module__, cls.__qualname__), 'state': model.get_state()})


def read_tagged_pickle(path, tag, version, what):
    """The dict pickled in ``path`` with format ``tag`` and ``version``, or one UserError saying what is wrong."""
    if not os.path.isfile(path):
        raise UserError('{} not found: {}'.format(what.capitalize(), path))
    try:
        with open(path, 'rb') as f:
            payload = pickle.load(f)
    except Exception as e:
        raise UserError('Could not read {} {}: it is corrupt or not a {} ({}: {})'.format(
            what, path, what, type(e).__name__, e)) from None
    if not isinstance(payload, dict) or payload.get('format') != tag:
        raise UserError('{} is not a {} of this project'.format(path, what))
    if payload.get('version') != version:
        raise UserError('{} {} has format version {}; this version reads {}'.format(
            what.capitalize(), path, payload.get('version'), version))
    return payload


def read_model_file(path):
    """Return (class, state) from a model file or raise UserError."""
    payload = read_tagged_pickle(path, FORMAT_TAG, FORMAT_VERSION, 'model file')
    module_name, _, qualname = payload.get('class', '').partition(':')
    try:
        cls = getattr(importlib.import_module(module_name), qualname)
    except (ImportError, AttributeError, ValueError):
        raise UserError('Model file {} needs class {!r}, which is not available'.format(path, payload.get('class'))) from None
    return cls, payload['state']


def load_model(path, expected_class=None):
    """Load any model saved with :func:`save_model` (optionally insisting on its class)."""
    cls, state = read_model_file(path)
    if expected_class is not None and not issubclass(cls, expected_class):
        raise UserError('Model file {} holds a {} model, not {}'.format(path, cls.__name__, expected_class.__name__))
    try:
        return cls.from_state(state)
    except UserError:
        raise
    except Exception as e:
        raise UserError('Model file {} is corrupt: {}: {}'.format(path, type(e).__name__, e)) from None
