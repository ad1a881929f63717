"""The Python parts of benchmarks/gpu_run.sh (issue 18): each step runs the project's front end
(run.py) in child processes, parses its output lines and appends its numbers to OUT/summary.json.

    python benchmarks/gpu_run.py STEP --out DIR [--dry-run] [--port PATH]

Steps:
  data         generated data sets (python -m recsys_core.synthetic) under DIR/work
  reference    GRU4Rec, NextItNet and CpRec with the C backend on the CPU (-d cpu)
  agree        the same three with -d cuda; every metric within 2% relative of the reference
  residency    one GRU4Rec training with -d cuda in this process: are the weights, the optimizer
               state and the sample store JAX arrays on the chosen device after training?
  train_speed  GRU4Rec with the RetailRocket best parameters (paramfiles/) on ~30k items, -d cuda,
               then the official PyTorch port (--port, its checkout) on the same data and GPU;
               mb/s of each one's second epoch (the first includes compilation / warm-up)
  eval_speed   evaluation against 1M items with -d cuda: ranked events per second, the pycuda rank
               kernel against the counts inside the jitted graph (RECSYS_CUDA_RANKING=graph); the
               test file is evaluated twice and the second pass is timed (the first compiles)

--dry-run: -d cuda runs on JAX's CPU device (RECSYS_CUDA_DRY_RUN=cpu), on small sizes (below), and
the port runs on the CPU with GPU_RUN_PORT_PYTHON's PyTorch (skipped, and said so, without one).
"""
import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's packages, before any installed copy (the residency step imports them)

# Data sizes: (items, sessions) of recsys_core.synthetic, on the GPU and in the dry run.
SIZES = {'agree': ((2000, 20000), (1000, 8000)),
         'speed': ((32000, 100000), (3000, 3000)),
         'eval_items': (1000000, 20000), 'eval_sessions': (2000, 200)}
TOLERANCE = 0.02  # relative, every metric of -d cuda against the C backend

GRU4REC = ('loss=cross-entropy,final_act=softmax,constrained_embedding=True,layers=64,batch_size=32,n_sample=256,'
           'logq=1.0,momentum=0.2,dropout_p_hidden=0,n_epochs=3')
NEXTITNET = 'dilated_channels=32,dilations=1/2/1/2,batch_size=64,max_len=12,n_epochs=3'
CPREC = NEXTITNET + ',use_softmax_type=Block_Input_Softmax_Inference,use_parametersharing_type=adjacent-block,block=auto'
MODELS = {'gru4rec': (GRU4REC, []), 'nextitnet': (NEXTITNET, ['--protocol', 'last']),
          'cprec': (CPREC, ['--protocol', 'last'])}
METRIC = re.compile(r'\b(Recall|HR|MRR|NDCG)@(\d+): ([\d.]+)')
EPOCH = re.compile(r'Epoch(\d+) --> loss: ([\d.]+).*?\[([\d.]+) mb/s \| (\d+) e/s\]')


class Run:
    def __init__(self, out, dry_run):
        self.out, self.dry_run = Path(out), dry_run
        self.work = Path(os.environ.get('GPU_RUN_WORK', '/tmp/gpu_run_work'))
        self.work.mkdir(parents=True, exist_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)

    def size(self, name):
        return SIZES[name][1 if self.dry_run else 0]

    def env(self, device):
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        env.pop('RECSYS_BACKEND', None)
        env.pop('RECSYS_CUDA_RANKING', None)
        if device == 'cuda' and self.dry_run:
            env['RECSYS_CUDA_DRY_RUN'] = 'cpu'
        return env

    def run(self, log, args, env, timeout=900):
        """Run a command, append its output to OUT/<log>; returns (output, seconds, return code)."""
        t0 = time.time()
        try:
            res = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
            text, rc = res.stdout + res.stderr, res.returncode
        except subprocess.TimeoutExpired as error:
            text, rc = '{}\n{}\nTIMEOUT after {} s'.format(error.stdout or '', error.stderr or '', timeout), 124
        seconds = time.time() - t0
        with open(self.out / log, 'a') as f:
            f.write('$ {}\n{}\n[rc {} in {:.1f} s]\n\n'.format(' '.join(map(str, args)), _quiet(text), rc, seconds))
        return text, seconds, rc

    def record(self, step, result):
        path = self.out / 'summary.json'
        summary = json.loads(path.read_text()) if path.exists() else {}
        summary[step] = result
        path.write_text(json.dumps(summary, indent=1, sort_keys=True))
        print('{}: {}'.format(step, json.dumps(result, sort_keys=True)))
        return result

    def data(self, name, items, sessions):
        d = self.work / '{}_{}_{}'.format(name, items, sessions)
        if not (d / 'test.tsv').exists():
            subprocess.run([sys.executable, '-m', 'recsys_core.synthetic', str(d), '--items', str(items),
                            '--sessions', str(sessions)], cwd=ROOT, check=True)
        return d

    def front_end(self, model, device, data, extra=(), env=None):
        params, protocol = MODELS[model]
        return [sys.executable, 'run.py', str(data / 'train.tsv'), '-t', str(data / 'test.tsv'), '-g', model,
                '-ps', params, '-m', '20', '-d', device] + protocol + list(extra)


def _quiet(text):
    """Output without the JAX/NumPy warning lines (each warning is two lines: the message and the source)."""
    lines, skip = [], False
    for line in text.splitlines():
        if skip:
            skip = False
            continue
        if re.search(r'(Warning|warnings\.warn)', line) and 'ERROR' not in line:
            skip = line.lstrip().startswith('/') or 'Warning:' in line
            continue
        lines.append(line)
    return '\n'.join(lines)


def metrics_of(text):
    return {'{}@{}'.format(name, cut): float(value) for name, cut, value in METRIC.findall(text)}


def epochs_of(text):
    return [{'epoch': int(e), 'loss': float(loss), 'mb_s': float(mb), 'e_s': int(ev)} for e, loss, mb, ev in EPOCH.findall(text)]


def step_data(run):
    sizes = {name: run.size(name) for name in ('agree', 'speed')}
    for name, (items, sessions) in sizes.items():
        run.data(name, items, sessions)
    return run.record('data', {name: list(size) for name, size in sizes.items()})


def step_reference(run):
    data = run.data('agree', *run.size('agree'))
    procs = {m: subprocess.Popen(run.front_end(m, 'cpu', data), cwd=ROOT, env=run.env('cpu'), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for m in MODELS}  # the three in parallel
    result = {}
    for model, proc in procs.items():
        text = proc.communicate(timeout=900)[0]
        with open(run.out / 'agree.log', 'a') as f:
            f.write('$ reference {} (C backend, -d cpu)\n{}\n[rc {}]\n\n'.format(model, _quiet(text), proc.returncode))
        result[model] = {'rc': proc.returncode, 'metrics': metrics_of(text), 'epochs': epochs_of(text)}
    return run.record('reference', result)


def step_agree(run):
    data = run.data('agree', *run.size('agree'))
    summary = json.loads((run.out / 'summary.json').read_text()) if (run.out / 'summary.json').exists() else {}
    reference = summary.get('reference', {})
    result, ok = {}, True
    for model in MODELS:
        text, seconds, rc = run.run('agree.log', run.front_end(model, 'cuda', data), run.env('cuda'))
        got, want = metrics_of(text), reference.get(model, {}).get('metrics', {})
        rel = {k: abs(got[k] - want[k]) / max(want[k], 1e-12) for k in want if k in got}
        agree = rc == 0 and bool(want) and set(got) == set(want) and max(rel.values()) <= TOLERANCE
        ok = ok and agree
        result[model] = {'rc': rc, 'seconds': round(seconds, 1), 'metrics': got, 'reference': want,
                         'relative_difference': {k: round(v, 5) for k, v in rel.items()}, 'within_2pct': agree,
                         'epochs': epochs_of(text), 'start_line': _start_line(text)}
    result['all_within_2pct'] = ok
    return run.record('agree', result)


def _start_line(text):
    return next((line for line in text.splitlines() if line.startswith('Using device')), None)


def step_residency(run):
    """In this process: -d cuda, train a small GRU4Rec, then look at what the compiled functions'
    shared variables hold."""
    if run.dry_run:
        os.environ['RECSYS_CUDA_DRY_RUN'] = 'cpu'
    import pandas as pd
    import pytensor
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.tensor.random.type import RandomType

    from recsys_core import backend
    backend.configure('cuda', verbose=True)
    import jax
    compiled = []
    original = pytensor.function

    def recording(*args, **kwargs):
        fn = original(*args, **kwargs)
        compiled.append(fn)
        return fn
    pytensor.function = recording
    try:
        from gru4rec import GRU4Rec
        data = run.data('agree', *run.size('agree'))
        train = pd.read_csv(data / 'train.tsv', sep='\t', dtype={'ItemId': str})
        model = GRU4Rec()
        model.set_params(**dict(kv.split('=') for kv in GRU4REC.replace('n_epochs=3', 'n_epochs=1').split(',')))
        model.fit(train, verbose=False)
    finally:
        pytensor.function = original
    kinds = {}
    for fn in compiled:
        for inp, container in zip(fn.maker.inputs, fn.input_storage):
            var = inp.variable
            if not isinstance(var, SharedVariable) or isinstance(var.type, RandomType):
                continue
            value = container.storage[0]
            kind = 'jax on {}'.format(','.join(sorted(str(d) for d in value.devices()))) \
                if isinstance(value, jax.Array) else type(value).__name__
            kinds.setdefault(kind, set()).add(var.name or '?')
    default = str(jax.config.jax_default_device)
    on_device = set(kinds) == {'jax on {}'.format(default)}
    return run.record('residency', {'default_device': default, 'shared_values': {k: sorted(v) for k, v in kinds.items()},
                                    'all_on_default_device': on_device})


def _param_file(source, path, n_epochs):
    spec = importlib.util.spec_from_file_location('params', source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = module.gru4rec_params
    params['n_epochs'] = n_epochs
    path.write_text('from collections import OrderedDict\ngru4rec_params = OrderedDict({!r})\n'.format(list(params.items())))
    return params


def step_train_speed(run, port):
    data = run.data('speed', *run.size('speed'))
    ours_pf = run.work / 'retailrocket_ours.py'
    params = _param_file(ROOT / 'paramfiles' / 'retailrocket_bprmax_shared_best.py', ours_pf, 2)
    store = ['-ss', '1000000'] if run.dry_run else []  # the default 10M store is slow to fill on a CPU
    result = {'params': {k: v for k, v in params.items()}, 'data': run.size('speed'), 'sample_store': store[1:] or ['10000000']}
    text, seconds, rc = run.run('speed.log', [sys.executable, 'run.py', str(data / 'train.tsv'), '-pf', str(ours_pf),
                                              '-d', 'cuda'] + store, run.env('cuda'))
    result['ours'] = {'rc': rc, 'seconds': round(seconds, 1), 'epochs': epochs_of(text), 'start_line': _start_line(text)}
    import pandas as pd
    result['items'] = int(pd.read_csv(data / 'train.tsv', sep='\t', usecols=['ItemId']).ItemId.nunique())
    port_dir = Path(port) if port else None
    port_python = os.environ.get('GPU_RUN_PORT_PYTHON') or sys.executable
    if port_dir is None or not (port_dir / 'run.py').exists():
        result['port'] = {'skipped': 'no checkout of the official PyTorch port at {}'.format(port)}
    elif subprocess.run([port_python, '-c', 'import torch, pandas, joblib'], capture_output=True).returncode != 0:
        result['port'] = {'skipped': 'no PyTorch, pandas and joblib for {} (set GPU_RUN_PORT_PYTHON)'.format(port_python)}
    else:
        port_pf = run.work / 'retailrocket_port.py'
        _param_file(port_dir / 'paramfiles' / 'retailrocket_bprmax_shared_best.py', port_pf, 2)
        device = 'cpu' if run.dry_run else 'cuda:0'
        text, seconds, rc = run.run('speed.log', [port_python, str(port_dir / 'run.py'), str(data / 'train.tsv'),
                                                  '-pf', str(port_pf), '-d', device] + store, run.env('cpu'))
        result['port'] = {'rc': rc, 'seconds': round(seconds, 1), 'epochs': epochs_of(text), 'device': device,
                          'python': port_python}
    ours, theirs = _last_mb_s(result['ours']), _last_mb_s(result['port'])
    result['ours_mb_s'], result['port_mb_s'] = ours, theirs
    result['ratio'] = round(ours / theirs, 3) if ours and theirs else None
    result['targets'] = {'mb_s_at_least_2500': bool(ours and ours >= 2500),
                         'at_least_3x_port': bool(result['ratio'] and result['ratio'] >= 3)}
    return run.record('train_speed', result)


def _last_mb_s(entry):
    epochs = entry.get('epochs') or []
    return epochs[-1]['mb_s'] if len(epochs) >= 2 else None


def eval_data(run):
    """Training data in which each of n items occurs (permuted into sessions of 5), and random test
    sessions of 6 events."""
    import pandas as pd
    n_items, n_test = run.size('eval_items'), run.size('eval_sessions')
    d = run.work / 'eval_{}'.format(n_items)
    if (d / 'test.tsv').exists():
        return d, n_items, n_test
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = rng.permutation(n_items) + 1
    n_sessions = n_items // 5
    train = pd.DataFrame({'SessionId': np.repeat(np.arange(n_sessions), 5), 'ItemId': items[:n_sessions * 5],
                          'Time': np.arange(n_sessions * 5)})
    test = pd.DataFrame({'SessionId': np.repeat(np.arange(n_test) + n_sessions, 6),
                         'ItemId': rng.integers(1, n_items + 1, n_test * 6), 'Time': np.arange(n_test * 6) + 10 ** 9})
    train.to_csv(d / 'train.tsv', sep='\t', index=False)
    test.to_csv(d / 'test.tsv', sep='\t', index=False)
    return d, n_items, n_test


def step_eval_speed(run):
    data, n_items, n_test = eval_data(run)
    ranked = n_test * 5  # every event but a session's first is a target
    params = 'loss=bpr-max,final_act=elu-0.5,constrained_embedding=True,layers=224,batch_size=80,n_sample=2048,n_epochs=1'
    result = {'items': n_items, 'ranked_events': ranked}
    for ranking in ('kernel', 'graph'):
        env = run.env('cuda')
        # the dry run has no kernel: there the host counts, through the same substitution
        env['RECSYS_CUDA_RANKING'] = 'host' if run.dry_run and ranking == 'kernel' else ranking
        args = [sys.executable, 'run.py', str(data / 'train.tsv'), '-ps', params, '-d', 'cuda', '--max_steps', '2',
                '-ss', '100000', '-t', str(data / 'test.tsv'), str(data / 'test.tsv'), '-m', '1', '5', '20']
        text, seconds, rc = run.run('eval.log', args, env)
        took = [float(x) for x in re.findall(r'Evaluation took ([\d.]+)s', text)]
        name = env.get('RECSYS_CUDA_RANKING', ranking)
        result[name] = {'rc': rc, 'evaluation_seconds': took, 'metrics': metrics_of(text),
                        'events_per_s': round(ranked / took[-1], 1) if len(took) == 2 and took[-1] > 0 else None,
                        'start_line': _start_line(text)}
    return run.record('eval_speed', result)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('step', choices=['data', 'reference', 'agree', 'residency', 'train_speed', 'eval_speed'])
    parser.add_argument('--out', required=True)
    parser.add_argument('--dry-run', action='store_true')
    parser.add_argument('--port', default=str(ROOT / '.gpu_carry' / 'gru4rec_torch'))
    args = parser.parse_args(argv)
    run = Run(args.out, args.dry_run)
    step = {'data': step_data, 'reference': step_reference, 'agree': step_agree, 'residency': step_residency,
            'train_speed': lambda r: step_train_speed(r, args.port), 'eval_speed': step_eval_speed}[args.step]
    result = step(run)
    failed = (args.step == 'agree' and not result['all_within_2pct']) or \
        (args.step == 'residency' and not result['all_on_default_device'])
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
