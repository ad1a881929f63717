"""The one way this project writes a file: through a temporary file in the same folder, then a rename.

A reader (or a crash) never sees a half-written file: the temporary is flushed and fsynced before
``os.replace`` puts it in place, and on any failure inside the block it is removed and the old file,
if any, is left as it was. Model files, TSV outputs, paropt's best parameters and plots all use
:func:`atomic_write`. (The compiled-library caches of ``gpu_ops/toolchain.py`` and
``gpu_ops/cuda_kernels.py`` have a compiler write a temporary path of their own and rename it the
same way: gpu_ops does not import recsys_core.)
"""
import contextlib
import os
import secrets

from .errors import UserError


def temporary_path(path):
    """A name beside ``path`` no other writer uses: ``.NAME.tmp-PID-RANDOM`` in the same folder."""
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.join(folder, '.{}.tmp-{}-{}'.format(os.path.basename(path), os.getpid(), secrets.token_hex(4)))


@contextlib.contextmanager
def atomic_write(path, mode='w', encoding=None, newline=None):
    """Yield a file object to write ``path`` through; it replaces ``path`` only if the block succeeds.

    ``mode`` is 'w' (text, UTF-8 unless ``encoding`` says otherwise) or 'wb'. A missing folder, a
    folder in the file's place or a folder that cannot be written raises :class:`UserError` before
    the block runs; an exception in the block (or in the final fsync/rename) removes the temporary
    file and propagates unchanged.
    """
    if mode not in ('w', 'wb'):
        raise ValueError("atomic_write mode must be 'w' or 'wb', not {!r}".format(mode))
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError('Cannot write {}: folder does not exist: {}'.format(path, folder))
    if os.path.isdir(path):
        raise UserError('Cannot write {}: it is a folder'.format(path))
    if mode == 'w' and encoding is None:
        encoding = 'utf-8'
    tmp = temporary_path(path)
    try:
        f = open(tmp, mode.replace('w', 'x'), encoding=encoding, newline=newline)
    except OSError as e:
        raise UserError('Cannot write {}: {}'.format(path, e.strerror or e)) from None
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_bytes_atomic(path, data):
    """Write ``data`` (bytes) to ``path`` atomically."""
    with atomic_write(path, 'wb') as f:
        f.write(data)


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_write(path, 'w') as f:
        f.write(text)


def write_tsv_atomic(frame, path):
    """A DataFrame as TSV with a header and no index (run.py's format), written atomically."""
    with atomic_write(path, 'w', newline='') as f:
        frame.to_csv(f, sep='\t', index=False)


def write_png_atomic(fig, path):
    """A matplotlib figure as a PNG written atomically (100 dpi); the figure is closed either way."""
    import matplotlib.pyplot as plt
    try:
        with atomic_write(path, 'wb') as f:
            fig.savefig(f, format='png', dpi=100)
    finally:
        plt.close(fig)
