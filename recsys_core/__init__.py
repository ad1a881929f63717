"""Shared core of the project: what every model package needs, written once.

The model surface: the base classes every model inherits (model: Recommender, NeuralRecommender;
sequence_model: SequenceRecommender for left-padded item sequences), the one training loop
(trainer: epochs and step caps, progress lines, NaN handling, validation every N steps, early
stopping, checkpoints, resume, warm start) and the one evaluation entry point for both protocols
(evaluation.evaluate -> eval_result.EvalResult; last_item_eval for the last-item protocol, also against
sampled negatives; eval_result also names the protocols, tie modes and metrics the front ends and the
trainer check). compare: several models on one split, one table and one plot (compare.py).
Building blocks: the dilated residual block and the SASRec block, as objects holding weight names
(blocks), log-softmax and cross-entropy (softmax), optimizers with row-sparse updates and TF's
Adam (optim), negative sampling (sampling), random streams inside graphs (randomness), activation
strings (activations).
Data: loading and sorting (data), sequence files, padding, windows and the released split
(sequences), session-parallel mini-batches (batching), synthetic session data (synthetic),
dataset preprocessing steps (preprocessing), leave-one-out and last-sessions splits (splits).
Around them: parameter declaration, validators and echo (params), the front ends' shared flags
(cli), backend and device selection (backend), the thread tuner (threads), model files
(persistence), the one atomic file writer (atomic), hyperparameter search (tuning).

One training step, end to end (GRU4Rec):
run.py builds TrainingOptions from its flags -> model.Recommender.fit (every model's one signature;
what it was given becomes a model.FitRequest) -> model.NeuralRecommender._fit -> the model's
_training_plan (gru4rec/model.py: weights, the sample store (sampling), the graph of one step in
_build_train: GRU layers, the scores of the distinct sampled items (gpu_ops.columns), the fused
loss Op (gpu_ops.sampled_loss, its C code in gpu_ops/c), the updates (optim, with
gpu_ops.sparse_update's in-place adagrad), compiled by backend.compile_function, whose mode runs
gpu_ops.rewrites) -> trainer.Trainer.run feeds the plan's batches (batching.session_parallel) to the
compiled step; the C code's matrix products go to OpenBLAS through gpu_ops.toolchain's GEMM wrapper.
The sequence models take the same path through sequence_model.SequenceRecommender._training_plan,
whose step is sequence_model.SequenceRecommender._step_graph: the batch's variables, the hidden
layer, the paper's loss, its regularization and its optimizer's updates, each a method a paper's
class overrides. A custom Op replaces its reference composition only while
gpu_ops.custom_ops_enabled() (the original's disable_custom_op); gpu_ops' docstring lists them.

How PyTensor's C code is compiled and linked (the BLAS flags, the parallel GEMM wrapper, the gcc
flags) lives one layer down, in gpu_ops.toolchain, because the custom Ops need it too and gpu_ops
imports nothing of this package; ``recsys_core.blas_ldflags``, ``parallel_gemm_library`` and
``parallel_ops`` name those functions. Importing recsys_core compiles nothing and does not import
PyTensor: the wrapper is built at the first graph compilation.
"""

_TOOLCHAIN = ('blas_ldflags', 'parallel_gemm_library', 'parallel_ops')


def __getattr__(name):
    """gpu_ops.toolchain's functions under their old names, imported on first access (so that
    ``import recsys_core`` stays light for the scripts that only read and write data)."""
    if name in _TOOLCHAIN:
        from gpu_ops import toolchain
        return getattr(toolchain, name)
    raise AttributeError('module {!r} has no attribute {!r}'.format(__name__, name))


def __dir__():
    return sorted(list(globals()) + list(_TOOLCHAIN))
