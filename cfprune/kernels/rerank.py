"""Re-rank kernels: score given candidate items exactly and keep the top-k.

``cand_rows`` int64 [n, k'] are the rows of the re-rank table to score (-1: no candidate) and
``cand_ids`` int32 [n, k'] the item ids reported for them (the same numbers when the table holds
every item). Candidates come already filtered (seen items removed), in any order; the heaps
(:func:`.topk.new_heaps`) apply the tie rule. The users are split over ``n_workers`` threads
(:mod:`.pool`).
"""

import numpy as np
from numba import njit

from cfprune.kernels.pool import frozen, run_blocks
from cfprune.kernels.topk import beats_root, replace_root


def rerank_dense(queries, table, cand_rows, cand_ids, heap_scores, heap_ids, n_workers=1):
    """Top-k of ``queries`` float32 [n, d] over candidates scored against float32 ``table``."""
    args = (frozen(queries, np.float32), frozen(table, np.float32), frozen(cand_rows, np.int64),
            frozen(cand_ids, np.int32), heap_scores, heap_ids)
    run_blocks(lambda start, stop: rerank_dense_users(start, stop, *args), queries.shape[0],
               n_workers)


def rerank_int8(queries, codes, scale, offset, per_row, cand_rows, cand_ids, heap_scores,
                heap_ids, n_workers=1):
    """As :func:`rerank_dense` against an int8 table ``scale * codes + offset`` (``scale`` and
    ``offset`` per row when ``per_row``, else per dimension; ``offset`` [0] when symmetric)."""
    args = (frozen(queries, np.float32), frozen(codes, np.int8), frozen(scale, np.float32),
            frozen(offset, np.float32), bool(per_row), frozen(cand_rows, np.int64),
            frozen(cand_ids, np.int32), heap_scores, heap_ids)
    run_blocks(lambda start, stop: rerank_int8_users(start, stop, *args), queries.shape[0],
               n_workers)


@njit(cache=True, nogil=True)
def rerank_dense_users(start, stop, queries, table, cand_rows, cand_ids, heap_scores, heap_ids):
    """:func:`rerank_dense` for the queries ``start:stop``."""
    dim = queries.shape[1]
    for i in range(start, stop):
        for c in range(cand_rows.shape[1]):
            row = cand_rows[i, c]
            if row < 0:
                continue
            acc = np.float32(0.0)
            for t in range(dim):
                acc += queries[i, t] * table[row, t]
            if beats_root(heap_scores[i], heap_ids[i], acc, cand_ids[i, c]):
                replace_root(heap_scores[i], heap_ids[i], acc, cand_ids[i, c])


@njit(cache=True, nogil=True)
def rerank_int8_users(start, stop, queries, codes, scale, offset, per_row, cand_rows, cand_ids,
                      heap_scores, heap_ids):
    """:func:`rerank_int8` for the queries ``start:stop``."""
    dim = queries.shape[1]
    has_offset = offset.shape[0] > 0
    for i in range(start, stop):
        for c in range(cand_rows.shape[1]):
            row = cand_rows[i, c]
            if row < 0:
                continue
            acc = np.float32(0.0)
            if per_row:
                o = offset[row] if has_offset else np.float32(0.0)
                total = np.float32(0.0)
                for t in range(dim):
                    acc += queries[i, t] * np.float32(codes[row, t])
                    total += queries[i, t]
                acc = scale[row] * acc + o * total
            elif has_offset:
                for t in range(dim):
                    acc += queries[i, t] * (scale[t] * np.float32(codes[row, t]) + offset[t])
            else:
                for t in range(dim):
                    acc += queries[i, t] * (scale[t] * np.float32(codes[row, t]))
            if beats_root(heap_scores[i], heap_ids[i], acc, cand_ids[i, c]):
                replace_root(heap_scores[i], heap_ids[i], acc, cand_ids[i, c])
