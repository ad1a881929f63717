"""C snippets shared by the custom Ops' C implementations (PyTensor's C backend).

The custom Ops keep a numba ``perform`` for the other linkers (Python, Numba); under the default
C backend (CVM) they run as C code instead, which removes the Python call per Op and lets gcc
vectorise the inner loops (-O3 -ffast-math, native architecture).
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
    """A C-code cache version derived from the code itself (functions or file paths).

    PyTensor reuses a compiled module while an Op's cache version is unchanged, so a version
    that is not bumped after an edit silently keeps running the old C code; hashing the source
    makes every edit a new version.
    """
    import hashlib
    import inspect
    digest = hashlib.md5()
    for src in sources:
        if isinstance(src, str):
            with open(src, 'rb') as f:
                digest.update(f.read())
        else:
            digest.update(inspect.getsource(src).encode())
    return (2, digest.hexdigest())
