"""PeerCollab's claim on small data: cooperating SASRec peers (LW, PW) against the single model and
against two independent peers, on the same data, schedule and budget; and what cooperating costs
per training step.

    python benchmarks/peercollab_compare.py [--epochs 15] [--hidden 64] [--datasets synthetic lastfm]

Each data set is split as released (peercollab.split: leave-one-out, users with 5+ items) and every
run trains the same epochs with the same batches, cosine schedule and Adam (peercollab.release.train):
- single: one SASRec under the peers' schedule with peer 2's seed and the base learning rate
  (n_peers=1, single_schedule=peers: the same-schedule control; the release's own baseline, a
  constant rate, is measured by benchmarks/peercollab_seeds.py);
- none: two peers that never merge (difflr rates 0.5 lr and lr, seeds 10 and 11);
- lw: the same two peers with layer-wise cooperation (alllayer_entropy, a 30);
- pw: the same two peers with parameter-wise cooperation (percent 50).
Every peer is evaluated on the test users after every epoch (HR/MRR/NDCG@5,20 over all items); the
numbers are each metric's best over the epochs (as released), for the deployed peer (peer 2, the
base-lr peer) and for peer 1. Time: seconds per lockstep step (both peers' batches, merges
included; evaluation excluded) against 'none', over all epochs and in each run's fastest epoch
(the least disturbed by other processes on a shared machine), and one merge's seconds, here and at
the paper's ML-20M size (V = 20001 items, d = 256, 2 blocks, random weights).

synthetic: recsys_core.synthetic sessions read as users (--users, --items, mean length 12).
    python benchmarks/peercollab_compare.py --overhead_rounds 5 [--overhead_epochs 3]

measures instead only the per-step time of LW and PW against two independent peers, in alternated
short runs (see overhead_rounds).

lastfm: ../shared/data/lastfm_sessions (NextItNet's Last.fm sample; 1804 users of 5 items, max_len 5).
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

LASTFM = os.path.join(ROOT, '..', 'shared', 'data', 'lastfm_sessions', 'user-filter-20000items-session5.csv')
RUNS = [('single', dict(n_peers=1, seed=11, single_schedule='peers')), ('none', dict(cooperation='none')),
        ('lw', dict(cooperation='lw', cooperation_type='alllayer_entropy', a=30)),
        ('pw', dict(cooperation='pw', percent=50))]
SHOWN = ('mrr@5', 'hr@5', 'ndcg@5', 'mrr@20', 'hr@20', 'ndcg@20')


def synthetic_file(folder, users, items):
    from recsys_core.synthetic import generate_sessions
    path = os.path.join(folder, 'synthetic_users.csv')
    if not os.path.isfile(path):
        events = generate_sessions(n_items=items, n_sessions=users, seed=7, mean_length=12)
        with open(path, 'w') as f:
            for _, g in events.groupby('SessionId'):
                f.write(','.join(map(str, g.ItemId)) + '\n')
    return path


def merge_seconds(model, repeats=3):
    """Seconds of one cooperation of every peer (snapshots, gates, writes) on a trained model."""
    t0 = time.perf_counter()
    for _ in range(repeats):
        model._cooperate(0, None)
    return (time.perf_counter() - t0) / repeats


def paper_size_merge_seconds(V=20001, d=256, blocks=2, T=100):
    """Seconds of one LW and one PW merge of one peer at the paper's ML-20M size (random weights)."""
    from collections import OrderedDict

    import numpy as np

    from peercollab import cooperation
    rng = np.random.default_rng(0)

    def weights():
        w = OrderedDict([('item_emb', rng.standard_normal((V, d), dtype=np.float32)),
                         ('pos_emb', rng.standard_normal((T, d), dtype=np.float32))])
        for b in range(blocks):
            for part in ('q', 'k', 'v', 'na', 'f1', 'f2', 'nf'):
                if part in ('na', 'nf'):
                    w['b{}_{}_g'.format(b, part)] = rng.standard_normal(d, dtype=np.float32)
                else:
                    w['b{}_{}_W'.format(b, part)] = rng.standard_normal((d, d), dtype=np.float32)
                w['b{}_{}_b'.format(b, part)] = rng.standard_normal(d, dtype=np.float32)
        w['final_W'], w['final_b'] = rng.standard_normal((d, V), dtype=np.float32), rng.standard_normal(V, dtype=np.float32)
        return w
    own, peer = weights(), weights()
    t0 = time.perf_counter()
    cooperation.lw_merge(own, peer, 'alllayer_entropy', 30)
    t1 = time.perf_counter()
    cooperation.pw_merge(own, peer, 50)
    return t1 - t0, time.perf_counter() - t1


def run_dataset(name, path, args, out):
    from peercollab.release import split_events, train
    max_len = args.max_len if name == 'synthetic' else 5   # Last.fm's users have 5 items: rows of 5
    train_events, test_events = split_events(path, max_len)
    print('\n== {}: {} training users, {} test users, {} items'.format(
        name, train_events.SessionId.nunique(), test_events.SessionId.nunique(),
        test_events.ItemId.nunique()), flush=True)
    base = dict(hidden=args.hidden, num_blocks=2, max_len=max_len, batch_size=args.batch_size,
                n_epochs=args.epochs, learning_rate=args.lr)
    results = {}
    for run, params in RUNS:
        model, summary = train(dict(base, **params), train_events, test_events, os.path.join(out, name, run),
                               verbose=False)
        steps = sum(s['minibatches'] for s in model.epoch_stats)
        seconds = sum(s['seconds'] for s in model.epoch_stats)
        later = [s['seconds'] / s['minibatches'] for s in model.epoch_stats[1:]] or [seconds / max(steps, 1)]
        results[run] = {'peers': {k: summary['peer {}'.format(k)]['best'] for k in model.local_peers()}, 'steps': steps,
                        'seconds': seconds, 'seconds_per_step': seconds / max(steps, 1),
                        'fastest_epoch_seconds_per_step': min(later),  # epochs 2.. (each with a merge)
                        'merge_seconds': merge_seconds(model) if model.cooperates() else 0.0}
        for k in sorted(results[run]['peers'], reverse=True):
            best = results[run]['peers'][k]
            print('{:7s} peer {}{}  {}   {} steps, {:.1f} s, {:.1f} ms/step'.format(
                run, k, ' (deployed)' if k == model.deployed_peer() else '           ',
                '  '.join('{} {:.4f}'.format(m, best[m]) for m in SHOWN), steps, seconds,
                1000 * results[run]['seconds_per_step']), flush=True)
    none = results['none']['seconds_per_step']
    fastest = results['none']['fastest_epoch_seconds_per_step']
    for run in ('lw', 'pw', 'single'):
        r = results[run]
        per_epoch = r['steps'] // args.epochs
        line = '{}: {:.2f}x the time per step of two independent peers over all epochs ({:.1f} vs {:.1f} ms), {:.2f}x ' \
               'in the fastest epoch of each ({:.1f} vs {:.1f} ms)'.format(
                   run, r['seconds_per_step'] / none, 1000 * r['seconds_per_step'], 1000 * none,
                   r['fastest_epoch_seconds_per_step'] / fastest, 1000 * r['fastest_epoch_seconds_per_step'],
                   1000 * fastest)
        if run != 'single':
            line += '; one merge {:.1f} ms = {:.2f} steps of two peers, once per epoch of {} steps: {:.1%} more ' \
                    'time per step'.format(1000 * r['merge_seconds'], r['merge_seconds'] / fastest, per_epoch,
                                           r['merge_seconds'] / fastest / per_epoch)
        print(line)
    return results


def overhead_rounds(path, args):
    """Time per step of LW and PW peers against two independent ones, alternated: ``--overhead_rounds``
    rounds, each training none, lw and pw for ``--overhead_epochs`` epochs in turn (rotated order,
    one process, compilation not timed), without evaluation. Per round the ratio of seconds per step over
    the epochs after the first (each of which starts with a merge); the median and every round's
    ratio are printed. A shared machine's speed drifts between runs minutes apart; alternating short
    runs puts each ratio's two sides next to each other."""
    import numpy as np

    from peercollab.model import PeerCollab
    from peercollab.release import split_events
    train_events, _ = split_events(path, args.max_len)
    base = dict(hidden=args.hidden, num_blocks=2, max_len=args.max_len, batch_size=args.batch_size,
                n_epochs=args.overhead_epochs, learning_rate=args.lr)
    runs = [(name, params) for name, params in RUNS if name in ('none', 'lw', 'pw')]
    per_step = {name: [] for name, _ in runs}
    for r in range(args.overhead_rounds):
        for name, params in runs[r % len(runs):] + runs[:r % len(runs)]:
            model = PeerCollab(**dict(base, **params)).fit(train_events, verbose=False)
            later = model.epoch_stats[1:]
            per_step[name].append(sum(s['seconds'] for s in later) / sum(s['minibatches'] for s in later))
    steps = model.epoch_stats[-1]['minibatches']
    print('\nper-step time against two independent peers, {} alternated rounds of {} epochs ({} steps each):'.format(
        args.overhead_rounds, args.overhead_epochs, steps))
    out = {}
    for name in ('lw', 'pw'):
        ratios = [a / b for a, b in zip(per_step[name], per_step['none'])]
        out[name] = ratios
        print('  {}: median {:.3f}x (rounds: {}); none {:.1f} ms/step (median)'.format(
            name, float(np.median(ratios)), ' '.join('{:.3f}'.format(x) for x in ratios),
            1000 * float(np.median(per_step['none']))))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--datasets', nargs='+', default=['synthetic', 'lastfm'], choices=['synthetic', 'lastfm'])
    ap.add_argument('--epochs', type=int, default=15)
    ap.add_argument('--hidden', type=int, default=64)
    ap.add_argument('--max_len', type=int, default=20)
    ap.add_argument('--batch_size', type=int, default=128)
    ap.add_argument('--lr', type=float, default=0.001)
    ap.add_argument('--users', type=int, default=3000, help='synthetic users')
    ap.add_argument('--items', type=int, default=1000, help='synthetic items')
    ap.add_argument('--out', default=None, help='folder for the runs (default: a temporary one)')
    ap.add_argument('--overhead_rounds', type=int, default=0,
                    help='instead: the per-step overhead of LW/PW, alternated rounds on the synthetic data')
    ap.add_argument('--overhead_epochs', type=int, default=3)
    args = ap.parse_args()
    from recsys_core import backend
    backend.configure('cpu', verbose=True)
    print('machine: {} ({} cores), Python {}'.format(platform.processor() or platform.machine(), os.cpu_count(),
                                                     platform.python_version()))
    print('command: {}'.format(' '.join(sys.argv)))
    out = args.out or tempfile.mkdtemp(prefix='peercollab_compare_')
    os.makedirs(out, exist_ok=True)
    if args.overhead_rounds:
        overhead_rounds(synthetic_file(out, args.users, args.items), args)
        return
    results = {}
    for name in args.datasets:
        path = synthetic_file(out, args.users, args.items) if name == 'synthetic' else LASTFM
        results[name] = run_dataset(name, path, args, out)
    lw, pw = paper_size_merge_seconds()
    print('\none merge of one peer at the ML-20M size (V 20001, d 256, 2 blocks): LW {:.2f} s, PW {:.2f} s'.format(lw, pw))
    results['paper_size_merge_seconds'] = {'lw': lw, 'pw': pw}
    with open(os.path.join(out, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1, default=str)
    print('results: {}'.format(os.path.join(out, 'results.json')))


if __name__ == '__main__':
    main()
