# PeerCollab's README run, layer-wise (SASRec_LW.py --num 2 --a 30 --cos --difflr, seeds 10/11), on ML-20M
# split with python -m peercollab.split (max_len 100); choose the LW rule with cooperation_type.
from collections import OrderedDict
gru4rec_params = OrderedDict([('hidden', 256), ('num_blocks', 2), ('num_heads', 1), ('dropout', 0.0),
                              ('learning_rate', 0.001), ('batch_size', 128), ('n_epochs', 200), ('max_len', 100),
                              ('n_peers', 2), ('cooperation', 'lw'), ('cooperation_type', 'alllayer_entropy'),
                              ('a', 30), ('cos', True), ('difflr', True), ('seed', 10), ('vocabulary', 'all')])
