"""StackRec's scenarios as one command each: train a shallow model, stack it into a deeper one, train
that, with the released split, data ratios, step caps, evaluation every N steps, early stopping on
MRR@5 and the best checkpoint carried to the next stage (reference section 7).

    python -m stackrec.pipeline cl DATA.csv --out DIR [--model nextitnet|grec|sasrec|ssept] [-ps PARAMS]
    python -m stackrec.pipeline ts DATA.csv --out DIR [-ps PARAMS]
    python -m stackrec.pipeline tf SOURCE.csv --finetune TARGET.csv --out DIR
    python -m stackrec.pipeline stack DATA.csv --out DIR --from MODEL --method stackA --blocks 32

DATA.csv: one sequence per line (the released format). The release's split: numpy's legacy
generator seeded 10, the last 20% of the permuted sequences for testing; the test set also selects
the checkpoints, as released (pitfall P2). The vocabulary is built over the whole file once (P1)
and every later stage keeps it. Stage k writes DIR/stage{k}/ (the trainer's last.ckpt and
best.model, then model.pkl, summary.json with HR/MRR/NDCG@5,10 at the best checkpoint, and
split.json: the data ratio and training sequences, with DIR/test.tsv the run.py command that
re-scores the stage); running the same command again skips finished stages and resumes an
interrupted one from its checkpoint. Difference: the release leaves the last partial test batch
out of its evaluation; every test sequence is scored here.

- cl (train_nextitnet_sc1.sh, train_grec_sc1.sh, train_sasrec_sc1.sh, train_ssept_sc1.sh):
  from_scratch on data ratio 0.8 (nested subset), then stacked on ratio 1 (NextItNet and GRec:
  stackA doubling, 16 -> 32 blocks; SASRec: stackA with the Modules rule, 18 -> 24; SSE-PT: stackC,
  18 -> 24); eval every 6000 steps, cap 300k (SASRec 350k), patience 8 (SSE-PT: 2000, 250k, 15).
  ``--ratios 0.2 0.4 0.8 1`` continues in more steps, stacking at each ratio (the release's 0.6
  subset is not a superset of its 0.4 one: stackrec.data.ratio_subset).
- ts (train_nextitnet_sc2.sh): 8 -> 16 -> 32 blocks with stackA on all data, caps 50k/100k/200k,
  eval every 3000, patience 10; ``--stages 4`` goes on to 64 blocks (cap 400k), and so on.
- tf (train_nextitnet_sc3.sh): source pre-training as cl (8 -> 16 blocks, L2 0.001), each stage
  then fine-tuned on the target domain (``--finetune COLDREC``, stackrec.finetune: 10 epochs, batch
  512, evaluation every 1000 steps over 99 sampled negatives, best MRR@5 and HR@5).
- stack: one stacked stage from a saved model (e.g. a stage of another run), on ``--data_ratio``.
- ``-ps rezero=False`` (NextItNet, GRec, SASRec): blocks without the per-block scale alpha
  (the release's ops_original.py).
"""
import argparse
import json
import os
import time

import numpy as np

from recsys_core.cli import KEYS, add_shared_arguments, check_positive, run_main
from recsys_core.errors import UserError

SCENARIOS = ('cl', 'ts', 'tf', 'stack')
FAMILY_OF = {'nextitnet': 'nextitnet', 'grec': 'nextitnet', 'sasrec': 'sasrec', 'ssept': 'sasrec'}
RELEASED_METHOD = {'nextitnet': 'stackA', 'grec': 'stackA', 'sasrec': 'stackA', 'ssept': 'stackC'}  # CL stage 2


def base_model_class(name):
    """The base model's class; SSE-PT's reads the released CSV's first field as the user (users=first)."""
    if name == 'nextitnet':
        from .nextitnet import StackNextItNet
        return StackNextItNet
    if name == 'grec':
        from .grec import GRec
        return GRec
    if name == 'sasrec':
        from .sasrec import SASRec
        return SASRec
    if name == 'ssept':
        from .ssept import SSEPTOnCSV
        return SSEPTOnCSV
    raise UserError('Unknown StackRec base model {!r}; use one of: {}'.format(name, ', '.join(sorted(FAMILY_OF))))


def depth_params(model, blocks):
    """Model parameters for a stack of ``blocks`` residual blocks."""
    if FAMILY_OF.get(model) == 'nextitnet':
        if blocks % 2:
            raise UserError('NextItNet stacks come in dilation pairs [1, 4]: --blocks must be even, not {}'.format(blocks))
        return {'dilations': [1, 4] * (blocks // 2)}
    return {'num_blocks': blocks}


def blocks_of(model):
    return len(model.dilations) if hasattr(model, 'dilations') else model.num_blocks


RELEASED_RATIOS = (0.8, 1.0)


def check_ratios(ratios):
    """CL's data ratios: increasing, each in (0, 1]."""
    if len(ratios) < 2 or any(not 0 < r <= 1 for r in ratios) or any(b <= a for a, b in zip(ratios, ratios[1:])):
        raise UserError('--ratios must be two or more increasing data ratios in (0, 1], e.g. 0.2 0.4 0.6 0.8 1; '
                        'got {}'.format(' '.join(map(str, ratios))))
    return list(ratios)


def stages(scenario, model, method, blocks, ratios=RELEASED_RATIOS, n_stages=3):
    """[(method, blocks, data ratio, step cap, eval_every, patience, rule)] of a scenario.

    method None: the release's stage-2 method (RELEASED_METHOD: stackC for SSE-PT, else stackA).
    cl trains from scratch on the first data ratio and stacks at each next one (the release: 0.8
    then 1; e.g. 0.2 0.4 0.8 1 stacks three times, doubling NextItNet/GRec, +6 blocks SASRec/SSE-PT).
    ts doubles the depth ``n_stages - 1`` times, each stage's step cap twice the last (the release:
    3 stages, 50k/100k/200k)."""
    method = method or RELEASED_METHOD.get(model, 'stackA')
    if scenario == 'cl':
        ratios = check_ratios(ratios)
        if FAMILY_OF.get(model) == 'nextitnet':   # train_nextitnet_sc1.sh, train_grec_sc1.sh
            depth, grow, rule, cap, every, patience = blocks or 16, lambda b: 2 * b, 'double', 300000, 6000, 8
        elif model == 'ssept':                    # train_ssept_sc1.sh
            depth, grow, rule, cap, every, patience = blocks or 18, lambda b: b + 6, 'modules', 250000, 2000, 15
        else:                                     # train_sasrec_sc1.sh
            depth, grow, rule, cap, every, patience = blocks or 18, lambda b: b + 6, 'modules', 350000, 6000, 8
        plan = [('from_scratch', depth, ratios[0], cap, every, patience, None)]
        for ratio in ratios[1:]:
            depth = grow(depth)
            plan.append((method, depth, ratio, cap, every, patience, rule))
        return plan
    if scenario == 'tf':  # train_nextitnet_sc3.sh: source pre-training 8 -> 16 blocks, each fine-tuned
        if model != 'nextitnet':
            raise UserError('The TF scenario is released for NextItNet only')
        first = blocks or 8
        return [('from_scratch', first, 0.8, 300000, 6000, 8, None),
                (method, 2 * first, 1.0, 300000, 6000, 8, 'double')]
    if scenario == 'ts':
        if model != 'nextitnet':
            raise UserError('The TS scenario is released for NextItNet only')
        if n_stages < 2:
            raise UserError('--stages must be at least 2 (a model and one stacking), not {}'.format(n_stages))
        first = blocks or 8
        return [('from_scratch' if k == 0 else method, first * 2 ** k, 1.0, 50000 * 2 ** k, 3000, 10,
                 None if k == 0 else 'double') for k in range(n_stages)]
    raise UserError('Unknown scenario {!r}; use one of: {}'.format(scenario, ', '.join(SCENARIOS)))


def split_events(path, keys=None):
    """(all events, test events, permuted training sequence ids) with the release's split; ``keys``:
    the session, item and time columns (recsys_core.cli's -sk, -ik, -tk)."""
    from recsys_core.data import load_events
    from recsys_core.sequences import legacy_split
    keys = keys or dict(session_key='SessionId', item_key='ItemId', time_key='Time')
    events = load_events(path, verbose=False, **keys)
    session = keys['session_key']
    lines = np.unique(events[session].values)
    train_pos, test_pos = legacy_split(len(lines), 0.2)
    test = events[events[session].isin(lines[test_pos])]
    return events, test, lines[train_pos]


def ratio_lines(train_lines, ratio):
    """The training sequences of ``ratio`` in the release's order (nested chunks, section 2.3)."""
    from .data import ratio_subset
    return train_lines[ratio_subset(len(train_lines), ratio)]


def ratio_events(events, train_lines, ratio, session_key='SessionId'):
    """The training events of ``ratio``, sessions renumbered so that the training order is the
    release's (its rows in chunk order; the models train on sessions in id order)."""
    order = ratio_lines(train_lines, ratio)
    rank = {line: i for i, line in enumerate(order)}
    data = events[events[session_key].isin(order)].copy()
    data[session_key] = data[session_key].map(rank).astype(np.int64)
    return data


def run_stage(folder, cls, params, data, all_events, test, source, method, rule, cap, eval_every, patience,
              verbose=True, eval_mode='standard'):
    """Train one stage into ``folder`` (skipped when its model.pkl exists); returns the model.

    The stage trains until its step cap or early stop, as released: its epochs are set to the cap
    (every epoch takes at least one step, so they never end a stage first)."""
    from recsys_core.persistence import load_model
    from recsys_core.trainer import TrainingOptions, WarmStart
    from .stacking import canonical_method, stacking_mapping
    final = os.path.join(folder, 'model.pkl')
    if os.path.isfile(final):
        print('{}: done earlier, loading {}'.format(folder, final))
        model = load_model(final)
        summary_path = os.path.join(folder, 'summary.json')
        if os.path.isfile(summary_path):
            with open(summary_path) as f:
                model.training_history = json.load(f).get('history', [])
        return model
    warm = None
    fit_args = {}
    if source is None:
        params = dict(params, vocabulary='all')
        fit_args['vocab_data'] = all_events  # the vocabulary of the whole file, kept by every later stage (P1)
    else:
        fit_args['vocabulary_of'] = source
        if canonical_method(method) != 'from_scratch':
            family = FAMILY_OF['nextitnet' if hasattr(source, 'dilations') else 'sasrec']
            warm = WarmStart(source, stacking_mapping(method, family, blocks_of(source), blocks_of(cls(**params)), rule))
    os.makedirs(folder, exist_ok=True)  # after every check: bad input leaves no trace
    model = cls(**dict(params, n_epochs=cap))
    keys = {k: getattr(model, k) for k in ('session_key', 'item_key', 'time_key')}
    options = TrainingOptions(valid=test, protocol='last', metric='mrr', cut_off=5, eval_every=eval_every,
                              patience=patience, max_steps=cap, checkpoint=folder, warm_start=warm,
                              eval_mode=eval_mode, keys=keys)
    t0 = time.time()
    model.fit(data, verbose=verbose, training=options, **fit_args)
    model.savemodel(final)
    history = model.training_history
    best = max(history, key=lambda h: h['value']) if history else None
    summary = {'method': canonical_method(method), 'blocks': blocks_of(model), 'steps': sum(
        s['minibatches'] for s in model.epoch_stats), 'best_mrr5': best and float(best['value']),
        'best_step': best and best['step'], 'seconds_to_best': best and best['seconds'],
        'seconds_this_run': time.time() - t0, 'at_best': release_metrics(model, test, eval_mode, keys)}
    print('{}: at the best checkpoint: {}'.format(folder, release_line(summary['at_best'])))
    printed = dict(summary)
    summary['history'] = [{k: float(v) if k in ('value', 'best', 'seconds') else v for k, v in h.items()}
                          for h in history]
    from recsys_core.atomic import write_text_atomic
    write_text_atomic(os.path.join(folder, 'summary.json'), json.dumps(summary, indent=1))
    print('{}: {}'.format(folder, printed))
    return model


CUT_OFFS = (5, 10)


def release_metrics(model, test, eval_mode='standard', keys=None):
    """HR, MRR and NDCG at 5 and 10 of ``model`` on the test set (the release prints these at each
    evaluation; the release leaves out the last partial test batch, this scores every sequence)."""
    from recsys_core.evaluation import evaluate
    res = evaluate(model, test, protocol='last', cut_off=list(CUT_OFFS), mode=eval_mode, verbose=False,
                   **(keys or {}))
    return {'{}@{}'.format(m, c): float(res.value(m, c)) for c in CUT_OFFS for m in ('hr', 'mrr', 'ndcg')}


def release_line(metrics):
    return ' '.join('{} {:.4f}'.format(name.upper(), value) for name, value in metrics.items())


def write_split(folder, data_path, ratio, train_lines, test_path):
    """The stage's split beside its model: the data file, the ratio, its training sequences in
    training order and the test file (DIR/test.tsv), so the stage can be re-scored with run.py."""
    from recsys_core.atomic import write_text_atomic
    write_text_atomic(os.path.join(folder, 'split.json'), json.dumps({
        'data': os.path.abspath(data_path), 'data_ratio': ratio, 'test': os.path.abspath(test_path),
        'rescore': 'python run.py {} -l -t {} --protocol last -m 5 10'.format(
            os.path.join(folder, 'model.pkl'), test_path),
        'train_sequences': [int(x) if isinstance(x, (int, np.integer)) else str(x) for x in train_lines]}))


def build_parser():
    p = argparse.ArgumentParser(description="StackRec's scenarios: shallow model, stacking, deeper model.")
    p.add_argument('scenario', choices=SCENARIOS)
    p.add_argument('data', metavar='DATA', help='sequence-per-line file (the released format)')
    p.add_argument('--out', required=True, metavar='DIR', help='folder of the stages (resumed when run again)')
    p.add_argument('--model', default='nextitnet', choices=sorted(FAMILY_OF), help='base model (default nextitnet)')
    p.add_argument('-ps', '--parameter_string', metavar='PARAMS', help='model parameters, e.g. dilated_channels=64')
    p.add_argument('--method', default=None, help='stacking method: stackA, stackC, stackR, stackE, from_scratch '
                                                  '(any case; default: the release\'s, stackC for SSE-PT, else stackA)')
    p.add_argument('--blocks', type=int, default=0, help='blocks of the first stage (cl/ts), of the stacked model (stack)')
    p.add_argument('--finetune', metavar='COLDREC', help='tf: the target-domain file (source,,targets lines)')
    p.add_argument('--finetune_epochs', type=int, default=10, help='tf: epochs of each fine-tuning (default 10)')
    p.add_argument('--finetune_batch', type=int, default=512, help='tf: batch size of the fine-tuning (default 512)')
    p.add_argument('--finetune_eval_every', type=int, default=1000, help='tf: fine-tuning steps between evaluations '
                                                                          '(default 1000)')
    p.add_argument('--from', dest='source', metavar='MODEL', help='stack: the trained model to stack from')
    p.add_argument('--rule', default=None, choices=['double', 'copytop', 'modules'], help='stack: the block rule')
    p.add_argument('--step_cap', type=int, default=0, help='override every stage\'s step cap')
    p.add_argument('--eval_every', type=int, default=0, help='override every stage\'s evaluation interval')
    p.add_argument('--patience', type=int, default=0, help='override every stage\'s patience')
    p.add_argument('--ratios', type=float, nargs='+', default=list(RELEASED_RATIOS),
                   help='cl: the data ratios, one stage each, stacked at each next one (default 0.8 1, as released)')
    p.add_argument('--stages', type=int, default=3, help='ts: stages, the depth doubling at each (default 3, as '
                                                          'released: 8 -> 16 -> 32 blocks)')
    p.add_argument('--data_ratio', type=float, default=1.0, help='stack: the data ratio of the stacked stage '
                                                                  '(default 1)')
    add_shared_arguments(p, 'device', 'eval_type', *KEYS)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    from recsys_core import backend
    from recsys_core.params import parse_param_string
    from .stacking import canonical_method
    method = canonical_method(args.method) if args.method else None
    cls = base_model_class(args.model)
    params = dict(parse_param_string(args.parameter_string)) if args.parameter_string else {}
    keys = {k: getattr(args, k) for k in KEYS}
    params.update(keys)
    cls(**params)  # parameters checked before any data is read
    for name in ('step_cap', 'eval_every', 'patience', 'blocks'):
        if getattr(args, name) < 0:
            raise UserError('--{} must be a non-negative integer'.format(name))
    for name in ('finetune_epochs', 'finetune_batch', 'finetune_eval_every'):
        check_positive(getattr(args, name), '--' + name)
    if args.scenario == 'stack' and not args.source:
        raise UserError('stack needs --from MODEL (the trained model to stack from)')
    if args.scenario == 'tf' and not (args.finetune and os.path.isfile(args.finetune)):
        raise UserError('tf needs --finetune COLDREC (an existing source,,targets file)')
    if args.scenario == 'tf':
        params = dict(params, l2_reg=params.get('l2_reg', 0.001))  # the ColdRec source's L2, as released
    if args.source and not os.path.isfile(args.source):
        raise UserError('Model to stack from not found: {}'.format(args.source))
    backend.configure(args.device, verbose=True)
    events, test, train_lines = split_events(args.data, keys)
    if args.scenario == 'stack':
        from recsys_core.persistence import load_model
        source = load_model(args.source, cls)
        if not args.blocks:
            raise UserError('stack needs --blocks N (the depth of the stacked model)')
        rule = args.rule or ('double' if FAMILY_OF[args.model] == 'nextitnet' else 'modules')
        if not 0 < args.data_ratio <= 1:
            raise UserError('--data_ratio must be in (0, 1], not {}'.format(args.data_ratio))
        plan = [(method or RELEASED_METHOD.get(args.model, 'stackA'), args.blocks, args.data_ratio,
                 args.step_cap or 300000, args.eval_every or 6000, args.patience or 8, rule)]
    else:
        source = None
        plan = stages(args.scenario, args.model, method, args.blocks, args.ratios, args.stages)
    from recsys_core.atomic import write_tsv_atomic
    test_path = os.path.join(args.out, 'test.tsv')
    os.makedirs(args.out, exist_ok=True)
    if not os.path.isfile(test_path):
        write_tsv_atomic(test, test_path)
    for k, (m, blocks, ratio, cap, every, patience, rule) in enumerate(plan, 1):
        stage_params = dict(params, **depth_params(args.model, blocks))
        folder = os.path.join(args.out, 'stage{}'.format(k))
        source = run_stage(folder, cls, stage_params,
                           ratio_events(events, train_lines, ratio, keys['session_key']), events, test, source, m,
                           rule, args.step_cap or cap, args.eval_every or every, args.patience or patience,
                           eval_mode=args.eval_type)
        write_split(folder, args.data, ratio, ratio_lines(train_lines, ratio), test_path)
        if args.scenario == 'tf':
            fine_tune_stage(os.path.join(args.out, 'stage{}_finetune'.format(k)), source, args.finetune,
                            args.finetune_epochs, args.finetune_batch, args.finetune_eval_every)
    return 0


def fine_tune_stage(folder, model, path, epochs, batch_size, eval_every):
    """fineall.py on a pre-trained stage: best MRR@5 and HR@5 over 99 sampled negatives + the positive
    (the end state is evaluated once when the fine-tuning takes fewer steps than ``eval_every``)."""
    from recsys_core.atomic import write_text_atomic
    from .finetune import FineTunedNextItNet
    done = os.path.join(folder, 'summary.json')
    if os.path.isfile(done):
        print('{}: done earlier'.format(folder))
        return
    os.makedirs(folder, exist_ok=True)
    tuned = FineTunedNextItNet.from_pretrained(model, n_epochs=epochs, batch_size=batch_size)
    tuned.fit(path, training=tuned.held_out_options(eval_every, checkpoint=folder))
    history = [h['metrics'] for h in tuned.training_history]
    if not history:
        history = [tuned.evaluate_held_out()]
    best = max(history, key=lambda h: h['mrr@5'])
    steps = [h['step'] for h in tuned.training_history if h['metrics'] is best]
    summary = {'blocks': blocks_of(model), 'best_mrr5': best['mrr@5'], 'hr5_at_best': best['hr@5'],
               'best_step': steps[0] if steps else sum(s['minibatches'] for s in tuned.epoch_stats)}
    write_text_atomic(done, json.dumps(summary, indent=1))
    print('{}: {}'.format(folder, summary))


if __name__ == '__main__':
    run_main(main)
