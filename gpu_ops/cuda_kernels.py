"""The CUDA kernels of gpu_ops (sources in gpu_ops/cuda/) and two ways to run them.

- :class:`PycudaExecutor`: on an NVIDIA GPU through pycuda (optional dependency). Arrays are
  device pointers: pycuda GPUArrays or any object with ``__cuda_array_interface__`` (JAX, CuPy,
  PyTorch), so kernels run on memory another framework owns, without copies.
- :class:`EmulatedExecutor`: the same kernel sources compiled with g++ against
  ``cuda/host_emulation.h`` and run on the CPU (one std::thread per CUDA thread, real barriers).
  Slow; it lets machines without a GPU (CI) check the kernels' logic against the CPU
  implementations, through the very launch code the GPU uses.

The functions below (:func:`rank_metrics`, :func:`sampled_scores`, ...) compute launch geometry
and pack arguments once, for either executor. Neither executor is imported by the CPU path.
"""
import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SOURCE_DIR = Path(__file__).parent / 'cuda'
KERNEL_FILES = ('ranking.cu', 'sampling.cu', 'sampled_scoring.cu')

# Argument types per kernel, in order: p = pointer (or None for null), i = int32, l = int64,
# u = uint64. Must match the RECSYS_KERNEL declarations in cuda/*.cu.
SIGNATURES = {
    'rank_metrics': 'plpiipiipppp',
    'sample_from_cdf': 'pluulp',
    'search_sorted': 'plplp',
    'sampled_scores': 'ppppiiip',
    'sampled_scores_grad_hidden': 'pppiiip',
    'sampled_scores_grad_items': 'pppiiipppp',
    'positive_diagonal': 'piip',
}
ROW_THREADS = 256  # RECSYS_ROW_THREADS in common.cuh
TILE = 16  # RECSYS_TILE in common.cuh
GRID_STRIDE_THREADS = 256
TIE_MODES = {'standard': 0, 'tiebreaking': 0, 'conservative': 1, 'median': 2}


class KernelUnavailable(RuntimeError):
    """The kernels cannot run here (no compiler, no pycuda, no GPU); the message says which."""


def kernel_sources():
    """(file name, text) of every kernel file."""
    return [(name, (SOURCE_DIR / name).read_text()) for name in KERNEL_FILES]


def _sources_digest():
    digest = hashlib.sha256()
    for path in sorted(SOURCE_DIR.iterdir()):
        if path.suffix in ('.cu', '.cuh', '.h'):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


class EmulatedExecutor:
    """Kernels compiled for the host (see module docstring); arrays are numpy arrays."""

    name = 'emulated'

    def __init__(self, cache_dir=None):
        compiler = shutil.which(os.environ.get('CXX', 'g++'))
        if compiler is None:
            raise KernelUnavailable('emulating the CUDA kernels needs a C++20 compiler (g++)')
        cache = Path(cache_dir or os.environ.get('RECSYS_KERNEL_CACHE') or Path(tempfile.gettempdir()) / 'recsys-kernels')
        cache.mkdir(parents=True, exist_ok=True)
        library = cache / 'emulated-{}.so'.format(_sources_digest())
        if not library.exists():
            unit = ''.join('#include "{}"\n'.format(name) for name in KERNEL_FILES)
            partial = library.with_suffix('.so.{}.tmp'.format(os.getpid()))
            result = subprocess.run(
                [compiler, '-std=c++20', '-O1', '-shared', '-fPIC', '-pthread', '-DRECSYS_HOST_EMULATION',
                 '-I', str(SOURCE_DIR), '-x', 'c++', '-', '-o', str(partial)],
                input=unit, capture_output=True, text=True)
            if result.returncode != 0:
                raise KernelUnavailable('compiling the emulated kernels failed:\n' + result.stderr[-4000:])
            os.replace(partial, library)  # atomic: concurrent test workers never load a partial file
        self._lib = ctypes.CDLL(str(library))
        self._launch = self._lib.recsys_emulated_launch
        self._launch.restype = ctypes.c_int

    def launch(self, name, grid, block, args, shared_bytes=0):
        values = [_ctype(kind)(_host_value(kind, value)) for kind, value in _checked(name, args)]
        pointers = (ctypes.c_void_p * len(values))(*[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values])
        grid, block = _dim3(grid), _dim3(block)
        if self._launch(name.encode(), *grid, *block, shared_bytes, pointers) != 0:
            raise KernelUnavailable('no emulated kernel named {!r}'.format(name))

    @staticmethod
    def to_device(array):
        return np.ascontiguousarray(array)

    @staticmethod
    def to_host(array):
        return np.asarray(array)

    @staticmethod
    def empty(shape, dtype):
        return np.empty(shape, dtype=dtype)

    @staticmethod
    def zeros(shape, dtype):
        return np.zeros(shape, dtype=dtype)


class PycudaExecutor:
    """Kernels compiled with nvcc through pycuda for the current GPU; arrays live on the GPU."""

    name = 'pycuda'

    def __init__(self):
        try:
            import pycuda.autoprimaryctx  # noqa: F401  (shares the primary context with JAX/PyTorch)
            import pycuda.driver as driver
            import pycuda.gpuarray as gpuarray
            from pycuda.compiler import SourceModule
        except ImportError as error:
            raise KernelUnavailable('the CUDA kernels need pycuda (pip install "pytensor-recsys[cuda]"): {}'.format(error))
        except Exception as error:  # pycuda raises its own errors when there is no driver or device
            raise KernelUnavailable('no usable CUDA GPU: {}'.format(error))
        self._gpuarray = gpuarray
        self._driver = driver
        self._functions = {}
        for file_name, text in kernel_sources():
            module = SourceModule(text, no_extern_c=True, include_dirs=[str(SOURCE_DIR)], options=['-std=c++17'])
            for name in SIGNATURES:
                if 'RECSYS_KERNEL({},'.format(name) in text:
                    self._functions[name] = module.get_function(name)

    def launch(self, name, grid, block, args, shared_bytes=0):
        values = [_device_value(kind, value) for kind, value in _checked(name, args)]
        self._functions[name](*values, grid=_dim3(grid), block=_dim3(block), shared=shared_bytes)

    def to_device(self, array):
        return self._gpuarray.to_gpu(np.ascontiguousarray(array))

    @staticmethod
    def to_host(array):
        return array.get() if hasattr(array, 'get') else np.asarray(array)

    def empty(self, shape, dtype):
        return self._gpuarray.empty(shape, dtype=dtype)

    def zeros(self, shape, dtype):
        return self._gpuarray.zeros(shape, dtype=dtype)

    def synchronize(self):
        self._driver.Context.synchronize()


def _checked(name, args):
    signature = SIGNATURES[name]
    if len(args) != len(signature):
        raise TypeError('{} takes {} arguments, got {}'.format(name, len(signature), len(args)))
    return zip(signature, args)


def _dim3(dims):
    dims = tuple(int(d) for d in (dims if isinstance(dims, (tuple, list)) else (dims,)))
    return dims + (1,) * (3 - len(dims))


def _ctype(kind):
    return {'p': ctypes.c_void_p, 'i': ctypes.c_int32, 'l': ctypes.c_int64, 'u': ctypes.c_uint64}[kind]


def _host_value(kind, value):
    if kind == 'p':
        return None if value is None else value.ctypes.data
    return int(value)


def device_pointer(array):
    """Address of a GPU array: pycuda GPUArray, or anything with __cuda_array_interface__."""
    if hasattr(array, 'gpudata'):
        return int(array.gpudata)
    interface = array.__cuda_array_interface__
    if interface.get('strides') is not None and interface['strides'] != _c_strides(interface):
        raise ValueError('the CUDA kernels need C-contiguous arrays, got strides {}'.format(interface['strides']))
    return int(interface['data'][0])


def _c_strides(interface):
    itemsize = np.dtype(interface['typestr']).itemsize
    strides, step = [], itemsize
    for dim in reversed(interface['shape']):
        strides.append(step)
        step *= dim
    return tuple(reversed(strides))


def _device_value(kind, value):
    if kind == 'p':
        return np.uintp(0 if value is None else device_pointer(value))
    return {'i': np.int32, 'l': np.int64, 'u': np.uint64}[kind](value)


def _blocks(n, threads=GRID_STRIDE_THREADS, cap=65535):
    return max(1, min(cap, -(-int(n) // threads)))


# --- the operations -----------------------------------------------------------------------------

def rank_metrics(executor, scores, targets, cutoffs, tie_mode='standard', counts=True):
    """Per-row (greater, equal) counts against scores[row, targets[row]], and per cut-off sums of
    hits and reciprocal ranks (Recall/MRR numerators) for the rows. Returns host arrays
    (greater, equal, recall_sums, mrr_sums); greater/equal are None when ``counts`` is False."""
    n_rows, n_items = scores.shape
    cut = executor.to_device(np.asarray(cutoffs, dtype=np.int32))
    recall = executor.zeros(len(cutoffs), np.float64)
    mrr = executor.zeros(len(cutoffs), np.float64)
    greater = executor.empty(n_rows, np.int64) if counts else None
    equal = executor.empty(n_rows, np.int64) if counts else None
    executor.launch('rank_metrics', n_rows, ROW_THREADS,
                    [scores, n_items, targets, n_rows, n_items, cut, len(cutoffs), TIE_MODES[tie_mode],
                     greater, equal, recall, mrr])
    host = executor.to_host
    return (host(greater) if counts else None, host(equal) if counts else None, host(recall), host(mrr))


def rank_counts(executor, scores, targets):
    """Per-row (greater, equal) counts against scores[row, targets[row]] (int64 targets), as host
    arrays; the sums of :func:`rank_metrics` are skipped. ``scores`` must be a C-contiguous float32
    matrix on the device (any ``__cuda_array_interface__`` array: a JAX array is counted in place)."""
    n_rows, n_items = scores.shape
    greater, equal = executor.empty(n_rows, np.int64), executor.empty(n_rows, np.int64)
    executor.launch('rank_metrics', n_rows, ROW_THREADS,
                    [scores, n_items, targets, n_rows, n_items, None, 0, 0, greater, equal, None, None])
    return executor.to_host(greater), executor.to_host(equal)


def sample_from_cdf(executor, cdf, seed, offset, n, out=None):
    """n popularity^alpha samples (int64 item indices) written into ``out`` (a slice of the store)."""
    out = executor.empty(n, np.int64) if out is None else out
    executor.launch('sample_from_cdf', _blocks(n), GRID_STRIDE_THREADS, [cdf, cdf.shape[0], seed, offset, n, out])
    return out


def search_sorted(executor, cdf, u):
    out = executor.empty(u.shape[0], np.int64)
    executor.launch('search_sorted', _blocks(u.shape[0]), GRID_STRIDE_THREADS, [cdf, cdf.shape[0], u, u.shape[0], out])
    return out


def sampled_scores(executor, hidden, items, bias, idx):
    """B x K scores of hidden (B x d) against item rows idx (K) of items (N x d), plus bias[idx]."""
    (B, d), K = hidden.shape, idx.shape[0]
    out = executor.empty((B, K), np.float32)
    executor.launch('sampled_scores', (-(-K // TILE), -(-B // TILE)), (TILE, TILE),
                    [hidden, items, bias, idx, B, K, d, out])
    return out


def sampled_scores_grad(executor, grad_scores, hidden, items, idx, dense_items=None, dense_bias=None):
    """Backward of :func:`sampled_scores`: (d hidden, gradient rows K x d, bias gradient K).

    With ``dense_items`` (N x d) given, the gradient rows are added into it at idx (and the bias
    gradient into ``dense_bias``) instead, and (d hidden, None, None) is returned."""
    (B, d), K = hidden.shape, idx.shape[0]
    grad_hidden = executor.empty((B, d), np.float32)
    executor.launch('sampled_scores_grad_hidden', (-(-d // TILE), -(-B // TILE)), (TILE, TILE),
                    [grad_scores, items, idx, B, K, d, grad_hidden])
    rows = bias_rows = None
    if dense_items is None:
        rows, bias_rows = executor.empty((K, d), np.float32), executor.empty(K, np.float32)
    executor.launch('sampled_scores_grad_items', (-(-d // TILE), -(-K // TILE)), (TILE, TILE),
                    [grad_scores, hidden, idx, B, K, d, rows, bias_rows, dense_items, dense_bias])
    return grad_hidden, rows, bias_rows


def positive_diagonal(executor, scores):
    B, K = scores.shape
    out = executor.empty(B, np.float32)
    executor.launch('positive_diagonal', _blocks(B), GRID_STRIDE_THREADS, [scores, B, K, out])
    return out


# --- CPU counterparts ---------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x):
    with np.errstate(over='ignore'):
        x = x + _GOLDEN
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def counter_uniforms(seed, offset, n):
    """The uniforms sample_from_cdf draws at positions offset .. offset + n - 1 (float32 in [0, 1))."""
    counters = np.arange(n, dtype=np.uint64) + np.uint64(offset)
    bits = _splitmix64(np.uint64(seed) ^ _splitmix64(counters)) >> np.uint64(40)
    return bits.astype(np.float32) * np.float32(1.0 / 16777216.0)
