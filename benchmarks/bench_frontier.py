"""The target search against hand-made pipelines: smallest item table keeping recall and coverage.

For each dataset (ratings >= 4 are positives; random per-user 80/20 split, seed 0), ALS with 64
factors is tuned on a validation part of the training split (regularisation x alpha, by
recall@20) and retrained on the whole training split. Then

- ``compress(model, target=TARGET, interactions=train)`` searches the pipelines on a validation
  part it carves from the training split itself (the test split never enters), and
- the hand-made pipelines of issue 16 are compressed as they are,

and every model is evaluated on the test split. A row prints the item-side serving bytes, the
ratio to the float32 item table, and the share of the float32 model's recall@20, coverage@20 and
tail_recall@20 it keeps on test; the pick also prints the shares it kept on validation.

    python benchmarks/bench_frontier.py [--datasets ml-100k ml-latest-small ml-1m]
        [--target 'recall@20>=0.97,coverage@20>=0.90'] [--threads 2] [--quick]
"""

import argparse
import itertools
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from cfprune.compression.search import TargetNotMet, search, serving_bytes
from cfprune.datasets import load_ml1m_no_timestamps, load_movielens
from cfprune.errors import DataError
from cfprune.evaluation import evaluate
from cfprune.facade import compress
from cfprune.models import train_als
from cfprune.splits import random_split

TARGET = "recall@20>=0.97,coverage@20>=0.90"
HAND_MADE = [
    "int4:axis=dim",
    "pq:m=8",
    "lowrank:rank=32|int4:axis=dim",
    "prune-rows:keep=0.3,by=popularity|int4:axis=dim",
    "prune-rows:keep=0.2,by=popularity|int4:axis=dim",
    "prune-rows:keep=0.25,by=popularity|lowrank:rank=40|int4:axis=dim",
    "prune-rows:keep=0.3,by=popularity|lowrank:rank=32|int4:axis=dim",
]
SHOWN = ("recall@20", "coverage@20", "tail_recall@20")


def load(name):
    if name == "ml-1m":
        return load_ml1m_no_timestamps().implicit(4.0)
    return load_movielens(name).implicit(4.0)


def tuned_als(train, threads, quick):
    """ALS with 64 factors, regularisation and alpha picked by recall@20 on a validation part of
    ``train``, retrained on the whole of ``train``."""
    fit, valid = random_split(train, test_fraction=0.1, seed=1)
    grid = [(10.0, 10.0)] if quick else list(itertools.product([1.0, 10.0, 30.0], [5.0, 10.0]))
    best = None
    for reg, alpha in grid:
        model = train_als(fit, factors=64, regularization=reg, alpha=alpha,
                          num_threads=threads, seed=0)
        score = evaluate(model, fit, valid, ks=(20,), num_threads=threads,
                         show_progress=False)["recall@20"]
        if best is None or score > best[0]:
            best = (score, reg, alpha)
    params = {"regularization": best[1], "alpha": best[2]}
    return train_als(train, factors=64, num_threads=threads, seed=0, **params), params


def kept(result, base):
    """Share of the baseline's figure kept, per shown metric (NaN when the baseline's is 0)."""
    return {m: result.metrics[m] / base.metrics[m] if base.metrics[m] > 0 else float("nan")
            for m in SHOWN}


def row(label, size, base_bytes, shares, extra=""):
    cells = "  ".join(f"{100 * shares[m]:6.1f}%" if np.isfinite(shares[m]) else "    n/a"
                      for m in SHOWN)
    return f"{label:<68} {size:>9,} {base_bytes / size:6.1f}x  {cells}{extra}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-latest-small", "ml-1m"])
    parser.add_argument("--target", default=TARGET)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    for name in args.datasets:
        try:
            data = load(name)
        except DataError as e:
            print(f"{name}: skipped ({e})")
            continue
        train, test = random_split(data, test_fraction=0.2, seed=0)
        t0 = time.perf_counter()
        with threadpool_limits(limits=1, user_api="blas"):
            model, params = tuned_als(train, args.threads, args.quick)
        seconds_model = time.perf_counter() - t0
        base = evaluate(model, train, test, ks=(20,), num_threads=args.threads,
                        show_progress=False)
        base_bytes = serving_bytes(model)
        print(f"\n## {name}: {data.n_users:,} users x {data.n_items:,} items, {data.nnz:,} "
              f"positives; ALS 64 factors {params} in {seconds_model:.1f} s; float32 item table "
              f"{base_bytes:,} bytes; test recall@20 {base.metrics['recall@20']:.4f}, "
              f"coverage@20 {base.metrics['coverage@20']:.4f}, tail_recall@20 "
              f"{base.metrics['tail_recall@20']:.4f}")
        print(f"{'pipeline':<68} {'bytes':>9} {'ratio':>7}  {'recall':>7}  {'cover':>7}  "
              f"{'tail':>7}   (share of float32 on test)")
        t0 = time.perf_counter()
        try:
            found = search(model, train, args.target, num_threads=args.threads)
        except TargetNotMet as e:
            print(f"search: {e} ({time.perf_counter() - t0:.0f} s)")
            found = None
        if found is not None:
            pick = evaluate(found.model, train, test, ks=(20,), num_threads=args.threads,
                            show_progress=False)
            valid = "  ".join(f"{k} {100 * v:.1f}%" for k, v in found.pick.relative.items())
            print(row(f"search pick: {found.pick.spec}", serving_bytes(found.model), base_bytes,
                      kept(pick, base)))
            print(f"    validation: {valid} ({found.pick.bytes:,} bytes validated); "
                  f"{len(found.candidates)} candidates evaluated, "
                  f"{found.n_skipped} skipped by bytes, {found.seconds:.0f} s with "
                  f"{args.threads} threads")
        for spec in HAND_MADE:
            small = compress(model, spec, train)
            result = evaluate(small, train, test, ks=(20,), num_threads=args.threads,
                              show_progress=False)
            print(row(spec, serving_bytes(small), base_bytes, kept(result, base)))


if __name__ == "__main__":
    main()
