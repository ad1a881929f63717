"""Hyperparameter search with Optuna for any model run.py trains: the original GRU4Rec paropt.py.

Same positional arguments and flags as github hidasib/GRU4Rec's paropt.py (its -tf Theano flags
become -d/--device), plus what searching at scale needs: -j parallel trials, --storage/--study-name
for a study shared by workers on several machines (Optuna's RDB storage; a local SQLite file by
default, so a re-run resumes), heartbeats with one retry of a trial whose process died, a progress
line per trial, and at the end plots and the best parameters as a run.py -pf file.
"""
import argparse
import os
import sys
import threading

from recsys_core.cli import KEYS, add_shared_arguments, check_cutoffs, check_metric, check_positive, model_class, run_main
from recsys_core.errors import UserError


def build_parser():
    p = argparse.ArgumentParser(description='Optimise the hyperparameters of a model (GRU4Rec by default) with Optuna, '
                                            'maximising recall or MRR on a validation set.')
    p.add_argument('path', metavar='PATH', type=str, help='Path to the training data (TAB separated file (.tsv or .txt) or pickled pandas.DataFrame object (.pickle)).')
    p.add_argument('test', metavar='TEST_PATH', type=str, help='Path to the validation data the study maximises the primary metric on.')
    add_shared_arguments(p, 'model', 'device', helps={
        'model': 'Model package to tune (any package run.py -g accepts). (Default: gru4rec)',
        'device': 'Device of the training processes: cpu or cuda (passed to run.py -d; replaces the original -tf). '
                  '(Default: $RECSYS_DEVICE or cpu)'})
    p.add_argument('-fp', '--fixed_parameters', metavar='PARAM_STRING', type=str, help='Fixed training parameters as one parameter string: `param_name1=param_value1,param_name2=param_value2...`, e.g. `loss=bpr-max,layers=100,constrained_embedding=True`. Lists use / as the separator (e.g. layers=200/200).')
    p.add_argument('-opf', '--optuna_parameter_file', metavar='PATH', type=str, required=True, help='File describing the parameter space (JSON lines; see paramspaces/).')
    p.add_argument('-m', '--measure', metavar='AT', type=int, nargs='?', default=20, help='Recommendation list length the trials are measured at (a single value). (Default: 20)')
    p.add_argument('-nt', '--ntrials', metavar='NT', type=int, nargs='?', default=50, help='Number of trials in the study (counted over every worker and every resumed run). (Default: 50)')
    p.add_argument('-fm', '--final_measure', metavar='AT', type=int, nargs='*', default=[20], help='List lengths to measure the best parameters at after the search. (Default: 20)')
    add_shared_arguments(p, 'primary_metric', 'protocol', 'eval_type', *KEYS, helps={
        'primary_metric': 'Metric to maximise, recall or mrr (ndcg with --protocol last, where recall means HR). '
                          '(Default: recall)',
        'protocol': 'Evaluation protocol of the trials, as run.py --protocol: next (every next event) or last (last '
                    'item of each sequence). (Default: next)'})
    p.add_argument('-j', '--jobs', metavar='N', type=int, default=1, help='Trials run at the same time by this process, each in its own process. (Default: 1)')
    p.add_argument('--storage', metavar='URL', type=str, default=None, help='Optuna storage URL shared by all workers, e.g. postgresql://user:pw@host/db. (Default: a SQLite file in the study folder)')
    p.add_argument('--study-name', metavar='NAME', type=str, default=None, help='Study name. (Default: derived from the model, data, fixed parameters and space, so the same command resumes the same study)')
    p.add_argument('-o', '--out-dir', metavar='DIR', type=str, default='paropt_out', help='Folder for the study folder (trial logs, plots, best parameters, default storage). (Default: paropt_out)')
    p.add_argument('--seed', metavar='S', type=int, default=None, help='Seed of the TPE sampler (give each worker of a shared study its own). (Default: random)')
    p.add_argument('--heartbeat', metavar='SEC', type=int, default=10, help='Heartbeat interval of running trials; a trial silent for twice this long is failed and retried once. (Default: 10)')
    p.add_argument('--no-final-eval', action='store_true', help='Skip re-running the best parameters with -fm at the end (for extra workers of a shared study).')
    return p


def check_args(args):
    for name, path in (('training data', args.path), ('validation data', args.test),
                       ('parameter space file', args.optuna_parameter_file)):
        if not os.path.isfile(path):
            raise UserError('{} not found: {}'.format(name.capitalize(), path))
    check_positive(args.ntrials, '-nt/--ntrials')
    check_positive(args.jobs, '-j/--jobs')
    check_positive(args.heartbeat, '--heartbeat', 'at least 1 second')
    check_cutoffs([args.measure], '-m and -fm')
    check_cutoffs(args.final_measure, '-m and -fm')
    check_metric(args)
    if args.study_name is not None and not args.study_name.strip():
        raise UserError('--study-name must not be empty')


def check_parameters(cls, fixed, space):
    """Every fixed value and every bound/option of the space must be acceptable to the model."""
    known = set(cls.param_names())
    for par in space:
        if par.name not in known:
            raise UserError('Parameter space: {} is not a parameter of {}'.format(par.name, cls.__name__))
        if par.name in fixed:
            raise UserError('Parameter {} is both fixed (-fp) and searched (-opf)'.format(par.name))
    cls().set_params(verbose=False, **fixed)
    for par in space:
        for value in par.probe_values():
            try:
                cls().set_params(verbose=False, **dict(fixed, **{par.name: value}))
            except UserError as e:
                raise UserError('Parameter space: value {!r} of {} is not accepted: {}'.format(value, par.name, e)) from None


def file_fingerprint(path):
    return '{}:{}'.format(os.path.basename(path), os.path.getsize(path))


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    from recsys_core.params import parse_param_string
    from recsys_core.tuning.space import format_space, load_space
    space = load_space(args.optuna_parameter_file)
    print(format_space(space), flush=True)
    cls = model_class(args.gru4rec_model)
    fixed = parse_param_string(args.fixed_parameters) if args.fixed_parameters else {}
    check_parameters(cls, fixed, space)

    import optuna  # noqa: F401  (imported late: a bad command line fails fast)
    from recsys_core.tuning.report import best_trial, progress_line, write_param_file, write_plots
    from recsys_core.tuning.study import Search, TrialCounts, config_fingerprint, mask_password, open_storage, open_study
    from recsys_core.tuning.trial_process import child_environment, join_params, run_process, run_py_command

    from recsys_core import backend
    backend.configure(args.device)  # an unusable -d fails here, before any study file is written
    config = {'model': args.gru4rec_model, 'train': file_fingerprint(args.path), 'test': file_fingerprint(args.test),
              'fixed': join_params(fixed), 'space': [p.as_dict() for p in space], 'measure': args.measure,
              'primary_metric': args.primary_metric, 'eval_type': args.eval_type,
              'keys': [args.session_key, args.item_key, args.time_key]}
    if args.protocol != 'next':  # only then, so studies started before --protocol existed keep their names
        config['protocol'] = args.protocol
    stem = os.path.splitext(os.path.basename(args.path))[0]
    name = args.study_name or '{}-{}-{}'.format(args.gru4rec_model, stem, config_fingerprint(config))
    folder = os.path.join(args.out_dir, name)
    url = args.storage or 'sqlite:///' + os.path.abspath(os.path.join(folder, 'study.db'))
    storage = open_storage(url, args.heartbeat) if args.storage else None  # a bad URL fails before any file
    os.makedirs(os.path.join(folder, 'trials'), exist_ok=True)
    study = open_study(storage or open_storage(url, args.heartbeat), name, config, args.seed)
    counts = TrialCounts.of(study)
    print('[paropt] study {} in {}: {}/{} trials done; results in {}'.format(
        name, mask_password(url), counts.done, args.ntrials, folder), file=sys.stderr, flush=True)

    run_cfg = {'train': args.path, 'test': args.test, 'model': args.gru4rec_model, 'primary_metric': args.primary_metric,
               'eval_type': args.eval_type, 'item_key': args.item_key, 'session_key': args.session_key,
               'time_key': args.time_key, 'device': args.device, 'protocol': args.protocol}
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    print_lock = threading.Lock()

    def evaluate(trial, params):
        cmd = run_py_command(run_cfg, dict(fixed, **params), [args.measure], log_primary_metric=True)
        log_path = os.path.join(folder, 'trials', 'trial_{:05d}.log'.format(trial.number))
        if args.jobs == 1:  # the original streams the training output as it comes
            return run_process(cmd, log_path, echo=lambda line: print(line, flush=True), env=child_environment())
        outcome = run_process(cmd, log_path, env=child_environment(threads))
        with print_lock, open(log_path, encoding='utf-8') as f:
            sys.stdout.write('---- trial {} ----\n{}'.format(trial.number, f.read()))
            sys.stdout.flush()
        return outcome

    def report(trial, counts):
        with print_lock:
            print(progress_line(trial, counts, args.ntrials, best_trial(study)), file=sys.stderr, flush=True)

    Search(study, space, args.ntrials, evaluate, report).run(args.jobs)

    best = best_trial(study)
    if best is None:
        raise UserError('No trial of study {} finished with a value; see the trial logs in {}'.format(
            name, os.path.join(folder, 'trials')))
    best_params = dict(fixed, **best.params)
    print('Best trial: {} with {}@{} = {}'.format(best.number, args.primary_metric, args.measure, best.value))
    print('Best parameters: {}'.format(join_params(best_params)))
    param_file = os.path.join(folder, 'best_params.py')
    write_param_file(param_file, cls, best_params, [
        'Best parameters of paropt study {} (trial {}, {}@{} = {}).'.format(name, best.number, args.primary_metric,
                                                                          args.measure, best.value),
        'Use with: python run.py TRAIN -pf {}'.format(param_file)])
    print('Best parameters written to: {}'.format(param_file))
    for path in write_plots(study, folder):
        print('Plot written to: {}'.format(path))
    sys.stdout.flush()
    if args.no_final_eval:
        return 0
    print('Running final eval @{}:'.format(args.final_measure), flush=True)
    cmd = run_py_command(run_cfg, best_params, args.final_measure, log_primary_metric=False)
    outcome = run_process(cmd, os.path.join(folder, 'final_eval.log'), echo=lambda line: print(line, flush=True))
    if outcome.returncode != 0:
        raise UserError('The final evaluation failed: {}'.format(outcome.error))
    return 0


if __name__ == '__main__':
    run_main(main)
