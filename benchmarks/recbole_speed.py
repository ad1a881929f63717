"""Training speed of our NextItNet and SASRec against RecBole 1.2's, same data, sizes and CPU, one run
(issue 19, item 6).

    python benchmarks/recbole_speed.py [--rounds 3] [--threads 2 [1]] [--users 4000] [--only NAME ...]
                                       [--steps NAME=N ...] [--venv .bench_venvs/recbole] [--json OUT]

RecBole is not a project dependency: the script makes its own virtual environment (``--venv``,
default .bench_venvs/recbole, ignored by git through .git/info/exclude) with the pins in
``RECBOLE_PINS`` (RecBole 1.2.1 and a CPU PyTorch; RecBole 1.2.1 still uses ``np.float``, so
NumPy < 1.24) and reuses it when it already imports them.

Data: recsys_core.synthetic.generate_sessions over 3000 items (Zipf 1.1, 8 successors per item),
the first ``--users`` sessions that are exactly 50 events long. RecBole gets them as an atomic
``.inter`` file and splits them leave-one-out (``LS valid_and_test``, order TO), so it trains on
the first 48 events of each user: its data augmentation makes 47 (prefix, next item) rows per user,
each prefix right-padded to MAX_ITEM_LIST_LENGTH = 49. Ours get the same first 48 events of each
session (the last two only join the vocabulary, ``vocabulary='all'``, so both have the same items),
max_len = 50: one left-padded window per user, input width 49 as RecBole's, 49 target positions of
which 47 are real (the first two are padding targets, which our models include in the loss as
released). Both train on exactly the same 47 targets per user per epoch.

Sizes (the same on both sides): hidden / embedding 64, batch 256; NextItNet kernel 3, dilations
[1, 4] twice (4 residual blocks, RecBole block_num = 2); SASRec 2 blocks, 1 head, FFN width 64
with ReLU (RecBole's inner_size / hidden_act set to ours), dropout 0 on both; full-softmax
cross-entropy over the item vocabulary everywhere except ``ours/StackNextItNet``, which keeps
StackRec's released sampled softmax (20% of the vocabulary) and per-block scales.

RecBole twice: as shipped (RecBole 1.2.1's sine.py turns on autograd's anomaly mode for the whole
process when its sequential models are imported, which get_model does) and ``-noanomaly``
(torch.autograd.set_detect_anomaly(False) after that import: what a user who notices would do).

Timing: every measurement is a fresh process with one thread count (ours: OMP_NUM_THREADS=N and
RECSYS_THREAD_TUNING=0; RecBole: torch.set_num_threads(N), OMP_NUM_THREADS=N, MKL_NUM_THREADS=N).
Setup (data loading, RecBole's augmentation, our compilation) is outside the timer; the first 3
training steps are warm-up and not timed; then a fixed number of steps (``STEPS``, 10-30 s
each here) is timed, wall clock and the process's CPU time. Ours: each call of the compiled step
inside our own trainer (model.fit); RecBole: its Trainer._train_epoch over the first N batches of
its shuffled TrainDataLoader (collation, forward, backward, Adam, the loss read back as a float).
Rounds alternate every contender, the order rotated from round to round, since this shared VM's
speed drifts; each round records the load average.

Reported per contender: sequences/s (rows of a batch: our windows, RecBole's prefixes), targets/s
(real next-item targets trained: 47 per our window, 1 per RecBole prefix; the targets/s ratio is
also the ratio of the times one epoch over the same events takes) and per round; ratios ours /
RecBole are the median of the per-round ratios.

``--converge`` (issue 21): the time to the same HR@20 instead. Each contender (by default
ours/NextItNet and recbole/NextItNet-noanomaly) trains once, in a fresh process, for ``--budget``
seconds of training, evaluating HR@20 on RecBole's test split (each user's 50th event ranked from
the 49 before it, full ranking over the items) every ``--eval-every`` steps with the evaluation off
the clock; the script prints both curves and the training time each needed to first reach the
lower of the two best HR@20s.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECBOLE_PINS = ['torch==2.13.0', 'recbole==1.2.1', 'numpy==1.23.5', 'scipy==1.15.3', 'pandas==2.3.3']
SESSION_LEN = 50          # events per generated session used
TRAIN_LEN = SESSION_LEN - 2   # RecBole's leave-one-out training part; ours get the same events
MAX_LEN = 50              # ours: window length T (input width T-1 = 49)
RECBOLE_MAX_ITEMS = 49    # RecBole: MAX_ITEM_LIST_LENGTH (input width 49)
BATCH = 256
HIDDEN = 64
WARMUP = 3

NEXTITNET_OURS = dict(dilated_channels=HIDDEN, dilations=[1, 4, 1, 4], kernel_size=3, batch_size=BATCH,
                      max_len=MAX_LEN, vocabulary='all')
SASREC_OURS = dict(hidden=HIDDEN, num_blocks=2, num_heads=1, dropout=0.0, rezero=False, input_layer_norm=True,
                   batch_size=BATCH, max_len=MAX_LEN, vocabulary='all')
RECBOLE_NEXTITNET = dict(embedding_size=HIDDEN, block_num=2, dilations=[1, 4], kernel_size=3, reg_weight=0.0)
RECBOLE_SASREC = dict(n_layers=2, n_heads=1, hidden_size=HIDDEN, inner_size=HIDDEN, hidden_dropout_prob=0.0,
                      attn_dropout_prob=0.0, hidden_act='relu')
# RecBole 1.2.1's recbole/model/sequential_recommender/sine.py calls torch.autograd.set_detect_anomaly(True)
# when the package is imported (get_model imports it), so every RecBole model trains with autograd's
# anomaly mode (a NaN check on every backward output) unless the user turns it off again: the
# 'as shipped' contenders keep it, the '-noanomaly' ones call set_detect_anomaly(False) after import.
CONTENDERS = {
    'ours/NextItNet': dict(side='ours', module='nextitnet', cls='NextItNet',
                           params=dict(NEXTITNET_OURS, is_negsample=False)),
    'recbole/NextItNet': dict(side='recbole', model='NextItNet', params=RECBOLE_NEXTITNET, anomaly=True),
    'ours/StackNextItNet': dict(side='ours', module='stackrec.nextitnet', cls='StackNextItNet',
                                params=dict(NEXTITNET_OURS, is_negsample=True)),
    'recbole/NextItNet-noanomaly': dict(side='recbole', model='NextItNet', params=RECBOLE_NEXTITNET, anomaly=False),
    'ours/SASRec': dict(side='ours', module='stackrec.sasrec', cls='SASRec', params=SASREC_OURS),
    'recbole/SASRec': dict(side='recbole', model='SASRec', params=RECBOLE_SASREC, anomaly=True),
    'recbole/SASRec-noanomaly': dict(side='recbole', model='SASRec', params=RECBOLE_SASREC, anomaly=False),
}
STEPS = {'ours/NextItNet': 10, 'recbole/NextItNet': 30, 'ours/StackNextItNet': 20, 'recbole/NextItNet-noanomaly': 40,
         'ours/SASRec': 10, 'recbole/SASRec': 25, 'recbole/SASRec-noanomaly': 30}
CONVERGE_DEFAULT = ('ours/NextItNet', 'recbole/NextItNet-noanomaly')
CONVERGE_BUDGET = {n: 900.0 if CONTENDERS[n]['side'] == 'recbole' else 150.0 for n in CONTENDERS}
CONVERGE_EVAL_EVERY = {n: 40 if CONTENDERS[n]['side'] == 'recbole' else 1 for n in CONTENDERS}
PAIRS = [(a, b) for a in ('ours/NextItNet', 'ours/StackNextItNet') for b in ('recbole/NextItNet',
                                                                             'recbole/NextItNet-noanomaly')] + [
    ('ours/SASRec', 'recbole/SASRec'), ('ours/SASRec', 'recbole/SASRec-noanomaly')]

# Our model in a fresh process: fit() on the first TRAIN_LEN events of each session; each call of
# the compiled step is timed (wall and CPU); training stops after WARMUP + steps calls.
OURS_SETUP = r'''
import importlib, json, sys, time
import pandas as pd
sys.path.insert(0, {root!r})
from recsys_core import backend; backend.configure('cpu')
task = json.loads({task!r})
events = pd.read_csv(task['events'], sep='\t', dtype={{'ItemId': str}})
pos = events.groupby('SessionId').cumcount()
train, rest = events[pos < task['train_len']], events[pos >= task['train_len']]
base = getattr(importlib.import_module(task['module']), task['cls'])

class Done(Exception):
    pass
'''

OURS_CHILD = OURS_SETUP + r'''
walls, cpus, total = [], [], task['warmup'] + task['steps']

class Timed(base):
    def _training_plan(self, *args, **kwargs):
        plan = super()._training_plan(*args, **kwargs)
        inner = plan.step
        def step(xb):
            self.rows_per_step = len(xb)
            w, c = time.perf_counter(), time.process_time()
            loss = inner(xb)
            walls.append(time.perf_counter() - w); cpus.append(time.process_time() - c)
            if len(walls) == total:
                raise Done(loss)
            return loss
        plan.step = step
        return plan

n_rows = train.SessionId.nunique()
per_epoch = n_rows // task['params']['batch_size']
model = Timed(n_epochs=-(-total // per_epoch), **task['params'])
try:
    model.fit(train, verbose=False, vocab_data=rest)
    raise SystemExit('training ended after {{}} steps, before {{}}'.format(len(walls), total))
except Done as done:
    loss = float(done.args[0])
print('RESULT', json.dumps(dict(steps=task['steps'], wall=sum(walls[task['warmup']:]), cpu=sum(cpus[task['warmup']:]),
      rows_per_step=model.rows_per_step, targets_per_row=task['train_len'] - 1, positions_per_row=model.seq_len - 1,
      vocabulary=model.n_vocab, parameters=int(sum(v.size for v in model.weights.values())) if model.weights else None,
      loss=loss, rows=n_rows)))
'''

# RecBole's model in a fresh process (cwd: a scratch folder, where RecBole writes log/ and
# log_tensorboard/): its Config, dataset, data_preparation, model and Trainer as a user runs them.
RECBOLE_SETUP = r'''
import json, sys, time, warnings
warnings.filterwarnings('ignore')
import torch
task = json.loads({task!r})
torch.set_num_threads(task['threads'])
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed, get_model
from recbole.trainer import Trainer
import recbole.model.sequential_recommender  # noqa: F401 (what get_model imports; sets anomaly mode)
if not task['anomaly']:
    torch.autograd.set_detect_anomaly(False)
cfg = dict(data_path=task['data_path'], USER_ID_FIELD='user_id', ITEM_ID_FIELD='item_id', TIME_FIELD='timestamp',
           load_col={{'inter': ['user_id', 'item_id', 'timestamp']}}, MAX_ITEM_LIST_LENGTH=task['max_items'],
           train_batch_size=task['batch'], eval_batch_size=task['batch'], epochs=1, use_gpu=False, device='cpu',
           show_progress=False, state='ERROR', train_neg_sample_args=None, loss_type='CE', log_wandb=False,
           eval_args={{'split': {{'LS': 'valid_and_test'}}, 'order': 'TO', 'group_by': 'user', 'mode': 'full'}},
           metrics=['Hit'], topk=[20], valid_metric='Hit@20',
           checkpoint_dir='saved', worker=0, reproducibility=False, seed=2020, shuffle=True)
cfg.update(task['params'])
config = Config(model=task['model'], dataset='bench', config_dict=cfg)
torch.set_num_threads(task['threads'])
init_seed(config['seed'], config['reproducibility'])
dataset = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, dataset)
model = get_model(config['model'])(config, train_data._dataset).to(config['device'])
trainer = Trainer(config, model)
'''

RECBOLE_CHILD = RECBOLE_SETUP + r'''
import itertools

class Batches:
    """The first n batches of the loader (a fresh shuffled pass each time)."""
    shuffle = False
    def __init__(self, loader, n):
        self.loader, self.n = loader, n
    def __iter__(self):
        return itertools.islice(iter(self.loader), self.n)
    def __len__(self):
        return self.n

trainer._train_epoch(Batches(train_data, task['warmup']), 0)
w, c = time.perf_counter(), time.process_time()
loss = trainer._train_epoch(Batches(train_data, task['steps']), 1)
wall, cpu = time.perf_counter() - w, time.process_time() - c
print('RESULT', json.dumps(dict(steps=task['steps'], wall=wall, cpu=cpu, rows_per_step=task['batch'], targets_per_row=1,
      positions_per_row=1, vocabulary=int(dataset.item_num), parameters=int(sum(p.numel() for p in model.parameters())),
      loss=float(loss) / task['steps'], rows=len(train_data._dataset), threads=torch.get_num_threads(),
      torch=torch.__version__, anomaly_mode=torch.is_anomaly_enabled())))
'''


# Time to the same HR@20 (issue 21, item 4), each side in a fresh process: train on the same
# events, evaluate HR@20 on the same test split (each user's 50th event from the 49 before it,
# full ranking over the items) every ``eval_every`` steps with the evaluation off the clock, until
# ``budget`` seconds of training. The clock runs from the first training step (setup and
# compilation excluded, as above) and includes everything else: batching, the trainer, the steps.
OURS_CONVERGE = OURS_SETUP + r"""
from recsys_core.evaluation import evaluate_last_items
from recsys_core.trainer import TrainingOptions
clock = dict(start=None, evaluating=0.0, steps=0)
curve = []

class Clocked(base):
    def _training_plan(self, *args, **kwargs):
        plan = super()._training_plan(*args, **kwargs)
        inner = plan.step
        def step(xb):
            if clock['start'] is None:
                clock['start'] = time.perf_counter()
            clock['steps'] += 1
            return inner(xb)
        plan.step = step
        return plan

def evaluator(model):
    t = time.perf_counter()
    trained = t - clock['start'] - clock['evaluating']
    hr = evaluate_last_items(model, events, cut_off=[20], verbose=False).value('hr', 20)
    clock['evaluating'] += time.perf_counter() - t
    curve.append(dict(steps=clock['steps'], seconds=trained, hr20=hr))
    print('CURVE', json.dumps(curve[-1]), flush=True)
    if trained >= task['budget']:
        raise Done()
    return hr

model = Clocked(n_epochs=10 ** 6, **task['params'])
try:
    model.fit(train, verbose=False, vocab_data=rest,
              training=TrainingOptions(evaluator=evaluator, eval_every=task['eval_every'], restore_best=False))
except Done:
    pass
print('RESULT', json.dumps(dict(curve=curve, rows_per_step=task['params']['batch_size'],
      targets_per_row=task['train_len'] - 1, vocabulary=model.n_vocab)))
"""

RECBOLE_CONVERGE = RECBOLE_SETUP + r"""

class Chunk:
    # the next n batches of RecBole's shuffled epochs: a new shuffled pass when one ends
    shuffle = False
    def __init__(self, loader):
        self.loader, self.it, self.n = loader, iter(loader), 0
    def __iter__(self):
        for _ in range(self.n):
            try:
                yield next(self.it)
            except StopIteration:
                self.it = iter(self.loader)
                yield next(self.it)
    def __len__(self):
        return self.n

chunk, trained, steps, curve = Chunk(train_data), 0.0, 0, []
chunk.n = task['eval_every']
while trained < task['budget']:
    t = time.perf_counter()
    trainer._train_epoch(chunk, steps)
    trained += time.perf_counter() - t
    steps += chunk.n
    hr = float(trainer.evaluate(test_data, load_best_model=False, show_progress=False)['hit@20'])
    curve.append(dict(steps=steps, seconds=trained, hr20=hr))
    print('CURVE', json.dumps(curve[-1]), flush=True)
print('RESULT', json.dumps(dict(curve=curve, rows_per_step=task['batch'], targets_per_row=1,
      vocabulary=int(dataset.item_num), torch=torch.__version__, anomaly_mode=torch.is_anomaly_enabled())))
"""


def venv_python(venv):
    return os.path.join(venv, 'bin', 'python')


def ensure_venv(venv, log=print):
    """The RecBole environment: made (python -m venv + pip install RECBOLE_PINS) unless it imports them."""
    py = venv_python(venv)
    check = ('import importlib.metadata as m, sys; want = dict(p.split("==") for p in sys.argv[1:]); '
             'sys.exit(any(m.version(k).split("+")[0] != v for k, v in want.items()))')
    if os.path.exists(py) and subprocess.run([py, '-c', check] + RECBOLE_PINS, capture_output=True).returncode == 0:
        return py
    log('making the RecBole environment in {} ({})'.format(venv, ' '.join(RECBOLE_PINS)))
    if not os.path.exists(py):
        subprocess.run([sys.executable, '-m', 'venv', venv], check=True)
    out = subprocess.run([py, '-m', 'pip', 'install', '-q', '--disable-pip-version-check'] + RECBOLE_PINS,
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit('pip could not install RecBole:\n' + (out.stdout + out.stderr)[-4000:])
    imp = subprocess.run([py, '-c', 'import recbole.data, recbole.trainer, recbole.model.sequential_recommender'],
                         capture_output=True, text=True)
    if imp.returncode:
        raise SystemExit('RecBole does not import:\n' + imp.stderr[-4000:])
    return py


def make_data(workdir, users, seed=7):
    """Sessions of exactly SESSION_LEN events: our TSV and RecBole's atomic .inter file."""
    sys.path.insert(0, ROOT)
    from recsys_core.synthetic import generate_sessions
    data = generate_sessions(n_items=3000, n_sessions=int(users * 1.15) + 100, seed=seed, mean_length=1000)
    size = data.groupby('SessionId').SessionId.transform('size')
    data = data[size == SESSION_LEN]
    keep = data.SessionId.unique()[:users]
    if len(keep) < users:
        raise SystemExit('only {} generated sessions have {} events'.format(len(keep), SESSION_LEN))
    data = data[data.SessionId.isin(keep)]
    events = os.path.join(workdir, 'events.tsv')
    data.to_csv(events, sep='\t', index=False)
    os.makedirs(os.path.join(workdir, 'recbole', 'bench'), exist_ok=True)
    with open(os.path.join(workdir, 'recbole', 'bench', 'bench.inter'), 'w') as f:
        f.write('user_id:token\titem_id:token\ttimestamp:float\n')
        data[['SessionId', 'ItemId', 'Time']].to_csv(f, sep='\t', index=False, header=False)
    return events, os.path.join(workdir, 'recbole'), data.ItemId.nunique()


def thread_env(threads):
    env = {k: v for k, v in os.environ.items() if k not in (
        'OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'RECSYS_THREAD_TUNING', 'OMP_WAIT_POLICY',
        'GOMP_SPINCOUNT')}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), RECSYS_THREAD_TUNING='0')
    return env


def run_child(name, threads, paths, recbole_py, workdir, task, converge=False):
    """A contender's child (the speed or the convergence kind) in a fresh process: its RESULT dict plus the
    process's wall time."""
    spec = CONTENDERS[name]
    task = dict(task, threads=threads, params=spec['params'])
    if spec['side'] == 'ours':
        task.update(events=paths['events'], train_len=TRAIN_LEN, module=spec['module'], cls=spec['cls'])
        template = OURS_CONVERGE if converge else OURS_CHILD
        cmd, cwd = [sys.executable, '-c', template.format(root=ROOT, task=json.dumps(task))], ROOT
    else:
        task.update(data_path=paths['recbole'], max_items=RECBOLE_MAX_ITEMS, batch=BATCH, model=spec['model'],
                    anomaly=spec['anomaly'])
        cwd = tempfile.mkdtemp(prefix='run_', dir=workdir)
        template = RECBOLE_CONVERGE if converge else RECBOLE_CHILD
        cmd = [recbole_py, '-c', template.format(task=json.dumps(task))]
    for attempt in range(3):  # PyTensor's compile-cache lock is shared with other processes on this machine
        t0 = time.time()
        out = subprocess.run(cmd, capture_output=True, text=True, env=thread_env(threads), cwd=cwd)
        if 'could not be acquired' not in out.stderr:
            break
        print('{}: PyTensor compile lock timed out, again'.format(name), flush=True)
    lines = [l for l in out.stdout.splitlines() if l.startswith('RESULT ')]
    if out.returncode or not lines:
        raise SystemExit('{} failed (exit {}):\n{}'.format(name, out.returncode, (out.stdout + out.stderr)[-4000:]))
    result = json.loads(lines[-1][len('RESULT '):])
    result['process_seconds'] = time.time() - t0
    return result


def measure(name, threads, steps, paths, recbole_py, workdir):
    """One timed run of a contender (the speed kind): sequences and targets per second of wall and CPU time."""
    result = run_child(name, threads, paths, recbole_py, workdir, dict(steps=steps, warmup=WARMUP))
    result['seq_per_s'] = result['steps'] * result['rows_per_step'] / result['wall']
    result['targets_per_s'] = result['seq_per_s'] * result['targets_per_row']
    result['seq_per_cpu_s'] = result['steps'] * result['rows_per_step'] / result['cpu']
    result['targets_per_cpu_s'] = result['seq_per_cpu_s'] * result['targets_per_row']
    return result


def first_reaching(curve, target):
    """(steps, training seconds) of the first evaluation at or above ``target``; None if none."""
    for point in curve:
        if point['hr20'] >= target:
            return point['steps'], point['seconds']
    return None


def converge(names, threads, paths, recbole_py, workdir, budget, eval_every, json_path):
    """Each contender trained once (one after the other) with HR@20 on the test split along the way; then
    the time each took to first reach the same HR@20: the lower of the contenders' best HR@20s."""
    curves = {}
    for n in names:
        task = dict(budget=budget[n], eval_every=eval_every[n])
        res = run_child(n, threads, paths, recbole_py, workdir, task, converge=True)
        curves[n] = res
        per_step = res['rows_per_step'] * res['targets_per_row']
        print('{} ({} threads, HR@20 every {} steps):'.format(n, threads, eval_every[n]))
        for p in res['curve']:
            print('  step {:6d}  {:9.1f} s trained  {:10,d} targets  HR@20 {:.4f}'.format(
                p['steps'], p['seconds'], p['steps'] * per_step, p['hr20']), flush=True)
    target = min(max(p['hr20'] for p in r['curve']) for r in curves.values())
    print('\nthe same HR@20: {:.4f} (the lower of the best HR@20s)'.format(target))
    reached = {}
    for n, r in curves.items():
        reached[n] = first_reaching(r['curve'], target)
        best = max(r['curve'], key=lambda p: p['hr20'])
        print('{:30s} best HR@20 {:.4f} after {:.1f} s; reached {:.4f} after {}'.format(
            n, best['hr20'], best['seconds'], target,
            '{:.1f} s of training ({} steps)'.format(reached[n][1], reached[n][0]) if reached[n] else 'never'))
    ours = [n for n in names if CONTENDERS[n]['side'] == 'ours']
    theirs = [n for n in names if CONTENDERS[n]['side'] == 'recbole']
    for a in ours:
        for b in theirs:
            if reached[a] and reached[b]:
                print('{} / {}: {:.1f}x less training time to HR@20 {:.4f}'.format(a, b, reached[b][1] / reached[a][1],
                                                                                   target))
    if json_path:
        with open(json_path, 'w') as f:
            json.dump(dict(target=target, threads=threads, curves=curves), f, indent=1)
    return curves


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--threads', type=int, nargs='+', default=[2])
    ap.add_argument('--users', type=int, default=4000)
    ap.add_argument('--only', nargs='+', choices=sorted(CONTENDERS), default=list(CONTENDERS))
    ap.add_argument('--steps', nargs='*', default=[], metavar='NAME=N', help='timed steps of a contender')
    ap.add_argument('--venv', default=os.path.join(ROOT, '.bench_venvs', 'recbole'))
    ap.add_argument('--json', help='write every measurement to this file')
    ap.add_argument('--converge', action='store_true',
                    help='time to the same HR@20 instead of the speed rounds (NextItNet pair by default)')
    ap.add_argument('--budget', nargs='*', default=[], metavar='NAME=S', help='--converge: seconds of training')
    ap.add_argument('--eval-every', nargs='*', default=[], metavar='NAME=N', help='--converge: steps between HR@20s')
    args = ap.parse_args()

    def per_contender(pairs, defaults, kind):
        out = dict(defaults)
        for s in pairs:
            k, _, v = s.partition('=')
            if k not in CONTENDERS or not v:
                ap.error('{}: expected NAME=VALUE with NAME one of {}'.format(s, ', '.join(CONTENDERS)))
            out[k] = kind(v)
        return out
    steps = per_contender(args.steps, STEPS, int)
    budget = per_contender(args.budget, CONVERGE_BUDGET, float)
    eval_every = per_contender(args.eval_every, CONVERGE_EVAL_EVERY, int)
    if args.converge and '--only' not in sys.argv:
        args.only = list(CONVERGE_DEFAULT)
    names = [n for n in CONTENDERS if n in args.only]
    recbole_py = ensure_venv(args.venv) if any(CONTENDERS[n]['side'] == 'recbole' for n in names) else None
    if recbole_py:
        print('RecBole environment: ' + subprocess.run(
            [recbole_py, '-c', 'import recbole, torch, numpy, scipy, pandas, sys; print("Python", sys.version.split()[0],'
             ' "RecBole", recbole.__version__, "torch", torch.__version__, "numpy", numpy.__version__, "scipy", '
             'scipy.__version__, "pandas", pandas.__version__)'], capture_output=True, text=True).stdout.strip())
    workdir = tempfile.mkdtemp(prefix='recbole_speed_')
    events, recbole_dir, n_items = make_data(workdir, args.users)
    paths = dict(events=events, recbole=recbole_dir)
    print('data: {} users x {} events ({} distinct items); trained: the first {} events of each, {} targets per user; '
          'batch {}, hidden {}; cores {}; timed steps {}'.format(
              args.users, SESSION_LEN, n_items, TRAIN_LEN, TRAIN_LEN - 1, BATCH, HIDDEN, os.cpu_count(),
              ', '.join('{} {}'.format(n, steps[n]) for n in names)), flush=True)
    if args.converge:
        return converge(names, args.threads[0], paths, recbole_py, workdir, budget, eval_every, args.json)
    results = {(n, t): [] for n in names for t in args.threads}
    log = []
    for r in range(args.rounds):
        for t in args.threads:
            order = names[r % len(names):] + names[:r % len(names)]
            load = os.getloadavg()
            for n in order:
                res = measure(n, t, steps[n], paths, recbole_py, workdir)
                res.update(name=n, threads=t, round=r + 1, load_before=load[0])
                results[n, t].append(res)
                log.append(res)
                print('round {} threads {} {:22s} {:7.1f} seq/s {:8.0f} targets/s  ({:.1f} s wall, {:.1f} s CPU for {} '
                      'steps; process {:.0f} s; load {:.2f})'.format(
                          r + 1, t, n, res['seq_per_s'], res['targets_per_s'], res['wall'], res['cpu'], res['steps'],
                          res['process_seconds'], os.getloadavg()[0]), flush=True)
    print()
    print('{:22s} {:>3s} {:>10s} {:>12s} {:>12s} {:>14s} {:>10s} {:>8s}'.format(
        'contender', 'thr', 'seq/s', 'targets/s', 'seq/CPU-s', 'targets/CPU-s', 'params', 'vocab'))
    for (n, t), rs in results.items():
        print('{:22s} {:>3d} {:10.1f} {:12.0f} {:12.1f} {:14.0f} {:>10,} {:>8d}'.format(
            n, t, np.median([x['seq_per_s'] for x in rs]), np.median([x['targets_per_s'] for x in rs]),
            np.median([x['seq_per_cpu_s'] for x in rs]), np.median([x['targets_per_cpu_s'] for x in rs]),
            rs[0]['parameters'], rs[0]['vocabulary']))
    print()
    for a, b in PAIRS:
        for t in args.threads:
            if (a, t) not in results or (b, t) not in results:
                continue
            ra, rb = results[a, t], results[b, t]
            ratio = {k: [x[k] / y[k] for x, y in zip(ra, rb)] for k in ('seq_per_s', 'targets_per_s', 'targets_per_cpu_s')}
            print('{} / {} ({} threads): sequences/s {:.2f}x, targets/s {:.2f}x, targets per CPU-s {:.2f}x '
                  '(median of per-round ratios; per round {})'.format(
                      a, b, t, np.median(ratio['seq_per_s']), np.median(ratio['targets_per_s']),
                      np.median(ratio['targets_per_cpu_s']),
                      ', '.join('{:.2f}/{:.2f}'.format(s, g) for s, g in zip(ratio['seq_per_s'], ratio['targets_per_s']))))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(log, f, indent=1)


if __name__ == '__main__':
    main()
