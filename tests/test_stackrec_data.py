"""StackRec's released data handling (stackrec.data; reference section 2) on small generated files."""
import random

import numpy as np
import pytest

from recsys_core.errors import UserError
from stackrec.data import (pad_sequences, ratio_subset, read_coldrec_file, read_sequence_csv,
                           read_ssept_csv)


# --- nested data_ratio subsets (section 2.3) ---------------------------------------------------------

def test_nested_ratios_sizes_subsets_and_prefixes():
    T = 1003
    rows = {r: list(ratio_subset(T, r)) for r in (0.2, 0.4, 0.6, 0.8, 1)}
    # 0.2: int(0.2 T); then 1/4, 1/3, 1/2 of what is left
    assert [len(rows[r]) for r in (0.2, 0.4, 0.6, 0.8, 1)] == [200, 400, 601, 802, 1003]
    assert rows[1] == list(range(T))
    for small, large in [(0.2, 0.4), (0.4, 0.6), (0.6, 0.8)]:
        assert rows[large][:len(rows[small])] == rows[small]
        assert set(rows[small]) < set(rows[large])
    for r in (0.2, 0.4, 0.6, 0.8):
        assert len(set(rows[r])) == len(rows[r]) and set(rows[r]) <= set(rows[1])


def test_release_float_arithmetic_shortens_the_06_chunk_when_t_is_a_multiple_of_5():
    T = 1000   # 0.6 - 0.2 - 0.2 = 0.19999999999999996: the first chunk has 199 rows, not 200
    rows = {r: list(ratio_subset(T, r)) for r in (0.2, 0.4, 0.6, 0.8)}
    assert [len(rows[r]) for r in (0.2, 0.4, 0.6, 0.8)] == [200, 400, 599, 800]
    assert rows[0.6][:199] == rows[0.2][:199] and rows[0.6][199] != rows[0.2][199]
    assert rows[0.4][:200] == rows[0.2] and rows[0.8][:400] == rows[0.4]   # these always nest


def test_same_draws_as_the_module_random_calls():
    state = random.getstate()
    try:
        T = 57
        random.seed(10)
        a = random.sample(list(range(T)), int(0.2 * T))
        rest = set(range(T)) - set(a)
        b = random.sample(list(rest), int(len(rest) / 4))
        assert list(ratio_subset(T, 0.2)) == a
        assert list(ratio_subset(T, 0.4)) == a + b
        random.seed(10)
        assert list(ratio_subset(T, 0.5)) == random.sample(list(range(T)), int(0.5 * T))   # other r: one sample
        random.seed(3)
        expected = random.random()
        random.seed(3)
        ratio_subset(T, 0.8)
        assert random.random() == expected   # the global generator is left alone
    finally:
        random.setstate(state)


def test_seed_and_rng():
    assert list(ratio_subset(50, 0.2, seed=11)) != list(ratio_subset(50, 0.2))
    assert list(ratio_subset(50, 0.2, rng=random.Random(10))) == list(ratio_subset(50, 0.2))


@pytest.mark.parametrize('n, ratio, message', [
    (100, 0, r'\(0, 1\]'), (100, 1.5, r'\(0, 1\]'), (100, 'x', 'number'), (0, 0.2, 'at least one row'),
    (3, 0.2, 'no row to train on'),
])
def test_ratio_errors(n, ratio, message):
    with pytest.raises(UserError, match=message):
        ratio_subset(n, ratio)


# --- the sequence CSV (section 2.1) ------------------------------------------------------------------

def write(tmp_path, text, name='data.csv'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_sequence_csv_left_padded_with_token_0(tmp_path):
    path = write(tmp_path, '5,6,7\n\n8, 9\n1,2,3,4\n')
    assert read_sequence_csv(path) == [['0', '5', '6', '7'], ['0', '0', '8', '9'], ['1', '2', '3', '4']]
    assert pad_sequences([['a'], ['b', 'c']], padid='x') == [['x', 'a'], ['b', 'c']]
    assert pad_sequences([]) == []


@pytest.mark.parametrize('text, message', [
    ('1,2\n3,,4\n', 'line 2: empty item'), ('\n\n', 'no sequences'),
])
def test_sequence_csv_errors(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        read_sequence_csv(write(tmp_path, text))
    with pytest.raises(UserError, match='not found'):
        read_sequence_csv(str(tmp_path / 'missing.csv'))


# --- SSE-PT's CSV with a user id first (section 2.4) ---------------------------------------------------

def test_ssept_csv(tmp_path):
    users, seqs = read_ssept_csv(write(tmp_path, '1,a,b\n0,c\n2,a,d,e\n'))
    assert users.dtype == np.int64 and list(users) == [1, 0, 2]
    assert seqs == [['a', 'b'], ['c'], ['a', 'd', 'e']]


@pytest.mark.parametrize('text, message', [
    ('0,a\nu1,b\n', 'line 2: the first field must be an integer user id'),
    ('0,a\n1.5,b\n', 'line 2: the first field'),
    ('0,a\n1,b\n3,c\n', r'line 3: user id 3 is outside 0..2'),
    ('-1,a\n0,b\n', r'line 1: user id -1 is outside 0..1'),
    ('0,a\n1\n', 'line 2: user 1 has no items'),
    ('0,a,,b\n', 'line 1: empty item'),
])
def test_ssept_csv_errors(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        read_ssept_csv(write(tmp_path, text))


# --- the ColdRec fine-tune file (section 2.5) --------------------------------------------------------

def test_coldrec_file(tmp_path):
    sources, targets = read_coldrec_file(write(tmp_path, '1,2,3,,t1,t2\n\n4,,t3\n5,6,,\n'))
    assert sources == [['1', '2', '3'], ['4'], ['5', '6']]
    assert targets == [['t1', 't2'], ['t3'], []]


@pytest.mark.parametrize('text, message', [
    ('1,2,,t1\n1,2,t1\n', "line 2: no ',,' separator"),
    ('1,2,,t1\n,,t1\n', 'line 2: empty source'),
    ('1,,t1,,t2\n', "line 1: more than one ',,'"),
    ('1,2,,,t1\n', 'line 1: empty item in the targets'),
    ('1,,2,,t1\n', "line 1: more than one ',,'"),
])
def test_coldrec_file_errors(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(UserError, match=message):
        read_coldrec_file(path)
    assert open(path).read() == text
