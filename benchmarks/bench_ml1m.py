"""ML-1M as a real-scale check: ALS and BPR under RecBole's protocol, beside RecBole's figures.

Protocol (RecBole's ml-1m tuning runs): every rating is a positive, a random per-user 80/10/10
split, 64 factors, full ranking over all items with the user's training and validation items
skipped; recall@10 = hits / |test items|, nDCG@10 with binary relevance. Regularisation (ALS, BPR)
and learning rate (BPR) are picked on the validation part, then the test part is scored once.

Data: ``ml-1m-no-timestamps.zip`` in the data home (``$CFPRUNE_DATA``); the derived archive has no
timestamps, which this random split does not need.

    python benchmarks/bench_ml1m.py [--quick] [--threads 2]
"""

import argparse
import itertools
import time

import numpy as np
from threadpoolctl import threadpool_limits

from cfprune.datasets import load_ml1m_no_timestamps
from cfprune.evaluation import evaluate
from cfprune.models import train_als, train_bpr
from cfprune.splits import random_split

RECBOLE = {"bpr": {"recall@10": (0.17, 0.20), "ndcg@10": (0.24, 0.25)},
           "ease": {"recall@10": (0.214, 0.214), "ndcg@10": (0.287, 0.287)}}


def union(a, b):
    return (a.matrix + b.matrix).tocsr()


def fit(algorithm, train, params, threads, seed):
    if algorithm == "als":
        return train_als(train, factors=64, num_threads=threads, seed=seed, **params)
    return train_bpr(train, factors=64, num_threads=threads, seed=seed, **params)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one setting per algorithm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    data = load_ml1m_no_timestamps(implicit=True, threshold=None)
    t_load = time.perf_counter() - t0
    train, valid, test = random_split(data, test_fraction=0.1, valid_fraction=0.1, seed=args.seed)
    print(f"{data!r}: load {t_load:.2f} s; train {train.nnz}, valid {valid.nnz}, test {test.nnz}")

    grids = {
        "als": {"regularization": [1.0, 10.0, 30.0, 100.0], "alpha": [2.0, 5.0, 10.0],
                "iterations": [15]},
        "bpr": {"learning_rate": [0.002, 0.005], "regularization": [0.001, 0.01],
                "iterations": [100, 200]},
    }
    if args.quick:
        grids = {"als": {"regularization": [1.0], "alpha": [5.0], "iterations": [15]},
                 "bpr": {"learning_rate": [0.005], "regularization": [0.001],
                         "iterations": [100]}}

    rows = []
    with threadpool_limits(limits=1, user_api="blas"):
        for algorithm, grid in grids.items():
            best = None
            names = sorted(grid)
            for values in itertools.product(*(grid[n] for n in names)):
                params = dict(zip(names, values))
                t = time.perf_counter()
                model = fit(algorithm, train, params, args.threads, args.seed)
                t_train = time.perf_counter() - t
                score = evaluate(model, train, valid, ks=(10,), num_threads=args.threads)
                r = score.metrics["recall@10"]
                print(f"  {algorithm} {params}: valid recall@10 {r:.4f}  (train {t_train:.1f} s)")
                if best is None or r > best[0]:
                    best = (r, params)
            params = best[1]
            t = time.perf_counter()
            model = fit(algorithm, train, params, args.threads, args.seed)
            t_train = time.perf_counter() - t
            t = time.perf_counter()
            result = evaluate(model, union(train, valid), test, ks=(10, 20),
                              num_threads=args.threads)
            t_eval = time.perf_counter() - t
            m = result.metrics
            rows.append((algorithm, params, m["recall@10"], m["ndcg@10"], m["recall@20"],
                         t_train, t_eval))

    print("\nML-1M (all ratings positive, random per-user 80/10/10, 64 factors), test part:")
    print(f"{'model':<6} {'recall@10':>9} {'ndcg@10':>8} {'recall@20':>9} {'train s':>8} "
          f"{'eval s':>7}  params")
    for algorithm, params, r10, n10, r20, t_train, t_eval in rows:
        print(f"{algorithm:<6} {r10:9.4f} {n10:8.4f} {r20:9.4f} {t_train:8.1f} {t_eval:7.2f}  "
              f"{params}")
    print("\nRecBole ml-1m (same protocol, published tuning results):")
    for name, ref in RECBOLE.items():
        print(f"{name:<6} recall@10 {ref['recall@10'][0]:.3f}-{ref['recall@10'][1]:.3f}  "
              f"ndcg@10 {ref['ndcg@10'][0]:.3f}-{ref['ndcg@10'][1]:.3f}")
    for algorithm, _, r10, n10, *_ in rows:
        ref = RECBOLE["bpr"] if algorithm == "bpr" else RECBOLE["ease"]
        for name, value in (("recall@10", r10), ("ndcg@10", n10)):
            lo, hi = ref[name]
            gap = 0.0 if lo <= value <= hi else min(abs(value - lo), abs(value - hi)) / lo
            print(f"{algorithm} {name} {value:.4f} vs {lo:.3f}-{hi:.3f}: "
                  f"{'within range' if gap == 0 else f'{100 * gap:.1f}% outside'}")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
