"""The ``cfprune`` command line: argparse subcommands that call the Python API.

Every argument is checked by :func:`check_args` before any data or model is read and before the
heavy libraries (scikit-learn, implicit, pandas, numba, matplotlib) are imported: a mistake costs
a fraction of a second. Each command then imports what it needs when it runs.

Ids on screen are the raw ids of the data (MovieLens user and movie ids, the ids of your ratings
file, or the id maps stored in a model file); ``recommend --internal-ids`` shows row indices.

Every :class:`~cfprune.errors.CfpruneError` becomes one line on stderr and exit code 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from .errors import CfpruneError, DataError, ModelFileError
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
    g.add_argument("--id-type", choices=("auto", "int", "str"), default="auto",
                   help="user and item ids of --ratings: integers, text, or auto (integers when "
                        "every id is one; a few non-integer ids among integers are an error)")
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


def add_threads(p, scheduler=False, extra=""):
    if scheduler:
        extra = "; with --scheduler, Numba threads per Dask task (0: 1)"
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help=f"threads: 0 (the default) uses every core, N > 0 uses N{extra}")


def num_threads(args):
    """The thread count for the Python API: None (its default, every core) for ``--threads 0``.
    Training takes ``args.threads`` itself (``implicit``: 0 is every core)."""
    return args.threads or None


# argument checks: run before any data is read or any heavy module is imported ---------------
FILE_ARGS = (("model", "model"), ("user_factors", "--user-factors"),
             ("item_factors", "--item-factors"), ("train", "--train"), ("test", "--test"),
             ("baseline", "--baseline"), ("ratings", "--ratings"),
             ("implicit_file", "--implicit-file"), ("user_ids", "--user-ids"),
             ("item_ids", "--item-ids"))
MODEL_FILES = ("model", "baseline", "implicit_file")


def check_args(args):
    """DataError/SpecError/ModelFileError for any argument mistake, before anything is loaded.
    Imports nothing heavy: the spec parser (cfprune.compression.spec) needs numpy and
    scipy.sparse only; a method's libraries are imported when it runs."""
    ks = getattr(args, "k", None)
    for k in ([ks] if isinstance(ks, int) else ks or []):
        if k < 1:
            raise DataError(f"--k {k}: cut-offs must be positive integers")
    if getattr(args, "threads", 0) < 0:
        raise DataError(f"--threads {args.threads}: give 0 (every core) or a positive count")
    check_out_dir(getattr(args, "json", None), "--json")
    if hasattr(args, "split"):
        check_data_args(args)
    check = COMMAND_CHECKS.get(args.command)
    if check is not None:
        check(args)
    for attr, flag in FILE_ARGS:
        path = getattr(args, attr, None)
        if path and not os.path.exists(path):
            error = ModelFileError if attr in MODEL_FILES else DataError
            raise error(f"{flag} file {path} does not exist")


def check_data_args(args):
    import math
    if args.member and not args.ratings:
        raise DataError("--member names a member of the .zip given to --ratings; give --ratings")
    if math.isnan(args.threshold) or math.isinf(args.threshold):
        raise DataError(f"--threshold {args.threshold}: give a finite rating (a negative value "
                        f"keeps every rating)")
    if args.min_user < 0 or args.min_item < 0:
        raise DataError(f"--min-user {args.min_user} --min-item {args.min_item}: minimums must be "
                        f">= 0")
    if not 0.0 < args.test_fraction < 1.0:
        raise DataError(f"--test-fraction {args.test_fraction}: give a fraction strictly between "
                        f"0 and 1")
    if args.leave_last < 1:
        raise DataError(f"--leave-last {args.leave_last}: hold out at least 1 interaction")
    if args.seed < 0:
        raise DataError(f"--seed {args.seed}: seeds are non-negative integers")


def check_model_source(args):
    if args.model and (args.user_factors or args.item_factors):
        raise DataError("give either a MODEL file or --user-factors/--item-factors, not both")
    if not args.model and not (args.user_factors and args.item_factors):
        raise DataError("no model: give a MODEL file or both --user-factors and --item-factors")


def has_data(args):
    return bool(args.dataset or args.ratings)


def check_one_source(args):
    if args.train and has_data(args):
        raise DataError("give --train (with --test) files or --dataset/--ratings, not both")


def check_train(args):
    for name in ("factors", "iterations"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise DataError(f"--{name} {value}: must be a positive integer")
    for name in ("regularization", "alpha", "learning_rate"):
        value = getattr(args, name)
        if value is not None and not value >= 0:
            raise DataError(f"--{name.replace('_', '-')} {value}: must be >= 0")
    if args.split == "strong" and args.algorithm != "als":
        raise DataError("--split strong folds the held-out users in with the closed-form ALS "
                        "step; use --algorithm als")
    check_out_dir(args.out)


def check_evaluate(args):
    check_model_source(args)
    check_one_source(args)
    if args.test and not args.train:
        raise DataError("--test needs --train as well (the items each user has are skipped)")
    if args.train and not args.test:
        raise DataError("--train needs --test as well (or use --dataset/--ratings)")
    if not args.train and not has_data(args):
        raise DataError("no interactions: give --dataset or --ratings (with split options), or "
                        "--train/--test files")


def check_recommend(args):
    check_model_source(args)
    check_one_source(args)
    if args.users is not None and args.all_users:
        raise DataError("give --users IDS or --all-users, not both")
    if not args.train and not has_data(args) and not args.no_filter:
        raise DataError("recommend skips the items each user already has: give --dataset/--ratings "
                        "(with the training split options) or --train FILE, or --no-filter to rank "
                        "every item")


def check_compress(args):
    if args.help_methods:
        return
    searching = args.target is not None or args.budget_bytes is not None
    if searching and args.method:
        raise DataError("give either --method SPEC or --target/--budget-bytes, not both")
    if not (args.method or searching) or not args.out:
        raise DataError("compress needs --method SPEC (or --target) and --out FILE "
                        "(--help-methods lists the methods)")
    check_model_source(args)
    check_one_source(args)
    if searching:
        from .compression.search import parse_targets
        parse_targets(args.target or "recall@20")
        if args.budget_bytes is not None and args.budget_bytes < 1:
            raise DataError(f"--budget-bytes {args.budget_bytes}: give a positive byte count")
        if not (args.train or has_data(args)):
            raise DataError("--target/--budget-bytes search on a validation part of the training "
                            "interactions: give --dataset/--ratings (with the split options) or "
                            "--train FILE")
    else:
        from .compression.spec import parse_spec
        steps = parse_spec(args.method)
        needs = [s.spec_string() for s in steps if s.requires_interactions()]
        if needs and not (args.train or has_data(args)):
            raise DataError(f"{', '.join(needs)} needs the training interactions: give "
                            f"--dataset/--ratings (with the split options) or --train FILE")
    check_out_dir(args.out)


def check_import(args):
    if not args.implicit_file and not (args.user_factors and args.item_factors):
        raise DataError("import needs --implicit-file F, or --user-factors and --item-factors")
    if args.implicit_file and (args.user_factors or args.item_factors):
        raise DataError("give --implicit-file or --user-factors/--item-factors, not both")
    check_out_dir(args.out)


def check_report(args):
    from .compression.spec import parse_spec
    if args.split == "strong":
        raise DataError("the report supports --split random or temporal")
    for spec in args.methods or ():
        parse_spec(spec)


def check_out_dir(path, flag="--out"):
    """DataError when the directory the file ``path`` would be written into does not exist."""
    if path:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise DataError(f"{flag} {path}: directory {parent} does not exist")


def check_export(args):
    check_model_source(args)
    check_out_dir(args.out)


COMMAND_CHECKS = {"train": check_train, "evaluate": check_evaluate, "recommend": check_recommend,
                  "compress": check_compress, "export": check_export, "import": check_import,
                  "report": check_report}


# helpers -------------------------------------------------------------------------------------
def load_model_arg(args):
    """The FactorModel of the MODEL file or the --user-factors/--item-factors pair."""
    from .models import FactorModel, load_npy_pair
    if args.model:
        return FactorModel.load(args.model)
    return load_npy_pair(args.user_factors, args.item_factors)


def load_data(args):
    """Interactions from --dataset or --ratings, made implicit with the threshold and filters."""
    from .datasets import load_interactions, load_movielens
    threshold = None if args.threshold < 0 else args.threshold
    if args.dataset:
        raw = load_movielens(args.dataset)
    else:
        raw = load_interactions(args.ratings, member=args.member, sep=args.sep,
                                columns=args.columns, header=False if args.no_header else None,
                                on_bad_lines="skip" if args.skip_bad_lines else "error",
                                id_type=args.id_type)
        info = getattr(raw, "load_info", None)
        if info:
            print(f"read {args.ratings}: {json.dumps(info, default=str)}", file=sys.stderr)
    return raw.implicit(threshold, args.min_user, args.min_item)


def split_data(args):
    """(train, test) Interactions of --dataset/--ratings by the split options (also written to
    --save-split). For strong generalisation, train holds the training users and the held-out
    users' fold-in part (the items a scored user is known to have), test the held-out users'
    test part; `cfprune train` folds those users in itself."""
    from . import splits
    data = load_data(args)
    if args.split == "random":
        train, test = splits.random_split(data, test_fraction=args.test_fraction, seed=args.seed)
    elif args.split == "temporal":
        train, test = splits.temporal_split(data, k=args.leave_last)
    else:
        strong = strong_split(args, data)
        train, test = strong.train_with_foldin(), strong.test
    if args.save_split:
        save_split(args.save_split, train, test)
    return train, test


def strong_split(args, data):
    """The strong-generalisation split: --test-fraction of the users held out, and of each
    held-out user's interactions --test-fraction to predict (the rest is the fold-in part)."""
    from . import splits
    return splits.strong_generalization_split(data, heldout_fraction=args.test_fraction,
                                              test_fraction=args.test_fraction, seed=args.seed)


def load_csr(path, what):
    from .io import read_sparse
    return read_sparse(path, f"{what} file")


def training_part(args):
    """The training interactions: the --train file (CSR), the training part of --dataset/
    --ratings (Interactions, with its id maps), or None."""
    if args.train:
        return load_csr(args.train, "--train")
    if has_data(args):
        return split_data(args)[0]
    return None


def save_split(directory, train, test):
    """Write train/test as scipy.sparse .npz files (atomically) for --train/--test."""
    import io as _io

    import scipy.sparse as sp

    from .io import atomic_write, ensure_dir
    ensure_dir(directory)
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


# raw ids -------------------------------------------------------------------------------------
def model_rows(model_ids, data_ids, n_rows, what):
    """int64 [len(data_ids)]: the model row of each row of the data (-1 where the model has no
    such id), or None when the rows already coincide. A model without id maps must have the
    data's rows."""
    if model_ids is None or np.array_equal(model_ids, data_ids):
        if len(data_ids) != n_rows:
            raise DataError(f"the model has {n_rows} {what}s but the data has {len(data_ids)}; "
                            f"give the data (and --threshold/--min-user/--min-item) it was "
                            f"trained on")
        return None
    index = {key: row for row, key in enumerate(model_ids.tolist())}
    rows = np.fromiter((index.get(key, -1) for key in data_ids.tolist()), np.int64,
                       len(data_ids))
    if not (rows >= 0).any():
        raise DataError(f"no {what} id of the data is among the model's {what} ids (e.g. "
                        f"{model_ids[:1].tolist()} vs {data_ids[:1].tolist()}): the model was "
                        f"not trained on this data")
    return rows


def in_model_rows(model, part):
    """CSR float32 [n_users, n_items] in the model's rows and columns: a --train/--test CSR
    (already in them) as it is, or an Interactions matched to the model's id maps by raw id
    (pairs whose user or item the model lacks are dropped)."""
    import scipy.sparse as sp
    if part is None or sp.issparse(part):
        return part
    users = model_rows(model.user_ids, part.user_ids, model.n_users, "user")
    items = model_rows(model.item_ids, part.item_ids, model.n_items, "item")
    if users is None and items is None:
        return part.matrix
    coo = part.matrix.tocoo()
    r = coo.row.astype(np.int64) if users is None else users[coo.row]
    c = coo.col.astype(np.int64) if items is None else items[coo.col]
    keep = (r >= 0) & (c >= 0)
    return sp.csr_matrix((coo.data[keep], (r[keep], c[keep])),
                         shape=(model.n_users, model.n_items))


def id_maps(model, train):
    """(user raw ids or None, item raw ids or None) of the model's rows: the model's stored id
    maps, else those of the data (whose rows the model then has), else None (ids are rows)."""
    has_ids = train is not None and hasattr(train, "user_ids")
    users = model.user_ids if model.user_ids is not None else \
        (train.user_ids if has_ids else None)
    items = model.item_ids if model.item_ids is not None else \
        (train.item_ids if has_ids else None)
    return users, items


def parse_ids(tokens, raw_ids, n_rows, internal):
    """int64 [n]: model rows of the user ids typed on the command line. Raw ids are looked up
    in ``raw_ids`` (the model's or the data's id map); with ``internal`` or no id map they are
    row indices. DataError naming the first id that is not there."""
    if internal or raw_ids is None:
        rows = []
        for token in tokens:
            try:
                row = int(token)
            except ValueError:
                raise DataError(f"--users {token}: row indices are integers") from None
            if not 0 <= row < n_rows:
                raise DataError(f"--users {token}: the model has {n_rows} users (rows 0.."
                                f"{n_rows - 1})")
            rows.append(row)
        return np.asarray(rows, np.int64)
    numeric = raw_ids.dtype.kind in "iu"
    index = {key: row for row, key in enumerate(raw_ids.tolist())}
    rows = []
    for token in tokens:
        try:
            key = int(token) if numeric else str(token)
        except ValueError:
            key = None
        if key not in index:
            first, last = raw_ids[[0, -1]].tolist()
            raise DataError(f"user id {token} is not among the {n_rows} users of the model "
                            f"(ids such as {first!r}, {last!r}; --internal-ids takes row "
                            f"indices)")
        rows.append(index[key])
    return np.asarray(rows, np.int64)


def shown_ids(rows, raw_ids):
    """list: the raw id of each row (None for the padding row -1), or the rows themselves."""
    rows = np.asarray(rows)
    if raw_ids is None:
        return [None if r < 0 else int(r) for r in rows.tolist()]
    return [None if r < 0 else v for r, v in zip(rows.tolist(), raw_ids[rows].tolist())]


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
    given = {"factors": args.factors, "regularization": args.regularization,
             "iterations": args.iterations}
    common = {name: value for name, value in given.items() if value is not None}
    common.update(num_threads=args.threads, seed=args.seed)
    if args.algorithm == "als":
        train_model = train_als
        if args.alpha is not None:
            common["alpha"] = args.alpha
    else:
        train_model = train_bpr
        if args.learning_rate is not None:
            common["learning_rate"] = args.learning_rate
    if args.split == "strong":
        # strong generalisation: train on the training users only, then fold the held-out
        # users in with the closed-form ALS step and score them on their test part
        strong = strong_split(args, load_data(args))
        model = train_model(strong.train, **common)
        user_factors = model.user_factors.copy()  # a table's arrays are read-only
        user_factors[strong.users] = fold_in_users(
            model.item_factors, strong.foldin.matrix[strong.users],
            model.info["regularization"], model.info["alpha"])
        model = model.replace(users=user_factors)
        train, test = strong.train_with_foldin(), strong.test
    else:
        train, test = split_data(args)
        model = train_model(train, **common)
    params = ", ".join(f"{k} {v:g}" for k, v in model.info.items()
                       if k in ("factors", "regularization", "alpha", "learning_rate",
                                "iterations"))
    if args.out:
        model.save(args.out)
        print(f"saved {args.out} ({model.nbytes} bytes of factors)")
    result = evaluate(model, train, test, ks=args.k, num_threads=num_threads(args))
    print(f"{args.algorithm} ({params}) on {args.dataset or args.ratings}: "
          f"{result.n_users} test users")
    print_metrics(result.metrics, args.k)
    return 0


def cmd_evaluate(args):
    from .evaluation import evaluate
    from .uncertainty import compare
    model = load_model_arg(args)
    if args.train:
        train, test = load_csr(args.train, "--train"), load_csr(args.test, "--test")
    else:
        train, test = (in_model_rows(model, part) for part in split_data(args))
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
                          num_threads=num_threads(args))
    print(f"{result.n_users} users evaluated")
    print_metrics(result.metrics, args.k)
    if baseline is not None:
        base_result = evaluate(baseline, train, test, ks=args.k, num_threads=num_threads(args))
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
    train = training_part(args)
    seen = in_model_rows(model, train)
    user_raw, item_raw = id_maps(model, train)
    if args.internal_ids:
        user_raw = item_raw = None
    else:
        for what, raw in (("user", user_raw), ("item", item_raw)):
            if raw is None:
                print(f"note: neither the model nor the data maps {what}s to raw ids; {what} "
                      f"ids are row indices", file=sys.stderr)
    kind = "raw" if user_raw is not None and item_raw is not None else "internal"
    users = np.arange(model.n_users) if args.users is None else \
        parse_ids(args.users, user_raw, model.n_users, args.internal_ids)
    filter_seen = not args.no_filter
    if args.scheduler or args.out:
        from .distributed import recommend_to_files
        written = recommend_to_files(model, users, seen, k=args.k, out_dir=args.out,
                                     scheduler=args.scheduler, filter_seen=filter_seen,
                                     num_threads=args.threads or None)
        print(f"wrote {len(written)} partition files to {args.out} (row indices of the model)")
        return 0
    ids, scores = model.recommend(users, seen, k=args.k, filter_seen=filter_seen,
                                  num_threads=num_threads(args), user_items_rows="model")
    shown_users = shown_ids(users, user_raw)
    shown_items = [shown_ids(row, item_raw) for row in ids]
    shown_scores = [[None if i < 0 else float(s) for i, s in zip(r, q)]
                    for r, q in zip(ids.tolist(), scores.tolist())]
    if args.json:
        write_json(args.json, {"ids": kind, "users": shown_users, "items": shown_items,
                               "scores": shown_scores})
        return 0
    shown = "raw ids" if kind == "raw" else "row indices"
    print(f"# user: item:score ... (best first, {shown})")
    for user, items, row_scores in list(zip(shown_users, shown_items, shown_scores))[:20]:
        print(f"{user}: " + " ".join(f"{i}:{s:.4f}" for i, s in zip(items, row_scores)
                                    if i is not None))
    if len(users) > 20:
        print(f"... {len(users) - 20} more users (use --json PATH for all)")
    return 0


def cmd_compress(args):
    from .compression import describe
    from .facade import compress
    if args.help_methods:
        print(describe())
        return 0
    model = load_model_arg(args)
    interactions = in_model_rows(model, training_part(args))
    if args.target is not None or args.budget_bytes is not None:
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
                        seed=args.seed)
    except TargetNotMet as e:
        write_json(record, e.result.as_dict())
        raise DataError(f"{e} (candidates: {record})") from None
    result.model.save(args.out)
    write_json(record, result.as_dict())
    pick = result.pick
    figures = ", ".join(f"{k} {v:.4f} ({100 * pick.relative[k]:.1f}% of float)"
                        for k, v in pick.metrics.items())
    print(f"{pick.spec}: item side {result.baseline_bytes:,} -> {pick.returned_bytes:,} bytes "
          f"({result.baseline_bytes / pick.returned_bytes:.1f}x smaller); validation {figures}; "
          f"{len(result.candidates)} candidates in {result.seconds:.0f} s; saved {args.out} "
          f"and {record}")
    return 0


def cmd_export(args):
    from .export import export_faiss
    model = load_model_arg(args)
    index = export_faiss(model, args.out)
    print(f"{model.spec or 'float32'}: {type(index).__name__} of {index.ntotal} items x "
          f"{index.d} dims, saved {args.out}")
    return 0


def cmd_import(args):
    from .models import load_implicit_file, load_npy_pair
    ids = {"user_ids": load_ids(args.user_ids, "--user-ids"),
           "item_ids": load_ids(args.item_ids, "--item-ids")}
    if args.implicit_file:
        model = load_implicit_file(args.implicit_file, **ids)
    else:
        model = load_npy_pair(args.user_factors, args.item_factors, **ids)
    model.save(args.out)
    print(f"saved {args.out}: {model.n_users} users x {model.n_items} items, {model.dim} factors")
    return 0


def load_ids(path, what):
    """Raw ids from a .npy array (no pickle) or a text file with one id per line (integers when
    every line is one, so they match the ids of a ratings file), or None."""
    if path is None:
        return None
    try:
        if path.endswith(".npy"):
            return np.load(path, allow_pickle=False)
        with open(path, encoding="utf-8") as f:
            ids = [line.strip() for line in f if line.strip()]
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{what} file {path} is not readable: {e}") from None
    try:
        return np.array([int(i) for i in ids], np.int64)
    except ValueError:
        return np.array(ids)


def cmd_report(args):
    from .report import run_report
    data = load_data(args)
    run_report(data, out_dir=args.out, methods=args.methods, seed=args.seed,
               num_threads=num_threads(args), ks=tuple(args.k), quick=args.quick,
               split=args.split, test_fraction=args.test_fraction, leave_last=args.leave_last)
    return 0


# parser ---------------------------------------------------------------------------------------
# the keyword defaults of train_als and train_bpr, for `cfprune train --help` only (the CLI passes
# just what the user gives; building the parser must not import the models); a test keeps them
# equal to the functions' signatures
ALS_DEFAULTS = {"factors": 64, "regularization": 30.0, "alpha": 10.0, "iterations": 15}
BPR_DEFAULTS = {"factors": 64, "learning_rate": 0.01, "regularization": 0.01, "iterations": 50}


def build_parser():
    parser = argparse.ArgumentParser(prog="cfprune", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list the MovieLens datasets and whether they are present")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("train", help="train ALS or BPR and print its test metrics")
    add_data_args(p, required=True)
    p.add_argument("--algorithm", choices=("als", "bpr"), default="als")
    als, bpr = ALS_DEFAULTS, BPR_DEFAULTS
    p.add_argument("--factors", type=int,
                   help=f"default {als['factors']} (BPR adds a bias column)")
    p.add_argument("--regularization", type=float,
                   help=f"default: ALS {als['regularization']:g}, BPR {bpr['regularization']:g}")
    p.add_argument("--alpha", type=float,
                   help=f"ALS confidence scale (a positive counts 1 + alpha), default "
                        f"{als['alpha']:g}")
    p.add_argument("--learning-rate", type=float,
                   help=f"BPR step size, default {bpr['learning_rate']:g}")
    p.add_argument("--iterations", type=int,
                   help=f"default: ALS {als['iterations']}, BPR {bpr['iterations']}")
    p.add_argument("--k", type=int, nargs="+", default=[10, 20])
    p.add_argument("--out", help="save the model here (.npz)")
    add_threads(p, extra="; BPR gives the same model for the same seed only with 1")
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
    add_threads(p, scheduler=True)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("recommend", help="top-k items for users, by raw id",
                       description="Top-k items for users. Users are given and items printed by "
                                   "their raw ids (the ids of the data file, or the id maps "
                                   "stored in the model); --internal-ids uses row indices. The "
                                   "items each user has in the training part of the data (or "
                                   "--train) are skipped; --no-filter ranks every item.")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--train", help="training interactions (scipy.sparse .npz, rows and columns "
                                   "of the model): items skipped")
    p.add_argument("--no-filter", action="store_true",
                   help="rank every item, including those the user already has")
    p.add_argument("--users", nargs="+", metavar="ID", help="raw user ids (default: all users)")
    p.add_argument("--all-users", action="store_true")
    p.add_argument("--internal-ids", action="store_true",
                   help="--users and the printed items are row indices, not raw ids")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", metavar="PATH", help="write users, items and scores as JSON")
    p.add_argument("--out", metavar="DIR", help="write partitioned .npz candidate files here "
                                                "(row indices)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler")
    add_threads(p, scheduler=True)
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

    p = sub.add_parser("export", help="write the item table as a faiss index (same codes)")
    add_model_args(p)
    p.add_argument("--format", choices=("faiss",), default="faiss")
    p.add_argument("--out", required=True, metavar="INDEX", help="faiss index file to write")
    p.set_defaults(func=cmd_export)

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
        check_args(args)
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
