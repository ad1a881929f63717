"""C snippets shared by the custom Ops' C implementations (PyTensor's C backend).

The custom Ops keep a numba ``perform`` for the other linkers (Python, Numba); under the default
C backend (CVM) they run as C code instead, which removes the Python call per Op and lets gcc
vectorise the inner loops (gpu_ops.toolchain.CXXFLAGS, native architecture).
"""


def alias_or_copy(inp, out, inplace, fail):
    """C making output ``out`` the input array itself (in place) or a C-contiguous copy of it."""
    if inplace:
        return '''
        Py_XDECREF({o}); {o} = {i}; Py_INCREF({o});
        '''.format(i=inp, o=out)
    return '''
        if ({o} && PyArray_SAMESHAPE({o}, {i}) && PyArray_ISCARRAY({o}) && {o} != {i}) {{
            if (PyArray_CopyInto({o}, {i}) != 0) {{ {fail} }}
        }} else {{
            Py_XDECREF({o});
            {o} = (PyArrayObject*) PyArray_NewCopy({i}, NPY_CORDER);
            if (!{o}) {{ {fail} }}
        }}
        '''.format(i=inp, o=out, fail=fail)


def require_dims(var, ndim, fail, what):
    return '''
        if (PyArray_NDIM({v}) != {n}) {{
            PyErr_Format(PyExc_ValueError, "{w}: expected {n} dimensions, got %d", PyArray_NDIM({v}));
            {fail}
        }}
        '''.format(v=var, n=ndim, fail=fail, w=what)


def element_stride(var, dim):
    """Stride of ``var`` along ``dim`` in elements (0 for a broadcast dimension of length 1)."""
    return '(PyArray_DIMS({v})[{d}] == 1 ? 0 : PyArray_STRIDES({v})[{d}] / (npy_intp)PyArray_ITEMSIZE({v}))'.format(
        v=var, d=dim)


def source_version(*sources):
    """A C-code cache version derived from the code itself (functions, file paths or C strings).

    PyTensor reuses a compiled module while an Op's cache version is unchanged, so a version
    that is not bumped after an edit silently keeps running the old C code; hashing the source
    makes every edit a new version.
    """
    import hashlib
    import inspect
    digest = hashlib.md5()
    for src in sources:
        if isinstance(src, str) and '\n' not in src:
            with open(src, 'rb') as f:
                digest.update(f.read())
        elif isinstance(src, str):
            digest.update(src.encode())
        else:
            digest.update(inspect.getsource(src).encode())
    return (2, digest.hexdigest())


PARALLEL_C = '''
#ifdef _OPENMP
#include <omp.h>
#endif
// Threads for a loop of ``work`` units: OpenMP's count, at most one per ``per_thread`` units (small
// loops stay on one thread), 1 inside another parallel region or without OpenMP.
static inline int rs_threads(double work, double per_thread) {
#ifdef _OPENMP
    int n = omp_in_parallel() ? 1 : omp_get_max_threads();
    const double cap = work / per_thread;
    if (cap < n) n = (int) cap;
    return n < 1 ? 1 : n;
#else
    (void) work; (void) per_thread;
    return 1;
#endif
}
'''


def openmp_args():
    """``-fopenmp`` when PyTensor's GEMMs run on OpenMP threads too (``gpu_ops.toolchain.parallel_ops``)
    and the C++ compiler ships OpenMP (libgomp); else nothing, and the Ops' loops run on one thread
    (their pragmas are ignored)."""
    from .toolchain import parallel_ops
    return ['-fopenmp'] if parallel_ops() and _compiler_has_openmp() else []


class ParallelLoops:
    """Mixin for the COps whose C loops may run on OpenMP threads (``rs_threads`` in PARALLEL_C):
    puts the thread helper before the Op's own support code (``loop_support_code``) and compiles
    with :func:`openmp_args`. Cache versions should include PARALLEL_C."""

    def loop_support_code(self):
        return ''

    def c_support_code(self, **kwargs):
        return PARALLEL_C + self.loop_support_code()

    def c_compile_args(self, **kwargs):
        return openmp_args()


_OPENMP = []


def _compiler_has_openmp():
    if not _OPENMP:
        import os
        import subprocess
        from pytensor import config
        try:
            out = subprocess.run([config.cxx, '-print-file-name=libgomp.so'], capture_output=True, text=True, timeout=30)
            _OPENMP.append(out.returncode == 0 and os.path.isabs(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            _OPENMP.append(False)
    return _OPENMP[0]
