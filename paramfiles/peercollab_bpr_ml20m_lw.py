# PeerCollab's BPR peers, layer-wise (BPR_LW.py's embed_entropy, --num 2 --a 30 --cos --difflr, seeds 10/11,
# 300 epochs, batch 2048), on ML-20M split with python -m peercollab.split --model bpr.
from collections import OrderedDict
gru4rec_params = OrderedDict([('hidden', 256), ('layer_num', 0), ('l2', 0.0), ('learning_rate', 0.001),
                              ('batch_size', 2048), ('n_epochs', 300), ('n_peers', 2), ('cooperation', 'lw'),
                              ('cooperation_type', 'embed_entropy'), ('a', 30), ('cos', True), ('difflr', True),
                              ('seed', 10), ('vocabulary', 'all')])
