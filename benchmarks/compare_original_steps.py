"""Step-by-step comparison with the ORIGINAL Theano GRU4Rec (github hidasib/GRU4Rec, a4ed5fb): the
same data, the same initial weights, then the loss of every step and every weight after every step.

    python benchmarks/compare_original_steps.py --orig-git-dir /path/to/GRU4Rec.git \\
        [--orig-ref HEAD | --orig-src-dir /path/to/plain/copy] \\
        [--theano-tool ../shared/tools/theano_original] [--steps 25] [--setting NAME ...] \\
        [--ours-params key=value,...] [--json results.json] [--list]

The original is not part of this repository. It runs unmodified on PyTensor through the theano shim
of --theano-tool (default: ../shared/tools/theano_original next to the repository; see its README):
a pristine export of the original goes to a scratch folder under /tmp, the shim's two CPU
replacements (custom_opt.py, custom_theano_ops.py) are copied beside it, and a small driver run in
a subprocess with the shim on PYTHONPATH wraps ``theano.function`` before importing gru4rec. The
training function (the one with inputs X, Y, M, R) is returned wrapped: after every call it records
the cost, the mini-batch and all of the model's weights (E, Wx/Wh/Wrz/Bh of every layer, Wy, By;
already in this project's names and layout), and after the last step it raises a private exception
that ends ``fit``. The original's code is not changed. Compiled graphs are cached in --compiledir.

This project's GRU4Rec (gru_cell='theano', the original's GRU step) trains the same steps through
its own training plan (benchmarks/step_compare.py). Its random draws are made the original's from
outside the library:
- negative samples (n_sample > 0): the original draws its sample store once, before training
  (MRG31k3p uniforms, binary search in the popularity^alpha CDF), and step t uses row t; the driver
  saves that store and it is written into this project's store, whose rows are used in the same
  order (checked).
- dropout masks: the graph is built with a dropout function whose keep mask comes from the shim's
  bit-exact MRG_RandomStreams (seed 12345) with the original's call order (the sample-store draw
  first, then the input dropout, then each layer's), so the masks are the original's.
So every setting is deterministic and compared step by step.

--ours-params key=value,... adds GRU4Rec parameters on this project's side only (e.g. an option
that changes the optimizer), to re-run the comparison with it.

Prints, per setting: whether batches, item order and initial weights are the same; how many steps
use an item row more than once (where the original's per-occurrence row updates and a per-row
update can differ); the per-step absolute loss difference; the largest relative difference of each
weight (max |ours - original| / max |original|) after step 1 and after the last step, and the
first step where it exceeds the tolerance; for the item-indexed weights, whether the rows that
differ after the first step are among the rows used more than once; and a verdict.
"""
import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import numpy as np
import pandas as pd

from step_compare import (ROOT, add_original_arguments, export_original, load_snapshots, mrg_dropout, original_env,
                          parse_params, rel_diff, train_ours)

STEPS = 25
# Largest relative weight difference / absolute loss difference still counted as float32 rounding.
# Where both sides compute the same updates, losses agree to 2.4e-7 over 25 steps and weights to
# about 1e-5, except the output bias By: it starts at 0, and adagrad's g / sqrt(acc + 1e-6) passes
# the relative rounding error of a small, cancelling gradient sum (g^2 ~ 1e-6) on to the step, so
# single By entries measured up to 1.1e-4 of max |By|. Every difference of substance measured here
# is above 4e-4 by step 2.
WEIGHT_TOL = 3e-4
LOSS_TOL = 1e-5

BASE = dict(loss='cross-entropy', final_act='softmax', layers=[24], batch_size=8, n_sample=0, sample_alpha=0.5,
            learning_rate=0.05, momentum=0.0, lmbd=0.0, embedding=0, constrained_embedding=False, adapt='adagrad',
            adapt_params=[], grad_cap=0.0, bpreg=1.0, logq=0.0, dropout_p_hidden=0.0, dropout_p_embed=0.0,
            n_epochs=1)
# name: (parameters changed from BASE, data set). 'repeat': items recur within a mini-batch;
# 'distinct': every session has its own items, none twice, so with n_sample=0 no item row is used
# twice in a step (the only way to rule repeats out: sampled negatives can always repeat).
SETTINGS = {
    'xe-onehot': (dict(), 'repeat'),
    'xe-onehot-distinct': (dict(), 'distinct'),
    'xe-separate': (dict(embedding=16), 'repeat'),
    'xe-shared': (dict(constrained_embedding=True), 'repeat'),
    'xe-shared-distinct': (dict(constrained_embedding=True), 'distinct'),
    'xe-onehot-2layers': (dict(layers=[24, 16]), 'repeat'),
    'bprmax-elu': (dict(loss='bpr-max', final_act='elu-0.5', bpreg=1.0), 'repeat'),
    'bprmax-linear-shared-2layers': (dict(loss='bpr-max', final_act='linear', bpreg=0.5, constrained_embedding=True,
                                          layers=[24, 24]), 'repeat'),
    'top1max': (dict(loss='top1-max', final_act='linear'), 'repeat'),
    'momentum': (dict(momentum=0.3), 'repeat'),
    'momentum-distinct': (dict(momentum=0.3), 'distinct'),
    'sgd': (dict(adapt=None), 'repeat'),
    'sgd-momentum': (dict(adapt=None, momentum=0.3), 'repeat'),
    'rmsprop': (dict(adapt='rmsprop', adapt_params=[0.9]), 'repeat'),
    'adadelta': (dict(adapt='adadelta', adapt_params=[0.95], learning_rate=1.0), 'repeat'),
    'adam': (dict(adapt='adam', adapt_params=[0.9, 0.999], learning_rate=0.01), 'repeat'),
    'nsample': (dict(n_sample=16), 'repeat'),
    # plain SGD without momentum adds the same per occurrence and per row: the random draws checked alone
    'nsample-sgd': (dict(n_sample=16, adapt=None), 'repeat'),
    'dropout-separate-2layers-distinct': (dict(embedding=16, layers=[24, 24], dropout_p_hidden=0.3,
                                               dropout_p_embed=0.2), 'distinct'),
    'dropout-nsample-shared-sgd': (dict(constrained_embedding=True, n_sample=16, dropout_p_hidden=0.3,
                                        dropout_p_embed=0.2, adapt=None), 'repeat'),
    # L2 and clipping with plain SGD, where nothing else depends on how repeated rows are updated; the
    # cap is below the global gradient norm (about 0.17 at step 1 on 'repeat', 0.06 on 'distinct')
    'lmbd-sgd': (dict(lmbd=0.01, adapt=None), 'repeat'),
    'gradcap-sgd': (dict(grad_cap=0.03, adapt=None), 'repeat'),
    'gradcap-sgd-distinct': (dict(grad_cap=0.03, adapt=None), 'distinct'),
    # the compare_original.py bpr-max setting (its batch and negatives scaled to the small data): every
    # random draw and the per-occurrence update with momentum at once
    'bprmax-shared-momentum-dropout': (dict(loss='bpr-max', final_act='elu-0.5', bpreg=1.9, constrained_embedding=True,
                                            momentum=0.3, dropout_p_embed=0.3, n_sample=64, layers=[32]), 'repeat'),
    'xe-2layers-momentum-dropout-shared': (dict(constrained_embedding=True, layers=[24, 24], momentum=0.1,
                                                dropout_p_hidden=0.2, learning_rate=0.1), 'repeat'),
}


def repeat_data():
    from recsys_core.synthetic import generate_sessions
    data = generate_sessions(n_items=60, n_sessions=120, seed=5)
    data['ItemId'] = data.ItemId.astype(str)
    return data


def distinct_data(n_sessions=120, seed=5):
    """Sessions of 2-8 events, each over its own items (no item in two sessions or twice in one)."""
    rng = np.random.RandomState(seed)
    lengths = rng.randint(2, 9, size=n_sessions)
    items = rng.permutation(lengths.sum()) + 1
    session = np.repeat(np.arange(1, n_sessions + 1), lengths)
    start = np.repeat(np.cumsum(rng.randint(1, 120, size=n_sessions)) + 1_500_000_000, lengths)
    offset = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return pd.DataFrame({'SessionId': session, 'ItemId': items.astype(str), 'Time': start + offset * 30})


# Runs in a subprocess, in the exported original's folder, with the theano shim on PYTHONPATH.
ORIG_DRIVER = r'''
import json, sys
import numpy as np, pandas as pd
import theano

params, path, steps, out, sample_store = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])


class _Stop(Exception):
    """Ends the original's fit() after the last observed step."""


run = {'model': None, 'losses': [], 'batches': [], 'sample_rows': [], 'snaps': {}, 'samples': None}


def weights(g):
    """The original's weights in this project's names and layout (By is (n_items, 1) there)."""
    w = {}
    if g.embedding and not g.constrained_embedding:
        w['E'] = g.E.get_value()
    for i in range(len(g.layers)):
        w['Wx%d' % i], w['Wh%d' % i] = g.Wx[i].get_value(), g.Wh[i].get_value()
        w['Wrz%d' % i], w['Bh%d' % i] = g.Wrz[i].get_value(), g.Bh[i].get_value()
    w['Wy'], w['By'] = g.Wy.get_value(), g.By.get_value()[:, 0]
    return {k: np.array(v, copy=True) for k, v in w.items()}


def observe(train):
    def observed(X, Y, M, R):
        g = run['model']
        if not run['losses']:
            run['snaps']['init'] = weights(g)
            if hasattr(g, 'ST'):
                run['samples'] = np.array(g.ST.get_value())
        if hasattr(g, 'STI'):
            run['sample_rows'].append(int(g.STI.get_value()))
        cost = train(X, Y, M, R)
        run['losses'].append(float(cost))
        run['batches'].append((np.asarray(X).tolist(), np.asarray(Y).tolist(), np.asarray(R).ravel().astype(bool).tolist()))
        run['snaps']['step%d' % len(run['losses'])] = weights(g)
        if len(run['losses']) == steps:
            raise _Stop()
        return cost
    return observed


_function = theano.function


def function(*args, **kwargs):
    f = _function(*args, **kwargs)
    inputs = kwargs.get('inputs', args[0] if args else [])
    if [getattr(v, 'name', None) for v in inputs] == ['X', 'Y', 'M', 'R']:
        return observe(f)  # the training function
    return f


theano.function = function  # before gru4rec's "from theano import function"
import gru4rec

data = pd.read_csv(path, sep='\t', dtype={'ItemId': str})
g = gru4rec.GRU4Rec(**params)
run['model'] = g
try:
    g.fit(data, sample_store=sample_store)
except _Stop:
    pass
arrays = {k + '/' + n: v for k, w in run['snaps'].items() for n, v in w.items()}
if run['samples'] is not None:
    arrays['samples/ST'] = run['samples']
np.savez(out, **arrays)
json.dump({'losses': run['losses'], 'batches': run['batches'], 'sample_rows': run['sample_rows'],
           'items': [str(i) for i in g.itemidmap.index]}, open(out + '.json', 'w'))
'''


def run_original(args, orig_dir, env, params, path, steps, sample_store, workdir):
    out = os.path.join(workdir, 'original.npz')
    res = subprocess.run([args.python, '-c', ORIG_DRIVER, json.dumps(params), path, str(steps), out,
                          str(sample_store)], cwd=orig_dir, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        return None, (res.stderr.strip().splitlines() or ['exit status {}'.format(res.returncode)])[-1]
    snaps = load_snapshots(out)
    samples = snaps.pop('samples', {}).get('ST')
    with open(out + '.json') as f:
        info = json.load(f)
    return (snaps, info, samples), None


def item_rows(params, X, Y_all):
    """The index vector of each item-indexed weight in the original's step (repeats included)."""
    if params['constrained_embedding']:
        return {'Wy': X + Y_all, 'By': Y_all}
    return {'E' if params['embedding'] else 'Wx0': X, 'Wy': Y_all, 'By': Y_all}


def repeated(rows):
    values, counts = np.unique(np.asarray(rows, dtype=np.int64), return_counts=True)
    return set(values[counts > 1].tolist())


def compare(name, params, ours, orig, samples):
    """Print the comparison of one setting; returns its summary."""
    o_snaps, o_info = orig
    n = min(len(ours['losses']), len(o_info['losses']))
    same_batches = [tuple(b) for b in ours['batches'][:n]] == [tuple(b) for b in o_info['batches'][:n]]
    same_items = ours['items'] == o_info['items']
    init_equal = all(np.array_equal(ours['initial'][k], o_snaps['init'][k]) for k in o_snaps['init'])
    rows_note = ''
    if samples is not None:
        rows_note = '; negatives: the original\'s store, rows used {}'.format(
            'the same' if ours['sample_rows'][:n] == o_info['sample_rows'][:n] else 'DIFFERENT')
    print('{}: {} steps ({} by the original); same batches {}, same item order {}; initial weights {}{}'.format(
        name, n, len(o_info['losses']), same_batches, same_items,
        'identical' if init_equal else "DIFFERENT (the original's used)", rows_note))

    # item rows used more than once, per step and weight
    rep = []
    for s in range(n):
        X, Y = o_info['batches'][s][0], o_info['batches'][s][1]
        Y_all = Y + (samples[o_info['sample_rows'][s]].tolist() if samples is not None else [])
        rep.append({k: repeated(v) for k, v in item_rows(params, X, Y_all).items()})
    steps_rep = [s + 1 for s in range(n) if any(rep[s].values())]
    print('  steps using an item row more than once: {}/{}{}'.format(
        len(steps_rep), n, ' (first: step {})'.format(steps_rep[0]) if steps_rep else ''))

    d_loss = [abs(a - b) for a, b in zip(ours['losses'][:n], o_info['losses'][:n])]
    first_loss = next((s + 1 for s, d in enumerate(d_loss) if d > LOSS_TOL), None)
    print('  loss |ours - original| per step: max {:.1e}{}; {}'.format(
        max(d_loss), ', first > {:.0e} at step {}'.format(LOSS_TOL, first_loss) if first_loss else '',
        ' '.join('{:.0e}'.format(d) if d else '0' for d in d_loss)))
    print('  losses (ours / original) at steps 1, {}: {}'.format(n, ', '.join(
        '{:.6f} / {:.6f}'.format(ours['losses'][i], o_info['losses'][i]) for i in (0, n - 1))))

    summary = {'steps': n, 'same_batches': same_batches, 'same_items': same_items, 'initial_identical': init_equal,
               'steps_with_repeated_rows': len(steps_rep), 'loss_abs_diff': d_loss, 'weights': {}}
    first_weight = None
    last = 'step{}'.format(n)
    for k in o_snaps['init']:
        per_step = [rel_diff(ours['snaps']['step%d' % s][k], o_snaps['step%d' % s][k]) for s in range(1, n + 1)]
        first = next((s + 1 for s, d in enumerate(per_step) if d > WEIGHT_TOL), None)
        if first and (first_weight is None or first < first_weight[1]):
            first_weight = (k, first)
        note = ''
        if k in rep[0]:  # which rows differ after the first step
            diff = np.abs(ours['snaps']['step1'][k] - o_snaps['step1'][k]).reshape(len(o_snaps['step1'][k]), -1)
            bad = set(np.nonzero(diff.max(axis=1) > WEIGHT_TOL * max(np.abs(o_snaps['step1'][k]).max(), 1e-12))[0])
            if bad:
                outside = bad - rep[0][k]
                note = '; rows differing after step 1: {}, {} the {} used more than once in it'.format(
                    len(bad), '{} of them NOT among'.format(len(outside)) if outside else 'all among', len(rep[0][k]))
        print('  {:5s} after step 1: {:.1e}, after step {}: {:.1e}{}{}'.format(
            k, per_step[0], n, rel_diff(ours['snaps'][last][k], o_snaps[last][k]),
            '; first > {:.0e} at step {}'.format(WEIGHT_TOL, first) if first else '', note))
        summary['weights'][k] = {'step1': per_step[0], 'last': per_step[-1], 'first_step_over_tol': first,
                                 'per_step': per_step}
    if not (same_batches and same_items):
        verdict = 'DIFFERENT: the mini-batches or the item order differ'
    elif first_loss or first_weight:
        verdict = 'DIFFERENT: first {}{}'.format('weight {} at step {}'.format(*first_weight) if first_weight else 'loss',
                                                 ', loss from step {}'.format(first_loss) if first_loss else '')
    else:
        verdict = 'EQUAL to float32 rounding (weights within {:.0e}, losses within {:.0e})'.format(WEIGHT_TOL, LOSS_TOL)
    print('  verdict: ' + verdict)
    summary['verdict'] = verdict
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_original_arguments(ap)
    ap.add_argument('--steps', type=int, default=STEPS)
    ap.add_argument('--setting', nargs='+', choices=sorted(SETTINGS), default=list(SETTINGS))
    ap.add_argument('--ours-params', default='', help='extra GRU4Rec parameters for this project only: key=value,...')
    ap.add_argument('--json', help='also write the per-setting summaries here')
    ap.add_argument('--list', action='store_true', help='print the settings and exit')
    args = ap.parse_args()
    if args.list:
        for name, (extra, data_kind) in SETTINGS.items():
            print('{:30s} {:9s} {}'.format(name, data_kind, ', '.join('{}={}'.format(k, v) for k, v in extra.items())))
        return
    if not (args.orig_git_dir or args.orig_src_dir):
        ap.error('give --orig-git-dir or --orig-src-dir')
    if args.steps < 2:
        ap.error('--steps must be at least 2')
    ours_extra = parse_params(args.ours_params)
    ours_extra.setdefault('gru_cell', 'theano')

    from recsys_core import backend
    backend.configure('cpu')
    workdir = tempfile.mkdtemp(prefix='gru4rec_orig_steps_')
    orig_dir = os.path.join(workdir, 'original')
    where = export_original(args, orig_dir)
    env = original_env(args)
    datasets = {'repeat': repeat_data(), 'distinct': distinct_data()}
    paths = {}
    for kind, data in datasets.items():
        paths[kind] = os.path.join(workdir, kind + '.tsv')
        data.to_csv(paths[kind], sep='\t', index=False)
        print('data {}: {} events, {} items, {} sessions'.format(kind, len(data), data.ItemId.nunique(),
                                                                 data.SessionId.nunique()))
    print('original: {} (theano shim {}); {} steps; ours: GRU4Rec with {}'.format(
        where, args.theano_tool, args.steps, ', '.join('{}={}'.format(k, v) for k, v in ours_extra.items())))
    print('base: ' + ', '.join('{}={}'.format(k, v) for k, v in BASE.items()))
    print('tolerances: relative weight difference {:.0e}, absolute loss difference {:.0e}\n'.format(WEIGHT_TOL, LOSS_TOL))
    from recsys_core.errors import UserError
    rng_mrg = _load_mrg(args.theano_tool)
    results = {}
    for name in args.setting:
        extra, kind = SETTINGS[name]
        params = dict(BASE, **extra)
        # the store holds exactly the steps' negatives, so neither side refills it
        sample_store = params['n_sample'] * args.steps
        orig, error = run_original(args, orig_dir, env, params, paths[kind], args.steps, sample_store, workdir)
        if orig is None:
            print('{}: the original does not run this setting ({})\n'.format(name, error))
            results[name] = {'error': error}
            continue
        o_snaps, o_info, samples = orig

        def dropout():
            mrg = rng_mrg.MRG_RandomStreams()  # seed 12345, as the original's module-level stream
            if params['n_sample']:  # the original's first draw: the sample store's uniforms
                mrg.uniform((sample_store,))
            return mrg_dropout(mrg)
        ours_params = dict(params, **ours_extra)
        try:
            ours = train_ours(ours_params, datasets[kind], args.steps, samples=samples, dropout=dropout(),
                              sample_store=sample_store)
            if not all(np.array_equal(ours['initial'][k], o_snaps['init'][k]) for k in o_snaps['init']):
                initial = ours['initial']
                ours = train_ours(ours_params, datasets[kind], args.steps, init=o_snaps['init'], samples=samples,
                                  dropout=dropout(), sample_store=sample_store)
                ours['initial'] = initial
        except (UserError, ValueError, TypeError) as e:
            print('{}: ours does not run this setting ({})\n'.format(name, e))
            results[name] = {'error': str(e)}
            continue
        results[name] = compare(name, params, ours, (o_snaps, o_info), samples)
        results[name]['params'] = params
        print()
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'ours_params': ours_extra, 'steps': args.steps, 'settings': results}, f, indent=1, default=str)
    shutil.rmtree(workdir, ignore_errors=True)


def _load_mrg(theano_tool):
    """The shim's MRG_RandomStreams module alone (without the rest of its theano package)."""
    import importlib.util
    path = os.path.join(theano_tool, 'shim', 'theano', 'sandbox', 'rng_mrg.py')
    spec = importlib.util.spec_from_file_location('_theano_shim_rng_mrg', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == '__main__':
    main()
