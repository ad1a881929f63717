"""What a search leaves for people: a progress line per trial, the best parameters as a paramfiles/
file for run.py -pf, and PNG plots of the optimisation history and parameter importances."""
import os
import sys
import warnings

from optuna.trial import TrialState

from ..atomic import write_png_atomic, write_text_atomic


def best_trial(study):
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value) if complete else None


def progress_line(trial, counts, n_trials, best):
    """``[paropt] trial 7 (5/20 done): value 0.1234 | best 0.2345 (trial 3) | 12.3s``"""
    head = '[paropt] trial {} ({}/{} done, {} running): '.format(trial.number, counts.done, n_trials, counts.running)
    if trial.state == TrialState.COMPLETE:
        body = 'value {:.6f}'.format(trial.value)
    else:
        body = 'FAILED ({}){}'.format(trial.user_attrs.get('error', 'no value'),
                                      ', will be retried' if trial.user_attrs.get('retryable') else '')
    tail = ' | best {:.6f} (trial {})'.format(best.value, best.number) if best is not None else ' | no result yet'
    return head + body + tail + ' | {:.1f}s'.format(trial.user_attrs.get('seconds', 0.0))


def typed_params(model_cls, params):
    """Cast parameter values the way the model does (``layers='96'`` -> [96]) for a -pf file."""
    model = model_cls()
    model.set_params(verbose=False, **params)
    return [(k, getattr(model, k)) for k in params]


def write_param_file(path, model_cls, params, header):
    """A paramfiles/-style Python file defining ``gru4rec_params``; written atomically."""
    lines = ['# ' + h for h in header] + ['from collections import OrderedDict', 'gru4rec_params = OrderedDict([']
    items = typed_params(model_cls, params)
    lines += ['    ({!r}, {!r}){}'.format(k, v, ',' if i < len(items) - 1 else '') for i, (k, v) in enumerate(items)]
    lines.append('])')
    write_text_atomic(path, '\n'.join(lines) + '\n')


def write_plots(study, folder):
    """history.png and importance.png via Optuna's matplotlib visualisation; returns the files written.

    Importances need at least two finished trials with different parameters; when they cannot be
    computed the reason is printed and only the history is written.
    """
    import matplotlib
    matplotlib.use('Agg')
    from optuna.visualization import matplotlib as ovm

    written = []
    jobs = [('history.png', ovm.plot_optimization_history), ('importance.png', ovm.plot_param_importances)]
    for name, plot in jobs:
        path = os.path.join(folder, name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')  # Optuna flags its matplotlib plots as experimental
                ax = plot(study)
            fig = ax.figure if hasattr(ax, 'figure') else ax[0].figure
            fig.set_size_inches(9, 5.5)
            fig.tight_layout()
            write_png_atomic(fig, path)
            written.append(path)
        except Exception as e:  # a plot is a convenience: say why it is missing, keep the results
            print('[paropt] no {}: {}: {}'.format(name, type(e).__name__, e), file=sys.stderr)
    return written
