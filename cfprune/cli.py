"""The ``cfprune`` command line: argparse subcommands that call the Python API.

Every :class:`~cfprune.errors.CfpruneError` becomes one line on stderr and exit code 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from .errors import CfpruneError, DataError
from .io import write_json

SPLITS = ("random", "temporal", "strong")


# argument groups ---------------------------------------------------------------------------
def add_data_args(p, required=False):
    g = p.add_argument_group("data (a MovieLens dataset or your own ratings file)")
    src = g.add_mutually_exclusive_group(required=required)
    src.add_argument("--dataset", help="MovieLens dataset name (see `cfprune datasets`)")
    src.add_argument("--ratings", metavar="PATH",
                     help="your own interactions file (CSV/TSV/'::'/Parquet, or a .zip member)")
    g.add_argument("--member", help="member of a .zip given to --ratings")
    g.add_argument("--sep", help="field separator of --ratings (guessed when left out)")
    g.add_argument("--columns", help="user,item[,rating[,timestamp]] as names or 0-based positions")
    g.add_argument("--no-header", action="store_true", help="--ratings has no header line")
    g.add_argument("--skip-bad-lines", action="store_true",
                   help="skip and count malformed lines of --ratings instead of stopping")
    g.add_argument("--threshold", type=float, default=4.0,
                   help="ratings >= this are positives (default 4; a negative value keeps all)")
    g.add_argument("--min-user", type=int, default=0, help="minimum interactions per user")
    g.add_argument("--min-item", type=int, default=0, help="minimum interactions per item")
    s = p.add_argument_group("split")
    s.add_argument("--split", choices=SPLITS, default="random",
                   help="random per-user hold-out, temporal leave-last-k, or strong "
                        "generalisation (held-out users folded in)")
    s.add_argument("--test-fraction", type=float, default=0.2)
    s.add_argument("--leave-last", type=int, default=1, help="k of the temporal split")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--save-split", metavar="DIR",
                   help="also write the split as DIR/train.npz and DIR/test.npz (save_npz)")


def add_model_args(p):
    g = p.add_argument_group("model (a cfprune model file, or a pair of factor files)")
    g.add_argument("model", nargs="?", help="cfprune model file (.npz)")
    g.add_argument("--user-factors", metavar="U.npy")
    g.add_argument("--item-factors", metavar="V.npy")


def add_threads(p):
    p.add_argument("--threads", type=int, default=0, help="threads (0: all cores)")


# helpers -------------------------------------------------------------------------------------
def load_model_arg(args):
    from .models import FactorModel, load_npy_pair
    if args.model and (args.user_factors or args.item_factors):
        raise DataError("give either a MODEL file or --user-factors/--item-factors, not both")
    if args.model:
        return FactorModel.load(args.model)
    if args.user_factors and args.item_factors:
        return load_npy_pair(args.user_factors, args.item_factors)
    raise DataError("no model: give a MODEL file or both --user-factors and --item-factors")


def load_data(args):
    """Interactions from --dataset or --ratings, made implicit with the threshold and filters."""
    from .datasets import load_interactions, load_movielens
    threshold = None if args.threshold is not None and args.threshold < 0 else args.threshold
    if args.dataset:
        raw = load_movielens(args.dataset)
    else:
        raw = load_interactions(args.ratings, member=args.member, sep=args.sep,
                                columns=args.columns, header=False if args.no_header else None,
                                on_bad_lines="skip" if args.skip_bad_lines else "error")
        info = getattr(raw, "load_info", None)
        if info:
            print(f"read {args.ratings}: {json.dumps(info, default=str)}", file=sys.stderr)
    return raw.implicit(threshold, args.min_user, args.min_item)


def make_split(args, data):
    """(train, test) Interactions by the split options. For strong generalisation, train holds
    the training users and the held-out users' fold-in part (the items a scored user is known to
    have), test the held-out users' test part; `cfprune train` folds those users in itself."""
    from . import splits
    if args.split == "random":
        return splits.random_split(data, test_fraction=args.test_fraction, seed=args.seed)
    if args.split == "temporal":
        return splits.temporal_split(data, k=args.leave_last)
    strong = strong_split(args, data)
    return strong.train_with_foldin(), strong.test


def strong_split(args, data):
    """The strong-generalisation split: --test-fraction of the users held out, and of each
    held-out user's interactions --test-fraction to predict (the rest is the fold-in part)."""
    from . import splits
    return splits.strong_generalization_split(data, heldout_fraction=args.test_fraction,
                                              test_fraction=args.test_fraction, seed=args.seed)


def load_csr(path, what):
    import scipy.sparse as sp
    try:
        return sp.load_npz(path).tocsr()
    except (OSError, ValueError) as e:
        raise DataError(f"{what} file {path} is not a scipy.sparse .npz (save_npz): {e}") from None


def train_test(args, need_test=True):
    """(train, test) from --train/--test files or from --dataset/--ratings with the split."""
    if getattr(args, "train", None):
        train = load_csr(args.train, "--train")
        test = load_csr(args.test, "--test") if getattr(args, "test", None) else None
        if need_test and test is None:
            raise DataError("--train needs --test as well (or use --dataset/--ratings)")
        return train, test
    if not (args.dataset or args.ratings):
        raise DataError("no interactions: give --dataset or --ratings (with split options), or "
                        "--train/--test files")
    train, test = make_split(args, load_data(args))
    if getattr(args, "save_split", None):
        save_split(args.save_split, train, test)
    return train, test


def save_split(directory, train, test):
    """Write train/test as scipy.sparse .npz files (atomically) for --train/--test."""
    import io as _io

    import scipy.sparse as sp

    from .io import atomic_write
    os.makedirs(directory, exist_ok=True)
    for name, part in (("train", train), ("test", test)):
        buffer = _io.BytesIO()
        sp.save_npz(buffer, part.matrix.tocsr())
        atomic_write(os.path.join(directory, f"{name}.npz"), lambda f: f.write(buffer.getvalue()))
    print(f"wrote {directory}/train.npz and {directory}/test.npz", file=sys.stderr)


def print_metrics(metrics, ks):
    names = ("recall", "truncated_recall", "precision", "ndcg", "map", "coverage", "tail_recall",
             "overlap")
    for k in ks:
        row = [f"{n}@{k} {metrics[f'{n}@{k}']:.4f}" for n in names if f"{n}@{k}" in metrics]
        print("  ".join(row))


# subcommands ---------------------------------------------------------------------------------
def cmd_datasets(args):
    from .datasets import data_home, list_datasets
    print(f"data home: {data_home()}")
    for row in list_datasets():
        mark = "present" if row["present"] else "missing"
        print(f"{row['name']:<18} {mark:<8} {row['path']}")
    return 0


def cmd_train(args):
    from .evaluation import evaluate
    from .models import fold_in_users, train_als, train_bpr
    common = dict(factors=args.factors, regularization=args.regularization,
                  iterations=args.iterations, num_threads=args.threads, seed=args.seed)
    if args.split == "strong":
        # strong generalisation: train on the training users only, then fold the held-out
        # users in with the closed-form ALS step and score them on their test part
        if args.algorithm != "als":
            raise DataError("--split strong folds the held-out users in with the closed-form ALS "
                            "step; use --algorithm als")
        strong = strong_split(args, load_data(args))
        model = train_als(strong.train, alpha=args.alpha, **common)
        user_factors = model.user_factors
        user_factors[strong.users] = fold_in_users(
            model.item_factors, strong.foldin.matrix[strong.users], args.regularization,
            args.alpha)
        model = model.replace(users=user_factors)
        train, test = strong.train_with_foldin(), strong.test
    else:
        train, test = train_test(args)
        if args.algorithm == "als":
            model = train_als(train, alpha=args.alpha, **common)
        else:
            model = train_bpr(train, learning_rate=args.learning_rate, **common)
    if args.out:
        model.save(args.out)
        print(f"saved {args.out} ({model.nbytes} bytes of factors)")
    result = evaluate(model, train, test, ks=args.k)
    print(f"{args.algorithm} on {args.dataset or args.ratings}: {result.n_users} test users")
    print_metrics(result.metrics, args.k)
    return 0


def cmd_evaluate(args):
    from .evaluation import evaluate
    from .uncertainty import compare
    model = load_model_arg(args)
    train, test = train_test(args)
    baseline = None
    if args.baseline:
        from .models import FactorModel
        baseline = FactorModel.load(args.baseline)
    if args.scheduler:
        from .distributed import evaluate_distributed
        result = evaluate_distributed(model, train, test, ks=args.k, baseline=baseline,
                                      scheduler=args.scheduler, num_threads=args.threads or 1)
    else:
        result = evaluate(model, train, test, ks=args.k, baseline=baseline,
                          num_threads=args.threads or None)
    print(f"{result.n_users} users evaluated")
    print_metrics(result.metrics, args.k)
    if baseline is not None:
        base_result = evaluate(baseline, train, test, ks=args.k, num_threads=args.threads or None)
        for k in args.k:
            for name in ("recall", "ndcg"):
                print(compare(result, base_result, f"{name}@{k}"))
    if args.json:
        write_json(args.json, {"metrics": result.metrics, "n_users": result.n_users,
                               "n_items": result.n_items, "ks": list(result.ks),
                               "tail_share": result.tail_share,
                               "model": args.model or args.user_factors,
                               "baseline": args.baseline})
    return 0


def cmd_recommend(args):
    model = load_model_arg(args)
    if args.train:
        train = load_csr(args.train, "--train")
    elif args.dataset or args.ratings:
        train = train_test(args, need_test=False)[0]
    else:
        train = None
    users = np.arange(model.n_users) if args.all_users or args.users is None else \
        np.asarray(args.users, dtype=np.int64)
    if args.scheduler or args.out:
        from .distributed import recommend_to_files
        written = recommend_to_files(model, users, train, k=args.k, out_dir=args.out,
                                     scheduler=args.scheduler, num_threads=args.threads or None)
        print(f"wrote {len(written)} partition files to {args.out}")
        return 0
    ids, scores = model.recommend(users, train, k=args.k, filter_seen=train is not None,
                                  num_threads=args.threads or None)
    if args.json:
        write_json(args.json, {"users": users.tolist(), "items": ids.tolist(),
                               "scores": [[float(s) for s in row] for row in scores]})
    else:
        for u, row in zip(users[:20], ids[:20]):
            print(u, " ".join(str(i) for i in row))
        if len(users) > 20:
            print(f"... {len(users) - 20} more users (use --json PATH for all)")
    return 0


def cmd_compress(args):
    from .compression import compress, describe
    if args.help_methods:
        print(describe())
        return 0
    searching = args.target is not None or args.budget_bytes is not None
    if searching and args.method:
        raise DataError("give either --method SPEC or --target/--budget-bytes, not both")
    if not (args.method or searching) or not args.out:
        raise DataError("compress needs --method SPEC (or --target) and --out FILE "
                        "(--help-methods lists the methods)")
    model = load_model_arg(args)
    interactions = None
    if args.train:
        interactions = load_csr(args.train, "--train")
    elif args.dataset or args.ratings:
        interactions = train_test(args, need_test=False)[0]
    if searching:
        return search_compress(args, model, interactions)
    out = compress(model, args.method, interactions)
    out.save(args.out)
    print(f"{out.spec}: {model.nbytes} -> {out.nbytes} bytes "
          f"({model.nbytes / max(out.nbytes, 1):.2f}x smaller), saved {args.out}")
    return 0


def search_compress(args, model, interactions):
    """--target/--budget-bytes: search, save the pick, write the candidates beside it."""
    from .compression.search import TargetNotMet, search
    record = os.path.splitext(args.out)[0] + ".search.json"
    try:
        result = search(model, interactions, args.target or "recall@20", args.budget_bytes,
                        seed=args.seed, show_progress=True)
    except TargetNotMet as e:
        write_json(record, e.result.as_dict())
        raise DataError(f"{e} (candidates: {record})") from None
    result.model.save(args.out)
    write_json(record, result.as_dict())
    pick = result.pick
    figures = ", ".join(f"{k} {v:.4f} ({100 * pick.relative[k]:.1f}% of float)"
                        for k, v in pick.metrics.items())
    print(f"{pick.spec}: item side {result.baseline_bytes:,} -> {pick.bytes:,} bytes "
          f"({result.baseline_bytes / pick.bytes:.1f}x smaller); validation {figures}; "
          f"{len(result.candidates)} candidates in {result.seconds:.0f} s; saved {args.out} "
          f"and {record}")
    return 0


def cmd_import(args):
    from .models import load_implicit_file, load_npy_pair
    ids = {"user_ids": load_ids(args.user_ids, "--user-ids"),
           "item_ids": load_ids(args.item_ids, "--item-ids")}
    if args.implicit_file:
        model = load_implicit_file(args.implicit_file, **ids)
    elif args.user_factors and args.item_factors:
        model = load_npy_pair(args.user_factors, args.item_factors, **ids)
    else:
        raise DataError("import needs --implicit-file F, or --user-factors and --item-factors")
    model.save(args.out)
    print(f"saved {args.out}: {model.n_users} users x {model.n_items} items, {model.dim} factors")
    return 0


def load_ids(path, what):
    """Raw ids from a .npy array (no pickle) or a text file with one id per line, or None."""
    if path is None:
        return None
    try:
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        with open(path, encoding="utf-8") as f:
            return np.array([line.rstrip("\n") for line in f if line.strip()])
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{what} file {path} is not readable: {e}") from None


def cmd_report(args):
    from .report import run_report
    data = load_data(args)
    run_report(data, out_dir=args.out, methods=args.methods, seed=args.seed,
               num_threads=args.threads or None, ks=tuple(args.k), quick=args.quick,
               split=args.split, test_fraction=args.test_fraction, leave_last=args.leave_last)
    return 0


# parser ---------------------------------------------------------------------------------------
def build_parser():
    parser = argparse.ArgumentParser(prog="cfprune", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list the MovieLens datasets and whether they are present")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("train", help="train ALS or BPR and print its test metrics")
    add_data_args(p, required=True)
    p.add_argument("--algorithm", choices=("als", "bpr"), default="als")
    p.add_argument("--factors", type=int, default=64)
    p.add_argument("--regularization", type=float, default=0.05)
    p.add_argument("--alpha", type=float, default=1.0, help="ALS confidence scale")
    p.add_argument("--learning-rate", type=float, default=0.05, help="BPR step size")
    p.add_argument("--iterations", type=int, default=15)
    p.add_argument("--k", type=int, nargs="+", default=[10, 20])
    p.add_argument("--out", help="save the model here (.npz)")
    add_threads(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="ranking metrics of a model on a test split")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--train", help="training interactions (scipy.sparse .npz): items skipped")
    p.add_argument("--test", help="test interactions (scipy.sparse .npz)")
    p.add_argument("--k", type=int, nargs="+", default=[10, 20, 50])
    p.add_argument("--baseline", metavar="BASE", help="model file to compare with (overlap@k, "
                                                      "paired confidence intervals)")
    p.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler")
    add_threads(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("recommend", help="top-k items for users")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--train", help="training interactions (scipy.sparse .npz): items skipped")
    p.add_argument("--users", type=int, nargs="+", help="user indices (default: all)")
    p.add_argument("--all-users", action="store_true")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--out", metavar="DIR", help="write partitioned .npz candidate files here")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler")
    add_threads(p)
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("compress", help="compress a model with a method spec")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--method", metavar="SPEC",
                   help="e.g. 'prune-rows:keep=0.9,by=popularity|lowrank:rank=32|pq:m=8'")
    p.add_argument("--help-methods", action="store_true",
                   help="list every method and its parameters")
    p.add_argument("--train", help="training interactions (scipy.sparse .npz) for methods that "
                                   "need them")
    p.add_argument("--target", metavar="TARGETS",
                   help="search for the smallest pipeline keeping e.g. "
                        "'recall@20>=0.97,coverage@20>=0.90' relative to the model, on a "
                        "validation part carved from --train; the candidates go to "
                        "OUT.search.json")
    p.add_argument("--budget-bytes", type=int, metavar="BYTES",
                   help="search for the best first --target metric within this many bytes")
    p.add_argument("--out", help="compressed model file (.npz)")
    p.set_defaults(func=cmd_compress)

    p = sub.add_parser("import", help="make a cfprune model file from factors made elsewhere")
    p.add_argument("--user-factors", metavar="U.npy")
    p.add_argument("--item-factors", metavar="V.npy")
    p.add_argument("--implicit-file", metavar="F.npz", help="a file written by implicit's save")
    p.add_argument("--user-ids", metavar="FILE", help="raw user id of each row (.npy, or text: "
                                                      "one per line)")
    p.add_argument("--item-ids", metavar="FILE", help="raw item id of each row (.npy or text)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("report", help="compression report: every method side by side")
    add_data_args(p, required=True)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--methods", nargs="+", metavar="SPEC",
                   help="custom sweep: spec strings, e.g. int8 'lowrank:rank=32|int8' "
                        "(default: every method at several budgets)")
    p.add_argument("--k", type=int, nargs="+", default=[10, 20, 50],
                   help="cut-offs evaluated (10, 20 and 50 are always included)")
    p.add_argument("--quick", action="store_true",
                   help="a smaller tuning grid and sweep for a smoke run")
    add_threads(p)
    p.set_defaults(func=cmd_report)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CfpruneError as e:
        if args.debug:
            raise
        print(f"cfprune {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cfprune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
