"""The graph rewrites that put the custom Ops into compiled functions, in the order they run.

They live in PyTensor's rewrite database under one tag, :data:`TAG`, which no PyTensor mode
includes by default: only a mode that asks for it (``recsys_core.backend.compile_mode``, which
calls :func:`register`) runs them, so other code's functions in the same process are untouched.
They run after PyTensor's own fast_run rewrites (positions 70.6-70.8, before the in-place pass
at 75 except the adagrad one, which needs PyTensor's destroy handler).

- 70.6 ``flat_loops.use_flat_elemwise``: contiguous elementwise loops as one flat C loop.
- 70.7 ``rows.use_row_scatter`` / ``use_row_gather`` / ``use_row_sum``: row increments, row
  gathers and row sums of matrices as compiled loops instead of PyTensor's Python ones.
- 70.71 ``rows.gather_through``: a gather of a gather reads the table once.
- 70.72 ``layout.join_column_halves``: the two column-slice increments of the GRU's gate gradient
  as one join.
- 70.8 ``sparse_update.make_sparse_adagrad_inplace``: the adagrad Ops update their state in place.
"""
from pytensor.compile import optdb
from pytensor.graph.rewriting.basic import in2out

TAG = 'row_scatter'
"""The tag a mode includes to run these rewrites (``Mode(...).including(TAG)``)."""

_registered = False


def _rewrites():
    """(name, rewrite, position, extra tags) of every rewrite, in position order."""
    from .flat_loops import use_flat_elemwise
    from .layout import join_column_halves
    from .rows import gather_through, use_row_gather, use_row_scatter, use_row_sum
    from .sparse_update import make_sparse_adagrad_inplace
    return [
        ('gpu_ops_flat_elemwise', in2out(use_flat_elemwise, ignore_newtrees=True), 70.6, ()),
        ('gpu_ops_row_scatter', in2out(use_row_scatter, use_row_gather, use_row_sum, ignore_newtrees=True), 70.7, ()),
        ('gpu_ops_gather_through', in2out(gather_through, ignore_newtrees=True), 70.71, ()),
        ('gpu_ops_join_column_halves', in2out(join_column_halves, ignore_newtrees=True), 70.72, ()),
        ('gpu_ops_sparse_adagrad_inplace', in2out(make_sparse_adagrad_inplace, ignore_newtrees=True), 70.8,
         ('inplace',)),
    ]


def register():
    """Add the rewrites to PyTensor's database under :data:`TAG` (once per process); returns TAG."""
    global _registered
    if not _registered:
        for name, rewrite, position, tags in _rewrites():
            optdb.register(name, rewrite, TAG, *tags, position=position)
        _registered = True
    return TAG
