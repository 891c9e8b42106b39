"""Batch top-k throughput: in-process against a 2-worker Dask cluster on loopback, same cores.

A synthetic catalogue (``--users`` x ``--items``, default 100k x 100k, d=64, Gaussian factors,
``--seen`` random seen items per user) is written as top-10 candidate files with seen-item
filtering by :func:`cfprune.distributed.recommend_to_files`: once in this process with
``--threads`` Numba threads, once on a ``LocalCluster`` of ``--workers`` processes with one thread
each (``--threads`` cores in total either way). Printed: both throughputs and their ratio, the
time to scatter the model and the seen matrix to every worker, the per-block compute cost seen by
the workers (Dask's task stream), and from that cost the cores needed to serve 100M users in one
hour on this catalogue. The lists of both runs are checked to be identical.

    python benchmarks/bench_distributed.py [--quick] [--users N] [--items N] [--workers 2]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_USERS = 100_000_000
TARGET_SECONDS = 3600.0


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20k x 20k smoke run")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seen", type=int, default=20, help="seen items per user")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--block", type=int, default=4096, help="users per block (task)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="in-process Numba threads")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    args = parser.parse_args()
    if args.quick:
        args.users, args.items, args.repeats = min(args.users, 20_000), min(args.items, 20_000), 1
    return args


def synthetic(n_users, n_items, dim, n_seen, seed=0):
    """(FactorModel with Gaussian float32 factors, CSR [n_users, n_items] seen matrix)."""
    from cfprune.models.factors import FactorModel
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((n_users, dim), dtype=np.float32)
    items = rng.standard_normal((n_items, dim), dtype=np.float32)
    rows = np.repeat(np.arange(n_users), n_seen)
    cols = rng.integers(0, n_items, rows.size)
    seen = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)),
                         shape=(n_users, n_items))
    seen.sum_duplicates()
    return FactorModel(users, items), seen


def block_costs(stream):
    """Seconds of compute of every ``_write_part`` task in a Dask task stream."""
    costs = []
    for task in stream:
        if "_write_part" not in str(task.get("key", "")):
            continue
        costs += [s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute"]
    return np.array(costs)


def main():
    args = parse_args()
    import distributed
    from cfprune.distributed import read_candidates, recommend_to_files

    print(f"catalogue: {args.users} users x {args.items} items, d={args.dim}, "
          f"{args.seen} seen/user, top-{args.k}, blocks of {args.block} users; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    t = time.perf_counter()
    model, seen = synthetic(args.users, args.items, args.dim, args.seen)
    print(f"data: {time.perf_counter() - t:.1f} s; model {model.nbytes / 1e6:.1f} MB, seen "
          f"{seen.nnz} nnz ({(seen.data.nbytes + seen.indices.nbytes) / 1e6:.1f} MB)")
    users = np.arange(args.users)
    warm = users[:64]

    with tempfile.TemporaryDirectory(prefix="bench_distributed_") as out:
        out = Path(out)
        recommend_to_files(model, warm, seen, k=args.k, out_dir=out / "warm",
                           num_threads=args.threads)  # compile / load the Numba cache
        t = time.perf_counter()
        cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                           processes=True, host="127.0.0.1",
                                           dashboard_address=None)
        client = distributed.Client(cluster)
        start_seconds = time.perf_counter() - t
        local_times, cluster_times, costs = [], [], []
        try:
            t = time.perf_counter()
            recommend_to_files(model, warm, seen, k=args.k, out_dir=out / "warm-cluster",
                               scheduler=client)
            warm_seconds = time.perf_counter() - t

            t = time.perf_counter()
            model_future = client.scatter(model, broadcast=True, hash=False)
            model_scatter = time.perf_counter() - t
            t = time.perf_counter()
            seen_future = client.scatter(seen, broadcast=True, hash=False)
            seen_scatter = time.perf_counter() - t
            del model_future, seen_future

            for _ in range(args.repeats):  # interleaved, so both see the same machine load
                t = time.perf_counter()
                recommend_to_files(model, users, seen, k=args.k, out_dir=out / "local",
                                   block_size=args.block, num_threads=args.threads,
                                   show_progress=False)
                local_times.append(time.perf_counter() - t)
                with distributed.get_task_stream(client) as stream:
                    t = time.perf_counter()
                    recommend_to_files(model, users, seen, k=args.k, out_dir=out / "cluster",
                                       block_size=args.block, scheduler=client, num_threads=1,
                                       show_progress=False)
                    cluster_times.append(time.perf_counter() - t)
                costs.append(block_costs(stream.data))
        finally:
            client.close()
            cluster.close()

        local = read_candidates(out / "local")
        remote = read_candidates(out / "cluster")
        identical = all(np.array_equal(a, b) for a, b in zip(local, remote))

    best = int(np.argmin(cluster_times))
    costs = costs[best]
    local_seconds, cluster_seconds = min(local_times), cluster_times[best]
    print("times (s), in-process: " + ", ".join(f"{s:.2f}" for s in local_times) +
          "; Dask: " + ", ".join(f"{s:.2f}" for s in cluster_times) + "; best of each below")
    local_rate = args.users / local_seconds
    cluster_rate = args.users / cluster_seconds
    print(f"in-process, {args.threads} Numba threads: {local_seconds:.2f} s, "
          f"{local_rate:,.0f} users/s")
    print(f"Dask, {args.workers} workers x 1 thread: {cluster_seconds:.2f} s, "
          f"{cluster_rate:,.0f} users/s (scatter included)")
    print(f"ratio Dask / in-process throughput: {cluster_rate / local_rate:.2f}")
    print(f"lists identical: {identical}")
    print(f"cluster start {start_seconds:.1f} s, first tiny run on fresh workers "
          f"{warm_seconds:.2f} s (imports + Numba cache load)")
    print(f"scatter to {args.workers} workers: model {model.nbytes / 1e6:.1f} MB in "
          f"{model_scatter:.3f} s, seen matrix in {seen_scatter:.3f} s")
    if costs.size:
        per_user = costs.sum() / args.users  # the last block is shorter: use the total
        print(f"per-block compute ({costs.size} blocks, {args.block} users but the last, 1 "
              f"thread, all cores busy): median {np.median(costs):.3f} s, min "
              f"{costs.min():.3f} s, max {costs.max():.3f} s; total {costs.sum():.1f} s -> "
              f"{1 / per_user:,.0f} users/s per core")
        print(f"busy share of the cluster run: "
              f"{costs.sum() / (args.workers * cluster_seconds):.0%}")
        cores = TARGET_USERS * per_user / TARGET_SECONDS
        print(f"estimate for {TARGET_USERS / 1e6:.0f}M users in one hour on this catalogue "
              f"({args.items} items, d={args.dim}): {cores:.1f} cores of this kind fully busy "
              f"-> {math.ceil(cores)} single-thread workers ({math.ceil(cores / 0.8)} allowing "
              f"20% scheduling/IO overhead); the cost per user grows linearly with n_items x d")


if __name__ == "__main__":
    main()
