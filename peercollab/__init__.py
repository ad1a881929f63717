"""PeerCollab (SIGIR'22): peers that cooperate layer-wise or parameter-wise (peercollab.model), of the
release's SASRec (this package's model), YouTubeDNN (peercollab.youtubednn) or BPR (peercollab.bpr).

    python run.py TRAIN -g peercollab -ps n_peers=2,cooperation=lw,cooperation_type=alllayer_entropy -t TEST
    python run.py TRAIN -g peercollab.youtubednn -ps n_peers=1 -t TEST --protocol last    # the release's baseline
    python -m peercollab.split DATA.csv OUTDIR [--model bpr]   # the released leave-one-out split
    python -m peercollab.release DATA.csv --out DIR [--model sasrec|youtubednn|bpr]   # every peer, best per metric
"""
from .model import PeerCollab

MODEL_CLASS = PeerCollab
