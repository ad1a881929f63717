"""Train or load a model and measure recall and MRR on test sets: the original GRU4Rec run.py.

Same flags and output lines as github hidasib/GRU4Rec's run.py, plus -d/--device, --protocol and
the training flags of the shared trainer (-v/--valid, --valid_metric, --eval_every, --patience,
--max_steps, --checkpoint, --checkpoint_every, --warm_start). -g names the model package (gru4rec
by default); any package exposing MODEL_CLASS works, and run.py never special-cases one.
"""
import argparse
import os
import time

from recsys_core import backend
from recsys_core.cli import KEYS, add_shared_arguments, check_cutoffs, check_metric, model_class, run_main
from recsys_core.errors import UserError


def build_parser():
    p = argparse.ArgumentParser(description='Train or load a GRU4Rec model & measure recall and MRR on the specified test set(s).')
    p.add_argument('path', metavar='PATH', type=str, help='Path to the training data (TAB separated file (.tsv or .txt) or pickled pandas.DataFrame object (.pickle)) (if the --load_model parameter is NOT provided) or to the serialized model (if the --load_model parameter is provided).')
    p.add_argument('-ps', '--parameter_string', metavar='PARAM_STRING', type=str, help='Training parameters as a single string: `param_name1=param_value1,param_name2=param_value2...`, e.g. `loss=bpr-max,layers=100,constrained_embedding=True`. Booleans are True or False; lists use / as the separator (e.g. layers=200/200). Exactly one of -ps, -pf and -l must be given.')
    p.add_argument('-pf', '--parameter_file', metavar='PARAM_PATH', type=str, help='Training parameters from a Python file defining an OrderedDict named `gru4rec_params` (see paramfiles/). Exactly one of -ps, -pf and -l must be given.')
    p.add_argument('-l', '--load_model', action='store_true', help='Load a trained model from PATH instead of training one. Exactly one of -ps, -pf and -l must be given.')
    p.add_argument('-s', '--save_model', metavar='MODEL_PATH', type=str, help='Save the trained model to MODEL_PATH (written atomically). (Default: don\'t save model)')
    p.add_argument('-t', '--test', metavar='TEST_PATH', type=str, nargs='+', help='Path(s) to test data set(s); several can be given. (Default: don\'t evaluate the model)')
    p.add_argument('-m', '--measure', metavar='AT', type=int, nargs='+', default=[20], help='Measure recall & MRR at these recommendation list length(s). (Default: 20)')
    add_shared_arguments(p, 'eval_type')
    p.add_argument('-ss', '--sample_store_size', metavar='SS', type=int, default=10000000, help='Size of the negative sample buffer (number of item ids). (Default: 10000000)')
    p.add_argument('--sample_store_on_cpu', action='store_true', help='Keep the sample store in host memory (the only option on the CPU; matters for -d cuda).')
    add_shared_arguments(p, 'model', 'device', *KEYS, 'primary_metric', 'protocol')
    p.add_argument('--negatives', metavar='N', type=int, default=0, help='With --protocol last: rank each target against N items sampled uniformly from those its test sequence never has (SASRec\'s protocol: 100) instead of every item. (Default: 0 = every item)')
    p.add_argument('--negatives_seed', metavar='S', type=int, default=42, help='Seed of the sampled negatives. (Default: 42)')
    p.add_argument('-lpm', '--log_primary_metric', action='store_true', help='Print the primary metric at the first cut-off as `PRIMARY METRIC: value` after each evaluation.')
    t = p.add_argument_group('training (every gradient-trained model; recsys_core.trainer)')
    t.add_argument('-v', '--valid', metavar='VALID_PATH', type=str, help='Validation data, evaluated during training (with --protocol and -e); with it, training ends with the weights of the best evaluation. (Default: no validation)')
    t.add_argument('--valid_metric', metavar='METRIC@K', type=str, help='Metric and cut-off chosen on the validation data, e.g. mrr@5 (recall, mrr; hr and ndcg with --protocol last). (Default: the primary metric -pm at the first -m cut-off)')
    t.add_argument('--best_per_metric', action='store_true', help='With -v: measure every metric at the -m cut-offs at each evaluation and print each one\'s best over the evaluations, as the PeerCollab release reports (-v TEST gives its numbers).')
    t.add_argument('--eval_every', metavar='N', type=int, default=0, help='Evaluate on --valid every N training steps (mini-batches). (Default: 0 = at the end of each epoch)')
    t.add_argument('--patience', metavar='K', type=int, default=0, help='Stop training after K evaluations without improvement of the validation metric. (Default: 0 = never stop early)')
    t.add_argument('--max_steps', metavar='N', type=int, default=0, help='Stop training after N steps in all, whatever n_epochs says. (Default: 0 = no cap)')
    t.add_argument('--checkpoint', metavar='DIR', type=str, help='Keep the training state in DIR (last.ckpt at every evaluation and epoch end, best.model at the best evaluation, both written atomically); running the same command again resumes from DIR. (Default: no checkpoints)')
    t.add_argument('--checkpoint_every', metavar='N', type=int, default=0, help='Also write last.ckpt every N steps. (Default: 0 = only at evaluations and epoch ends)')
    t.add_argument('--warm_start', metavar='MODEL_PATH', type=str, help='Start from the weights of a saved model (every weight of the same name and shape; the item index must be the same). (Default: the model\'s own initialisation)')
    return p


def training_options(args, keys):
    """The trainer's options from run.py's training flags (None when none is given)."""
    from recsys_core.data import load_events
    from recsys_core.trainer import TrainingOptions, WarmStart
    given = (args.valid, args.eval_every, args.patience, args.max_steps, args.checkpoint, args.checkpoint_every,
             args.warm_start, args.valid_metric, args.best_per_metric)
    if not any(given):
        return None
    if args.best_per_metric and not args.valid:
        raise UserError('--best_per_metric reports the best of each metric over the evaluations on -v/--valid: give -v')
    metric, cut_off = args.primary_metric, args.measure[0]
    if args.valid_metric:
        name, _, k = args.valid_metric.partition('@')
        if not k.isdigit() or int(k) < 1:
            raise UserError('--valid_metric must look like mrr@5 (a metric name, @, a positive cut-off), not {!r}'.format(
                args.valid_metric))
        metric, cut_off = name.lower(), int(k)
    if args.warm_start and not os.path.isfile(args.warm_start):
        raise UserError('Warm-start model file not found: {}'.format(args.warm_start))
    valid = None
    if args.valid:
        print('Loading validation data...')
        valid = load_events(args.valid, args.session_key, args.item_key, args.time_key)
    options = TrainingOptions(max_steps=args.max_steps, valid=valid, protocol=args.protocol, metric=metric,
                              cut_off=cut_off, eval_every=args.eval_every, patience=args.patience,
                              checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                              warm_start=WarmStart(args.warm_start) if args.warm_start else None,
                              eval_mode=args.eval_type, keys=keys,
                              report_cut_offs=tuple(args.measure) if args.best_per_metric else ())
    options.check()
    return options


def best_per_metric_lines(history):
    """Each metric's best over the evaluations in ``history`` (maxed independently), one line per
    cut-off in run.py's format."""
    from recsys_core.eval_result import METRIC_NAMES
    entries = [e['metrics'] for e in history if 'metrics' in e]
    if not entries:
        return []
    best = {name: max(e[name] for e in entries) for name in entries[0]}
    cut_offs = sorted({int(name.split('@')[1]) for name in best})
    metrics = list(dict.fromkeys(name.split('@')[0] for name in best))
    lines = ['Best over {} evaluations on the validation data, each metric on its own:'.format(len(entries))]
    return lines + [' '.join('{}@{}: {:.6f}'.format(METRIC_NAMES[m], c, best['{}@{}'.format(m, c)]) for m in metrics)
                    for c in cut_offs]


def main(argv=None):
    args = build_parser().parse_args(argv)
    if (args.parameter_string is not None) + (args.parameter_file is not None) + args.load_model != 1:
        raise UserError('Exactly one of the following parameters must be provided: --parameter_string, --parameter_file, --load_model')
    check_cutoffs(args.measure, '-m/--measure')
    check_metric(args)
    if args.negatives and args.protocol != 'last' or args.negatives < 0:
        raise UserError('--negatives N (N > 0) samples the candidates of the last-item protocol: use it with --protocol last')
    backend.configure(args.device, verbose=True)
    import pandas as pd
    from recsys_core.data import load_events
    from recsys_core.evaluation import evaluate
    from recsys_core.params import load_param_file, parse_param_string
    from recsys_core.persistence import load_model
    keys = dict(session_key=args.session_key, item_key=args.item_key, time_key=args.time_key)
    if args.load_model:
        print('Loading trained model from file: {}'.format(args.path))
        model = load_model(args.path)
    else:
        cls = model_class(args.gru4rec_model)
        if args.parameter_file:
            params = load_param_file(args.parameter_file)
            print('Loaded parameters from file: {}'.format(os.path.abspath(args.parameter_file)))
        else:
            params = parse_param_string(args.parameter_string)
        print('Creating {} model'.format(cls.__name__))
        model = cls()
        model.set_params(**params)
        model.set_params(verbose=False, **{k: v for k, v in keys.items() if k not in params})
        training = training_options(args, keys)
        print('Loading training data...')
        data = load_events(args.path, args.session_key, args.item_key, args.time_key)
        data = data.rename(columns={args.session_key: model.session_key, args.item_key: model.item_key,
                                    args.time_key: model.time_key})
        if args.sample_store_on_cpu:
            print('WARNING! The sample store is set to be on the CPU. This will make training significantly slower on the GPU.')
        print('Started training')
        t0 = time.time()
        fit_args = dict(training=training) if training is not None else {}
        if model.uses_vocab_data():  # a vocabulary over the whole data set, as some releases build it
            if not args.test:
                raise UserError('vocabulary=all builds the vocabulary over the training and test data: give -t TEST_PATH')
            print('Loading test data for the vocabulary (vocabulary=all)...')
            fit_args['vocab_data'] = pd.concat([load_events(f, args.session_key, args.item_key, args.time_key).rename(
                columns={args.session_key: model.session_key, args.item_key: model.item_key,
                         args.time_key: model.time_key}) for f in args.test], ignore_index=True)
        model.fit(data, sample_store=args.sample_store_size, store_type='cpu' if args.sample_store_on_cpu else 'gpu',
                  **fit_args)
        print('Total training time: {:.2f}s'.format(time.time() - t0))
        if args.best_per_metric:
            for line in best_per_metric_lines(getattr(model, 'training_history', None) or []):
                print(line)
        if args.save_model is not None:
            print('Saving trained model to: {}'.format(args.save_model))
            model.savemodel(args.save_model)
    if args.test:
        model.check_trained()
        for test_file in args.test:
            print('Loading test data...')
            test_data = load_events(test_file, args.session_key, args.item_key, args.time_key)
            print('Starting evaluation (cut-off={}, using {} mode for tiebreaking)'.format(args.measure, args.eval_type))
            t0 = time.time()
            res = evaluate(model, test_data, protocol=args.protocol, cut_off=args.measure, mode=args.eval_type,
                           batch_size=512, negatives=args.negatives, negatives_seed=args.negatives_seed, **keys)
            print('Evaluation took {:.2f}s'.format(time.time() - t0))
            for line in res.lines():
                print(line)
            primary = res.value(args.primary_metric, args.measure[0])
            if args.log_primary_metric:
                print('PRIMARY METRIC: {}'.format(primary))
    return 0


if __name__ == '__main__':
    run_main(main)
