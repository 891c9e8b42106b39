"""What popularity pruning costs beyond recall: tail recall, coverage, overlap, paired intervals.

For each dataset, ALS (regularisation and alpha picked on a validation split) and BPR baselines
are trained, then each item table is row-pruned to the 20% most popular items
(``prune-rows:keep=0.2,by=popularity``: the other items leave the catalogue). Both the baseline and
the pruned model are evaluated on the same users; the pruned row prints recall@20,
tail_recall@20, coverage@20, overlap@20 with the baseline, and the paired 95% bootstrap interval
of the recall@20 and tail_recall@20 changes.

    python benchmarks/bench_tail.py [--datasets ml-100k ml-latest-small ml-1m] [--quick]
"""

import argparse
import itertools
import time

import numpy as np
from threadpoolctl import threadpool_limits

from cfprune.datasets import load_ml1m_no_timestamps, load_movielens
from cfprune.errors import DataError
from cfprune.evaluation import evaluate
from cfprune.facade import compress
from cfprune.models import train_als, train_bpr
from cfprune.splits import random_split
from cfprune.uncertainty import paired_difference

PRUNE = "prune-rows:keep=0.2,by=popularity"


def load(name):
    if name == "ml-1m":
        return load_ml1m_no_timestamps(implicit=True)
    return load_movielens(name, implicit=True)


def tuned_als(train, valid, threads, quick):
    grid = [(10.0, 10.0)] if quick else list(itertools.product([1.0, 10.0, 30.0], [5.0, 10.0]))
    best = None
    for reg, alpha in grid:
        model = train_als(train, factors=64, regularization=reg, alpha=alpha,
                          num_threads=threads, seed=0)
        score = evaluate(model, train, valid, ks=(20,), num_threads=threads)["recall@20"]
        if best is None or score > best[0]:
            best = (score, reg, alpha)
    return {"regularization": best[1], "alpha": best[2]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-latest-small", "ml-1m"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for name in args.datasets:
        try:
            data = load(name)
        except DataError as e:
            print(f"{name}: skipped ({e})")
            continue
        t0 = time.perf_counter()
        train, valid, test = random_split(data, test_fraction=0.2, valid_fraction=0.1, seed=0)
        with threadpool_limits(limits=1, user_api="blas"):
            params = tuned_als(train, valid, args.threads, args.quick)
            models = {
                f"als {params}": train_als(train, factors=64, num_threads=args.threads, seed=0,
                                           **params),
                "bpr lr=0.01": train_bpr(train, factors=64, learning_rate=0.01,
                                         iterations=50 if args.quick else 100,
                                         num_threads=args.threads, seed=0),
            }
        seen = (train.matrix + valid.matrix).tocsr()
        print(f"\n## {name}: {data.n_users} users x {data.n_items} items, {data.nnz} positives "
              f"(rating >= 4 or all for ML-1M); models in {time.perf_counter() - t0:.1f} s")
        print(f"{'model':<44} {'recall@20':>9} {'tail_r@20':>9} {'cov@20':>7} {'overlap@20':>10}"
              f"  {'Δrecall@20 [95% CI]':<28} {'Δtail_recall@20 [95% CI]'}")
        for label, model in models.items():
            base = evaluate(model, seen, test, ks=(20,), num_threads=args.threads,
                            keep_ranked=True)
            pruned = compress(model, PRUNE, train)
            result = evaluate(pruned, seen, test, ks=(20,), num_threads=args.threads,
                              baseline=base)
            m, b = result.metrics, base.metrics
            print(f"{label:<44} {b['recall@20']:9.4f} {b['tail_recall@20']:9.4f} "
                  f"{b['coverage@20']:7.4f} {1.0:10.4f}")
            cells = []
            for metric in ("recall@20", "tail_recall@20"):
                diff, low, high, sig = paired_difference(result.per_user[metric],
                                                         base.per_user[metric], seed=0)
                cells.append(f"{diff:+.4f} [{low:+.4f}, {high:+.4f}]{' *' if sig else '  '}")
            print(f"{'  + ' + PRUNE:<44} {m['recall@20']:9.4f} {m['tail_recall@20']:9.4f} "
                  f"{m['coverage@20']:7.4f} {m['overlap@20']:10.4f}  {cells[0]:<28} {cells[1]}")
        print("(* : the paired 95% interval excludes zero)")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
