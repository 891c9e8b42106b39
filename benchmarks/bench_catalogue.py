"""A changing catalogue: items added in daily batches with ``add_items`` vs refitting the compression.

Protocol: MovieLens 1M (the derived ``ml-1m-no-timestamps.zip`` of the data home; every rating a
positive), random per-user 80/20 split, ALS (64 factors) trained on every training interaction.
10% of the items (seeded random) "arrive" later: on day 0 the compression is fitted on the other
90% only (``FactorModel(U, V[day0])``); then 10 daily batches of 1% of the items are encoded with
``cfprune.add_items(model, V[batch])`` -- the fitted codebooks / scales are not touched. After the 10
batches the model holds every item, and its recall@20 on the test split is compared with the
same spec fitted from scratch on all items (refit) and with the float32 ALS model. Times: seconds
to add one batch (mean of 10) vs seconds to refit on all items.

    python benchmarks/bench_catalogue.py [--quick] [--threads 2] [--specs pq:m=16 int8:axis=dim]
"""

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_limits

from cfprune import add_items
from cfprune.datasets import load_ml1m_no_timestamps
from cfprune.evaluation import evaluate
from cfprune.facade import compress
from cfprune.models import FactorModel, train_als
from cfprune.splits import random_split


def recall(model, train, test, threads):
    return evaluate(model, train, test, ks=(20,), num_threads=threads,
                    show_progress=False)["recall@20"]


def fitted_bytes(model):
    return [b"".join(a.tobytes() for a in step.arrays.values()) for step in model.fitted]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer ALS iterations")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--specs", nargs="+", default=["pq:m=16", "int8:axis=dim"])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--batch-share", type=float, default=0.01)
    args = parser.parse_args()

    data = load_ml1m_no_timestamps(implicit=True, threshold=None)
    train, test = random_split(data, test_fraction=0.2, seed=args.seed)
    t0 = time.perf_counter()
    als = train_als(train, factors=64, regularization=1.0, alpha=5.0,
                    iterations=5 if args.quick else 15, num_threads=args.threads, seed=args.seed,
                    show_progress=False)
    print(f"{data!r}: train {train.nnz}, test {test.nnz}; ALS 64 factors in "
          f"{time.perf_counter() - t0:.1f} s")

    rng = np.random.default_rng(args.seed)
    n_items = als.n_items
    per_batch = int(round(args.batch_share * n_items))
    arriving = rng.permutation(n_items)[:per_batch * args.batches]
    day0 = np.setdiff1d(np.arange(n_items), arriving)
    order = np.concatenate([day0, arriving])           # row r of every model is item order[r]
    train_p = train.matrix[:, order].tocsr()
    test_p = test.matrix[:, order].tocsr()
    users = als.users.decode()
    items = als.items.decode()[order]
    full = FactorModel(users, items, info=als.info)
    start = FactorModel(users, items[:day0.size], info=als.info)
    print(f"{n_items} items: {day0.size} on day 0, then {args.batches} batches of {per_batch} "
          f"({args.batch_share:.0%}); {args.threads} threads")

    with threadpool_limits(limits=args.threads):
        base = recall(full, train_p, test_p, args.threads)
        print(f"float32 ALS recall@20 {base:.4f}\n")
        print(f"{'spec':<16} {'recall@20 added':>15} {'refit':>7} {'added/refit':>11} "
              f"{'s/batch':>8} {'s refit':>8} {'refit/batch':>11}  fitted arrays")
        for spec in args.specs:
            t0 = time.perf_counter()
            model = compress(start, spec)
            t_day0 = time.perf_counter() - t0
            state = fitted_bytes(model)
            times = []
            for b in range(args.batches):
                lo = day0.size + b * per_batch
                t0 = time.perf_counter()
                model = add_items(model, items[lo:lo + per_batch])
                times.append(time.perf_counter() - t0)
            assert model.n_items == n_items
            unchanged = "byte-identical" if fitted_bytes(model) == state else "CHANGED"
            t0 = time.perf_counter()
            refit = compress(full, spec)
            t_refit = time.perf_counter() - t0
            r_add = recall(model, train_p, test_p, args.threads)
            r_refit = recall(refit, train_p, test_p, args.threads)
            t_batch = float(np.mean(times))
            print(f"{spec:<16} {r_add:>15.4f} {r_refit:>7.4f} {r_add / r_refit:>11.4f} "
                  f"{t_batch:>8.4f} {t_refit:>8.3f} {t_refit / t_batch:>10.1f}x  {unchanged} "
                  f"(day-0 fit {t_day0:.3f} s)")
            if model.items.storage == "int8":
                new = model.items.codes[day0.size:]
                print(f"{'':<16} int8: {np.mean((new == -128) | (new == 127)):.2%} of the added "
                      f"items' weights sit at an end code (clipped or at the fitted range's "
                      f"edge) vs {np.mean((refit.items.codes == -128) | (refit.items.codes == 127)):.2%}"
                      f" after refit")


if __name__ == "__main__":
    main()
