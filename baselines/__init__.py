"""The baselines of the original GRU4Rec repository (its baselines.py), as run.py models.

Each module exposes MODEL_CLASS, so ``run.py -g baselines.item_knn`` (or paropt.py -g) trains,
saves and evaluates it with the same evaluation as GRU4Rec:

- ``baselines.pop``: item popularity, supp / (supp + 1), top_n items only.
- ``baselines.session_pop``: occurrences in the session so far, plus the popularity score.
- ``baselines.item_knn``: item-to-item co-occurrence similarity to the last item.
- ``baselines.bpr``: BPR-MF with sessions as users; a session is the mean of its items' factors.
  Its SGD runs through the shared trainer (validation, early stopping, checkpoints, resume).
- ``baselines.random_pred``: uniform random scores.

Differences from the original (deliberate):
- Ties at the top_n / n_sims boundary keep the item that appears first in the training data (the
  original's sort is not stable, so which tied item it keeps is arbitrary).
- BPR draws its negative item uniformly from the catalogue (the original takes the item of a random
  event among the first n_items rows of its merged table, an accident of indexing), from a seeded
  generator (``seed``), with the loop compiled by numba.
"""
