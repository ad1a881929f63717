"""recsys_core.atomic: the one file writer (temporary in the same folder, fsync, rename)."""
import os

import pandas as pd
import pytest

from recsys_core import atomic
from recsys_core.atomic import atomic_write, write_bytes_atomic, write_text_atomic, write_tsv_atomic
from recsys_core.errors import UserError


def test_writes_text_and_bytes_and_replaces_the_old_file(tmp_path):
    path = tmp_path / 'out.txt'
    path.write_text('old')
    with atomic_write(str(path)) as f:
        f.write('naïve\n')
        assert path.read_text() == 'old'  # nothing visible before the block ends
    assert path.read_bytes() == 'naïve\n'.encode('utf-8')
    write_bytes_atomic(str(path), b'\x00\x01')
    assert path.read_bytes() == b'\x00\x01'
    write_text_atomic(str(path), 'text')
    assert path.read_text() == 'text'
    assert os.listdir(tmp_path) == ['out.txt']


def test_exception_in_the_block_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / 'model.pickle'
    path.write_bytes(b'previous contents')
    with pytest.raises(RuntimeError, match='half way'):
        with atomic_write(str(path), 'wb') as f:
            f.write(b'partial')
            raise RuntimeError('half way')
    assert path.read_bytes() == b'previous contents'
    assert os.listdir(tmp_path) == ['model.pickle']


def test_a_new_file_is_not_created_when_the_block_fails(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(str(tmp_path / 'new.tsv')) as f:
            f.write('x')
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_failing_fsync_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / 'f.bin'
    path.write_bytes(b'old')

    def boom(fd):
        raise OSError('disk full')
    monkeypatch.setattr(atomic.os, 'fsync', boom)
    with pytest.raises(OSError, match='disk full'):
        write_bytes_atomic(str(path), b'new')
    assert path.read_bytes() == b'old' and os.listdir(tmp_path) == ['f.bin']


def test_fsync_runs_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, 'fsync', lambda fd: (calls.append('fsync'), real_fsync(fd)))
    monkeypatch.setattr(atomic.os, 'replace', lambda a, b: (calls.append('replace'), real_replace(a, b)))
    write_bytes_atomic(str(tmp_path / 'f'), b'x')
    assert calls == ['fsync', 'replace']


def test_missing_folder_or_folder_in_place_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match='folder does not exist'):
        with atomic_write(str(tmp_path / 'nowhere' / 'f.txt')):
            pytest.fail('the block must not run')
    (tmp_path / 'adir').mkdir()
    with pytest.raises(UserError, match='it is a folder'):
        write_bytes_atomic(str(tmp_path / 'adir'), b'x')
    assert os.listdir(tmp_path) == ['adir'] and os.listdir(tmp_path / 'adir') == []


@pytest.mark.skipif(hasattr(os, 'geteuid') and os.geteuid() == 0, reason='root writes into read-only folders')
def test_unwritable_folder_is_a_user_error(tmp_path):
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UserError, match='Cannot write'):
            write_bytes_atomic(str(ro / 'f'), b'x')
    finally:
        ro.chmod(0o700)


def test_bad_mode_is_refused(tmp_path):
    with pytest.raises(ValueError):
        with atomic_write(str(tmp_path / 'f'), 'a'):
            pass


def test_tsv_matches_pandas_own_output(tmp_path):
    df = pd.DataFrame({'SessionId': [1, 2], 'ItemId': ['a"b', 'é x'], 'Time': [1.5, float('nan')]})
    df.to_csv(str(tmp_path / 'pandas.tsv'), sep='\t', index=False)
    write_tsv_atomic(df, str(tmp_path / 'ours.tsv'))
    assert (tmp_path / 'ours.tsv').read_bytes() == (tmp_path / 'pandas.tsv').read_bytes()


def test_temporary_names_differ_and_stay_in_the_folder(tmp_path):
    path = str(tmp_path / 'x.tsv')
    a, b = atomic.temporary_path(path), atomic.temporary_path(path)
    assert a != b and os.path.dirname(a) == str(tmp_path) and os.path.basename(a).startswith('.x.tsv.tmp-')


def test_the_core_has_one_writer(root):
    """Every os.replace of recsys_core is atomic.py's (the compiled-library cache builds aside on its own)."""
    users = []
    for folder, _, files in os.walk(os.path.join(root, 'recsys_core')):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                with open(path, encoding='utf-8') as f:
                    if 'os.replace(' in f.read():
                        users.append(os.path.relpath(path, root))
    users = set(users) - {os.path.join('recsys_core', '__init__.py')}  # compiled-library cache (another owner)
    assert users == {os.path.join('recsys_core', 'atomic.py')}
