"""Steps the published preprocessing scripts share: chunked raw reading with a progress line and
line-numbered errors, sessionisation by inactivity gap, removal of consecutive repeats, iterative
filtering of short sessions and rare items, time-based splits, statistics, atomic TSV output."""
import os
import re
import sys
import warnings

import numpy as np
import pandas as pd

from .atomic import write_tsv_atomic  # noqa: F401  (the preprocessing scripts' TSV output)
from .errors import UserError

CHUNK_ROWS = 500_000


def read_raw_csv(path, columns, sep=',', header=True, names=None, chunk_rows=CHUNK_ROWS, label=None):
    """Yield (first_line_number, DataFrame of strings) chunks holding ``columns`` of a raw file.

    With header=True the file's header must contain ``columns`` (a dict {wanted name: [accepted
    spellings]} or a list); otherwise ``names`` name the positional columns. A progress line (bytes
    read) goes to stderr. Parser problems become a UserError naming the file and line.
    """
    if not os.path.isfile(path):
        raise UserError('Raw file not found: {}'.format(path))
    size = max(os.path.getsize(path), 1)
    label = label or os.path.basename(path)
    aliases = columns if isinstance(columns, dict) else {c: [c] for c in columns}
    with open(path, 'rb') as f:
        usecols, rename, first_line = None, None, 1
        if header:
            head = f.readline().decode('utf-8', 'replace').rstrip('\r\n').split(sep)
            head = [h.strip().strip('"') for h in head]
            rename = {}
            for want, spellings in aliases.items():
                found = [h for h in head if h in spellings]
                if not found:
                    raise UserError('{}, line 1: the header has no column {} (found: {}); is this the right file?'.format(
                        path, ' or '.join(spellings), ', '.join(head)))
                rename[found[0]] = want
            usecols, first_line = list(rename), 2
        else:
            usecols = [i for i, n in enumerate(names) if n in aliases]
        try:
            fields = head if header else list(names)
            # one spare column catches lines with extra fields (pandas would shift them into an index)
            reader = pd.read_csv(f, sep=sep, header=None, names=list(range(len(fields) + 1)), index_col=False,
                                 dtype=str, chunksize=chunk_rows, keep_default_na=False, na_values=[], engine='c',
                                 on_bad_lines='error')
            line = first_line
            for chunk in _chunks_or_error(reader, path, line):
                extra = chunk[len(fields)].fillna('').values != ''
                if extra.any():
                    raise UserError('{}, line {}: expected {} fields, found more'.format(
                        path, line + int(np.argmax(extra)), len(fields)))
                chunk = chunk.iloc[:, :len(fields)]
                chunk.columns = fields
                chunk = chunk[usecols].rename(columns=rename) if header else chunk[[names[i] for i in usecols]]
                yield line, chunk
                line += len(chunk)
                print('\r{}: {:5.1f}% read ({} lines)'.format(label, 100.0 * f.tell() / size, line - first_line),
                      end='', file=sys.stderr, flush=True)
        except pd.errors.ParserError as e:
            raise UserError('{}: malformed line: {}'.format(path, _parser_message(e, first_line))) from None
        except UnicodeDecodeError as e:
            raise UserError('{}: not a text file ({})'.format(path, e)) from None
        finally:
            print('', file=sys.stderr)


def _chunks_or_error(reader, path, line):
    """Chunks of ``reader``; pandas's data-loss warning (far too many fields) becomes a UserError."""
    with warnings.catch_warnings():
        warnings.simplefilter('error', pd.errors.ParserWarning)
        try:
            yield from reader
        except pd.errors.ParserWarning:
            raise UserError('{}: a line after line {} has far more fields than the header'.format(path, line)) from None


def _parser_message(err, first_line):
    """pandas counts lines from where it started reading; report file line numbers instead."""
    text = str(err).strip()
    m = re.search(r'line (\d+)', text)
    if m:
        line = int(m.group(1)) + first_line - 1
        text = 'line {}: {}'.format(line, text[:m.start()].rstrip(' ,') + text[m.end():])
    return text


def parse_column(values, convert, path, first_line, what):
    """Convert a column of strings with ``convert``; a bad value raises UserError naming its line."""
    try:
        return convert(values)
    except (ValueError, TypeError, OverflowError):
        for i, v in enumerate(values):
            try:
                convert(pd.Series([v]))
            except (ValueError, TypeError, OverflowError):
                raise UserError('{}, line {}: invalid {} {!r}'.format(path, first_line + i, what, v)) from None
        raise


def to_int(values):
    if len(values) and not pd.Series(values).fillna('').str.fullmatch(r'-?\d+').all():
        raise ValueError('not an integer')
    return pd.to_numeric(pd.Series(values), errors='raise').astype(np.int64).values


def to_datetime_seconds(fmt):
    """Converter: timestamp strings in ``fmt`` (UTC) -> whole seconds since the epoch (floor)."""
    def convert(values):
        stamps = pd.to_datetime(pd.Series(values), format=fmt, utc=True)
        if stamps.isna().any():
            raise ValueError('missing timestamp')
        return stamps.values.astype('datetime64[ns]').astype(np.int64) // 10 ** 9
    return convert


class Factorizer:
    """Ids -> 0.. in order of first appearance across chunks (pandas.factorize over a stream)."""

    def __init__(self):
        self.index = pd.Index([], dtype=object)

    def __call__(self, values):
        values = pd.Index(values, dtype=object)
        codes = self.index.get_indexer(values)
        new = codes < 0
        if new.any():
            fresh = pd.unique(values[new].values)
            self.index = self.index.append(pd.Index(fresh, dtype=object))
            codes[new] = self.index.get_indexer(values[new])
        return codes.astype(np.int64)

    @property
    def values(self):
        return self.index.values


def sessions_by_gap(user, time, gap):
    """Session index per event of (user, time)-sorted events: a new session at a new user or a gap > ``gap``."""
    new = np.zeros(len(user), dtype=bool)
    new[1:] = (time[1:] - time[:-1] > gap) | (user[1:] != user[:-1])
    return np.cumsum(new)


def drop_rows(df, drop):
    """``df`` without the rows flagged in ``drop``.

    Emulates the Yoochoose script, whose concatenated files share row labels: there every drop
    also removes the rows of the other file with the same label. Frames carrying a ``RowLabel``
    column get that behaviour; others drop exactly the flagged rows.
    """
    if 'RowLabel' in df.columns and drop.any():
        drop = drop | df.RowLabel.isin(df.RowLabel.values[drop]).values
    return df[~drop]


def drop_consecutive_repeats(df):
    """Drop an event when the previous event (in the given order) is the same item in the same session."""
    s, i = df.SessionId.values, df.ItemId.values
    dup = np.zeros(len(df), dtype=bool)
    dup[1:] = (s[1:] == s[:-1]) & (i[1:] == i[:-1])
    return drop_rows(df, dup)


def filter_until_stable(df, min_item_support=5, verbose=True):
    """Repeat: drop sessions of one event, then items with fewer than ``min_item_support`` events."""
    previous = -1
    while len(df) != previous:
        previous = len(df)
        lengths = df.groupby('SessionId').size()
        df = drop_rows(df, df.SessionId.isin(lengths[lengths == 1].index).values)
        support = df.groupby('ItemId').size()
        df = drop_rows(df, df.ItemId.isin(support[support < min_item_support].index).values)
        if verbose:
            print('  filtering: {} events, {} sessions, {} items'.format(len(df), df.SessionId.nunique(),
                                                                       df.ItemId.nunique()))
    return df


def filter_once(df, min_item_support=5, verbose=True):
    """The RSC15 script's single pass: sessions of 2+ events, items of 5+ events, sessions of 2+ again."""
    df = _long_sessions(df)
    support = df.groupby('ItemId').size()
    df = _long_sessions(df[df.ItemId.isin(support[support >= min_item_support].index)])
    if verbose:
        print('  filtering: {} events, {} sessions, {} items'.format(len(df), df.SessionId.nunique(), df.ItemId.nunique()))
    return df


def _long_sessions(df):
    lengths = df.groupby('SessionId').size()
    return df[df.SessionId.isin(lengths[lengths > 1].index)]


def split_by_session_start(df, tsplit, span):
    """(train_full, test, train_tr, train_valid) as the RecSys'23 scripts split them.

    test: sessions starting at or after tsplit - span; train_full: events before it, sessions of 2+
    events; the same split of train_full at tsplit - 2*span gives train_tr and train_valid (session
    starts taken from the whole data).
    """
    start = df.groupby('SessionId').Time.min()
    test = df[df.SessionId.isin(start[start >= tsplit - span].index)]
    train = _long_sessions(df[df.Time < tsplit - span])
    valid = train[train.SessionId.isin(start[start >= tsplit - 2 * span].index)]
    train_tr = _long_sessions(train[train.Time < tsplit - 2 * span])
    return train, test, train_tr, valid


def split_by_session_end(df, span):
    """(train_full, test, train_tr, train_valid) as the RSC15 script splits them: sessions ending in
    the last ``span`` are test; test keeps training items only and sessions of 2+ events."""
    def split(data):
        tmax = data.Time.max()
        end = data.groupby('SessionId').Time.max()
        train = data[data.SessionId.isin(end[end < tmax - span].index)]
        test = data[data.SessionId.isin(end[end >= tmax - span].index)]
        test = _long_sessions(test[test.ItemId.isin(train.ItemId)])
        return train, test
    train, test = split(df)
    train_tr, valid = split(train)
    return train, test, train_tr, valid


def statistics(frames):
    """Events, sessions, items and days per named frame (a DataFrame, one row per frame)."""
    rows = []
    for name, df in frames.items():
        rows.append({'file': name, 'events': len(df), 'sessions': df.SessionId.nunique(), 'items': df.ItemId.nunique()})
    return pd.DataFrame(rows, columns=['file', 'events', 'sessions', 'items'])
