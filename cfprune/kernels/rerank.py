"""Re-rank kernels: score given candidate items exactly and keep the top-k.

``cand_rows`` int64 [n, k'] are the rows of the re-rank table to score (-1: no candidate) and
``cand_ids`` int32 [n, k'] the item ids reported for them (the same numbers when the table holds
every item). Candidates come already filtered (seen items removed), in any order; the heaps
(:func:`.topk.new_heaps`) apply the tie rule.
"""

import numpy as np
from numba import njit, prange

from cfprune.kernels.topk import beats_root, replace_root


@njit(cache=True, parallel=True, fastmath=True)
def rerank_dense(queries, table, cand_rows, cand_ids, heap_scores, heap_ids):
    """Top-k of ``queries`` float32 [n, d] over candidates scored against float32 ``table``."""
    dim = queries.shape[1]
    for i in prange(queries.shape[0]):
        for c in range(cand_rows.shape[1]):
            row = cand_rows[i, c]
            if row < 0:
                continue
            acc = np.float32(0.0)
            for t in range(dim):
                acc += queries[i, t] * table[row, t]
            if beats_root(heap_scores[i], heap_ids[i], acc, cand_ids[i, c]):
                replace_root(heap_scores[i], heap_ids[i], acc, cand_ids[i, c])


@njit(cache=True, parallel=True, fastmath=True)
def rerank_int8(queries, codes, scale, offset, per_row, cand_rows, cand_ids, heap_scores,
                heap_ids):
    """As :func:`rerank_dense` against an int8 table ``scale * codes + offset`` (``scale`` and
    ``offset`` per row when ``per_row``, else per dimension; ``offset`` [0] when symmetric)."""
    dim = queries.shape[1]
    has_offset = offset.shape[0] > 0
    for i in prange(queries.shape[0]):
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
