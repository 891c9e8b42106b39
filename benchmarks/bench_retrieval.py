"""Retrieval throughput: cfprune's kernels against faiss, implicit and NumPy, same threads.

Top-10 with seen-item filtering over all items, for every user, on
(a) an ALS model of MovieLens (ml-latest-small, else ml-100k, from ``$CFPRUNE_DATA``),
(b) an ALS model of the ML-1M ratings of the derived archive without timestamps
(``ml-1m-no-timestamps.zip``, not the official ml-1m; ratings >= 4, items with none dropped), its
users tiled ``--ml1m-tiles`` times (default 4: about 24k users, as a production catalogue of a few
thousand items serves many users), and
(c) a synthetic power-law catalogue (``--items``, default 200k; up to 1M).

cfprune skips each user's seen items; faiss has no seen-item filter. The headline ratios are
against faiss's plain, unfiltered ``search(users, k)`` (less work than cfprune's); the usual
practice with faiss, searching ``k + max seen count`` and removing the seen items afterwards, is
timed beside it and labelled "k + max seen, then filter". The PQ tables of cfprune reuse the
codebooks, codes (and OPQ rotation) faiss trained, so both scan the very same codes; the int8
tables are per-dimension affine like faiss's QT_8bit. cfprune's tables are read-only, as the
tables of a loaded model file are (see docs/architecture.md, Kernels). Every timing is the best
of ``--repeats`` after one warm-up call, on ``--threads`` threads for everyone. Also printed:
each method's recall of the exact top-10, the ratios against the targets, the latency of calls
of 1, 10 and 100 users beside faiss's, a second process's time to its first result (Numba cache)
and the peak memory of one recommend call over all users.

    python benchmarks/bench_retrieval.py [--quick] [--items N] [--users N] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from common import (ROOT, best_time, int8_table, ml1m_interactions, pq_tables, read_only,
                    train_movielens_model)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--items", type=int, default=200_000, help="synthetic catalogue size")
    parser.add_argument("--users", type=int, default=2_000, help="synthetic users")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--ml1m-tiles", type=int, default=4,
                        help="copies of the ML-1M users (0: skip the ML-1M catalogue)")
    args = parser.parse_args()
    if args.quick:
        args.items, args.users, args.repeats = min(args.items, 20_000), min(args.users, 500), 1
    return args


# data -----------------------------------------------------------------------------------------
def movielens_interactions():
    """(name, CSR users x items float32 of ratings >= 4) read straight from the archive."""
    import pandas as pd
    home = Path(os.environ.get("CFPRUNE_DATA", Path.home() / "cfprune_data"))
    for name, member, sep, header in (("ml-latest-small", "ml-latest-small/ratings.csv", ",", 0),
                                      ("ml-100k", "ml-100k/u.data", "\t", None)):
        path = home / f"{name}.zip"
        if path.exists():
            with zipfile.ZipFile(path) as archive, archive.open(member) as f:
                frame = pd.read_csv(f, sep=sep, header=header).iloc[:, :3]
            frame.columns = ["user", "item", "rating"]
            frame = frame[frame["rating"] >= 4]
            users = frame["user"].astype("category").cat.codes.to_numpy()
            items = frame["item"].astype("category").cat.codes.to_numpy()
            matrix = sp.csr_matrix((np.ones(len(frame), np.float32), (users, items)))
            return name, matrix
    return None, None


def synthetic(n_users, n_items, dim, seed=0):
    """Power-law catalogue: popularity ~ Zipf(0.8) over the item rank; item r has an isotropic
    Gaussian direction and norm ``popularity_r ** 0.65 * lognormal(sigma=0.3)`` (0.65: the slope
    of log norm on log popularity in an ALS model of ml-latest-small); users are isotropic
    Gaussian; each user's seen items (Pareto-many) are drawn by popularity."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    popularity /= popularity.sum()
    items = rng.standard_normal((n_items, dim))
    norms = (popularity / popularity.max()) ** 0.65 * np.exp(0.3 * rng.standard_normal(n_items))
    items *= (norms / np.linalg.norm(items, axis=1))[:, None]
    items = items.astype(np.float32)
    users = rng.standard_normal((n_users, dim)).astype(np.float32)
    counts = np.minimum((rng.pareto(1.2, n_users) * 20 + 5).astype(int),
                        min(n_items // 10, 2000))
    rows = [np.unique(rng.choice(n_items, size=c, p=popularity)) for c in counts]
    indptr = np.r_[0, np.cumsum([len(r) for r in rows])]
    seen = sp.csr_matrix((np.ones(indptr[-1], np.float32), np.concatenate(rows), indptr),
                         shape=(n_users, n_items))
    return users, items, seen


# contenders -----------------------------------------------------------------------------------
def faiss_filtered(index, queries, seen, k):
    """faiss search of k + max seen, seen items removed afterwards (vectorised), first k kept."""
    extra = int(np.diff(seen.indptr).max()) if seen.nnz else 0
    _, found = index.search(queries, k + extra)
    n_items = seen.shape[1]
    seen_keys = np.repeat(np.arange(seen.shape[0], dtype=np.int64), np.diff(seen.indptr))
    seen_keys = seen_keys * n_items + seen.indices
    keys = np.arange(queries.shape[0], dtype=np.int64)[:, None] * n_items + found
    where = np.minimum(np.searchsorted(seen_keys, keys), max(seen_keys.size - 1, 0))
    is_seen = seen_keys[where] == keys if seen_keys.size else np.zeros(keys.shape, bool)
    usable = (found >= 0) & ~is_seen
    order = np.argsort(~usable, axis=1, kind="stable")[:, :k]
    ids = np.take_along_axis(found, order, 1)
    ids[~np.take_along_axis(usable, order, 1)] = -1
    return ids


def numpy_topk(users, items, seen, k, batch=1024):
    ids = np.empty((users.shape[0], k), np.int64)
    for first in range(0, users.shape[0], batch):
        scores = users[first:first + batch] @ items.T
        block = seen[first:first + batch].tocoo()
        scores[block.row, block.col] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
        ids[first:first + batch] = np.take_along_axis(part, order, 1)
    return ids


def ascending_scan(users, tiles, n_rows, seen, k, threads):
    """cfprune's tiled scorer without early stop: rows in ascending order, bound +inf."""
    from threadpoolctl import threadpool_limits

    from cfprune.kernels.tiled import score_tiles, table_order
    from cfprune.kernels.topk import new_heaps, sort_heaps
    indptr = seen.indptr.astype(np.int64)
    heap_scores, heap_ids = new_heaps(users.shape[0], k)
    with threadpool_limits(1, "blas"):
        score_tiles(users, tiles, *table_order(n_rows), threads, np.empty(0, np.int32),
                    seen.indices.astype(np.int32), indptr[:-1], indptr[1:], heap_scores,
                    heap_ids)
        sort_heaps(heap_scores, heap_ids)
    return heap_ids


def recall(ids, exact):
    hits = [len(set(a[a >= 0].tolist()) & set(b[b >= 0].tolist())) for a, b in zip(ids, exact)]
    return sum(hits) / max(1, int((exact >= 0).sum()))


def run_suite(title, users, items, seen, args):
    import faiss
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from cfprune.models.factors import FactorModel
    from cfprune.retrieval import recommend
    from cfprune.tables import DenseTable

    k, threads, repeats = args.k, args.threads, args.repeats
    n_users, (n_items, dim) = users.shape[0], items.shape
    all_users = np.arange(n_users)
    print(f"\n## {title}: {n_users} users x {n_items} items, d={dim}, top-{k}, "
          f"{threads} threads, mean seen {seen.nnz / n_users:.1f}, max seen "
          f"{int(np.diff(seen.indptr).max())}")
    faiss.omp_set_num_threads(threads)
    rows = []
    latency_of = {}  # name -> callable(n users) for the latency table
    dense = read_only(DenseTable(items.copy()))

    def cf(name, model, **kw):
        seconds, (ids, _) = best_time(lambda: recommend(model, all_users, seen, k=k,
                                                        num_threads=threads, **kw), repeats)
        rows.append((name, seconds, ids, model.items.nbytes + (
            model.rerank.nbytes if model.rerank is not None else 0)))
        latency_of[name] = lambda n: recommend(model, all_users[:n], seen[:n], k=k,
                                               num_threads=threads, **kw)

    def fs(name, index, nbytes):
        seconds, (_, ids) = best_time(lambda: index.search(users, k), repeats)
        rows.append((name, seconds, ids, nbytes))
        latency_of[name] = lambda n: index.search(users[:n], k)
        seconds, ids = best_time(lambda: faiss_filtered(index, users, seen, k), repeats)
        rows.append((f"{name} (k + max seen, then filter)", seconds, ids, nbytes))

    with threadpool_limits(threads, "blas"):
        seconds, exact = best_time(lambda: numpy_topk(users, items, seen, k), repeats)
    rows.append(("numpy matmul+argpartition", seconds, exact, items.nbytes))

    from cfprune.kernels.tiled import float32_tiles, int8_tiles
    cf("cfprune exact (dense f32)", FactorModel(users, dense))
    seconds, ids = best_time(lambda: ascending_scan(users, float32_tiles(items), n_items, seen,
                                                    k, threads), repeats)
    rows.append(("cfprune exact, ascending scan (no stop)", seconds, ids, items.nbytes))
    flat = faiss.IndexFlatIP(dim)
    flat.add(items)
    fs("faiss IndexFlatIP", flat, items.nbytes)

    q8 = read_only(int8_table(items))
    cf("cfprune int8 (f32 users)", FactorModel(users, q8))
    tiles8 = int8_tiles(q8.codes, q8.scale, q8.offset, False)
    seconds, ids = best_time(lambda: ascending_scan(users, tiles8, n_items, seen, k, threads),
                             repeats)
    rows.append(("cfprune int8, ascending scan (no stop)", seconds, ids, q8.nbytes))
    cf("cfprune int8 (int8 users)", FactorModel(users, q8), int8_route="int8")
    sq = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit,
                                    faiss.METRIC_INNER_PRODUCT)
    sq.train(items)
    sq.add(items)
    fs("faiss SQ8", sq, sq.sa_code_size() * n_items)

    pq_targets = []
    for m, nbits, opq in ((8, 8, False), (16, 8, False), (8, 8, True), (16, 4, False)):
        if dim % m:
            continue
        label = f"m={m}" + (",OPQ" if opq else "") + (f",nbits={nbits}" if nbits != 8 else "")
        index, table = pq_tables(items, m, nbits, opq)
        cf(f"cfprune PQ {label}", FactorModel(users, table))
        fs(f"faiss {'OPQ+' if opq else ''}IndexPQ {label}", index, table.nbytes)
        pq_targets.append((f"cfprune PQ {label}", f"faiss {'OPQ+' if opq else ''}IndexPQ {label}"))
        if m == 16 and nbits == 8:
            cf("cfprune two-stage PQ16 -> f32 (100 cand.)",
               FactorModel(users, table, rerank=dense), candidates=100)
            cf("cfprune two-stage PQ16 -> int8 (100 cand.)",
               FactorModel(users, table, rerank=q8), candidates=100)
            pq_targets += [(f"cfprune two-stage PQ16 -> {r} (100 cand.)", f"faiss IndexPQ {label}")
                           for r in ("f32", "int8")]

    als = AlternatingLeastSquares(factors=dim, num_threads=threads)
    als.user_factors, als.item_factors = users, items
    with threadpool_limits(1, "blas"):
        seconds, (ids, _) = best_time(lambda: als.recommend(all_users, seen, N=k,
                                                            filter_already_liked_items=True),
                                      repeats)
    rows.append(("implicit recommend", seconds, ids, items.nbytes))

    print(f"{'method':52s} {'users/s':>10s} {'recall@10':>9s} {'item MB':>8s}")
    for name, seconds, ids, nbytes in rows:
        print(f"{name:52s} {n_users / seconds:10.0f} {recall(ids, exact):9.3f} "
              f"{nbytes / 2 ** 20:8.2f}")
    speed = {name: n_users / seconds for name, seconds, _, _ in rows}
    print("recall@10 is against the exact top-10 with seen items removed; faiss's plain search "
          "does not remove them.")
    targets = [("cfprune int8 (f32 users)", "faiss SQ8", 1.5),
               ("cfprune int8 (int8 users)", "faiss SQ8", 1.5)]
    targets += [(ours, theirs, 1.5) for ours, theirs in pq_targets]
    targets += [(ours, "faiss IndexFlatIP", 1.0) for ours, _ in pq_targets]
    targets += [("cfprune exact (dense f32)", "faiss IndexFlatIP", 0.8),
                ("cfprune exact (dense f32)", "implicit recommend", 3.0),
                ("cfprune exact (dense f32)", "faiss IndexFlatIP (k + max seen, then filter)",
                 None),
                ("cfprune exact (dense f32)", "cfprune exact, ascending scan (no stop)", None),
                ("cfprune int8 (f32 users)", "cfprune int8, ascending scan (no stop)", None)]
    targets += [(ours, f"{theirs} (k + max seen, then filter)", None)
                for ours, theirs in pq_targets]
    for ours, theirs, target in targets:
        if ours in speed and theirs in speed:
            ratio = speed[ours] / speed[theirs]
            verdict = ("(no target)" if target is None else
                       f"(target >= {target}x) {'OK' if ratio >= target else 'MISSED'}")
            print(f"  {ours} / {theirs}: {ratio:5.2f}x {verdict}")
    latency_table(latency_of, args)
    return rows


def latency_table(latency_of, args, sizes=(1, 10, 100)):
    """Milliseconds per call of 1, 10 and 100 users (best of 20 after a warm-up)."""
    print(f"\nlatency per call, ms (best of 20; {args.threads} threads):")
    print(f"{'method':52s}" + "".join(f"{f'{n} users':>11s}" for n in sizes))
    for name, call in latency_of.items():
        cells = []
        for n in sizes:
            seconds, _ = best_time(lambda: call(n), 20)
            cells.append(f"{seconds * 1e3:11.2f}")
        print(f"{name:52s}" + "".join(cells))


def peak_memory(users, items, seen, args):
    """tracemalloc peak of one recommend over all users vs table bytes + one batch."""
    from cfprune.models.factors import FactorModel
    from cfprune.retrieval import DEFAULT_BATCH_SIZE, recommend
    model = FactorModel(users, items)
    recommend(model, np.arange(4), seen[:4], k=args.k, num_threads=args.threads)
    tracemalloc.start()
    recommend(model, np.arange(users.shape[0]), seen, k=args.k, num_threads=args.threads)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    batch = min(DEFAULT_BATCH_SIZE, users.shape[0])
    one_batch = batch * (users.shape[1] * 4 + args.k * 8 * 2)
    output = users.shape[0] * args.k * 8
    print(f"\npeak Python/NumPy allocation of recommend(all {users.shape[0]} users): "
          f"{peak / 2 ** 20:.2f} MB (tables already resident: {model.nbytes / 2 ** 20:.2f} MB; "
          f"one batch of {batch} users {one_batch / 2 ** 20:.2f} MB + output "
          f"{output / 2 ** 20:.2f} MB; a users x items score matrix would be "
          f"{users.shape[0] * items.shape[0] * 4 / 2 ** 20:.0f} MB)")


FIRST_RESULT = """
import time
start, cpu = time.perf_counter(), time.process_time()
import sys
sys.path.insert(0, {root!r})
import cfprune
imported = time.perf_counter()
model = cfprune.load({path!r})
loaded = time.perf_counter()
import scipy.sparse as sp
model.recommend([0], sp.csr_matrix((1, model.n_items), dtype="float32"), k=10)
done = time.perf_counter()
from cfprune.kernels.tiled import scan_worker as score_tiles
print(f"import cfprune {{imported - start:.2f}} s, load {{loaded - imported:.2f}} s, first "
      f"recommend {{done - loaded:.2f}} s (CPU {{time.process_time() - cpu:.2f}} s); Numba cache "
      f"hits {{sum(score_tiles.stats.cache_hits.values())}}, "
      f"misses {{sum(score_tiles.stats.cache_misses.values())}}")
"""


def time_to_first_result(users, items, runs=3):
    """A fresh process imports cfprune, loads a saved model and answers one user (exact path),
    with the Numba cache warm (one process is run first to fill it)."""
    import tempfile

    from cfprune.models.factors import FactorModel
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "model.npz")
        FactorModel(users, items).save(path)
        code = FIRST_RESULT.format(root=str(ROOT), path=path)
        subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
        print(f"\nsecond process, start to first result (exact path, {items.shape[0]} items, "
              f"warm Numba cache, machine load average {os.getloadavg()[0]:.1f}):")
        for _ in range(runs):
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True)
            print(f"  {time.perf_counter() - start:.2f} s wall with interpreter start-up: "
                  f"{out.stdout.strip()}")


def main():
    args = parse_args()
    import faiss
    import numba
    print(f"numba {numba.__version__}, faiss {faiss.__version__}, CPU flags "
          f"{sorted(set(f for f in open('/proc/cpuinfo').read().split() if f.startswith('avx')))}")
    name, matrix = movielens_interactions()
    if name is None:
        print("MovieLens archive not found under $CFPRUNE_DATA: skipping the real-data model")
    else:
        users, items = train_movielens_model(matrix, args.dim, args.threads)
        run_suite(f"{name} ALS", np.ascontiguousarray(users, np.float32),
                  np.ascontiguousarray(items, np.float32), matrix, args)
    matrix = ml1m_interactions() if args.ml1m_tiles > 0 else None
    if matrix is None:
        print("ml-1m-no-timestamps.zip not found under $CFPRUNE_DATA (or --ml1m-tiles 0): "
              "skipping the ML-1M catalogue")
    else:
        users, items = train_movielens_model(matrix, args.dim, args.threads)
        tiles = args.ml1m_tiles
        run_suite(f"ML-1M ratings (derived archive, no timestamps) ALS, users tiled x{tiles}",
                  np.ascontiguousarray(np.tile(users, (tiles, 1)), np.float32),
                  np.ascontiguousarray(items, np.float32), sp.vstack([matrix] * tiles).tocsr(),
                  args)
    users, items, seen = synthetic(args.users, args.items, args.dim)
    run_suite("synthetic power-law", users, items, seen, args)
    peak_memory(users, items, seen, args)
    time_to_first_result(users, items)


if __name__ == "__main__":
    main()
