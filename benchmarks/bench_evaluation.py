"""Time cfprune.evaluate against implicit.evaluation.ranking_metrics_at_k, and the cost of the
issue-10 metrics (tail recall, coverage, overlap with a baseline).

For each dataset (MovieLens ratings >= 4 as implicit feedback, implicit's 80/20
``train_test_split`` with seed 0) an implicit CPU ALS model is trained; then, every evaluator
with 2 threads (implicit's ``num_threads``, Numba's threads) and single-threaded BLAS:

- implicit ``ranking_metrics_at_k(K=10)`` vs cfprune ``evaluate(ks=(10,))`` on a FactorModel of
  the same factors (both evaluate every user with a test item);
- ``recommend`` alone for the same users (the floor every evaluation pays);
- cfprune ``evaluate(ks=(10, 20, 50))`` plain, with a baseline model (a second ALS; scores two
  models per batch), and with a stored baseline (``keep_ranked=True`` lists of the baseline,
  the sweep use: the baseline scored once).

Usage: CFPRUNE_DATA=/path/to/archives python benchmarks/bench_evaluation.py [--quick] [--repeats N]
"""

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
from implicit.cpu.als import AlternatingLeastSquares
from implicit.evaluation import ranking_metrics_at_k, train_test_split
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cfprune.datasets.movielens import load_movielens  # noqa: E402
from cfprune.evaluation import evaluate  # noqa: E402
from cfprune.models.factors import FactorModel  # noqa: E402

THREADS = 2


def best_time(fn, repeats):
    """(minimum wall seconds over ``repeats`` calls, last return value)."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def train_als(train, factors, iterations, seed):
    model = AlternatingLeastSquares(factors=factors, iterations=iterations, regularization=0.05,
                                    random_state=seed, num_threads=THREADS)
    model.fit(train, show_progress=False)
    return model


def bench_dataset(name, args):
    data = load_movielens(name, implicit=True, download=False)
    train, test = train_test_split(data.matrix, 0.8, random_state=0)
    train, test = train.tocsr(), test.tocsr()
    als = train_als(train, 64, args.iterations, seed=0)
    other = train_als(train, 32, args.iterations, seed=1)
    model = FactorModel(als.user_factors, als.item_factors)
    baseline = FactorModel(other.user_factors, other.item_factors)
    n_eval = int(np.count_nonzero(np.diff(test.indptr)))
    print(f"\n{name}: {train.shape[0]} users x {train.shape[1]} items, train {train.nnz}, "
          f"test {test.nnz}, {n_eval} users evaluated, ALS 64 factors")

    def run_evaluate(ks, **kw):
        return evaluate(model, train, test, ks=ks, num_threads=THREADS, show_progress=False,
                        **kw)

    run_evaluate((10,))  # compile and warm caches
    t_implicit, ref = best_time(lambda: ranking_metrics_at_k(
        als, train, test, K=10, show_progress=False, num_threads=THREADS), args.repeats)
    t_ours, ours = best_time(lambda: run_evaluate((10,)), args.repeats)
    print(f"  implicit ranking_metrics_at_k K=10   {t_implicit * 1e3:8.1f} ms  "
          f"precision {ref['precision']:.6f} map {ref['map']:.6f} ndcg {ref['ndcg']:.6f}")
    print(f"  cfprune evaluate ks=(10,)            {t_ours * 1e3:8.1f} ms  "
          f"precision {ours['pooled_precision@10']:.6f} map {ours['map@10']:.6f} "
          f"ndcg {ours['ndcg@10']:.6f}")
    print(f"  ratio implicit / cfprune: {t_implicit / t_ours:.2f}x")

    ks = (10, 20, 50)
    stored = evaluate(baseline, train, test, ks=ks, num_threads=THREADS, show_progress=False,
                      keep_ranked=True)
    run_evaluate(ks, baseline=stored)
    users = np.flatnonzero(np.diff(test.indptr))
    t_floor, _ = best_time(lambda: [model.recommend(users[i:i + 2048], train[users[i:i + 2048]],
                                                    k=max(ks), num_threads=THREADS)
                                    for i in range(0, users.size, 2048)], args.repeats)
    t_plain, plain = best_time(lambda: run_evaluate(ks), args.repeats)
    t_model_base, _ = best_time(lambda: run_evaluate(ks, baseline=baseline), args.repeats)
    t_stored, full = best_time(lambda: run_evaluate(ks, baseline=stored), args.repeats)
    print(f"  recommend k={max(ks)} alone (the floor)     {t_floor * 1e3:8.1f} ms")
    print(f"  evaluate ks={ks} plain       {t_plain * 1e3:8.1f} ms  ratio to the floor "
          f"{t_plain / t_floor:.2f}x (tail recall and coverage always on: tail_recall@20 "
          f"{plain['tail_recall@20']:.5f}, coverage@20 {plain['coverage@20']:.4f})")
    print(f"  + overlap with a baseline model      {t_model_base * 1e3:8.1f} ms  "
          f"ratio {t_model_base / t_plain:.2f}x (scores a second model)")
    print(f"  + overlap with stored baseline lists {t_stored * 1e3:8.1f} ms  "
          f"ratio {t_stored / t_plain:.2f}x (target <= 1.5x)  overlap@20 {full['overlap@20']:.4f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ml-100k only, one repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    datasets = ["ml-100k"] if args.quick else ["ml-100k", "ml-latest-small"]
    if args.quick:
        args.repeats = 1
    args.iterations = 3 if args.quick else 15
    numba.set_num_threads(THREADS)
    print(f"threads: {THREADS} (implicit num_threads, Numba), BLAS pinned to 1 thread; "
          f"best of {args.repeats}")
    with threadpool_limits(1, "blas"):
        for name in datasets:
            bench_dataset(name, args)


if __name__ == "__main__":
    main()
