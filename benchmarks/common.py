"""What the retrieval benchmarks share: the ML-1M ALS factors, timing, read-only tables and the
cfprune tables built on the codes faiss trained (so both sides scan the very same codes)."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def ml1m_interactions():
    """CSR users x items float32 of the derived ML-1M archive (ratings >= 4, items without any
    dropped), or None when the archive is not in ``$CFPRUNE_DATA``."""
    from cfprune.datasets import load_ml1m_no_timestamps
    from cfprune.errors import CfpruneError
    try:
        log = load_ml1m_no_timestamps()
    except CfpruneError:
        return None
    return log.implicit(4.0, min_item_interactions=1).matrix


def train_movielens_model(matrix, dim, threads):
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits
    als = AlternatingLeastSquares(factors=dim, iterations=10, random_state=0, num_threads=threads)
    with threadpool_limits(1, "blas"):
        als.fit(matrix, show_progress=False)
    return np.asarray(als.user_factors), np.asarray(als.item_factors)


def best_time(fn, repeats):
    """(best seconds, last result) over ``repeats`` calls after one warm-up call."""
    result = fn()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def read_only(table):
    """``table`` with every array read-only, as the tables of a loaded model file are."""
    for array in table.arrays().values():
        array.flags.writeable = False
    return table


@contextmanager
def quiet_stderr():
    """Silence file descriptor 2 (C++ libraries print there directly) for the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def pq_tables(items, m, nbits=8, opq=False):
    """(faiss index, cfprune PQTable on the same codebooks, codes and OPQ rotation)."""
    import faiss
    from cfprune.tables import PQTable
    n, d = items.shape
    ksub = 2 ** nbits
    pq_index = faiss.IndexPQ(d, m, nbits, faiss.METRIC_INNER_PRODUCT)
    index = pq_index
    if opq:
        matrix = faiss.OPQMatrix(d, m)
        index = faiss.IndexPreTransform(matrix, pq_index)
    with quiet_stderr():  # faiss warns on stderr when a catalogue is small for 256 centroids
        index.train(items)
    index.add(items)
    dsub = d // m
    centroids = faiss.vector_to_array(pq_index.pq.centroids).reshape(m, ksub, dsub)
    codebooks = np.ascontiguousarray(centroids.transpose(1, 0, 2).reshape(ksub, d))
    packed = faiss.vector_to_array(pq_index.codes).reshape(n, -1)
    if nbits == 8:
        codes = packed
    else:  # faiss packs 4-bit codes two per byte, code j in bits 4j..4j+3
        codes = np.empty((n, 2 * packed.shape[1]), np.uint8)
        codes[:, 0::2], codes[:, 1::2] = packed & 15, packed >> 4
        codes = np.ascontiguousarray(codes[:, :m])
    bounds = np.arange(0, d + 1, dsub, dtype=np.int32)
    rotation = None
    if opq:  # faiss applies x_rot = A x, so x = x_rot @ A and rotation = A.T
        a = faiss.vector_to_array(matrix.A).reshape(d, d)
        rotation = np.ascontiguousarray(a.T, dtype=np.float32)
    return index, read_only(PQTable(codes, codebooks, bounds, rotation=rotation))


def int8_table(items):
    """Per-dimension affine int8 table (the same range rule as faiss QT_8bit)."""
    from cfprune.tables import Int8Table
    low, high = items.min(axis=0), items.max(axis=0)
    scale = np.maximum(high - low, 1e-12) / 255.0
    codes = np.clip(np.rint((items - low) / scale) - 128, -128, 127).astype(np.int8)
    return Int8Table(codes, scale.astype(np.float32), (low + 128 * scale).astype(np.float32),
                     axis="dim")
