"""Vectorisable C loops for elementwise Ops on contiguous arrays with unknown batch sizes.

PyTensor's C Elemwise has a fast path (one flat loop over contiguous arrays, which gcc vectorises)
that it only generates when the static shapes prove that no input broadcasts. Our graphs have
batch dimensions of unknown size, so every fused multi-input Composite took the generic loop with
a runtime stride per array, which gcc leaves scalar. On the development machine, over 64 x 128:
a fused loop with 4 inputs and 2 outputs took 64 us instead of 3-4 us; in the GRU training step the
fused backward loop took 32 us (5.5 us now) and the forward one, which also multiplies by a per-row
reset mask (a (batch, 1) input), 67 us (3 us now). (Providing the scalar op's
``c_code_contiguous`` instead does not work: PyTensor 3's Elemwise fails on that path.)

An unknown dimension (static size None) never broadcasts in PyTensor (only a static 1 does, and
Elemwise checks at run time that the other sizes agree). So when every input either has the
output's shape or, for matrices, is a (n, 1) column, a (1, m) row or a (1, 1) scalar, the Op can
run a plain row-major loop whenever all its arrays are C-contiguous at run time.
:class:`FlatElemwise` adds that loop in front of PyTensor's generic one, as a separate function:
inlined into the Op's C code gcc judged it cold (next to the error paths) and left it scalar, and
``__restrict__`` is only reliable on parameters. The rewrite :func:`use_flat_elemwise` swaps it in
after fusion (PyTensor's in-place pass keeps the class).
"""
from pytensor.graph.rewriting.basic import node_rewriter
from pytensor.tensor.elemwise import Elemwise

from .c_code import source_version


def _access(var, out_ndim):
    """How the loop reads ``var``: 'full', 'col', 'row' or 'scalar'; None when not supported."""
    shape = var.type.shape
    if var.ndim != out_ndim:
        return None
    if 1 not in shape:
        return 'full'
    if out_ndim != 2:
        return None
    return {(False, True): 'col', (True, False): 'row', (True, True): 'scalar'}[(shape[0] == 1, shape[1] == 1)]


def flat_loop_applies(node):
    """Several inputs (or outputs); outputs without broadcasting; inputs full, or rows/columns of a matrix."""
    out = node.outputs[0]
    if out.ndim == 0 or len(node.inputs) + len(node.outputs) < 3:
        return False
    if any(_access(o, out.ndim) != 'full' for o in node.outputs):
        return False
    kinds = [_access(v, out.ndim) for v in node.inputs]
    return None not in kinds and 'full' in kinds


_INDEX = {'full': 'i * n1 + j', 'col': 'i', 'row': 'j', 'scalar': '0'}


class FlatElemwise(Elemwise):
    """Elemwise with a row-major loop for C-contiguous arrays (PyTensor's generic loop otherwise)."""

    def _loop_name(self, nodename):
        return 'flat_loop_' + nodename

    def c_support_code_apply(self, node, nodename):
        code = super().c_support_code_apply(node, nodename)
        if not flat_loop_applies(node):
            return code
        # an in-place output shares its input's buffer (same index read, then written): no restrict there
        restrict = '' if self.inplace_pattern else '__restrict__'
        variables = node.inputs + node.outputs
        params = ['{t}* {r} a{i}'.format(t=v.type.dtype_specs()[1], r=restrict, i=i) for i, v in enumerate(variables)]
        refs = ['a{}[{}]'.format(i, _INDEX[_access(v, node.outputs[0].ndim)]) for i, v in enumerate(variables)]
        n_in = len(node.inputs)
        task = self.scalar_op.c_code(node.tag.fake_node, nodename + '_scalar_', refs[:n_in], refs[n_in:],
                                     {'fail': 'return 1;'})
        return code + """
        __attribute__((noinline, hot)) static int {fn}(npy_intp n0, npy_intp n1, {params}) {{
            for (npy_intp i = 0; i < n0; ++i) {{
                for (npy_intp j = 0; j < n1; ++j) {{
                    {task}
                }}
            }}
            return 0;
        }}
        """.format(fn=self._loop_name(nodename), params=', '.join(params), task=task)

    def _c_all(self, node, nodename, inames, onames, sub):
        decl, checks, alloc, loop, extra = super()._c_all(node, nodename, inames, onames, sub)
        if not flat_loop_applies(node):
            return decl, checks, alloc, loop, extra
        arrays = list(inames) + list(onames)
        args = ', '.join('({t}*) PyArray_DATA({a})'.format(t=v.type.dtype_specs()[1], a=a)
                         for v, a in zip(node.inputs + node.outputs, arrays))
        z = onames[0]
        if all(_access(v, node.outputs[0].ndim) == 'full' for v in node.inputs):
            sizes = '1, PyArray_SIZE({})'.format(z)  # one flat pass over any rank
        else:
            sizes = 'PyArray_DIMS({z})[0], PyArray_DIMS({z})[1]'.format(z=z)
        fast = """
        if ({contiguous}) {{
            if ({fn}({sizes}, {args})) {{ {fail} }}
        }} else {{
            {loop}
        }}
        """.format(contiguous=' && '.join('PyArray_IS_C_CONTIGUOUS({})'.format(a) for a in arrays),
                   fn=self._loop_name(nodename), sizes=sizes, args=args, fail=sub['fail'], loop=loop)
        return decl, checks, alloc, fast, extra

    def c_code_cache_version_apply(self, node):
        version = super().c_code_cache_version_apply(node)
        source = source_version(FlatElemwise.c_support_code_apply, FlatElemwise._c_all, flat_loop_applies, _access)
        return version + source + tuple(_INDEX.values()) if version else version


@node_rewriter([Elemwise])
def use_flat_elemwise(fgraph, node):
    if type(node.op) is not Elemwise or not flat_loop_applies(node):
        return None
    flat = FlatElemwise(node.op.scalar_op, inplace_pattern=dict(node.op.inplace_pattern))
    return flat(*node.inputs, return_list=True)
