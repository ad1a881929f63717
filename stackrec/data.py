"""StackRec's released data handling that is not a model (reference section 2).

* :func:`ratio_subset`: the nested ``--data_ratio`` training subsets of the continual-learning
  scenario, drawn exactly as the release draws them (section 2.3);
* :func:`pad_sequences` / :func:`read_sequence_csv`: NextItNet's/GRec's sequence CSV, left-padded
  with the token '0' to the longest line (section 2.1);
* :func:`read_ssept_csv`: SSE-PT's CSV with an integer user id first (section 2.4);
* :func:`read_coldrec_file`: the ColdRec fine-tune file ``s1,...,sn,,t1,t2,...`` (section 2.5).

Readers return tokens (strings); vocabularies are the models' business (P1, P3). Blank lines are
skipped; any other malformed line is one :class:`UserError` naming the file and its line number.
"""
import os
import random
import re

import numpy as np

from recsys_core.errors import UserError

NESTED_RATIOS = (0.2, 0.4, 0.6, 0.8)


def ratio_subset(n_train, ratio, seed=10, rng=None):
    """Rows of the (already permuted) training set that ``--data_ratio ratio`` trains on, in order.

    The release seeds Python's ``random`` with 10 after the split and draws nested chunks:
    r=0.2 a sample A of int(0.2 T) rows; r=0.4 A then a sample of 1/4 of the rest; r=0.6 A, B
    then 1/3 of the rest; r=0.8 A, B, C then 1/2 of the rest; r=1 every row in its order; any
    other r a plain sample of int(r T) rows. The same calls are made here on a ``random.Random``
    (the module functions' generator; ``rng``, if given, is drawn from without reseeding), with the
    release's float expressions and set operations, so the rows are the release's.

    Kept as released: the first chunk's size is computed as int((r - 0.2 - ...) T). For r=0.6 that
    factor is 0.19999999999999996, one row short of int(0.2 T) whenever T is a multiple of 5, and
    the r=0.6 subset then is not a superset of r=0.4. r=0.2, 0.4, 0.8 always nest (each a prefix of
    the next) and every subset lies in r=1's, which the CL scenario (0.8 then 1) relies on.
    """
    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or n_train < 1:
        raise UserError('The training set must have at least one row, not {!r}'.format(n_train))
    try:
        ratio = float(ratio)
    except (TypeError, ValueError):
        raise UserError('data_ratio must be a number in (0, 1], not {!r}'.format(ratio)) from None
    if not 0 < ratio <= 1:
        raise UserError('data_ratio must be in (0, 1], not {}'.format(ratio))
    if ratio == 1:
        return np.arange(n_train, dtype=np.int64)
    rng = random.Random(seed) if rng is None else rng
    everything = set(list(range(n_train)))
    if ratio in NESTED_RATIOS:
        chunks = NESTED_RATIOS.index(ratio) + 1
        first = ratio
        for _ in range(chunks - 1):
            first = first - 0.2                     # the release's arithmetic, rounding included
        rows = rng.sample(list(everything), int(first * float(n_train)))
        remain = everything - set(rows)
        for parts in (4.0, 3.0, 2.0)[:chunks - 1]:
            chunk = rng.sample(list(remain), int(1.0 / parts * float(len(remain))))
            rows = rows + chunk
            remain = remain - set(chunk)
    else:
        rows = rng.sample(list(everything), int(ratio * float(n_train)))
    if not rows:
        raise UserError('data_ratio {} of {} training rows leaves no row to train on'.format(ratio, n_train))
    return np.asarray(rows, dtype=np.int64)


def _lines(path):
    """(1-based line number, stripped line) of every non-blank line."""
    if not os.path.isfile(path):
        raise UserError('Data file not found: {}'.format(path))
    with open(path, 'rt', errors='replace') as f:
        lines = [(n, line.strip()) for n, line in enumerate(f, 1) if line.strip()]
    if not lines:
        raise UserError('{} contains no sequences'.format(path))
    return lines


def _tokens(text, path, number, what):
    tokens = [t.strip() for t in text.split(',')]
    if '' in tokens:
        raise UserError('{} line {}: empty item in the {} ({!r})'.format(path, number, what, text[:80]))
    return tokens


def pad_sequences(sequences, padid='0'):
    """Token lists left-padded with ``padid`` to the longest, as data_loader.py pads (section 2.1).

    The pad token then becomes an ordinary vocabulary entry (P1); a data set whose items include
    the token '0' shares it with the padding, as in the release.
    """
    sequences = [list(s) for s in sequences]
    if not sequences:
        return []
    width = max(len(s) for s in sequences)
    return [[str(padid)] * (width - len(s)) + s for s in sequences]


def read_sequence_csv(path, padid='0'):
    """NextItNet's/GRec's sequence CSV (one sequence per line), left-padded with ``padid``."""
    return pad_sequences([_tokens(line, path, n, 'sequence') for n, line in _lines(path)], padid)


def read_ssept_csv(path):
    """(user ids as int64, item token lists) of SSE-PT's CSV ``user,i1,i2,...`` (section 2.4).

    The release uses the id directly as a row of the user embedding whose size is the number of
    distinct users U, so the ids must be exactly 0..U-1.
    """
    users, sequences, numbers = [], [], []
    for n, line in _lines(path):
        user, _, rest = line.partition(',')
        user = user.strip()
        if not re.fullmatch(r'[+-]?\d+', user):
            raise UserError('{} line {}: the first field must be an integer user id, not {!r}'.format(
                path, n, user[:40]))
        if not rest.strip():
            raise UserError('{} line {}: user {} has no items'.format(path, n, user))
        users.append(int(user))
        sequences.append(_tokens(rest, path, n, 'sequence'))
        numbers.append(n)
    U = len(set(users))
    for n, u in zip(numbers, users):
        if not 0 <= u < U:
            raise UserError('{} line {}: user id {} is outside 0..{} ({} distinct users; SSE-PT uses the ids as '
                            'embedding rows)'.format(path, n, u, U - 1, U))
    return np.asarray(users, dtype=np.int64), sequences


def read_coldrec_file(path):
    """(source token lists, target token lists) of the ColdRec fine-tune file (section 2.5).

    Each line is ``s1,...,sn,,t1,t2,...``: exactly one ',,' between a non-empty source behaviour
    sequence and the target-domain items (which may be empty: the line then gives no example).
    """
    sources, targets = [], []
    for n, line in _lines(path):
        parts = line.split(',,')
        if len(parts) != 2:
            raise UserError('{} line {}: {} (expected source items,,target items)'.format(
                path, n, "no ',,' separator" if len(parts) == 1 else "more than one ',,'"))
        if not parts[0].strip():
            raise UserError('{} line {}: empty source sequence before ,,'.format(path, n))
        sources.append(_tokens(parts[0], path, n, 'source'))
        targets.append(_tokens(parts[1], path, n, 'targets') if parts[1].strip() else [])
    return sources, targets
