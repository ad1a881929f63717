"""Reading session data (TSV with a header, or a pickled DataFrame) and session offsets."""
import os
import time

import numpy as np
import pandas as pd

from .errors import UserError
from .sequences import looks_like_sequence_file, read_sequence_file


def load_events(path, session_key='SessionId', item_key='ItemId', time_key='Time', verbose=True):
    """Load a session event file; item ids are kept as strings, as the original does.

    Formats: TAB separated with a header, a pickled DataFrame (.pickle/.pkl), or a sequence-per-line
    file (NextItNet's format, recognised by having no TAB; see recsys_core.sequences).
    Raises UserError for a missing file, a missing column, an unreadable file or an empty file.
    """
    if not os.path.isfile(path):
        raise UserError('Data file not found: {}'.format(path))
    keys = [session_key, item_key, time_key]
    is_pickle = path.endswith('.pickle') or path.endswith('.pkl')
    if not is_pickle and looks_like_sequence_file(path):
        if verbose:
            print('Loading data from sequence-per-line file: {}'.format(path))
        return read_sequence_file(path, session_key, item_key, time_key)
    if is_pickle:
        if verbose:
            print('Loading data from pickle file: {}'.format(path))
        try:
            data = pd.read_pickle(path)
        except Exception as e:
            raise UserError('Could not read pickled DataFrame {}: {}'.format(path, e)) from None
        if not isinstance(data, pd.DataFrame):
            raise UserError('{} does not contain a pandas DataFrame'.format(path))
        _check_columns(data.columns, keys, path)
        data = data[keys].copy()
        data[item_key] = data[item_key].astype(str)
    else:
        with open(path, 'rt', errors='replace') as f:
            header = f.readline().rstrip('\r\n').split('\t')
        _check_columns(header, keys, path)
        if verbose:
            print('Loading data from TAB separated file: {}'.format(path))
        try:
            data = pd.read_csv(path, sep='\t', usecols=keys, dtype={item_key: str})
        except Exception as e:
            raise UserError('Could not parse {} as a TAB separated file: {}'.format(path, e)) from None
    if len(data) == 0:
        raise UserError('Data file {} contains no events'.format(path))
    if data[keys].isna().any().any():
        col = [k for k in keys if data[k].isna().any()][0]
        raise UserError('Column "{}" of {} has missing values'.format(col, path))
    if not pd.api.types.is_numeric_dtype(data[time_key]):
        raise UserError('Column "{}" of {} must be numeric (timestamps)'.format(time_key, path))
    return data


def _check_columns(columns, keys, path):
    names = ('session IDs', 'item IDs', 'time')
    for key, what in zip(keys, names):
        if key not in columns:
            raise UserError('The column specified for {} "{}" is not in the data file ({}); columns found: {}. '
                            'Set it with -sk/-ik/-tk.'.format(what, key, path, ', '.join(map(str, columns))))


def sort_if_needed(data, columns, verbose=True):
    """Sort ``data`` in place by ``columns`` unless it already is (the original's message either way)."""
    values = [data[c].values for c in columns]
    ordered = np.ones(len(data) - 1, dtype=bool) if len(data) > 1 else np.ones(0, dtype=bool)
    tie = np.ones_like(ordered)
    for v in values:
        ordered &= ~tie | (v[1:] >= v[:-1])
        tie &= v[1:] == v[:-1]
    if ordered.all():
        if verbose:
            print('The dataframe is already sorted by {}'.format(', '.join(columns)))
        return data
    if verbose:
        print('The dataframe is not sorted by {}, sorting now'.format(', '.join(columns)))
    t0 = time.time()
    data.sort_values(columns, inplace=True, kind='mergesort')
    data.reset_index(drop=True, inplace=True)
    if verbose:
        print('Data is sorted in {:.2f}'.format(time.time() - t0))
    return data


def session_offsets(sessions):
    """Start offsets of each session in a session-sorted column, plus the total length at the end."""
    sessions = np.asarray(sessions)
    if len(sessions) == 0:
        return np.zeros(1, dtype=np.int64)
    starts = np.flatnonzero(sessions[1:] != sessions[:-1]) + 1
    return np.concatenate([[0], starts, [len(sessions)]]).astype(np.int64)



class TrainingEvents:
    """Training events as models consume them: session-sorted, items mapped to 0..n_items-1.

    ``data`` keeps the key columns (item ids as strings); ``itemidmap`` maps item id -> index in
    order of first appearance (the original's); ``items`` is the item index of each event and
    ``offsets`` the session start offsets plus the end.
    """

    def __init__(self, data, session_key, item_key, time_key, verbose=True):
        keys = [session_key, item_key, time_key]
        missing = [k for k in keys if k not in data.columns]
        if missing:
            raise UserError('Training data has no column(s): {}'.format(', '.join(missing)))
        if len(data) < 2:
            raise UserError('Training data needs at least two events')
        data = data[keys].copy()
        data[item_key] = data[item_key].astype(str)
        itemids = data[item_key].unique()
        self.itemidmap = pd.Series(np.arange(len(itemids), dtype=np.int32), index=itemids, name='ItemIdx')
        self.data = sort_if_needed(data, [session_key, time_key], verbose)
        self.items = self.itemidmap[self.data[item_key].values].values.astype(np.int32)
        self.offsets = session_offsets(self.data[session_key].values)
        if len(self.offsets) < 2 or (self.offsets[1:] - self.offsets[:-1]).max() < 2:
            raise UserError('Training data has no session with at least two events')

    @property
    def n_items(self):
        return len(self.itemidmap)


def map_item_ids(itemidmap, item_ids, skip_unknown=False):
    """Model indices of ``item_ids`` (any type; compared as strings); unknown ids raise UserError
    unless ``skip_unknown``, which leaves them out."""
    ids = pd.Index(np.asarray(item_ids).astype(str))
    idx = itemidmap.reindex(ids).values
    unknown = np.isnan(idx)
    if unknown.any() and not skip_unknown:
        raise UserError('Unknown item id(s): {}'.format(', '.join(ids[unknown][:10])))
    return idx[~unknown].astype(np.int32)


def top_k_indices(scores, k):
    """Indices of the k largest scores of a vector, best first (ties in index order)."""
    top = np.argpartition(-scores, k - 1)[:k]
    return top[np.argsort(-scores[top], kind='stable')]
