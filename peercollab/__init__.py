"""PeerCollab (SIGIR'22): SASRec peers that cooperate layer-wise or parameter-wise (peercollab.model).

    python run.py TRAIN -g peercollab -ps n_peers=2,cooperation=lw,cooperation_type=alllayer_entropy -t TEST
    python -m peercollab.split DATA.csv OUTDIR          # the released leave-one-out split
    python -m peercollab.release DATA.csv --out DIR     # the released protocol (every peer, best per metric)
"""
from .model import PeerCollab

MODEL_CLASS = PeerCollab
