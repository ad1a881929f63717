"""Hyperparameter search for any model run.py trains (paropt.py): parameter spaces, trial processes,
Optuna studies in RDB storage with heartbeats and retries, and the reports written at the end."""
