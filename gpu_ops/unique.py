"""Sorted unique values of an index vector with the inverse mapping, for row-sparse updates.

Every GRU4Rec training step deduplicates the ~2,000 item indices it touches (inputs, targets,
negative samples). PyTensor's Unique runs numpy's sort-based unique from Python (about 55 us plus
the Python call per use on the development machine). :class:`UniqueInverse` does it in C: when the
index range is small compared with the number of indices (item catalogues of typical size) it marks
the values present in a bitmap over the range and reads them out in order (linear passes, with
buffers kept across calls);
otherwise it sorts (value, position) pairs. Same results as ``pt.unique(x, return_inverse=True)``
(the reference, used with custom ops switched off).
"""
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.link.c.op import COp

from .c_code import source_version


class UniqueInverse(COp):
    """(sorted unique values of the integer vector x, int64 inverse with values[inverse] == x)."""
    __props__ = ()

    def make_node(self, x):
        x = pt.as_tensor_variable(x)
        if x.ndim != 1 or not x.dtype.startswith('int'):
            raise TypeError('UniqueInverse needs an integer vector')
        return Apply(self, [x], [x.type(), pt.lvector()])

    def perform(self, node, inputs, outputs):
        values, inverse = np.unique(inputs[0], return_inverse=True)
        outputs[0][0] = values.astype(inputs[0].dtype, copy=False)
        outputs[1][0] = inverse.astype(np.int64, copy=False).reshape(-1)

    def c_support_code(self, **kwargs):
        return '''
        #include <algorithm>
        #include <vector>
        #include <utility>
        '''

    def c_code(self, node, name, inputs, outputs, sub):
        (x,) = inputs
        values, inverse = outputs
        fail = sub['fail']
        return '''
        {{
            const npy_intp n = PyArray_DIMS({x})[0];
            const npy_intp xs = PyArray_STRIDES({x})[0] / sizeof(dtype_{x});
            const dtype_{x}* xd = (const dtype_{x}*) PyArray_DATA({x});
            Py_XDECREF({inverse});
            {inverse} = (PyArrayObject*) PyArray_EMPTY(1, PyArray_DIMS({x}), NPY_INT64, 0);
            if (!{inverse}) {{ {fail} }}
            npy_int64* inv = (npy_int64*) PyArray_DATA({inverse});
            npy_intp n_unique = 0;
            std::vector<dtype_{x}> found;
            dtype_{x} lo = 0, hi = -1;
            for (npy_intp i = 0; i < n; ++i) {{
                const dtype_{x} v = xd[i * xs];
                if (i == 0 || v < lo) lo = v;
                if (i == 0 || v > hi) hi = v;
            }}
            const double range = n ? (double) hi - (double) lo + 1.0 : 0.0;
            npy_intp dims[1] = {{0}};
            Py_XDECREF({values});
            {values} = NULL;
            if (n && range <= 16.0 * (double) n + 65536.0) {{
                // dense range: a bitmap of the values present, read out in order word by word; the
                // buffers live across calls (one set per thread), so a call touches no fresh memory
                static thread_local std::vector<npy_uint64> bits;
                static thread_local std::vector<npy_int64> rank;
                const size_t R = (size_t) range, W = (R + 63) / 64;
                if (bits.size() < W) bits.resize(W);
                if (rank.size() < R) rank.resize(R);
                std::fill(bits.begin(), bits.begin() + W, (npy_uint64) 0);
                for (npy_intp i = 0; i < n; ++i) {{
                    const size_t p = (size_t) (xd[i * xs] - lo);
                    bits[p >> 6] |= (npy_uint64) 1 << (p & 63);
                }}
                for (size_t w = 0; w < W; ++w) n_unique += __builtin_popcountll(bits[w]);
                dims[0] = n_unique;
                {values} = (PyArrayObject*) PyArray_EMPTY(1, dims, PyArray_TYPE({x}), 0);
                if (!{values}) {{ {fail} }}
                dtype_{x}* vd = (dtype_{x}*) PyArray_DATA({values});
                npy_int64 r = 0;
                for (size_t w = 0; w < W; ++w) {{
                    for (npy_uint64 b = bits[w]; b; b &= b - 1) {{
                        const size_t p = w * 64 + (size_t) __builtin_ctzll(b);
                        rank[p] = r;
                        vd[r++] = (dtype_{x}) (lo + (dtype_{x}) p);
                    }}
                }}
                for (npy_intp i = 0; i < n; ++i) inv[i] = rank[(size_t) (xd[i * xs] - lo)];
            }} else {{
                std::vector<std::pair<dtype_{x}, npy_intp> > pairs((size_t) n);
                for (npy_intp i = 0; i < n; ++i) pairs[(size_t) i] = std::make_pair(xd[i * xs], i);
                std::sort(pairs.begin(), pairs.end());
                for (npy_intp i = 0; i < n; ++i) {{
                    if (i == 0 || pairs[(size_t) i].first != pairs[(size_t) i - 1].first) {{
                        found.push_back(pairs[(size_t) i].first);
                        ++n_unique;
                    }}
                    inv[pairs[(size_t) i].second] = n_unique - 1;
                }}
                dims[0] = n_unique;
                {values} = (PyArrayObject*) PyArray_EMPTY(1, dims, PyArray_TYPE({x}), 0);
                if (!{values}) {{ {fail} }}
                if (n_unique) memcpy(PyArray_DATA({values}), found.data(), sizeof(dtype_{x}) * n_unique);
            }}
        }}
        '''.format(x=x, values=values, inverse=inverse, fail=fail)

    def c_code_cache_version(self):
        return source_version(UniqueInverse.c_code, UniqueInverse.c_support_code)


_unique_inverse = UniqueInverse()


def unique_inverse(x):
    """(sorted unique values of x, inverse indices): the custom Op, or pt.unique with custom ops off."""
    from . import custom_ops_enabled
    if custom_ops_enabled():
        return _unique_inverse(x)
    return pt.unique(x, return_inverse=True)
