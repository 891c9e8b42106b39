"""Distillation against the other ways of reaching rank r, at the same byte budget.

For each dataset (MovieLens ratings >= 4 as positives, ``random_split`` seed 0: 70% train, 10%
validation, 20% test) a teacher ALS of 128 factors is tuned on the validation split, then for
each rank r:

- ``lowrank``   the joint truncation of the teacher to rank r (``lowrank:rank=r``);
- ``als-r``     ALS trained from scratch with r factors, regularisation tuned on validation;
- ``distill``   the distilled student (``distill:rank=r``), per loss (bce, rank, mix), a few
                settings tuned on validation;
- ``pq``        product quantisation of the teacher's item table with m = min(4r, 128) bytes per
                item (the bytes a float32 rank-r item row takes), codebooks extra; its user table
                stays at 128 float32 factors.

Every model is trained on the train split; the test figures filter train + validation items;
``overlap@20`` is the share of the teacher's top-20 (same filter) that the model keeps. Settings
are chosen on validation recall@20, never on test.

    python benchmarks/bench_distill.py [--quick] [--datasets ml-100k,ml-latest-small,ml-1m]

Threads: 2 for ``implicit`` and for Numba.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # noqa: E402  (before numpy loads OpenBLAS)

import argparse  # noqa: E402
import itertools  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cfprune.datasets import load_ml1m_no_timestamps, load_movielens  # noqa: E402
from cfprune.errors import DataError  # noqa: E402
from cfprune.evaluation import evaluate  # noqa: E402
from cfprune.facade import compress  # noqa: E402
from cfprune.models import train_als  # noqa: E402
from cfprune.splits import random_split  # noqa: E402

THREADS = 2
TEACHER_FACTORS = 128


def load(name):
    """Implicit Interactions of a dataset, or None when its archive is not in the data home."""
    try:
        if name == "ml-1m":
            return load_ml1m_no_timestamps().implicit(4.0)
        return load_movielens(name, download=False).implicit(4.0)
    except DataError as e:
        print(f"skipping {name}: {e}")
        return None


def scores(model, train, test, baseline=None):
    result = evaluate(model, train, test, ks=(20,), baseline=baseline, num_threads=THREADS,
                      show_progress=False)
    return result.metrics


def best_of(candidates, train, valid):
    """(valid recall@20, label, model) of the candidate with the best validation recall@20;
    ``candidates`` yields (label, model-builder)."""
    best = None
    for label, build in candidates:
        model = build()
        r = scores(model, train, valid)["recall@20"]
        print(f"    valid recall@20 {r:.4f}  {label}", flush=True)
        if best is None or r > best[0]:
            best = (r, label, model)
    return best


def als(train, factors, reg, alpha):
    return train_als(train, factors=factors, regularization=reg, alpha=alpha, iterations=15,
                     num_threads=THREADS, seed=0, show_progress=False)


def distill_grids(quick):
    """dict loss -> list of parameter dicts tried on validation."""
    if quick:
        return {"bce": [{"temperature": 1.0}], "rank": [{"decay": 10.0}],
                "mix": [{"mix": 0.5}]}
    return {
        "bce": [{"positives": p, "temperature": t} for p, t in
                itertools.product(("observed", "top"), (0.5, 1.0, 2.0))],
        "rank": [{"decay": d, "learning_rate": lr} for d, lr in itertools.product((5.0, 20.0), (0.005, 0.02))],
        "mix": [{"mix": m, "temperature": t} for m, t in itertools.product((0.2,), (0.5, 1.0))],
    }


def run_dataset(name, ranks, quick):
    data = load(name)
    if data is None:
        return []
    train, valid, test = random_split(data, test_fraction=0.2, valid_fraction=0.1, seed=0)
    seen = (train.matrix + valid.matrix).tocsr()
    print(f"\n== {name}: {data.n_users} users x {data.n_items} items, train {train.nnz}, "
          f"valid {valid.nnz}, test {test.nnz}", flush=True)

    print(f"  teacher ALS {TEACHER_FACTORS}", flush=True)
    teacher_grid = [(30.0, 5.0)] if quick else list(itertools.product((3.0, 10.0, 30.0, 100.0),
                                                                      (1.0, 5.0, 20.0)))
    _, label, teacher = best_of(
        ((f"reg={reg},alpha={alpha}", lambda reg=reg, alpha=alpha:
          als(train, TEACHER_FACTORS, reg, alpha)) for reg, alpha in teacher_grid), train, valid)
    rows = [row(name, "teacher", TEACHER_FACTORS, label, teacher, train, seen, test, None, 0.0)]

    for r in ranks:
        print(f"  rank {r}", flush=True)
        started = time.perf_counter()
        model = compress(teacher, f"lowrank:rank={r}")
        rows.append(row(name, "lowrank", r, "", model, train, seen, test, teacher,
                        time.perf_counter() - started))

        grid = [(1.0, 5.0)] if quick else list(itertools.product((0.1, 1.0, 10.0, 30.0),
                                                                   (1.0, 5.0, 20.0)))
        started = time.perf_counter()
        _, label, model = best_of(((f"reg={reg},alpha={a}", lambda reg=reg, a=a:
                                    als(train, r, reg, a)) for reg, a in grid), train, valid)
        rows.append(row(name, "als-r", r, label, model, train, seen, test, teacher,
                        (time.perf_counter() - started) / len(grid)))

        for loss, grid in distill_grids(quick).items():
            started = time.perf_counter()
            _, label, model = best_of(
                ((spec_of(r, loss, params), lambda p=params, loss=loss:
                  compress(teacher, spec_of(r, loss, p), interactions=train))
                 for params in grid), train, valid)
            rows.append(row(name, f"distill-{loss}", r, label.split(":", 1)[1], model, train,
                            seen, test, teacher, (time.perf_counter() - started) / len(grid)))

        m = min(4 * r, TEACHER_FACTORS)
        started = time.perf_counter()
        model = compress(teacher, f"pq:m={m}")
        rows.append(row(name, "pq", r, f"m={m}", model, train, seen, test, teacher,
                        time.perf_counter() - started))
    return rows


def spec_of(r, loss, params):
    extra = "".join(f",{k}={v}" for k, v in params.items())
    return f"distill:rank={r},loss={loss}{extra},num_threads={THREADS}"


def row(dataset, method, r, setting, model, train, seen, test, teacher, seconds):
    m = scores(model, seen, test, baseline=teacher)
    out = {"dataset": dataset, "method": method, "r": r, "setting": setting,
           "item_bytes": model.items.nbytes + (0 if model.rerank is None else
                                               model.rerank.nbytes),
           "total_bytes": model.nbytes, "recall@20": m["recall@20"], "ndcg@20": m["ndcg@20"],
           "overlap@20": m.get("overlap@20", 1.0), "seconds": seconds}
    print(format_row(out), flush=True)
    return out


HEADER = (f"| {'dataset':<15} | {'method':<12} | {'r':>3} | {'item bytes':>10} | "
          f"{'total bytes':>11} | {'recall@20':>9} | {'ndcg@20':>7} | {'overlap@20':>10} | "
          f"{'fit s':>6} | setting (chosen on validation)")


def format_row(o):
    return (f"| {o['dataset']:<15} | {o['method']:<12} | {o['r']:>3} | {o['item_bytes']:>10} | "
            f"{o['total_bytes']:>11} | {o['recall@20']:>9.4f} | {o['ndcg@20']:>7.4f} | "
            f"{o['overlap@20']:>10.4f} | {o['seconds']:>6.2f} | {o['setting']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one dataset, one rank, no tuning")
    parser.add_argument("--datasets", default=None,
                        help="comma-separated (default: ml-100k,ml-latest-small,ml-1m)")
    parser.add_argument("--ranks", default=None, help="comma-separated (default: 8,16,32)")
    args = parser.parse_args(argv)
    os.environ.setdefault("CFPRUNE_DATA", "/work/shared/datasets")
    numba.set_num_threads(THREADS)
    datasets = args.datasets.split(",") if args.datasets else \
        (["ml-100k"] if args.quick else ["ml-100k", "ml-latest-small", "ml-1m"])
    ranks = [int(r) for r in args.ranks.split(",")] if args.ranks else \
        ([16] if args.quick else [8, 16, 32])
    rows = []
    for name in datasets:
        rows += run_dataset(name, ranks, args.quick)
    print("\n" + HEADER)
    print("|" + "|".join("-" * (len(c)) for c in HEADER.split("|")[1:-1]) + "|---")
    for o in rows:
        print(format_row(o))


if __name__ == "__main__":
    main()
