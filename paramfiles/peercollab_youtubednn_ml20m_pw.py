# PeerCollab's YouTubeDNN peers, parameter-wise (DNN_PW.py --num 2 --percent 50 --cos --difflr, seeds 10/11) at
# the paper's rate for DNN (1e-4), on ML-20M split with python -m peercollab.split (max_len 100).
from collections import OrderedDict
gru4rec_params = OrderedDict([('hidden', 256), ('layer_num', 1), ('dropout', 0.0), ('learning_rate', 0.0001),
                              ('batch_size', 128), ('n_epochs', 200), ('max_len', 100), ('n_peers', 2),
                              ('cooperation', 'pw'), ('percent', 50.0), ('cos', True), ('difflr', True),
                              ('seed', 10), ('vocabulary', 'all')])
