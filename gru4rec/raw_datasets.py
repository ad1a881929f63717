"""Readers for the raw public files of the six datasets of the GRU4Rec papers.

Each follows its published preprocessing script (RSC15: hidasib/GRU4Rec examples/rsc15/preprocess.py;
the others: hidasib/gru4rec_third_party_comparison/*_preproc.py) up to the point where events are
(SessionId, ItemId, Time) in the order the script removes consecutive repeats in. Files are read
in chunks into compact integer arrays, so even Rees46 (two files of several GB) fits in a few GiB.
"""
import os

import numpy as np
import pandas as pd

from recsys_core.errors import UserError
from recsys_core.preprocessing import (Factorizer, filter_once, filter_until_stable, parse_column, read_raw_csv,
                                       sessions_by_gap,
                                       split_by_session_end, split_by_session_start, to_datetime_seconds, to_int)

DAY_S, DAY_MS = 86400, 86400 * 1000


def _raw(rawdir, name):
    path = os.path.join(rawdir, name)
    if not os.path.isfile(path):
        raise UserError('Raw file {} not found in {}'.format(name, rawdir))
    return path


def _stack(parts, what):
    """Concatenate per-chunk tuples of arrays column-wise; no chunk at all means no events."""
    if not parts:
        raise UserError('{} has no events'.format(what))
    return [np.concatenate(x) for x in zip(*parts)]


def _sessionize(user, item, time, gap, keep=None):
    """Sort events by (user, time, item), start a session at a new user or a gap over ``gap``, and
    return (session, item, time) of the events flagged in ``keep`` (all when None)."""
    order = np.lexsort((item, time, user))
    user, item, time = user[order], item[order], time[order]
    session = sessions_by_gap(user, time, gap)
    if keep is None:
        return session, item, time
    keep = keep[order]
    return session[keep], item[keep], time[keep]


def _frame(session, item, time, order=None):
    df = pd.DataFrame({'SessionId': session, 'ItemId': item, 'Time': time})
    return df if order is None else df.iloc[order].reset_index(drop=True)


def _yoochoose_clicks(path, seconds):
    """(session, item, time, row label) of a yoochoose .dat file: no header; session, ISO timestamp,
    item, category. The row label is the row's position in its file."""
    parts = []
    for line, chunk in read_raw_csv(path, ['session', 'time', 'item'], header=False,
                                    names=['session', 'time', 'item', 'category']):
        parts.append((parse_column(chunk.session.values, to_int, path, line, 'session id'),
                      parse_column(chunk.item.values, to_int, path, line, 'item id'),
                      parse_column(chunk.time.values, seconds, path, line, 'timestamp')))
    s, i, t = _stack(parts, path)
    return s, i, t, np.arange(len(s))


def _fractional_seconds(values):
    """Seconds as the RSC15 script computes them: whole seconds + microseconds / 1e6 (a float)."""
    stamps = pd.to_datetime(pd.Series(values), format='%Y-%m-%dT%H:%M:%S.%fZ', utc=True)
    if stamps.isna().any():
        raise ValueError('missing timestamp')
    ns = stamps.values.astype('datetime64[ns]').astype(np.int64)
    return (ns // 10 ** 9) + (ns % 10 ** 9 // 1000) / 1e6


def read_rsc15(rawdir):
    """RSC15: yoochoose-clicks.dat, times with fractions of a second, no repeat removal."""
    s, i, t, _ = _yoochoose_clicks(_raw(rawdir, 'yoochoose-clicks.dat'), _fractional_seconds)
    return _frame(s, i, t)


def read_yoochoose(rawdir):
    """Yoochoose: clicks and the challenge's test clicks together, whole seconds, sorted by (session, time, item).

    The published script concatenates the two files keeping each file's row labels, so every later
    drop also removes the other file's row with the same label; RowLabel carries that (see
    recsys_core.preprocessing.drop_rows) so the splits are the published ones.
    """
    parts = [_yoochoose_clicks(_raw(rawdir, f), to_datetime_seconds('%Y-%m-%dT%H:%M:%S.%fZ'))
             for f in ('yoochoose-clicks.dat', 'yoochoose-test.dat')]
    s, i, t, label = [np.concatenate(p) for p in zip(*parts)]
    order = np.lexsort((i, t, s))
    df = _frame(s, i, t, order)
    df['RowLabel'] = label[order]
    return df


def read_rees46(rawdir):
    """Rees46: Oct+Nov 2019 events; views of each user split into sessions at gaps over an hour.

    Users and products are numbered in order of first appearance over all events (the script's
    merge), which fixes the order of events at equal times and the session numbering.
    """
    users, products = Factorizer(), Factorizer()
    cols = {'event_time': ['event_time'], 'event_type': ['event_type'], 'product_id': ['product_id'],
            'user_id': ['user_id']}
    parts = []
    for name in ('2019-Oct.csv', '2019-Nov.csv'):
        path = _raw(rawdir, name)
        for line, chunk in read_raw_csv(path, cols):
            u, p = users(chunk.user_id.values), products(chunk.product_id.values)
            view = chunk.event_type.values == 'view'
            t = parse_column(chunk.event_time.values[view], to_datetime_seconds('%Y-%m-%d %H:%M:%S UTC'), path, line,
                             'event_time')
            parts.append((u[view].astype(np.int32), p[view].astype(np.int32), t))
    session, p, t = _sessionize(*_stack(parts, 'The Rees46 files'), 3600)
    ids = products.values
    if pd.Series(ids).str.fullmatch(r'\d{1,18}').all():  # numeric ids (the real data): 8 bytes, not a str each
        ids = ids.astype(np.int64)
    return _frame(session, ids[p], t)


def read_retailrocket(rawdir):
    """RetailRocket: every event of a visitor split into sessions at gaps over an hour, then views."""
    path = _raw(rawdir, 'events.csv')
    parts = []
    for line, chunk in read_raw_csv(path, ['timestamp', 'visitorid', 'event', 'itemid']):
        parts.append((parse_column(chunk.visitorid.values, to_int, path, line, 'visitorid'),
                      parse_column(chunk.itemid.values, to_int, path, line, 'itemid'),
                      parse_column(chunk.timestamp.values, to_int, path, line, 'timestamp'),
                      chunk.event.values == 'view'))
    v, i, t, view = _stack(parts, path)
    return _frame(*_sessionize(v, i, t, 3600 * 1000, view))


def read_coveo(rawdir):
    """Coveo: browsing events split into sessions at gaps over an hour, then product detail views.

    Sessions and products are numbered in order of first appearance (the script's merges); the
    numbers of the products are the item ids, as in the script.
    """
    name = 'release_10_23_2020.csv' if os.path.isfile(os.path.join(rawdir, 'release_10_23_2020.csv')) \
        else 'browsing_train.csv'
    path = _raw(rawdir, name)
    cols = {'session': ['session_id_hash'], 'action': ['product_action'],
            'sku': ['product_skus_hash', 'product_sku_hash'], 'time': ['server_timestamp_epoch_ms']}
    sessions, products = Factorizer(), Factorizer()
    parts = []
    for line, chunk in read_raw_csv(path, cols):
        parts.append((sessions(chunk.session.values), products(chunk.sku.values),
                      parse_column(chunk.time.values, to_int, path, line, 'server_timestamp_epoch_ms'),
                      chunk.action.values == 'detail'))
    s, i, t, detail = _stack(parts, path)
    s, i, t = _sessionize(s, i, t, 3600 * 1000, detail)
    return _frame(s, i, t, np.lexsort((i, t, s)))


def read_diginetica(rawdir):
    """Diginetica: item views; time = the session's first event date (ms) + timeframe."""
    path = _raw(rawdir, 'train-item-views.csv')
    cols = {'session': ['sessionId', 'session_id'], 'item': ['itemId', 'item_id'], 'timeframe': ['timeframe'],
            'date': ['eventdate']}
    parts = []
    for line, chunk in read_raw_csv(path, cols, sep=';'):
        parts.append((parse_column(chunk.session.values, to_int, path, line, 'session id'),
                      parse_column(chunk.item.values, to_int, path, line, 'item id'),
                      parse_column(chunk.timeframe.values, to_int, path, line, 'timeframe'),
                      parse_column(chunk.date.values, to_datetime_seconds('%Y-%m-%d'), path, line, 'eventdate')))
    s, i, frame, day = _stack(parts, path)
    first_day = pd.Series(day).groupby(s).transform('min').values
    t = first_day * 1000 + frame
    return _frame(s, i, t, np.lexsort((i, t, s)))


class DatasetRecipe:
    """How one dataset is preprocessed: its reader, whether repeats are removed, and its split."""

    def __init__(self, name, read, dedup, split, raw_files, paramfile, filter=filter_until_stable):
        self.name, self.read, self.dedup, self.split, self.filter = name, read, dedup, split, filter
        self.raw_files, self.paramfile = raw_files, paramfile


def _start_split(span, tsplit=None):
    return lambda df: split_by_session_start(df, df.Time.max() if tsplit is None else tsplit, span)


RECIPES = {r.name: r for r in [
    DatasetRecipe('rsc15', read_rsc15, False, lambda df: split_by_session_end(df, DAY_S),
                  'yoochoose-clicks.dat', 'rsc15_xe_shared_100_best.py', filter=filter_once),
    DatasetRecipe('yoochoose', read_yoochoose, True, _start_split(DAY_S),
                  'yoochoose-clicks.dat, yoochoose-test.dat', 'yoochoose_xe_shared_best.py'),
    DatasetRecipe('rees46', read_rees46, True, _start_split(DAY_S, 1575158400),
                  '2019-Oct.csv, 2019-Nov.csv', 'rees46_xe_shared_best.py'),
    DatasetRecipe('coveo', read_coveo, True, _start_split(DAY_MS),
                  'release_10_23_2020.csv (or browsing_train.csv)', 'coveo_bprmax_shared_best.py'),
    DatasetRecipe('retailrocket', read_retailrocket, True, _start_split(7 * DAY_MS, 1442545200000),
                  'events.csv', 'retailrocket_bprmax_shared_best.py'),
    DatasetRecipe('diginetica', read_diginetica, True, _start_split(7 * DAY_MS),
                  'train-item-views.csv', 'diginetica_bprmax_shared_best.py'),
]}
