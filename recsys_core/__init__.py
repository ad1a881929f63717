"""Shared core of the project: what every model package needs, written once.

data loading and sorting (data), session-parallel mini-batches (batching), negative sampling
(sampling), optimizers with row-sparse updates (optim), activation strings (activations),
parameter parsing and echoing (params), evaluation with tie modes (evaluation), backend and device
selection (backend), atomic model files (persistence), synthetic session data (synthetic).
"""
