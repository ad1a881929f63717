import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from recsys_core import backend  # noqa: E402

backend.configure('cpu')


@pytest.fixture(scope='session')
def root():
    return ROOT


@pytest.fixture(scope='session')
def tiny_data():
    """Small synthetic train/test split shared by the model tests (fast to train on 2 cores)."""
    from recsys_core.synthetic import generate_sessions, split_by_time
    return split_by_time(generate_sessions(n_items=300, n_sessions=1500, seed=3), 0.15)
