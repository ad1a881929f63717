"""Top-k next-item recommendations from a saved model, for one session or a file of sessions.

    python recommend.py MODEL_PATH ITEM [ITEM ...] [-k 20] [--exclude-seen]
    python recommend.py MODEL_PATH --sessions FILE [-k 20]   (FILE: TSV with SessionId, ItemId, Time)

Prints TAB separated lines: session, rank, item id, score (best first). Works for any model whose
class offers ``recommend`` (GRU4Rec does).
"""
import argparse

from recsys_core import backend
from recsys_core.cli import KEYS, add_shared_arguments, check_positive, run_main
from recsys_core.errors import UserError


def build_parser():
    p = argparse.ArgumentParser(description='Top-k next-item recommendations from a saved model.')
    p.add_argument('model', metavar='MODEL_PATH')
    p.add_argument('items', metavar='ITEM', nargs='*', help='item ids of one session, oldest first')
    p.add_argument('--sessions', metavar='FILE', help='TSV file of sessions (SessionId, ItemId, Time columns)')
    p.add_argument('-k', type=int, default=20, help='number of items to recommend (default: 20)')
    p.add_argument('--exclude-seen', action='store_true', help='do not recommend items already in the session')
    p.add_argument('--skip-unknown', action='store_true', help='ignore items the model does not know instead of failing')
    add_shared_arguments(p, 'device', *KEYS)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if bool(args.items) == bool(args.sessions):
        raise UserError('Give either item ids of one session or --sessions FILE (not both)')
    check_positive(args.k, '-k')
    backend.configure(args.device)
    from recsys_core.persistence import load_model
    model = load_model(args.model)
    if not hasattr(model, 'recommend'):
        raise UserError('{} models do not support recommend'.format(type(model).__name__))
    if args.sessions:
        from recsys_core.data import load_events, sort_if_needed
        data = load_events(args.sessions, args.session_key, args.item_key, args.time_key, verbose=False)
        data = sort_if_needed(data, [args.session_key, args.time_key], verbose=False)
        groups = [(sid, list(g[args.item_key])) for sid, g in data.groupby(args.session_key, sort=False)]
    else:
        groups = [('session', args.items)]
    results = model.recommend([g for _, g in groups], k=args.k, exclude_seen=args.exclude_seen,
                              skip_unknown=args.skip_unknown)
    print('session\trank\titem\tscore')
    for (sid, _), (ids, scores) in zip(groups, results):
        for rank, (item, score) in enumerate(zip(ids, scores), 1):
            print('{}\t{}\t{}\t{:.6g}'.format(sid, rank, item, score))
    return 0


if __name__ == '__main__':
    run_main(main)
