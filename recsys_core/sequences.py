"""Sequence data, the way NextItNet, CpRec and their successors consume it.

Two file formats reach the models through run.py's one loader (:func:`recsys_core.data.load_events`):
run.py's session TSV, and NextItNet's *sequence-per-line* text file (items comma-separated in
chronological order, no header). A sequence file becomes events with SessionId = line number
(0-based), ItemId = token and Time = position in the line, so every model, GRU4Rec included, reads
both formats, and the sequence models turn events back into sequences here.

Also here: left padding to a fixed length, cutting long sequences into windows, and the released
code's train/test split by whole sequences (numpy's legacy global generator, seed 10).
"""
import numpy as np
import pandas as pd

from .errors import UserError


def looks_like_sequence_file(path):
    """A file is a sequence file when its first non-empty line has no TAB (a TSV always has one)."""
    with open(path, 'rt', errors='replace') as f:
        for line in f:
            if line.strip():
                return '\t' not in line
    return False


def read_sequence_file(path, session_key='SessionId', item_key='ItemId', time_key='Time'):
    """Events of a sequence-per-line file: one session per non-empty line, items in line order.

    Tokens are split at commas and stripped. NextItNet's loader tokenises with a regex that, for
    the numeric and hexadecimal ids real files use, gives the same tokens.
    """
    sessions, items, times = [], [], []
    with open(path, 'rt', errors='replace') as f:
        for number, line in enumerate(f):
            tokens = [t.strip() for t in line.strip().split(',')]
            tokens = [t for t in tokens if t]
            if not sessions and {session_key, item_key} & set(tokens):
                raise UserError('{} has no TAB but its first line names columns ({}): session files must be TAB '
                                'separated; a file without TABs is read as one sequence of items per line'.format(
                                    path, line.strip()[:80]))
            sessions.extend([number] * len(tokens))
            items.extend(tokens)
            times.extend(range(len(tokens)))
    if not items:
        raise UserError('Sequence file {} contains no items'.format(path))
    return pd.DataFrame({session_key: np.asarray(sessions, dtype=np.int64), item_key: items,
                         time_key: np.asarray(times, dtype=np.int64)})


def sequences_from_events(items, offsets):
    """Split a session-sorted item column into one array per session."""
    return [items[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def windows(sequence, length):
    """Cut ``sequence`` into consecutive pieces of at most ``length`` items, counted from its end.

    The NextItNet README's advice for histories longer than the model's sequence length; the first
    (oldest) piece may be shorter and is dropped when it has fewer than two items.
    """
    pieces = [sequence[max(0, end - length):end] for end in range(len(sequence), 0, -length)]
    return [p for p in reversed(pieces) if len(p) >= 2]


def left_pad(sequences, length, pad):
    """A (len(sequences), length) int32 matrix: each sequence's last ``length`` items, right-aligned."""
    out = np.full((len(sequences), length), pad, dtype=np.int32)
    for row, s in zip(out, sequences):
        s = s[-length:]
        if len(s):
            row[length - len(s):] = s
    return out


def legacy_split(n, test_fraction, seed=10):
    """(train_rows, test_rows) as the released scripts split: one permutation from numpy's legacy
    global generator seeded with ``seed``, the last ``int(test_fraction * n)`` rows for testing."""
    n_test = int(test_fraction * n)
    if n_test < 1 or n_test >= n:
        raise UserError('A test fraction of {} of {} sequences leaves an empty train or test set'.format(
            test_fraction, n))
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        perm = np.random.permutation(np.arange(n))
    finally:
        np.random.set_state(state)
    return perm[:n - n_test], perm[n - n_test:]
