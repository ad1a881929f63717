"""How PyTensor's C code is compiled and linked: the BLAS it links, the GEMM wrapper, the gcc flags
and the folder the project's modules are compiled into.

This is the bottom of the project (gpu_ops imports nothing of the project), so everything that
compiles C (the generated graphs and the custom Ops) finds its settings here. The gcc flags
(:data:`CXXFLAGS`) and the folder (:func:`compile_dir`) apply inside :func:`project_compilation`
only, which the project's compile mode (``recsys_core.backend.compile_mode``) enters for every
function it builds: PyTensor's own settings and cache, which other programs share, are left alone.

Nothing is compiled when this module is imported. :func:`link_blas` (run by ``import gpu_ops``)
makes :func:`blas_ldflags` PyTensor's default for ``config.blas__ldflags``. PyTensor evaluates a
callable default lazily, at the first read of the flag, and the first read is the first graph
compilation (its BLAS rewrites and Ops ask for the flag; importing PyTensor does not): that is
when the GEMM wrapper is built, or found in its on-disk cache. A value the user gives
(``PYTENSOR_FLAGS=blas__ldflags=...`` or ``.pytensorrc``) is read by PyTensor at its own import
and wins, as always; ``RECSYS_PARALLEL_GEMM=0`` or a compiler that fails gives the wheel's plain
flags; with no BLAS of ours at all PyTensor's own default search runs.
"""
import contextlib
import ctypes.util
import os

CXXFLAGS = ('-O3 -fno-math-errno -fno-signed-zeros -fno-trapping-math -fassociative-math -freciprocal-math '
            '-fno-rounding-math -fno-signaling-nans -fcx-limited-range -fexcess-precision=fast -D__FAST_MATH__ '
            '--param=vect-max-version-for-alias-checks=100')
"""gcc flags for all C code PyTensor compiles for the project (the generated graphs and the custom
Ops), inside :func:`project_compilation` only: other code in the process keeps PyTensor's flags.

- What ``-ffast-math`` sets, spelled out, less ``-ffinite-math-only``, and never ``-ffast-math``,
  ``-funsafe-math-optimizations`` or ``-Ofast`` themselves. gcc links any shared object built with one
  of those three (the driver's spec, ``gcc -dumpspecs``: ``%{Ofast|ffast-math|funsafe-math-optimizations:
  crtfastmath.o}``) with crtfastmath.o, whose constructor turns on flush-to-zero and denormals-are-zero
  (MXCSR FTZ/DAZ) for the whole process when the module is loaded: with the old ``-ffast-math`` every
  process that loaded one of our modules, or PyTensor's own CVM module built with our flags in the
  shared ~/.pytensor, computed float32 sigmoid(-88) = 0 (not 6.05e-39) and 1e-39 * 1 = 0 in numpy.
  The component flags give gcc the same freedoms without that object (gcc 12 has no
  ``-mno-daz-ftz``): ``-fno-math-errno`` (math calls need not set errno, so they can be vectorised),
  ``-fno-signed-zeros``, ``-fno-trapping-math``, ``-fassociative-math`` (reductions such as row sums
  vectorise), ``-freciprocal-math``, and the defaults ``-fno-rounding-math``, ``-fno-signaling-nans``,
  ``-fcx-limited-range`` (complex only) and ``-fexcess-precision=fast`` that ``-ffast-math`` also sets.
  gcc's transformations that test the umbrella ``-funsafe-math-optimizations`` itself (algebra on
  pow/exp/sqrt calls) are off: training steps and epochs ran at the same speed as with ``-ffast-math``,
  and the goldens' metrics did not move (benchmarks/RESULTS.md, "crtfastmath").
- ``-ffinite-math-only`` stays off, so infinities stay meaningful. With it sigmoid(x) returned NaN for
  every x below -88.7 (where exp(-x) overflows), and a GRU gate that saturated that far turned the whole
  training step into NaN (layers=96/96, momentum, dropout, learning_rate 0.1-0.2).
- ``-D__FAST_MATH__`` lets gcc vectorise the loops of exp, sigmoid and tanh: glibc declares its vector
  math functions (libmvec, ``_ZGV*expf``, ``_ZGV*tanhf``) only when ``__FAST_MATH__`` is defined
  (gcc 12, 65536 float32: exp 10x, sigmoid 9x, tanh 40x faster than without), and gcc defines it only
  under the full ``-ffast-math``. In glibc's
  headers that macro only selects those declarations and sets ``math_errhandling`` to 0, and libmvec's
  functions handle overflow (exp gives inf, sigmoid 0). tests/test_backend_numerics.py checks sigmoid,
  tanh and the GRU step on extreme inputs; tests/test_fp_environment.py that the process's denormals
  survive.
- gcc vectorises a loop over several arrays only with runtime overlap checks, at most 10 by default:
  PyTensor's generic elementwise loop over 3 inputs and 3 outputs (64 x 128) stayed scalar, 21.7 us
  against 3.5 us with the limit raised (that loop still runs where gpu_ops.flat_loops does not apply).
"""

COMPILEDIR_VARIABLE = 'RECSYS_COMPILEDIR'


def cache_home():
    """``$XDG_CACHE_HOME``, else ~/.cache: where the project keeps what it compiles (``recsys_pytensor``)."""
    return os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')


def compile_dir():
    """The folder PyTensor compiles the project's C modules into (see :func:`project_compilation`).

    ``$RECSYS_COMPILEDIR`` when set (used as it is); else, when the user set PyTensor's
    ``base_compiledir`` (``PYTENSOR_FLAGS`` or ``.pytensorrc``: tests, a cluster whose home is not
    writable), ``<base_compiledir>/recsys_pytensor/<PyTensor's compiledir name>``, so everything one run
    compiles stays under the folder the user chose; else
    ``$XDG_CACHE_HOME/recsys_pytensor/<PyTensor's compiledir name>`` (~/.cache when XDG_CACHE_HOME is not
    set), beside the GEMM wrapper. Never PyTensor's own compiledir, which other programs share and whose
    cache would delete folders of ours. Reading it creates nothing.
    """
    explicit = os.environ.get(COMPILEDIR_VARIABLE)
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    import pytensor
    base = pytensor.config.base_compiledir  # read first: that is when PyTensor notes whether the user set it
    if pytensor.config._config_var_dict['base_compiledir'].is_default:
        base = cache_home()
    return os.path.join(os.fspath(base), 'recsys_pytensor', _compiledir_name())


def _compiledir_name():
    """PyTensor's name for its compiledir (``config.compiledir_format``: platform, processor, Python
    version, ...: modules built for one do not load in another), without the folder it sits in.

    As ``pytensor.configdefaults._default_compiledir`` forms it, except that only the parts the format
    names are computed: the g++ version (a compiler run) only when the format asks for it."""
    import platform
    import re

    import numpy
    import pytensor
    from pytensor import configdefaults, utils
    parts = {
        'platform': platform.platform, 'short_platform': configdefaults.short_platform,
        'processor': platform.processor, 'python_version': platform.python_version,
        'python_bitwidth': lambda: utils.LOCAL_BITWIDTH, 'python_int_bitwidth': lambda: utils.PYTHON_INT_BITWIDTH,
        'pytensor_version': lambda: pytensor.__version__, 'numpy_version': lambda: numpy.__version__,
        'gxx_version': lambda: (pytensor.config.gcc_version_str.replace(' ', '_'),), 'hostname': platform.node}

    class Parts(dict):
        def __missing__(self, key):
            return parts[key]()
    return re.sub(r'[\(\)\s,]+', '_', pytensor.config.compiledir_format % Parts())


_UNSET = object()
_scope = {'depth': 0, 'folder': None, 'caches': {}, 'numba': None}


@contextlib.contextmanager
def project_compilation(folder=None):
    """While the block runs, PyTensor compiles with :data:`CXXFLAGS` into :func:`compile_dir` (or ``folder``).

    PyTensor reads the gcc flags (``config.gcc__cxxflags``) and the folder (``config.compiledir``, its
    module cache ``pytensor.link.c.cmodule._module_cache``, a process-wide singleton, and its file lock)
    when it compiles or loads a module, which is when a function is built: its rewrites (constant
    folding may run C thunks) and its linker's ``make_all`` (each node's thunk, PyTensor's own CVM and
    cutils modules the first time in the process, Scan's inner functions). The block sets the flags,
    points ``compiledir`` at the project's folder with a ModuleCache of its own (one per folder and
    process), and with the Numba backend points PyTensor's Numba cache there too; on the way out
    PyTensor's values are restored, even after an error, so PyTensor code outside the block compiles
    with the user's flags into the user's cache. Nested blocks are free (the outer one holds).
    ``compiledir`` cannot be set through PyTensor's API after its first read (``mutable=False``), so the
    value its ConfigParam keeps (``val``, as of PyTensor 3.0) is swapped; tests/test_fp_environment.py
    notices if that stops working. Not thread-safe, like PyTensor's compilation itself. The module
    cache's cleanup at exit (PyTensor's ``_on_atexit``: old modules deleted, under the folder's lock)
    runs inside a block too.
    """
    if _scope['depth']:
        _scope['depth'] += 1
        try:
            _redirect_numba_cache()
            yield
        finally:
            _scope['depth'] -= 1
        return
    import pytensor
    from pytensor.link.c import cmodule
    config = pytensor.config
    dir_param = config._config_var_dict['compiledir']
    saved_flags, saved_dir, saved_cache = config.gcc__cxxflags, getattr(dir_param, 'val', _UNSET), cmodule._module_cache
    _scope['depth'] = 1
    try:
        config.gcc__cxxflags = CXXFLAGS
        dir_param.val = dir_param.apply(folder or compile_dir())  # PyTensor's filter: creates it and its __init__.py
        _scope['folder'] = dir_param.val
        cache = _scope['caches'].get(dir_param.val)
        if cache is None:  # as pytensor.link.c.cmodule.get_module_cache makes PyTensor's
            import atexit
            cache = _scope['caches'][dir_param.val] = cmodule.ModuleCache(dir_param.val)
            atexit.register(_clean_at_exit, cache)
        cmodule._module_cache = cache
        _redirect_numba_cache()
        yield
    finally:
        _scope['depth'], _scope['folder'] = 0, None
        config.gcc__cxxflags = saved_flags
        if saved_dir is _UNSET:
            if hasattr(dir_param, 'val'):
                del dir_param.val  # never read by PyTensor before: its default is computed at the next read
        else:
            dir_param.val = saved_dir
        cmodule._module_cache = saved_cache
        numba = _scope['numba']
        if numba is not None:
            numba[0].NUMBA_CACHE_PATH = numba[1]
            _scope['numba'] = None


def _clean_at_exit(cache):
    with project_compilation(cache.dirname):
        cache._on_atexit()


def _redirect_numba_cache():
    """Point PyTensor's Numba cache (``pytensor.link.numba.cache.NUMBA_CACHE_PATH``, read when a jitted
    function is created) at the project's folder, once PyTensor's Numba backend is imported."""
    import sys
    module = sys.modules.get('pytensor.link.numba.cache')
    if module is None or _scope['numba'] is not None:
        return
    path = _scope['folder'] / 'numba'
    path.mkdir(parents=True, exist_ok=True)
    _scope['numba'] = (module, module.NUMBA_CACHE_PATH)
    module.NUMBA_CACHE_PATH = path


# The Fortran BLAS routines PyTensor's C code declares (s = float32, d = float64).
_BLAS_ROUTINES = [p + name + '_' for p in 'sd' for name in (
    'gemm', 'gemv', 'ger', 'dot', 'axpy', 'copy', 'scal', 'swap', 'rot', 'symm', 'syrk', 'trsm')]


def blas_ldflags():
    """The BLAS link flags for PyTensor's C code: pip's OpenBLAS wheel, else the system OpenBLAS, else ''.

    pip-installed PyTensor finds no BLAS to link its C code against and then runs matrix products
    through numpy from Python and small GEMMs in plain C loops. Linking the system libopenblas
    (Debian's 0.3.21) made GRU4Rec training steps 1.4x faster; the `scipy-openblas32` wheel
    (OpenBLAS 0.3.34, a dependency) is faster again on this project's GEMM shapes (benchmarks/RESULTS.md)
    and needs no system package. Its routines carry a `scipy_` prefix, so the flags include `-D`
    renames of the names PyTensor's C code calls (PyTensor passes such flags to the compiler).
    GEMMs and GEMVs go through :func:`parallel_gemm_library` when it can be built (then the custom
    Ops run their loops on OpenMP threads too: :func:`parallel_ops`); calling this builds it.
    """
    system = '-lopenblas' if ctypes.util.find_library('openblas') else ''
    try:
        import scipy_openblas32
    except ImportError:
        return system
    lib_dir = scipy_openblas32.get_lib_dir()
    if ',' in lib_dir or ' ' in lib_dir:  # PYTENSOR_FLAGS splits on commas, the flags on spaces
        return system
    flags = '-L{} -l{}'.format(lib_dir, scipy_openblas32.get_library())
    wrapper = parallel_gemm_library(lib_dir, scipy_openblas32.get_library())
    gemm_renames = {}
    if wrapper and not (',' in wrapper or ' ' in wrapper):
        folder, name = os.path.split(wrapper)
        flags = '-L{} -l{} {}'.format(folder, name[len('lib'):-len('.so')], flags)
        gemm_renames = {name: 'recsys_' + name for name in ('sgemm_', 'dgemm_', 'sgemv_', 'dgemv_')}
    renames = ' '.join('-D{}={}'.format(name, gemm_renames.get(name, 'scipy_' + name)) for name in _BLAS_ROUTINES)
    return flags + ' ' + renames


_PARALLEL_GEMM_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'c', 'parallel_gemm.cpp')


def parallel_gemm_library(blas_dir, blas_lib):
    """Path of the built GEMM/GEMV wrapper (gpu_ops/c/parallel_gemm.cpp: products split between
    OpenMP threads over the wheel's single-threaded OpenBLAS), building it on first use (cached
    under $XDG_CACHE_HOME/recsys_pytensor); None when it cannot be built (no C++ compiler or no
    OpenMP) or RECSYS_PARALLEL_GEMM=0."""
    import hashlib
    import subprocess
    import tempfile
    if os.environ.get('RECSYS_PARALLEL_GEMM', '1') in ('0', 'false', 'False') or not os.path.isfile(_PARALLEL_GEMM_SOURCE):
        return None
    cxx = os.environ.get('CXX', 'g++')
    with open(_PARALLEL_GEMM_SOURCE, 'rb') as f:
        key = hashlib.md5(f.read() + (cxx + blas_dir + blas_lib).encode()).hexdigest()[:16]
    cache = os.path.join(cache_home(), 'recsys_pytensor', 'parallel_gemm-' + key)
    path = os.path.join(cache, 'librecsys_parallel_gemm.so')
    if os.path.isfile(path):
        return path
    tmp = None
    try:
        os.makedirs(cache, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix='.so', dir=cache)  # built aside, then renamed: concurrent builds are safe
        os.close(fd)
        cmd = [cxx, '-O2', '-fPIC', '-shared', '-fopenmp', _PARALLEL_GEMM_SOURCE, '-o', tmp,
               '-L' + blas_dir, '-l' + blas_lib, '-Wl,-rpath,' + blas_dir]
        if subprocess.run(cmd, capture_output=True, timeout=120).returncode != 0:
            return None
        os.replace(tmp, path)
        tmp = None
        return path
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def parallel_ops():
    """True when PyTensor's BLAS calls go through the parallel GEMM wrapper, so the custom Ops may
    run loops on OpenMP threads (with OpenBLAS's own threads spinning beside them they must not).
    Reads PyTensor's flag, so the first call builds the wrapper (see the module's docstring)."""
    import pytensor
    return 'recsys_sgemm_' in pytensor.config.blas__ldflags


def link_blas():
    """Make :func:`blas_ldflags` the default of PyTensor's ``blas__ldflags``, evaluated at its first read.

    Does nothing when the user set the flag (PyTensor has read it at its import: the param is no
    longer a default) or when it has been read already. PyTensor has no public way to change a
    default, so this replaces the callable its ConfigParam keeps (``_default``, as of PyTensor 3.0);
    tests/test_blas_link.py notices if that stops working. Safe to call more than once.
    """
    import pytensor
    param = pytensor.config._config_var_dict.get('blas__ldflags')
    pytensor_default = getattr(param, '_default', None)
    if (not callable(pytensor_default) or getattr(pytensor_default, 'recsys_blas', False)
            or not param.is_default or hasattr(param, 'val')):
        return

    def default():
        return blas_ldflags() or pytensor_default()  # nothing of ours: PyTensor's own search (and its warning)

    default.recsys_blas = True
    param._default = default
