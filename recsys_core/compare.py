"""Several models on one split, evaluated the same way: one table and one plot (``compare.py``).

    python compare.py CONFIG.json [--only NAME ...]

CONFIG (JSON; docs/compare.md has the fields and examples in ``comparisons/``):

    {"title": "...", "train": "TRAIN.tsv", "test": "TEST.tsv", "valid": null,
     "protocol": "next" | "last", "negatives": 0, "negatives_seed": 42, "cut_offs": [20],
     "seeds": [1, 2, 3], "out": "runs/NAME", "primary": "mrr@20",
     "published": [{"name": "SR-GNN (paper)", "metrics": {"recall@20": 0.5073}, "source": "..."}],
     "models": [{"name": "GRU4Rec", "model": "gru4rec", "paramfile": "paramfiles/x.py",
                 "params": "n_epochs=5", "seeded": true, "max_steps": 0}, ...]}

Instead of "train"/"valid"/"test", ``"split": {"kind": "leave-one-out", "events": "EVENTS.tsv",
"min_item_count": 5}`` makes the split (recsys_core.splits) into OUT/split once and uses its files
(train and test; "valid": true adds its validation file). A model's
``"paropt": {"space": "SPACE.json", "fixed": "k=v,...", "trials": 20, "fraction": 0.1}`` tunes
it first: paropt.py on a last-sessions split of the training file (the last ``fraction`` of its
sessions to validate on; OUT/paropt, resumable), then trains with the best parameters found
("params" and "paramfile" over them, e.g. more epochs than the trials had).

Paths are relative to the config file. Each model trains once per seed (its ``seed`` parameter;
a model without one trains once), with its checkpoints in OUT/runs/NAME/seed-S/ (with a "valid"
file, evaluated on it after every epoch under the protocol's full ranking, ending with the best
epoch's weights by the primary metric), and is evaluated on the test file under the protocol; OUT/runs/.../result.json holds the numbers. Running the
command again reads finished runs, resumes interrupted ones from their checkpoints and trains the
rest. OUT/table.md and OUT/table.csv hold the mean and spread over seeds of every metric at every
cut-off, the training and evaluation seconds and the parameter count, with the published rows;
OUT/plot.png the primary metric against the training time.
"""
import csv
import io
import json
import os
import re
import time

import numpy as np

from .atomic import write_png_atomic, write_text_atomic
from .errors import UserError
from .eval_result import METRIC_NAMES, PROTOCOLS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODEL_FIELDS = {'name', 'model', 'params', 'paramfile', 'seeded', 'max_steps', 'paropt'}
CONFIG_FIELDS = {'title', 'train', 'test', 'valid', 'split', 'protocol', 'negatives', 'negatives_seed', 'cut_offs',
                 'seeds', 'out', 'primary', 'published', 'models', 'keys', 'notes'}
PAROPT_FIELDS = {'space', 'fixed', 'trials', 'fraction', 'primary_metric', 'measure'}


class ModelSpec:
    """One row of the comparison: a model class and its parameters."""

    def __init__(self, entry, folder):
        from .cli import model_class
        from .params import load_param_file, parse_param_string
        unknown = set(entry) - MODEL_FIELDS
        if unknown:
            raise UserError('Model entry {!r} has unknown field(s): {}'.format(entry.get('name'), ', '.join(sorted(unknown))))
        if not entry.get('name') or not entry.get('model'):
            raise UserError('Every model entry needs a "name" and a "model" (a -g module such as gru4rec)')
        self.name, self.module = str(entry['name']), entry['model']
        self.cls = model_class(self.module)
        params = {}
        if entry.get('paramfile'):
            path = os.path.join(folder, entry['paramfile'])
            if not os.path.isfile(path):
                raise UserError('Parameter file of {} not found: {}'.format(self.name, path))
            params.update(load_param_file(path))
        extra = entry.get('params') or {}
        params.update(parse_param_string(extra) if isinstance(extra, str) else extra)
        self.params = params
        names = {p.name for p in self.cls.PARAMS}
        self.seeded = bool(entry.get('seeded', 'seed' in names)) and 'seed' in names
        self.max_steps = int(entry.get('max_steps', 0))
        self.paropt = entry.get('paropt')
        if self.paropt is not None:
            unknown = set(self.paropt) - PAROPT_FIELDS
            if unknown or 'space' not in self.paropt:
                raise UserError('The "paropt" of {} needs "space" and takes only {} (not {})'.format(
                    self.name, ', '.join(sorted(PAROPT_FIELDS)), ', '.join(sorted(unknown)) or '-'))
            self.paropt = dict(self.paropt, space=os.path.join(folder, self.paropt['space']))
            if not os.path.isfile(self.paropt['space']):
                raise UserError('Parameter space of {} not found: {}'.format(self.name, self.paropt['space']))
            fixed = self.paropt.get('fixed') or ''
            self.paropt['fixed'] = parse_param_string(fixed) if fixed else {}
            self.params = dict(self.paropt['fixed'], **params)  # what is checked now; tuned values come later
        self.explicit = params  # over the tuned values: e.g. more epochs than the trials had
        self.new_model(None)  # the parameters are checked before anything is trained or written

    def new_model(self, seed):
        model = self.cls()
        model.set_params(verbose=False, **self.params)
        if seed is not None and self.seeded:
            model.set_params(verbose=False, seed=seed)
        return model

    def slug(self):
        return re.sub(r'[^A-Za-z0-9_.-]+', '_', self.name).strip('_') or 'model'

    def tune(self, comparison):
        """Run (or resume) this model's paropt study; then train with its best parameters."""
        import subprocess
        import sys
        from .params import load_param_file
        from .splits import last_sessions
        from .tuning.trial_process import join_params
        opts = self.paropt
        folder = os.path.join(comparison.out, 'paropt')
        train_part, valid_part = (os.path.join(folder, 'split', n) for n in ('train.tsv', 'valid.tsv'))
        if not os.path.isfile(valid_part):
            from .atomic import write_tsv_atomic
            from .data import load_events
            train, valid = last_sessions(load_events(comparison.train, verbose=False, **comparison.keys),
                                         float(opts.get('fraction', 0.1)))
            os.makedirs(os.path.dirname(train_part), exist_ok=True)
            write_tsv_atomic(train, train_part)
            write_tsv_atomic(valid, valid_part)
        study = 'compare-' + self.slug()
        cmd = [sys.executable, os.path.join(ROOT, 'paropt.py'), train_part, valid_part, '-g', self.module,
               '-opf', opts['space'], '-nt', str(int(opts.get('trials', 20))), '-m', str(int(opts.get('measure', 20))),
               '-pm', opts.get('primary_metric', 'mrr'), '--protocol', comparison.protocol, '-o', folder,
               '--study-name', study, '--seed', '1', '--no-final-eval']
        if opts['fixed']:
            cmd += ['-fp', join_params(opts['fixed'])]
        print('{}: tuning with paropt ({} trials; log {})'.format(self.name, opts.get('trials', 20),
                                                                 os.path.join(folder, study + '.log')), flush=True)
        with open(os.path.join(folder, study + '.log'), 'a') as log:
            if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
                raise UserError('paropt failed for {} (see {})'.format(self.name, log.name))
        self.params = dict(load_param_file(os.path.join(folder, study, 'best_params.py')), **self.explicit)
        self.paropt = None


class Comparison:
    """A parsed, checked configuration."""

    def __init__(self, path):
        if not os.path.isfile(path):
            raise UserError('Comparison file not found: {}'.format(path))
        try:
            with open(path) as f:
                config = json.load(f)
        except ValueError as e:
            raise UserError('{} is not valid JSON: {}'.format(path, e)) from None
        if not isinstance(config, dict):
            raise UserError('{} must hold one JSON object'.format(path))
        unknown = set(config) - CONFIG_FIELDS
        if unknown:
            raise UserError('{} has unknown field(s): {}'.format(path, ', '.join(sorted(unknown))))
        folder = os.path.dirname(os.path.abspath(path))
        at = lambda p: None if p is None else os.path.normpath(os.path.join(folder, p))
        for key in (('out', 'models', 'protocol') if config.get('split') else ('train', 'test', 'out', 'models',
                                                                               'protocol')):
            if not config.get(key):
                raise UserError('{} needs "{}"'.format(path, key))
        self.title = config.get('title', os.path.splitext(os.path.basename(path))[0])
        self.out = at(config['out'])
        self.split = config.get('split')
        if self.split is None:
            self.train, self.test, self.valid = at(config['train']), at(config['test']), at(config.get('valid'))
        else:
            self.train = self.test = self.valid = None
        for name, p in (('train', self.train), ('test', self.test), ('valid', self.valid)):
            if p is not None and not os.path.isfile(p):
                raise UserError('The {} file of {} was not found: {}'.format(name, path, p))
        self.protocol = config['protocol']
        if self.protocol not in PROTOCOLS:
            raise UserError('"protocol" must be one of {}, not {!r}'.format(', '.join(PROTOCOLS), self.protocol))
        self.negatives, self.negatives_seed = int(config.get('negatives', 0)), int(config.get('negatives_seed', 42))
        if self.negatives and self.protocol != 'last':
            raise UserError('"negatives" samples the candidates of the last-item protocol: set "protocol": "last"')
        self.cut_offs = [int(c) for c in config.get('cut_offs', [20])]
        if not self.cut_offs or min(self.cut_offs) < 1:
            raise UserError('"cut_offs" must be positive integers')
        self.seeds = [int(s) for s in config.get('seeds', [1])]
        self.keys = dict(dict(session_key='SessionId', item_key='ItemId', time_key='Time'), **config.get('keys', {}))
        metrics = ('recall', 'mrr') if self.protocol == 'next' else ('hr', 'mrr', 'ndcg')
        self.metrics = ['{}@{}'.format(m, c) for c in self.cut_offs for m in metrics]
        self.primary = config.get('primary', self.metrics[1])
        if self.primary not in self.metrics:
            raise UserError('"primary" must be one of the measured {}, not {!r}'.format(', '.join(self.metrics),
                                                                                      self.primary))
        self.published = config.get('published', [])
        self.notes = config.get('notes', [])
        self.models = [ModelSpec(m, folder) for m in config['models']]
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise UserError('Model names must be unique (repeated: {})'.format(
                ', '.join(sorted({n for n in names if names.count(n) > 1}))))
        if self.split is not None:  # the last step: everything else is checked before a file is written
            self._prepare_split(at(self.split.get('events')), config)

    def _prepare_split(self, events, config):
        """The split's files under OUT/split, made once (recsys_core.splits)."""
        from .atomic import write_tsv_atomic
        from .splits import leave_one_out
        if self.split.get('kind') != 'leave-one-out' or not events:
            raise UserError('"split" takes {"kind": "leave-one-out", "events": FILE, "min_item_count": N}')
        if not os.path.isfile(events):
            raise UserError('The events file of the split was not found: {}'.format(events))
        folder = os.path.join(self.out, 'split')
        files = {n: os.path.join(folder, n + '.tsv') for n in ('train', 'valid', 'test')}
        if not all(os.path.isfile(f) for f in files.values()):
            from .data import load_events
            print('Splitting {} (leave-one-out) into {}'.format(events, folder), flush=True)
            parts = leave_one_out(load_events(events, verbose=False)[['SessionId', 'ItemId', 'Time']],
                                  int(self.split.get('min_item_count', 5)))
            os.makedirs(folder, exist_ok=True)
            for name, part in zip(('train', 'valid', 'test'), parts):
                write_tsv_atomic(part, files[name])
        self.train, self.test = files['train'], files['test']
        self.valid = files['valid'] if config.get('valid') else None

    def protocol_name(self):
        if self.protocol == 'next':
            return 'every next event of the test sessions, ranked against all items'
        against = '{} sampled negatives (seed {})'.format(self.negatives, self.negatives_seed) if self.negatives \
            else 'all items'
        return 'the last item of each test sequence, ranked against {}'.format(against)

    def run_spec(self, model, seed):
        """What a run's result depends on: a finished run is reused only if this is unchanged."""
        return {'model': model.module, 'params': {k: repr(v) for k, v in sorted(model.params.items())},
                'seed': seed if model.seeded else None, 'max_steps': model.max_steps,
                'data': [os.path.abspath(p) if p else None for p in (self.train, self.valid, self.test)],
                'protocol': self.protocol, 'negatives': self.negatives, 'negatives_seed': self.negatives_seed,
                'cut_offs': self.cut_offs}


def parameter_count(model):
    weights = getattr(model, 'weights', None)
    return int(sum(np.size(v) for v in weights.values())) if weights else None


def run_one(comparison, spec, seed, data, label):
    """Train (or resume) and evaluate one model with one seed; its result dict."""
    from .evaluation import evaluate
    from .trainer import TrainingOptions
    if spec.paropt is not None:
        spec.tune(comparison)
    folder = os.path.join(comparison.out, 'runs', spec.slug(), 'seed-{}'.format(seed) if spec.seeded else 'once')
    result_path = os.path.join(folder, 'result.json')
    wanted = comparison.run_spec(spec, seed)
    if os.path.isfile(result_path):
        with open(result_path) as f:
            result = json.load(f)
        if result.get('spec') != wanted:
            raise UserError('{} was made with other settings than the comparison now gives; remove the folder or give '
                            'another "out"'.format(folder))
        print('{} done earlier: {} {:.4f}'.format(label, comparison.primary, result['metrics'][comparison.primary]),
              flush=True)
        return result
    os.makedirs(folder, exist_ok=True)
    checkpoint = os.path.join(folder, 'checkpoint')
    resuming = os.path.isfile(os.path.join(checkpoint, 'last.ckpt'))
    print('{} {}...'.format(label, 'resuming' if resuming else 'training'), flush=True)
    model = spec.new_model(seed)
    fit_args = {}
    from .model import NeuralRecommender
    if isinstance(model, NeuralRecommender):
        metric, cut_off = comparison.primary.split('@')
        fit_args['training'] = TrainingOptions(checkpoint=checkpoint, max_steps=spec.max_steps, keys=comparison.keys,
                                               valid=data.get('valid'), protocol=comparison.protocol, metric=metric,
                                               cut_off=int(cut_off))
    if model.uses_vocab_data():
        fit_args['vocab_data'] = data['test']
    t0 = time.time()
    model.fit(data['train'], verbose=False, **fit_args)
    wall = time.time() - t0
    stats = getattr(model, 'epoch_stats', None)
    train_seconds = sum(s['seconds'] for s in stats) if stats else wall  # the trainer's clock counts resumed epochs
    t0 = time.time()
    res = evaluate(model, data['test'], protocol=comparison.protocol, cut_off=comparison.cut_offs, verbose=False,
                   negatives=comparison.negatives, negatives_seed=comparison.negatives_seed, **comparison.keys)
    eval_seconds = time.time() - t0
    metrics = {'{}@{}'.format(m, c): float(res.value(m, c)) for m in res.metrics for c in comparison.cut_offs}
    result = {'name': spec.name, 'seed': seed if spec.seeded else None, 'metrics': metrics,
              'train_seconds': train_seconds, 'eval_seconds': eval_seconds, 'parameters': parameter_count(model),
              'protocol': res.protocol_name(), 'spec': wanted}
    write_text_atomic(result_path, json.dumps(result, indent=1))
    print('{} {} {:.4f} (training {:.0f} s, evaluation {:.0f} s)'.format(
        label, comparison.primary, metrics[comparison.primary], train_seconds, eval_seconds), flush=True)
    return result


def summary_rows(comparison, results):
    """One row per model: mean and spread of each metric over its runs, the seconds, the parameters."""
    rows = []
    for spec in comparison.models:
        runs = results.get(spec.name, [])
        if not runs:
            continue
        row = {'model': spec.name, 'runs': len(runs)}
        for m in comparison.metrics:
            values = [r['metrics'][m] for r in runs]
            row[m] = float(np.mean(values))
            row[m + ' sd'] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        row['train s'] = float(np.mean([r['train_seconds'] for r in runs]))
        row['eval s'] = float(np.mean([r['eval_seconds'] for r in runs]))
        row['parameters'] = runs[0]['parameters']
        rows.append(row)
    return rows


def _metric_header(metric):
    name, cut = metric.split('@')
    return '{}@{}'.format(METRIC_NAMES[name], cut)


def markdown_table(comparison, rows):
    head = ['model', 'runs'] + [_metric_header(m) for m in comparison.metrics] + ['training s', 'evaluation s',
                                                                                  'parameters']
    lines = ['# {}'.format(comparison.title), '',
             'Protocol: {}. Mean (and standard deviation over the runs) of each metric.'.format(
                 comparison.protocol_name()), '',
             '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for row in rows:
        cells = [row['model'], str(row['runs'])]
        for m in comparison.metrics:
            sd = row[m + ' sd']
            cells.append('{:.4f}'.format(row[m]) + (' ± {:.4f}'.format(sd) if sd is not None else ''))
        cells += ['{:.0f}'.format(row['train s']), '{:.1f}'.format(row['eval s']),
                  '{:,}'.format(row['parameters']) if row['parameters'] else '-']
        lines.append('| ' + ' | '.join(cells) + ' |')
    for pub in comparison.published:
        cells = ['{} (published)'.format(pub['name']), '-']
        cells += ['{:.4f}'.format(pub['metrics'][m]) if m in pub.get('metrics', {}) else '' for m in comparison.metrics]
        lines.append('| ' + ' | '.join(cells + ['', '', '']) + ' |')
    sources = ['- {}: {}'.format(p['name'], p['source']) for p in comparison.published if p.get('source')]
    notes = ['- {}'.format(n) for n in comparison.notes]
    if sources or notes:
        lines += [''] + sources + notes
    return '\n'.join(lines) + '\n'


def csv_table(comparison, rows):
    fields = ['model', 'runs'] + [x for m in comparison.metrics for x in (m, m + ' sd')] + ['train s', 'eval s',
                                                                                           'parameters', 'published']
    out = io.StringIO()
    writer = csv.DictWriter(out, fields, lineterminator='\n')
    writer.writeheader()
    for row in rows:
        writer.writerow(dict(row, published=0))
    for pub in comparison.published:
        writer.writerow(dict({m: pub['metrics'][m] for m in comparison.metrics if m in pub.get('metrics', {})},
                             model=pub['name'], published=1))
    return out.getvalue()


def write_plot(comparison, rows, path):
    """The primary metric against the training seconds (log scale), one point per model with its
    spread; published numbers as dashed lines."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 5))
    primary = comparison.primary
    for row in rows:
        x, y = max(row['train s'], 0.1), row[primary]
        ax.errorbar([x], [y], yerr=[row[primary + ' sd'] or 0], fmt='o', capsize=3)
        ax.annotate(row['model'], (x, y), textcoords='offset points', xytext=(5, 5), fontsize=8)
    ax.set_xscale('log')
    for pub in comparison.published:
        if primary in pub.get('metrics', {}):
            ax.axhline(pub['metrics'][primary], linestyle='--', linewidth=0.8, color='grey')
            ax.annotate('{} (published)'.format(pub['name']), (0, pub['metrics'][primary]),
                        xycoords=('axes fraction', 'data'), textcoords='offset points', xytext=(2, 2),
                        fontsize=7, color='grey')
    ax.set_xlabel('training seconds (mean over runs, log scale)')
    ax.set_ylabel(_metric_header(primary))
    ax.set_title('{}\n{}'.format(comparison.title, comparison.protocol_name()), fontsize=9)
    fig.tight_layout()
    write_png_atomic(fig, path)


def run(comparison, only=None):
    """Every (model, seed) run, then the table and the plot; returns the summary rows."""
    from .data import load_events
    chosen = [m for m in comparison.models if not only or m.name in only]
    if only and len(chosen) != len(set(only)):
        raise UserError('--only names models the comparison lacks: {}'.format(
            ', '.join(sorted(set(only) - {m.name for m in comparison.models}))))
    data = {name: load_events(path, verbose=False, **comparison.keys)
            for name, path in (('train', comparison.train), ('test', comparison.test), ('valid', comparison.valid))
            if path}
    total = sum(len(comparison.seeds) if m.seeded else 1 for m in chosen)
    results, n = {}, 0
    for spec in chosen:
        for seed in (comparison.seeds if spec.seeded else [None]):
            n += 1
            label = '[{}/{}] {}{}'.format(n, total, spec.name, ' seed {}'.format(seed) if seed is not None else '')
            results.setdefault(spec.name, []).append(run_one(comparison, spec, seed, data, label))
    for spec in comparison.models:  # the rows of models not chosen this time, from their finished runs
        if spec.name not in results:
            done = _finished_runs(comparison, spec)
            if done:
                results[spec.name] = done
    rows = summary_rows(comparison, results)
    os.makedirs(comparison.out, exist_ok=True)
    write_text_atomic(os.path.join(comparison.out, 'table.md'), markdown_table(comparison, rows))
    write_text_atomic(os.path.join(comparison.out, 'table.csv'), csv_table(comparison, rows))
    write_plot(comparison, rows, os.path.join(comparison.out, 'plot.png'))
    return rows


def _finished_runs(comparison, spec):
    if spec.paropt is not None:  # the parameters its study found, when it has run
        from .params import load_param_file
        best = os.path.join(comparison.out, 'paropt', 'compare-' + spec.slug(), 'best_params.py')
        if not os.path.isfile(best):
            return []
        spec.params = dict(load_param_file(best), **spec.explicit)
        spec.paropt = None
    out = []
    for seed in (comparison.seeds if spec.seeded else [None]):
        path = os.path.join(comparison.out, 'runs', spec.slug(), 'seed-{}'.format(seed) if spec.seeded else 'once',
                            'result.json')
        if os.path.isfile(path):
            with open(path) as f:
                result = json.load(f)
            if result.get('spec') == comparison.run_spec(spec, seed):
                out.append(result)
    return out
