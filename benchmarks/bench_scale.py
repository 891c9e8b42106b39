"""Retrieval at scale: catalogues of 100k, 1M and 4M items against faiss, batch and single user.

Catalogues (``--kinds``), d=64 (``--dim``): ``als`` (item factors of an ALS model of the ML-1M
ratings of the derived archive ``ml-1m-no-timestamps`` in ``$CFPRUNE_DATA``, ratings >= 4),
``bpr`` (a BPR model of the same ratings) and ``flat`` (the ALS-like rows normalised to unit
norm). A catalogue of N items draws N of the model's items uniformly with replacement and adds
Gaussian noise of 0.3 times each dimension's standard deviation (norms keep the model's
popularity skew); users are model users drawn the same way; each user has ``--seen`` (50) seen
items drawn uniformly.

Storages (``--storages``) and their faiss peers: ``float32`` IndexFlatIP; ``fp16``, ``int8``,
``int4`` IndexScalarQuantizer QT_fp16 / QT_8bit / QT_4bit (cfprune's int8/int4 tables per
dimension, int8 with faiss's range rule); ``pq8`` IndexPQ m=16 8-bit; ``pq4`` IndexPQFastScan
m=16 4-bit; ``opq`` OPQ + IndexPQ m=16. cfprune's PQ tables hold the codebooks, codes and
rotation faiss trained: both sides scan the very same codes. Same threads for everyone
(``faiss.omp_set_num_threads`` and ``num_threads``); faiss searches unfiltered, cfprune skips the
seen items (more work).

Per case: batch throughput (``--users`` users, 2,000, in one call, best of ``--repeats``),
single-user latency p50/p99 (``--single`` calls, one user each, after a warm-up), the peak
memory of one single-user call above the resident tables (process high-water RSS, reset through
``/proc/self/clear_refs`` before the call: counts Numba's allocations too), and the fit time of
``compress(model, spec)`` against faiss's train + add of the peer index. Ratios are faiss time
over cfprune time (> 1: cfprune faster). The load average is printed with every case: timings
of a shared machine are noisy, compare ratios of the same run.

    python benchmarks/bench_scale.py [--quick] [--sizes 100k 1m 4m] [--kinds als flat]
                                     [--storages float32 int8 pq8] [--threads 2] [--no-fit]
                                     [--fit-only]

``--fit-only`` prints the fit rows alone (no retrieval is timed): the faiss peer is still trained
and filled, for its train + add time.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import scipy.sparse as sp

from common import (best_time, int8_table, ml1m_interactions, pq_tables, quiet_stderr,
                    read_only, train_movielens_model)

SIZES = {"100k": 100_000, "1m": 1_000_000, "4m": 4_000_000}
KINDS = ("als", "bpr", "flat")
STORAGES = ("float32", "fp16", "int8", "int4", "pq8", "pq4", "opq")
FIT_SPECS = {"fp16": "fp16:table=items", "int8": "int8:axis=dim,table=items",
             "int4": "int4:axis=dim,table=items", "pq8": "pq:m=16,table=items",
             "pq4": "pq:m=16,nbits=4,table=items", "opq": "pq:m=16,rotation=opq,table=items"}
NOISE = 0.3


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="100k items only, 500 users, 50 single-user calls, one repeat")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--storages", nargs="+", choices=STORAGES, default=list(STORAGES))
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--seen", type=int, default=50)
    parser.add_argument("--single", type=int, default=200, help="single-user calls timed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--no-fit", action="store_true", help="skip the fit-time rows")
    parser.add_argument("--fit-only", action="store_true",
                        help="only the fit-time rows: no retrieval timed")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.users, args.single, args.repeats = ["100k"], 500, 50, 1
    return args


# catalogues -----------------------------------------------------------------------------------
def base_factors(kind, dim, threads):
    """(users, items) float32 of an ALS or BPR model of the ML-1M ratings (flat: ALS)."""
    matrix = ml1m_interactions()
    if matrix is None:
        raise SystemExit("ml-1m-no-timestamps.zip not found under $CFPRUNE_DATA")
    if kind == "bpr":
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        from threadpoolctl import threadpool_limits
        bpr = BayesianPersonalizedRanking(factors=dim, iterations=100, random_state=0,
                                          num_threads=threads)
        with threadpool_limits(1, "blas"):
            bpr.fit(matrix, show_progress=False)
        # implicit's BPR appends a bias column to each side; keep the first dim columns
        return (np.ascontiguousarray(bpr.user_factors[:, :dim], np.float32),
                np.ascontiguousarray(bpr.item_factors[:, :dim], np.float32))
    users, items = train_movielens_model(matrix, dim, threads)
    return np.ascontiguousarray(users, np.float32), np.ascontiguousarray(items, np.float32)


def resample(rows, n, rng):
    """float32 [n, d]: rows drawn uniformly with replacement plus Gaussian noise of NOISE times
    each dimension's standard deviation."""
    picked = rows[rng.integers(0, rows.shape[0], n)]
    noise = rng.standard_normal(picked.shape).astype(np.float32) * (NOISE * rows.std(axis=0))
    return np.ascontiguousarray(picked + noise, dtype=np.float32)


def catalogue(kind, n_items, n_users, n_seen, base, rng):
    """(users float32 [n_users, d], items float32 [n_items, d], seen CSR [n_users, n_items])."""
    users, items = base
    items = resample(items, n_items, rng)
    if kind == "flat":
        items /= np.maximum(np.linalg.norm(items, axis=1, keepdims=True), 1e-12)
    users = resample(users, n_users, rng)
    seen = np.sort(np.stack([rng.choice(n_items, n_seen, replace=False)
                             for _ in range(n_users)]), axis=1)
    csr = sp.csr_matrix((np.ones(seen.size, np.float32), seen.ravel(),
                         np.arange(0, seen.size + 1, n_seen)), shape=(n_users, n_items))
    return users, items, csr


# tables and peers -----------------------------------------------------------------------------
def scalar_pair(items, storage):
    """(faiss scalar-quantiser index trained and filled, cfprune table, faiss train+add s)."""
    import faiss
    from cfprune.compression.scalar import encode_fp16, encode_int4
    from cfprune.tables import DenseTable
    qtype = {"float32": None, "fp16": faiss.ScalarQuantizer.QT_fp16,
             "int8": faiss.ScalarQuantizer.QT_8bit, "int4": faiss.ScalarQuantizer.QT_4bit}
    dim = items.shape[1]
    start = time.perf_counter()
    if storage == "float32":
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.IndexScalarQuantizer(dim, qtype[storage], faiss.METRIC_INNER_PRODUCT)
        index.train(items)
    index.add(items)
    seconds = time.perf_counter() - start
    table = {"float32": lambda: DenseTable(items.copy()), "fp16": lambda: encode_fp16(items),
             "int8": lambda: int8_table(items), "int4": lambda: encode_int4(items, "dim")}
    return index, read_only(table[storage]()), seconds


def pq_pair(items, storage):
    """(faiss PQ index, cfprune PQTable on its codes, faiss train+add s)."""
    import faiss
    start = time.perf_counter()
    nbits = 4 if storage == "pq4" else 8
    index, table = pq_tables(items, 16, nbits, opq=storage == "opq")
    seconds = time.perf_counter() - start
    if storage == "pq4":  # the fast-scan layout of the very same codes (faiss's converter)
        index = faiss.IndexPQFastScan(index)
        seconds = time.perf_counter() - start
    if table.nbits != nbits:  # pq_tables unpacks 4-bit codes; store them packed as cfprune does
        from cfprune.tables import PQTable
        table = read_only(PQTable(PQTable.pack4(table.codes), table.codebooks, table.bounds,
                                  table.rotation, nbits=4))
    return index, table, seconds


# measurements ---------------------------------------------------------------------------------
def percentiles(call, n_calls):
    """(p50, p99) milliseconds of ``call(i)`` for i in range(n_calls), after one warm-up."""
    call(0)
    times = []
    for i in range(n_calls):
        start = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - start)
    return tuple(np.percentile(times, [50, 99]) * 1e3)


def rss_kib(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def peak_extra_mib(call):
    """MiB by which the process's high-water RSS rises above its current RSS during ``call()``
    (the high-water mark reset first; None where /proc/self/clear_refs is not writable)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return None
    before = rss_kib("VmRSS")
    call()
    return max(0, rss_kib("VmHWM") - before) / 1024


def measure_case(label, users, seen, table, index, args):
    """One row of the table: cfprune and faiss batch users/s, single-user p50/p99 ms."""
    import faiss
    from cfprune.models.factors import FactorModel
    from cfprune.retrieval import recommend
    faiss.omp_set_num_threads(args.threads)
    model = FactorModel(users, table)
    all_users = np.arange(users.shape[0])
    ours_batch, _ = best_time(lambda: recommend(model, all_users, seen, k=args.k,
                                                num_threads=args.threads), args.repeats)
    theirs_batch, _ = best_time(lambda: index.search(users, args.k), args.repeats)
    n_single = min(args.single, users.shape[0])
    ours_single = percentiles(lambda i: recommend(model, all_users[i:i + 1], seen[i:i + 1],
                                                  k=args.k, num_threads=args.threads), n_single)
    theirs_single = percentiles(lambda i: index.search(users[i:i + 1], args.k), n_single)
    extra = peak_extra_mib(lambda: recommend(model, all_users[:1], seen[:1], k=args.k,
                                             num_threads=args.threads))
    return dict(label=label, n=users.shape[0], ours_batch=ours_batch, theirs_batch=theirs_batch,
                ours_single=ours_single, theirs_single=theirs_single, peak=extra,
                table_mib=table.nbytes / 2 ** 20, load=os.getloadavg()[0])


def fit_row(label, items, users, storage, faiss_seconds):
    """cfprune's compress() time of the storage against faiss's train + add."""
    from cfprune.facade import compress
    from cfprune.models.factors import FactorModel
    model = FactorModel(users, items)
    start = time.perf_counter()
    compress(model, FIT_SPECS[storage])
    return dict(label=label, ours=time.perf_counter() - start, theirs=faiss_seconds,
                load=os.getloadavg()[0])


def print_rows(rows, fits):
    print(f"\n{'case':28s} {'batch u/s':>10s} {'faiss u/s':>10s} {'ratio':>6s}  "
          f"{'1-user p50/p99 ms':>18s} {'faiss p50/p99 ms':>17s} {'p50 ratio':>9s} "
          f"{'peak MiB':>8s} {'table MiB':>9s} {'load':>5s}")
    for r in rows:
        ours, theirs = r["ours_single"], r["theirs_single"]
        peak = "n/a" if r["peak"] is None else f"{r['peak']:.1f}"
        print(f"{r['label']:28s} {r['n'] / r['ours_batch']:10.0f} {r['n'] / r['theirs_batch']:10.0f}"
              f" {r['theirs_batch'] / r['ours_batch']:5.2f}x  {ours[0]:8.2f} /{ours[1]:8.2f} "
              f"{theirs[0]:8.2f} /{theirs[1]:7.2f} {theirs[0] / ours[0]:8.2f}x "
              f"{peak:>8s} {r['table_mib']:9.1f} {r['load']:5.1f}")
    if fits:
        print(f"\n{'fit':28s} {'cfprune s':>10s} {'faiss train+add s':>18s} {'ratio':>7s} "
              f"{'load':>5s}")
        for f in fits:
            print(f"{f['label']:28s} {f['ours']:10.2f} {f['theirs']:18.2f} "
                  f"{f['ours'] / f['theirs']:6.1f}x {f['load']:5.1f}")
    print("ratio: faiss time / cfprune time (> 1: cfprune faster); fit ratio: cfprune / faiss. "
          "peak: high-water RSS above resident during one single-user call.")


def main():
    args = parse_args()
    import faiss
    import numba
    print(f"numba {numba.__version__}, faiss {faiss.__version__}, {args.threads} threads, "
          f"top-{args.k}, {args.users} users x {args.seen} seen, load average at start "
          f"{os.getloadavg()[0]:.1f}")
    rows, fits = [], []
    bases = {}
    for kind in args.kinds:
        source = "bpr" if kind == "bpr" else "als"
        if source not in bases:
            bases[source] = base_factors(source, args.dim, args.threads)
        for size in args.sizes:
            rng = np.random.default_rng(0)
            users, items, seen = catalogue(kind, SIZES[size], args.users, args.seen,
                                           bases[source], rng)
            for storage in args.storages:
                label = f"{kind} {size} {storage}"
                if storage in ("pq8", "pq4", "opq"):
                    index, table, faiss_fit = pq_pair(items, storage)
                else:
                    index, table, faiss_fit = scalar_pair(items, storage)
                if not args.fit_only:
                    rows.append(measure_case(label, users, seen, table, index, args))
                    print_rows(rows[-1:], [])
                del index, table
                if not args.no_fit and storage in FIT_SPECS:
                    fits.append(fit_row(label, items, users, storage, faiss_fit))
                    print(f"  fit {fits[-1]['ours']:.2f} s vs faiss {faiss_fit:.2f} s")
    print("\n# all cases")
    print_rows(rows, fits)


if __name__ == "__main__":
    main()
