# PeerCollab's BPR peers, parameter-wise (BPR_PW.py --num 2 --percent 50 --cos --difflr, seeds 10/11, 200 epochs,
# batch 2048), on ML-20M split with python -m peercollab.split --model bpr.
from collections import OrderedDict
gru4rec_params = OrderedDict([('hidden', 256), ('layer_num', 0), ('l2', 0.0), ('learning_rate', 0.001),
                              ('batch_size', 2048), ('n_epochs', 200), ('n_peers', 2), ('cooperation', 'pw'),
                              ('percent', 50.0), ('cos', True), ('difflr', True), ('seed', 10),
                              ('vocabulary', 'all')])
