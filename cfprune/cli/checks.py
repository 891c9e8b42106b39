"""The argument checks of ``cfprune``: every mistake is found before any data or model is read
and before any heavy library is imported (a subprocess test keeps it so)."""

from __future__ import annotations

import os

from ..errors import DataError, ModelFileError

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
        from ..compression.search.targets import parse_targets
        parse_targets(args.target or "recall@20")
        if args.budget_bytes is not None and args.budget_bytes < 1:
            raise DataError(f"--budget-bytes {args.budget_bytes}: give a positive byte count")
        if args.sample_users < 0 or args.sample_users == 1:
            raise DataError(f"--sample-users {args.sample_users}: give at least 2 users, or 0 "
                            f"for all")
        if not (args.train or has_data(args)):
            raise DataError("--target/--budget-bytes search on a validation part of the training "
                            "interactions: give --dataset/--ratings (with the split options) or "
                            "--train FILE")
    else:
        for option, given in (("--side", args.side != "items"), ("--scheduler", args.scheduler),
                              ("--sample-users", args.sample_users != 32768)):
            if given:
                raise DataError(f"{option} applies to a --target/--budget-bytes search")
        from ..compression.spec import parse_spec
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
    from ..compression.spec import parse_spec
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


COMMAND_CHECKS = {"generate": lambda args: check_out_dir(args.out), "train": check_train,
                  "evaluate": check_evaluate, "recommend": check_recommend,
                  "compress": check_compress, "export": check_export, "import": check_import,
                  "report": check_report}
