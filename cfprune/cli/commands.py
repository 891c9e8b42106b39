"""The subcommands of ``cfprune``: each loads what it needs, calls the Python API and prints
its result (heavy modules are imported when a command runs, after the checks)."""

from __future__ import annotations

import os
import sys

import numpy as np

from ..errors import DataError
from ..io import write_json
from ..metric_names import SUMMARY_METRICS
from ..models.training import TRAINING_DEFAULTS
from .loading import (load_csr, load_data, load_ids, load_model_arg, split_data, strong_split,
                      training_part)
from .raw_ids import id_maps, in_model_rows, parse_ids, shown_ids


def num_threads(args):
    """The thread count for the Python API: None (its default, every core) for ``--threads 0``.
    Training takes ``args.threads`` itself (``implicit``: 0 is every core)."""
    return args.threads or None


def print_metrics(metrics, ks):
    """One line per cut-off: the :data:`~cfprune.metric_names.SUMMARY_METRICS` measured."""
    for k in ks:
        row = [f"{n}@{k} {metrics[f'{n}@{k}']:.4f}" for n in SUMMARY_METRICS
               if f"{n}@{k}" in metrics]
        print("  ".join(row))


def cmd_datasets(args):
    from ..datasets import data_home, list_datasets
    print(f"data home: {data_home()}")
    for row in list_datasets():
        mark = "present" if row["present"] else "missing"
        print(f"{row['name']:<18} {mark:<8} {row['path']}")
    return 0


def cmd_generate(args):
    from ..datasets import write_synthetic_log
    log = write_synthetic_log(args.out, args.users, args.items, args.interactions,
                              n_topics=args.topics, topics_per_user=args.topics_per_user,
                              zipf=args.zipf, ratings=args.ratings, timestamps=args.timestamps,
                              seed=args.seed)
    print(f"wrote {log.nnz:,} synthetic interactions of {log.n_users:,} users on "
          f"{log.n_items:,} items to {args.out}")
    return 0


def cmd_train(args):
    from ..evaluation import evaluate
    from ..models import train_als, train_bpr
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
        user_factors[strong.users] = model.fold_in_users(strong.foldin.matrix[strong.users])
        model = model.replace(users=user_factors)
        train, test = strong.train_with_foldin(), strong.test
    else:
        train, test = split_data(args)
        model = train_model(train, **common)
    params = ", ".join(f"{k} {v:g}" for k, v in model.info.items()
                       if k in TRAINING_DEFAULTS[args.algorithm])
    if args.out:
        model.save(args.out)
        print(f"saved {args.out} ({model.nbytes} bytes of factors)")
    result = evaluate(model, train, test, ks=args.k, num_threads=num_threads(args))
    print(f"{args.algorithm} ({params}) on {args.dataset or args.ratings}: "
          f"{result.n_users} test users")
    print_metrics(result.metrics, args.k)
    return 0


def cmd_evaluate(args):
    from ..evaluation import evaluate
    from ..uncertainty import compare
    model = load_model_arg(args)
    if args.train:
        train, test = load_csr(args.train, "--train"), load_csr(args.test, "--test")
    else:
        train, test = (in_model_rows(model, part) for part in split_data(args))
    baseline = None
    if args.baseline:
        from ..models import FactorModel
        baseline = FactorModel.load(args.baseline)
    if args.scheduler:
        from ..distributed import evaluate_distributed
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
        from ..distributed import recommend_to_files
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
    from ..compression import describe
    from ..facade import compress
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
    from ..compression.search import TargetNotMet, search
    record = os.path.splitext(args.out)[0] + ".search.json"
    log = None if sys.stderr.isatty() else (lambda line: print(line, file=sys.stderr,
                                                                flush=True))
    try:
        result = search(model, interactions, args.target or "recall@20", args.budget_bytes,
                        side=args.side, sample_users=args.sample_users or None, seed=args.seed,
                        scheduler=args.scheduler,
                        num_threads=(args.threads or 1) if args.scheduler else num_threads(args),
                        log=log)
    except TargetNotMet as e:
        write_json(record, e.result.as_dict())
        raise DataError(f"{e} (candidates: {record})") from None
    result.model.save(args.out)
    write_json(record, result.as_dict())
    pick = result.pick
    figures = ", ".join(f"{k} {v:.4f} ({100 * pick.relative[k]:.1f}% of float)"
                        for k, v in pick.metrics.items())
    whole = (f"whole model, users included, {result.baseline_model_bytes:,} -> "
             f"{result.model_bytes:,} bytes ({result.model_ratio:.2f}x smaller)")
    if result.side == "items":
        whole = (f"item side {result.baseline_bytes:,} -> {pick.returned_bytes:,} bytes "
                 f"({result.baseline_bytes / pick.returned_bytes:.1f}x smaller); {whole}")
    print(f"{pick.spec}: {whole}; validation {figures}; "
          f"{len(result.candidates)} candidates in {result.seconds:.0f} s; saved {args.out} "
          f"and {record}")
    return 0


def cmd_export(args):
    from ..export import export_faiss
    model = load_model_arg(args)
    index = export_faiss(model, args.out)
    print(f"{model.spec or 'float32'}: {type(index).__name__} of {index.ntotal} items x "
          f"{index.d} dims, saved {args.out}")
    return 0


def cmd_import(args):
    from ..models import load_implicit_file, load_npy_pair
    ids = {"user_ids": load_ids(args.user_ids, "--user-ids"),
           "item_ids": load_ids(args.item_ids, "--item-ids")}
    if args.implicit_file:
        model = load_implicit_file(args.implicit_file, **ids)
    else:
        model = load_npy_pair(args.user_factors, args.item_factors, **ids)
    model.save(args.out)
    print(f"saved {args.out}: {model.n_users} users x {model.n_items} items, {model.dim} factors")
    return 0


def cmd_report(args):
    from ..report import run_report
    data = load_data(args)
    run_report(data, out_dir=args.out, methods=args.methods, seed=args.seed,
               num_threads=num_threads(args), ks=tuple(args.k), quick=args.quick,
               split=args.split, test_fraction=args.test_fraction, leave_last=args.leave_last,
               scheduler=args.scheduler)
    return 0
