"""NextItNet (Yuan et al., WSDM 2019): a causal dilated residual CNN for next-item prediction.

``python run.py TRAIN -g nextitnet -ps dilated_channels=100,dilations=1/2/1/2 -t TEST`` trains and
evaluates it; ``--protocol last`` uses the paper's protocol (the last item of each test sequence,
HR/MRR/NDCG). ``python -m nextitnet.split FILE OUTDIR`` makes the released train/test split of a
sequence-per-line file. See nextitnet.model for the differences from the released code.
"""
from .model import NextItNet

MODEL_CLASS = NextItNet

__all__ = ['NextItNet', 'MODEL_CLASS']
