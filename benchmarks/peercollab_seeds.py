"""PeerCollab's claim, seeded: cooperating peers (LW, PW) against the release's single-model baseline
and its noise control, for each of the release's models, over several seeds.

    python benchmarks/peercollab_seeds.py [--models sasrec youtubednn bpr] [--datasets synthetic lastfm]
        [--seeds 10 20 30] [--epochs sasrec=30 youtubednn=60 bpr=60] [--out DIR]

Per model and data set, every configuration trains the same epochs on the same split (the model's
loader, peercollab.release.split_events) and is reported as released: the deployed peer's best of
each metric over the epochs' test evaluations (peercollab.release.train). Configurations, per seed s:
- baseline: the release's baseline.py (n_peers=1: a constant learning rate; its seed s);
- baseline_peers_schedule: one model under the peers' schedule (cosine decay) with peer 2's seed s+1
  and rate, the control that separates the schedule's effect from the cooperation's;
- lw, pw: two peers (seeds s and s+1, difflr rates 0.5 lr and lr, cosine decay), the deployed
  peer 2's numbers; lw with the model's first type (alllayer_entropy; BPR embed_entropy), a 30;
  pw percent 50;
- noise: the release's noise control (*_Noise.py: one model, constant rate, the model's rate and T).
Mean and sample standard deviation over the seeds; a finished run (its summary.json) is read again
instead of retrained, so the command resumes.

Budgets (small, to fit a 2-core CPU): d 32; SASRec 2 blocks, YouTubeDNN 1 layer, both lr 1e-3
(the release scripts' default; the paper's DNN rate 1e-4 barely moves in 10 epochs here) and 10
epochs; BPR batch 256, lr 5e-3, 30 epochs (``--epochs MODEL=N`` changes a model's).
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))

from peercollab_compare import LASTFM, synthetic_file  # noqa: E402

SHOWN = ('mrr@5', 'hr@5', 'ndcg@5', 'mrr@20', 'hr@20', 'ndcg@20')
MODELS = {
    'sasrec': dict(hidden=32, num_blocks=2, batch_size=128, learning_rate=0.001, n_epochs=10),
    'youtubednn': dict(hidden=32, layer_num=1, batch_size=128, learning_rate=0.001, n_epochs=10),
    'bpr': dict(hidden=32, batch_size=256, learning_rate=0.005, n_epochs=30),
}


def configurations(seed):
    return [('baseline', dict(n_peers=1, seed=seed)),
            ('baseline_peers_schedule', dict(n_peers=1, seed=seed + 1, single_schedule='peers')),
            ('lw', dict(cooperation='lw', a=30, seed=seed)),
            ('pw', dict(cooperation='pw', percent=50, seed=seed)),
            ('noise', dict(n_peers=1, cooperation='noise', seed=seed))]


def run_one(model, data_name, path, config, params, out):
    from peercollab.release import split_events, train
    folder = os.path.join(out, model, data_name, config)
    done = os.path.join(folder, 'summary.json')
    if os.path.isfile(done) and os.path.isfile(os.path.join(folder, 'seconds')):
        with open(done) as f, open(os.path.join(folder, 'seconds')) as g:
            summary, seconds = json.load(f), float(g.read())
    else:
        max_len = 5 if data_name == 'lastfm' else 20  # Last.fm's users have 5 items
        train_events, test_events = split_events(path, max_len, model=model)
        if model != 'bpr':
            params = dict(params, max_len=max_len)
        t0 = time.time()
        fitted, summary = train(params, train_events, test_events, folder, verbose=False, model=model)
        seconds = time.time() - t0
        with open(os.path.join(folder, 'seconds'), 'w') as f:
            f.write(str(seconds))
    deployed = 'peer 2' if 'peer 2' in summary else 'peer 1'
    return summary[deployed]['best'], seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--models', nargs='+', default=list(MODELS), choices=list(MODELS))
    ap.add_argument('--datasets', nargs='+', default=['synthetic', 'lastfm'], choices=['synthetic', 'lastfm'])
    ap.add_argument('--seeds', nargs='+', type=int, default=[10, 20, 30])
    ap.add_argument('--users', type=int, default=1500)
    ap.add_argument('--items', type=int, default=500)
    ap.add_argument('--epochs', nargs='*', default=[], metavar='MODEL=N', help='epochs of a model, e.g. sasrec=30')
    ap.add_argument('--out', default=None)
    args = ap.parse_args()
    for spec in args.epochs:
        name, _, n = spec.partition('=')
        MODELS[name]['n_epochs'] = int(n)
    from recsys_core import backend
    backend.configure('cpu', verbose=False)
    print('machine: {} ({} cores), Python {}'.format(platform.processor() or platform.machine(), os.cpu_count(),
                                                     platform.python_version()))
    print('command: {}'.format(' '.join(sys.argv)))
    out = args.out or tempfile.mkdtemp(prefix='peercollab_seeds_')
    os.makedirs(out, exist_ok=True)
    table = {}
    for model in args.models:
        for data_name in args.datasets:
            path = synthetic_file(out, args.users, args.items) if data_name == 'synthetic' else LASTFM
            rows = {}
            for seed in args.seeds:
                for config, extra in configurations(seed):
                    best, seconds = run_one(model, data_name, path, '{}_s{}'.format(config, seed),
                                            dict(MODELS[model], **extra), out)
                    rows.setdefault(config, []).append((best, seconds))
            print('\n== {} on {} ({} seeds: {}), the deployed peer\'s best per metric over {} epochs'.format(
                model, data_name, len(args.seeds), ' '.join(map(str, args.seeds)), MODELS[model]['n_epochs']))
            base = np.mean([b['mrr@5'] for b, _ in rows['baseline']])
            for config, runs in rows.items():
                cells = []
                for m in SHOWN:
                    values = [b[m] for b, _ in runs]
                    cells.append('{} {:.4f}±{:.4f}'.format(m, np.mean(values), np.std(values, ddof=1)))
                mrr = np.mean([b['mrr@5'] for b, _ in runs])
                print('{:24s} {}  | mrr@5 vs baseline {:+.1%} | {:.0f} s/run'.format(
                    config, '  '.join(cells), mrr / base - 1, np.mean([s for _, s in runs])))
            table['{}/{}'.format(model, data_name)] = {c: [b for b, _ in r] for c, r in rows.items()}
    with open(os.path.join(out, 'results.json'), 'w') as f:
        json.dump(table, f, indent=1)
    print('\nresults: {}'.format(os.path.join(out, 'results.json')))


if __name__ == '__main__':
    main()
