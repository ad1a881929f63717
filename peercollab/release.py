"""The released PeerCollab protocol as one command: the leave-one-out split of a user-sequence file,
the peers trained together, every peer evaluated on the test set after every epoch (before the
merge), and each metric's best over the epochs per peer, as the release's "Best" lines report.

    python -m peercollab.release DATA.csv --out DIR [--model sasrec|youtubednn|bpr] [-ps PARAMS] [--processes]

PARAMS are the model's peer parameters (e.g. ``cooperation=pw,percent=50``, ``n_peers=1`` for the
release's baseline, ``n_peers=1,cooperation=noise`` for its noise control); the split is the
model's loader's (:mod:`peercollab.split`) and the vocabulary covers the whole file, as released. Without --processes the peers run in this
process in lockstep (DIR/last.ckpt, DIR/best.model by the deployed peer's MRR@5). With
--processes one process per peer runs this command with --peer k (logs DIR/peerK.log, checkpoints
DIR/peerK/), exchanging through DIR/exchange; if one stops, the others are stopped and their
checkpoints kept. Either way, DIR/summary.json holds every peer's per-epoch metrics and bests, and
running the same command again resumes an interrupted run.
"""
import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time

from recsys_core.atomic import write_text_atomic
from recsys_core.cli import run_main
from recsys_core.errors import UserError

CUT_OFFS = (5, 20)
METRICS = ('mrr', 'hr', 'ndcg')
RELEASE_NAMES = {'mrr': 'MRR', 'hr': 'Hit', 'ndcg': 'NDCG'}


MODELS = ('sasrec', 'youtubednn', 'bpr')
BPR_TEST_LENGTH = 100  # BPR's test rows: only the user and the last item count


def model_class(name):
    """The peer model class of ``--model``."""
    if name == 'youtubednn':
        from .youtubednn import PeerYouTubeDNN
        return PeerYouTubeDNN
    if name == 'bpr':
        from .bpr import PeerBPR
        return PeerBPR
    from .model import PeerCollab
    return PeerCollab


def split_events(path, max_len, min_distinct=None, model='sasrec'):
    """(training events, test events) of the release's split of a user-sequence file for ``model``."""
    from .split import default_min_distinct, leave_one_out, read_user_sequences, sequence_events
    min_distinct = default_min_distinct(path, model) if min_distinct is None else min_distinct
    train, _valid, test = leave_one_out(read_user_sequences(path), max_len, min_distinct, dedupe=model == 'bpr')
    return sequence_events(train), sequence_events(test)


def peer_metric(k, name):
    """The history's name of peer k's metric (e.g. ``p1.mrr@5``)."""
    return 'p{}.{}'.format(k, name)


class PeerEvaluator:
    """The trainer's evaluator: every local peer on the test set (HR/MRR/NDCG@5,20). It returns every
    peer's metrics (``p1.mrr@5``, ...) and, as ``mrr@5``, the deployed peer's MRR@5, which the
    trainer keeps best.model by; the trainer's history (checkpointed, so a resumed run still has
    the epochs before it) holds them all, and the per-epoch tables are read from it."""

    def __init__(self, test, verbose=True):
        self.test, self.verbose = test, verbose

    def __call__(self, model):
        from recsys_core.evaluation import evaluate
        epoch = model.epoch_of_last_step + 1
        measured = {}
        for k in model.local_peers():
            res = evaluate(model.peer_model(k), self.test, protocol='last', cut_off=list(CUT_OFFS), verbose=False)
            metrics = {'{}@{}'.format(m, c): float(res.value(m, c)) for m in METRICS for c in CUT_OFFS}
            measured.update((peer_metric(k, n), v) for n, v in metrics.items())
            if self.verbose:
                print('peer {} epoch {}: {}'.format(k, epoch, ' '.join('{} {:.4f}'.format(n, v)
                                                                        for n, v in metrics.items())))
                history = peer_history(model.training_history + [{'epoch': epoch, 'metrics': measured}])
                print('peer {} {}'.format(k, best_line(history[k])))
        measured['mrr@5'] = measured[peer_metric(model.deployed_peer(), 'mrr@5')]
        return measured


def peer_history(training_history):
    """peer -> epoch -> metrics, from the trainer's history of :class:`PeerEvaluator` evaluations."""
    peers = {}
    for entry in training_history:
        for name, value in entry.get('metrics', {}).items():
            if name.startswith('p') and '.' in name:
                k, metric = name[1:].split('.', 1)
                peers.setdefault(int(k), {}).setdefault(int(entry['epoch']), {})[metric] = value
    return peers


def best_of(epochs):
    """Each metric's best over the epochs (maxed independently, as released)."""
    rows = list(epochs.values())
    return {name: max(m[name] for m in rows) for name in rows[0]} if rows else {}


def best_line(epochs):
    best = best_of(epochs)
    return ' '.join('Best {}_{}: {:.4f}'.format(RELEASE_NAMES[m], c, best['{}@{}'.format(m, c)])
                    for m in METRICS for c in CUT_OFFS)


def summary_of(model):
    """{'peer k': {'best': each metric's best, 'epochs': {epoch: metrics}}} of a trained model."""
    return {'peer {}'.format(k): {'best': best_of(v), 'epochs': {str(e): m for e, m in sorted(v.items())}}
            for k, v in sorted(peer_history(model.training_history).items())}


def train(params, train_events, test_events, folder, verbose=True, max_batches_per_epoch=0, model='sasrec'):
    """Fit peers of ``model`` on the split with every peer evaluated per epoch; checkpoints in
    ``folder``. Returns the model and its summary (:func:`summary_of`), also written to
    ``folder/summary.json``."""
    from recsys_core.trainer import TrainingOptions
    model = model_class(model)(**dict(params, vocabulary='all'))
    os.makedirs(folder, exist_ok=True)
    options = TrainingOptions(evaluator=PeerEvaluator(test_events, verbose), restore_best=False, checkpoint=folder,
                              metric='mrr', cut_off=5, protocol='last', max_batches_per_epoch=max_batches_per_epoch)
    model.fit(train_events, verbose=verbose, training=options, vocab_data=test_events)
    model.savemodel(os.path.join(folder, 'model.pkl'))
    summary = summary_of(model)
    write_text_atomic(os.path.join(folder, 'summary.json'), json.dumps(summary, indent=1))
    return model, summary


def build_parser():
    p = argparse.ArgumentParser(description='The released PeerCollab protocol: split, peers, per-epoch tests.')
    p.add_argument('data', metavar='DATA', help='user-sequence file (one user per line, items comma-separated)')
    p.add_argument('--out', required=True, metavar='DIR', help='folder of checkpoints, logs and summary.json')
    p.add_argument('--model', choices=MODELS, default='sasrec', help='the peers\' model (Default: sasrec)')
    p.add_argument('-ps', '--parameter_string', metavar='PARAMS', help='the peers\' parameters, e.g. cooperation=pw')
    p.add_argument('--min_distinct', type=int, default=None, help="(Default: 4 if the path contains 'retail', else 0)")
    p.add_argument('--processes', action='store_true', help='one process per peer, exchanging through DIR/exchange')
    p.add_argument('--peer', type=int, default=0, help=argparse.SUPPRESS)   # set by --processes
    p.add_argument('--run_id', default='', help=argparse.SUPPRESS)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from recsys_core import backend
    from recsys_core.params import parse_param_string
    params = dict(parse_param_string(args.parameter_string)) if args.parameter_string else {}
    if {'exchange', 'peer', 'run_id'} & set(params):
        raise UserError('exchange, peer and run_id are set by --processes; leave them out of -ps')
    model = model_class(args.model)(**params)  # parameters checked before anything is read or written
    max_len = getattr(model, 'max_len', BPR_TEST_LENGTH)
    if not max_len:
        raise UserError("The release's split needs max_len > 0 (the rows' length T), not 0")
    if not os.path.isfile(args.data):
        raise UserError('Data file not found: {}'.format(args.data))
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise UserError('Output folder is a file: {}'.format(args.out))
    if args.processes:
        return launch(args, model)
    backend.configure(None, verbose=True)
    train_events, test_events = split_events(args.data, max_len, args.min_distinct, args.model)
    folder = args.out
    if args.peer:
        params = dict(params, exchange=os.path.join(args.out, 'exchange'), peer=args.peer, run_id=args.run_id)
        folder = os.path.join(args.out, 'peer{}'.format(args.peer))
    model, _ = train(params, train_events, test_events, folder, model=args.model)
    for k, epochs in sorted(peer_history(model.training_history).items()):
        print('peer {} {}'.format(k, best_line(epochs)))
    return 0


def _run_id(out, n_peers):
    """The run's id: kept while any peer has a checkpoint to resume from, else a new one."""
    path = os.path.join(out, 'run_id')
    resumable = any(os.path.isfile(os.path.join(out, 'peer{}'.format(k), 'last.ckpt')) for k in range(1, n_peers + 1))
    if resumable and os.path.isfile(path):
        with open(path) as f:
            return f.read().strip()
    run_id = secrets.token_hex(6)
    write_text_atomic(path, run_id + '\n')
    return run_id


def launch(args, model):
    """Run every peer in its own process; if one fails, stop the others (their checkpoints stay)."""
    os.makedirs(args.out, exist_ok=True)
    run_id = _run_id(args.out, model.n_peers)
    base = [sys.executable, '-m', 'peercollab.release', args.data, '--out', args.out, '--run_id', run_id,
            '--model', args.model]
    if args.parameter_string:
        base += ['-ps', args.parameter_string]
    if args.min_distinct is not None:
        base += ['--min_distinct', str(args.min_distinct)]
    procs = {}
    for k in range(1, model.n_peers + 1):
        log = open(os.path.join(args.out, 'peer{}.log'.format(k)), 'w')
        procs[k] = (subprocess.Popen(base + ['--peer', str(k)], stdout=log, stderr=subprocess.STDOUT), log)
        print('peer {}: process {} (log {})'.format(k, procs[k][0].pid, log.name))
    failed = None
    while failed is None and any(p.poll() is None for p, _ in procs.values()):
        failed = next((k for k, (p, _) in procs.items() if p.poll() not in (None, 0)), None)
        time.sleep(0.2)
    failed = failed or next((k for k, (p, _) in procs.items() if p.returncode != 0), None)
    for p, log in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait()
        log.close()
    if failed is not None:
        raise UserError('peer {} stopped with status {} (see {}); the other peers were stopped, every checkpoint is '
                        'kept: run the same command again to resume'.format(
                            failed, procs[failed][0].returncode, os.path.join(args.out, 'peer{}.log'.format(failed))))
    summary = {}
    for k in range(1, model.n_peers + 1):
        with open(os.path.join(args.out, 'peer{}'.format(k), 'summary.json')) as f:
            summary.update(json.load(f))
    write_text_atomic(os.path.join(args.out, 'summary.json'), json.dumps(summary, indent=1))
    for name, entry in sorted(summary.items()):
        print('{} best: {}'.format(name, ' '.join('{} {:.4f}'.format(m, v) for m, v in entry['best'].items())))
    return 0


if __name__ == '__main__':
    run_main(main)
