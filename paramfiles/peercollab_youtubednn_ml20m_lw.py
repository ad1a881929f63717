# PeerCollab's YouTubeDNN peers, layer-wise (DNN_LW.py --num 2 --a 30 --cos --difflr, seeds 10/11) at the paper's
# rate for DNN (1e-4), on ML-20M split with python -m peercollab.split (max_len 100). The release's baseline:
# -ps n_peers=1 after this file's values (a constant rate); its noise control: n_peers=1,cooperation=noise.
from collections import OrderedDict
gru4rec_params = OrderedDict([('hidden', 256), ('layer_num', 1), ('dropout', 0.0), ('learning_rate', 0.0001),
                              ('batch_size', 128), ('n_epochs', 200), ('max_len', 100), ('n_peers', 2),
                              ('cooperation', 'lw'), ('cooperation_type', 'alllayer_entropy'), ('a', 30),
                              ('cos', True), ('difflr', True), ('seed', 10), ('vocabulary', 'all')])
