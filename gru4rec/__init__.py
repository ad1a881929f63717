"""GRU4Rec (Hidasi et al., ICLR'16 and CIKM'18) on PyTensor, faithful to the original Theano code.

``MODEL_CLASS`` is what run.py and paropt.py use when ``-g gru4rec`` is given.
"""
from .model import GRU4Rec

MODEL_CLASS = GRU4Rec

__all__ = ['GRU4Rec', 'MODEL_CLASS']
