"""Step-by-step comparison with the official PyTorch port of GRU4Rec: the same initial weights, the
same mini-batches, then every weight matrix after each of the first training steps, layer by layer.

    python benchmarks/compare_official_steps.py --official /path/to/GRU4Rec_PyTorch_Official \
        --official-python /path/to/venv/bin/python [--steps 30] [--setting NAME ...]

The port (github hidasib/GRU4Rec_PyTorch_Official; it needs numpy<2, pandas<2.3, torch) is not part
of this repository. A small driver runs its own model, data iterator and optimizer (adagrad with
momentum) in its Python and saves its weights, mapped to this project's layout, after every step;
this project then trains the same steps with gru_cell='pytorch' and with gru_cell='theano' (both with
sparse_update='per_row', the port's update of an item row used more than once in a step).
Dropout is off and n_sample=0, so both sides are deterministic and any difference is the model's.
Prints, per setting and cell, the largest relative difference of each weight after the first step
and after the last one, and the per-step losses side by side.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from step_compare import load_snapshots, rel_diff, train_ours

BASE = dict(layers=[24, 24], batch_size=8, n_sample=0, learning_rate=0.1, momentum=0.1, dropout_p_hidden=0.0,
            dropout_p_embed=0.0, sample_alpha=0.5, logq=0.0, n_epochs=1)
# name: (this project's extra parameters, the port's spelling of them)
SETTINGS = {
    'xe-shared': (dict(loss='cross-entropy', final_act='softmax', constrained_embedding=True),
                  dict(loss='cross-entropy', constrained_embedding=True)),
    'bprmax-shared': (dict(loss='bpr-max', final_act='elu-0.5', bpreg=1.0, constrained_embedding=True),
                      dict(loss='bpr-max', elu_param=0.5, bpreg=1.0, constrained_embedding=True)),
    'xe-separate': (dict(loss='cross-entropy', final_act='softmax', constrained_embedding=False, embedding=24),
                    dict(loss='cross-entropy', constrained_embedding=False, embedding=24)),
    # The port's one-hot input layer is its GRUEmbedding (the original's step); with a second layer its
    # compatibility initialisation fails (IndexError), so one layer here.
    'xe-onehot-1layer': (dict(loss='cross-entropy', final_act='softmax', constrained_embedding=False, embedding=0, layers=[24]),
                         dict(loss='cross-entropy', constrained_embedding=False, embedding=0, layers=[24])),
    'xe-onehot': (dict(loss='cross-entropy', final_act='softmax', constrained_embedding=False, embedding=0),
                  dict(loss='cross-entropy', constrained_embedding=False, embedding=0)),
}

# Runs in the port's Python, in its checkout: its model, iterator and optimizer, one fit() step at a time.
PORT_DRIVER = r'''
import json, sys, numpy as np, pandas as pd, torch
from gru4rec_pytorch import GRU4Rec, GRU4RecModel, SessionDataIterator, IndexedAdagradM
params, path, steps, out = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
data = pd.read_csv(path, sep='\t', dtype={'ItemId': str})
dev = torch.device('cpu')
g = GRU4Rec(device=dev)
for k, v in params.items():
    setattr(g, k, v)
g.set_loss_function(g.loss)
it = SessionDataIterator(data, g.batch_size, n_sample=0, device=dev)
model = GRU4RecModel(it.n_items, g.layers, 0.0, 0.0, g.embedding, g.constrained_embedding).to(dev)
model._reset_weights_to_compatibility_mode()
opt = IndexedAdagradM(model.parameters(), g.learning_rate, g.momentum)

def ours_layout():
    w = {}
    t = lambda x: x.detach().numpy().copy()
    if model.embedding and not model.constrained_embedding:
        w['E'] = t(model.E.weight)
    if model.start:
        w['Wx0'], w['Wrz0'], w['Wh0'], w['Bh0'] = t(model.GE.Wx0.weight), t(model.GE.Wrz0), t(model.GE.Wh0), t(model.GE.Bh0)
    for j, cell in enumerate(model.G):
        i = j + model.start
        r, z, n = np.split(t(cell.weight_ih), 3)
        hr, hz, hn = np.split(t(cell.weight_hh), 3)
        br, bz, bn = np.split(t(cell.bias_ih), 3)
        cr, cz, cn = np.split(t(cell.bias_hh), 3)
        w['Wx%d' % i] = np.hstack([n.T, r.T, z.T])
        w['Wh%d' % i], w['Wrz%d' % i] = hn.T, np.hstack([hr.T, hz.T])
        w['Bh%d' % i], w['Bhh%d' % i] = np.concatenate([bn, br, bz]), np.concatenate([cn, cr, cz])
    w['Wy'], w['By'] = t(model.Wy.weight), t(model.By.weight)[:, 0]
    return w

H = [torch.zeros((g.batch_size, h)) for h in g.layers]
hook = lambda n_valid, fin, valid: g._adjust_hidden(n_valid, fin, valid, H)
g.model = model
snaps = {'init': ours_layout()}
losses, batches = [], []
for s, (inp, y) in enumerate(it(enable_neg_samples=False, reset_hook=hook)):
    if s == steps:
        break
    for h in H:
        h.detach_()
    model.zero_grad()
    R = model.forward(inp, H, y, training=True)
    L = g.loss_function(R, y, len(inp)) / g.batch_size
    L.backward()
    opt.step()
    losses.append(float(L))
    batches.append((inp.numpy().tolist(), y.numpy().tolist()))
    if s + 1 in (1, steps):
        snaps['step%d' % (s + 1)] = ours_layout()
np.savez(out, **{k + '/' + n: v for k, w in snaps.items() for n, v in w.items()})
json.dump({'losses': losses, 'batches': batches, 'items': it.itemidmap.index.tolist()}, open(out + '.json', 'w'))
'''


def run_port(official, python, params, path, steps, workdir):
    out = os.path.join(workdir, 'port.npz')
    res = subprocess.run([python, '-c', PORT_DRIVER, json.dumps(params), path, str(steps), out], cwd=official,
                         capture_output=True, text=True)
    if res.returncode != 0:
        return None, res.stderr.strip().splitlines()[-1]
    with open(out + '.json') as f:
        return (load_snapshots(out), json.load(f)), None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--official', required=True, help='checkout of GRU4Rec_PyTorch_Official')
    ap.add_argument('--official-python', default=sys.executable)
    ap.add_argument('--steps', type=int, default=30)
    ap.add_argument('--setting', nargs='+', choices=sorted(SETTINGS), default=list(SETTINGS))
    args = ap.parse_args()
    from recsys_core import backend
    backend.configure('cpu')
    from recsys_core.synthetic import generate_sessions
    data = generate_sessions(n_items=300, n_sessions=400, seed=5)
    data['ItemId'] = data.ItemId.astype(str)
    workdir = tempfile.mkdtemp(prefix='gru4rec_steps_')
    path = os.path.join(workdir, 'train.tsv')
    data.to_csv(path, sep='\t', index=False)
    print('data: {} events, {} items; {} steps; {}'.format(len(data), data.ItemId.nunique(), args.steps,
                                                           ', '.join('{}={}'.format(k, v) for k, v in BASE.items())))
    for name in args.setting:
        ours_extra, port_extra = SETTINGS[name]
        port_params = dict(BASE, **port_extra)
        port_params.pop('n_epochs')
        port, error = run_port(args.official, args.official_python, port_params, path, args.steps, workdir)
        if port is None:
            print('{}: the port does not run this setting ({})'.format(name, error))
            continue
        port_snaps, port_info = port
        # the port sums the gradients of a row used several times in a step and updates it once
        params = dict(BASE, sparse_update='per_row', **ours_extra)
        for cell in ('pytorch', 'theano'):
            # The same start for both cells where shapes allow: the port's initial weights ('theano' has no Bhh).
            ours = train_ours(dict(params, gru_cell=cell), data, args.steps,
                              init=port_snaps['init'] if cell == 'theano' else None)
            snaps, losses = ours['snaps'], ours['losses']
            same_batches = [b[:2] for b in ours['batches']] == [tuple(b) for b in port_info['batches']] and \
                ours['items'] == port_info['items']
            init_diff = max(rel_diff(snaps['init'][k], port_snaps['init'][k]) for k in snaps['init']
                            if k in port_snaps['init'] and np.abs(port_snaps['init'][k]).max() > 0)
            last = 'step{}'.format(len(losses))
            print('{} gru_cell={}: same batches {}; initial weights: {}'.format(
                name, cell, same_batches, 'largest relative difference {:.1e} (float32 rounding of the draws)'.format(init_diff)
                if cell == 'pytorch' else "the port's"))
            for k in snaps['init']:
                if k not in port_snaps['init']:
                    continue
                print('  {:5s} max relative difference after step 1: {:.2e}, after step {}: {:.2e}'.format(
                    k, rel_diff(snaps['step1'][k], port_snaps['step1'][k]), len(losses),
                    rel_diff(snaps[last][k], port_snaps[last][k])))
            diffs = [abs(a - b) / abs(b) for a, b in zip(losses, port_info['losses'])]
            print('  loss relative difference per step: first {:.1e}, max {:.1e}; losses (ours / port) at steps 1, 10, {}: {}'.format(
                diffs[0], max(diffs), len(losses), ', '.join('{:.5f} / {:.5f}'.format(losses[i], port_info['losses'][i])
                                                           for i in (0, min(9, len(losses) - 1), len(losses) - 1))))


if __name__ == '__main__':
    main()
