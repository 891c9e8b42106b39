"""Every compression method against a tuned float32 ALS, with faiss SQ8 and PQ beside them.

For each dataset (MovieLens ratings >= 4 as positives, ``random_split`` seed 0: 70% train, 10%
validation, 20% test) an ALS baseline is tuned on the validation split (factors {16, 32, 64,
128} x regularisation {0.01, 0.1, 1, 10} x alpha {1, 10, 40}, best validation recall@20; an
over-fitted baseline would make every compression look free). Each method then compresses that baseline (the item table unless the
spec says ``table=``), and the test figures (seen train + validation items filtered) are printed
as one table: bytes of the whole model (users + items + re-rank), compression ratio against the
float32 model, recall@20, nDCG@20, their change against float32, and overlap@20 (share of the
float32 model's top-20 kept).

Beside them, faiss ``ScalarQuantizer(d, QT_8bit)`` (per-dimension min/max, the analogue of
``int8:axis=dim``) and ``ProductQuantizer(d, m, 8)`` are trained on the same item factors and
their decoded item tables (``decode(compute_codes(x))``) evaluated the same way; their bytes are
codes plus trained parameters. The script ends by saying whether cfprune int8 keeps at least
faiss SQ8's recall@20 and cfprune PQ at least faiss PQ's at each m.

    python benchmarks/bench_compression.py [--quick] [--datasets ml-100k,ml-latest-small]

Data home: ``$CFPRUNE_DATA`` (default /work/shared/datasets). Threads: 2 everywhere (implicit,
Numba, faiss, BLAS).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("CFPRUNE_DATA", "/work/shared/datasets")

import numba  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cfprune.datasets import load_movielens  # noqa: E402
from cfprune.errors import CfpruneError, DataError  # noqa: E402
from cfprune.evaluation import evaluate  # noqa: E402
from cfprune.facade import compress  # noqa: E402
from cfprune.models import train_als  # noqa: E402
from cfprune.splits import random_split  # noqa: E402

THREADS = 2
K = 20

# {half} and {quarter} are the baseline's dim / 2 and dim / 4; specs that do not apply to the
# tuned dim (pq:m above dim) are reported as skipped.
SPECS = [
    "fp16",
    "int8", "int8:axis=dim", "int8:axis=auto", "int8:symmetric=true", "int8:table=both",
    "int4", "int4:axis=dim", "int4:axis=auto",
    "pq:m=4", "pq:m=8", "pq:m=16", "pq:m=32",
    "pq:m=8,rotation=opq", "pq:m=8,loss=anisotropic", "pq:m=8,rotation=opq,loss=anisotropic",
    "pq:m=4,rerank=int8,candidates=100",
    "lowrank:rank={half}", "lowrank:rank={half},mode=items", "lowrank:rank={quarter}",
    "lowrank:rank={quarter},mode=items",
    "prune-rows:keep=0.9", "prune-rows:keep=0.5", "prune-rows:keep=0.9,by=popularity",
    "prune-rows:keep=0.5,by=popularity", "prune-rows:keep=0.5,by=popularity,fallback=mean",
    "prune-rows:keep=0.5,table=users",
    "magnitude:sparsity=0.5", "magnitude:sparsity=0.8", "magnitude:sparsity=0.8,scope=row",
    "prune-rows:keep=0.9,by=popularity|lowrank:rank={half}|pq:m=4",
    "lowrank:rank={half}|int8:table=both",
]
QUICK_SPECS = ["fp16", "int8", "int8:axis=dim", "int8:axis=auto", "int4", "pq:m=4", "pq:m=8",
               "pq:m=8,rotation=opq,rounds=2", "pq:m=8,loss=anisotropic,rounds=2",
               "lowrank:rank={half}", "lowrank:rank={half},mode=items", "prune-rows:keep=0.5",
               "prune-rows:keep=0.5,by=popularity", "magnitude:sparsity=0.8",
               "prune-rows:keep=0.9,by=popularity|lowrank:rank={half}|pq:m=4"]
FAISS_PQ_M = (4, 8, 16, 32)


def load(name):
    try:
        return load_movielens(name, download=False).implicit(4.0)
    except DataError as e:
        print(f"skipping {name}: {e}")
        return None


def metrics(model, train, test, baseline=None, keep_ranked=False):
    return evaluate(model, train, test, ks=(K,), baseline=baseline, num_threads=THREADS,
                    show_progress=False, keep_ranked=keep_ranked)


def tune_als(train, valid, quick):
    """(label, model) of the best validation recall@20 over the grid."""
    grid = list(itertools.product((32, 64), (0.1, 10.0), (10.0,))) if quick else \
        list(itertools.product((16, 32, 64, 128), (0.01, 0.1, 1.0, 10.0), (1.0, 10.0, 40.0)))
    best = None
    for factors, reg, alpha in grid:
        with threadpool_limits(1, "blas"):  # implicit's ALS runs its own threads
            model = train_als(train, factors=factors, regularization=reg, alpha=alpha,
                              iterations=15, num_threads=THREADS, seed=0, show_progress=False)
        r = metrics(model, train, valid).metrics[f"recall@{K}"]
        label = f"factors={factors},reg={reg:g},alpha={alpha:g}"
        print(f"    valid recall@{K} {r:.4f}  {label}", flush=True)
        if best is None or r > best[0]:
            best = (r, label, model)
    return best[1], best[2]


def faiss_models(base):
    """[(label, FactorModel, bytes)] of faiss SQ8 and PQ decoded item tables."""
    import faiss

    faiss.omp_set_num_threads(THREADS)
    x = np.ascontiguousarray(base.items.decode(), dtype=np.float32)
    n, d = x.shape
    out = []
    sq = faiss.ScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit)
    sq.train(x)
    decoded = sq.decode(sq.compute_codes(x))
    sq_bytes = n * sq.code_size + faiss.vector_to_array(sq.trained).nbytes
    out.append(("faiss SQ8", base.replace(items=decoded), base.users.nbytes + sq_bytes))
    for m in FAISS_PQ_M:
        if d % m:
            continue
        pq = faiss.ProductQuantizer(d, m, 8)
        pq.verbose = False
        pq.cp.min_points_per_centroid = 1  # silence the small-training-set warning
        pq.train(x)
        decoded = pq.decode(pq.compute_codes(x))
        pq_bytes = n * pq.code_size + faiss.vector_to_array(pq.centroids).nbytes
        out.append((f"faiss PQ m={m}", base.replace(items=decoded), base.users.nbytes + pq_bytes))
    return out


def run_dataset(name, quick):
    data = load(name)
    if data is None:
        return None
    train, valid, test = random_split(data, test_fraction=0.2, valid_fraction=0.1, seed=0)
    seen = (train.matrix + valid.matrix).tocsr()
    print(f"\n== {name}: {data.n_users} users x {data.n_items} items; train {train.nnz}, valid "
          f"{valid.nnz}, test {test.nnz}", flush=True)
    print("  tuning ALS on validation", flush=True)
    started = time.perf_counter()
    label, base = tune_als(train, valid, quick)
    print(f"  baseline: ALS {label} ({time.perf_counter() - started:.0f}s for the grid)",
          flush=True)
    reference = metrics(base, seen, test, keep_ranked=True)
    ref_r, ref_n = reference.metrics[f"recall@{K}"], reference.metrics[f"ndcg@{K}"]
    rows = [("float32", base.nbytes, ref_r, ref_n, 1.0, 0.0, "")]
    for template in (QUICK_SPECS if quick else SPECS):
        spec = template.format(half=max(1, base.dim // 2), quarter=max(1, base.dim // 4))
        started = time.perf_counter()
        try:
            model = compress(base, spec, interactions=train)
        except CfpruneError as e:
            print(f"  skipped {spec}: {e}", flush=True)
            rows.append((spec, None, None, None, None, 0.0, f"skipped: {e}"))
            continue
        seconds = time.perf_counter() - started
        result = metrics(model, seen, test, baseline=reference)
        rows.append((spec, model.nbytes, result.metrics[f"recall@{K}"],
                     result.metrics[f"ndcg@{K}"], result.metrics[f"overlap@{K}"], seconds,
                     note_of(model)))
        print(f"  done {spec} ({seconds:.1f}s)", flush=True)
    for flabel, model, nbytes in faiss_models(base):
        result = metrics(model, seen, test, baseline=reference)
        rows.append((flabel, nbytes, result.metrics[f"recall@{K}"], result.metrics[f"ndcg@{K}"],
                     result.metrics[f"overlap@{K}"], 0.0, "decoded item table"))
    print_table(name, label, base, rows, ref_r, ref_n)
    return rows


def note_of(model):
    """Short notes from the last step's info: chosen axis, ksub, coverage, sparse vs dense."""
    notes = []
    for step in model.info.get("compression", []):
        for side in ("items", "users"):
            info = step.get(side, {})
            if "axis" in info and step["method"] in ("int8", "int4") and \
                    step["params"]["axis"] == "auto":
                notes.append(f"{side} axis={info['axis']}")
            if "ksub_used" in info and info["ksub_used"] != info.get("ksub"):
                notes.append(f"ksub={info['ksub_used']}")
            if info.get("smaller_than_dense") is False:
                notes.append("CSR not smaller than dense")
    coverage = model.info.get("catalogue_coverage", 1.0)
    if coverage < 1.0:
        notes.append(f"catalogue {coverage:.0%}")
    return "; ".join(notes)


def print_table(name, label, base, rows, ref_r, ref_n):
    print(f"\n### {name} — ALS {label}, float32 {base.nbytes} bytes "
          f"({base.n_users} users, {base.n_items} items, dim {base.dim})\n")
    print(f"| method | bytes | ratio | recall@{K} | Δ recall | nDCG@{K} | Δ nDCG | overlap@{K} | "
          f"fit s | notes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for spec, nbytes, r, n, overlap, seconds, note in rows:
        if nbytes is None:
            print(f"| `{spec}` | | | | | | | | | {note} |")
            continue
        print(f"| `{spec}` | {nbytes} | {base.nbytes / nbytes:.2f}x | {r:.4f} | "
              f"{(r - ref_r) / ref_r:+.1%} | {n:.4f} | {(n - ref_n) / ref_n:+.1%} | "
              f"{overlap:.3f} | {seconds:.1f} | {note} |")


def verdicts(name, rows):
    by = {r[0]: r for r in rows}
    lines = []
    sq = by.get("faiss SQ8")
    for spec in ("int8", "int8:axis=dim", "int8:axis=auto"):
        if sq and spec in by:
            ok = by[spec][2] >= sq[2]
            lines.append(f"{name}: cfprune `{spec}` recall@{K} {by[spec][2]:.4f} "
                         f"{'>=' if ok else '<'} faiss SQ8 {sq[2]:.4f}: "
                         f"{'yes' if ok else 'NO'}")
    for m in FAISS_PQ_M:
        fp = by.get(f"faiss PQ m={m}")
        ours = by.get(f"pq:m={m}")
        if fp and ours and ours[2] is not None:
            ok = ours[2] >= fp[2]
            lines.append(f"{name}: cfprune `pq:m={m}` recall@{K} {ours[2]:.4f} "
                         f"{'>=' if ok else '<'} faiss PQ m={m} {fp[2]:.4f}: "
                         f"{'yes' if ok else 'NO'}")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small ALS grid, fewer methods")
    parser.add_argument("--datasets", default="ml-100k,ml-latest-small")
    args = parser.parse_args(argv)
    numba.set_num_threads(THREADS)
    lines = []
    with threadpool_limits(THREADS):
        for name in args.datasets.split(","):
            rows = run_dataset(name.strip(), args.quick)
            if rows:
                lines += verdicts(name, rows)
    print("\n## cfprune against faiss (test recall@20)\n")
    for line in lines:
        print("- " + line)


if __name__ == "__main__":
    main()
