"""Scorer for sparse (CSR) item tables: ``indptr`` int64 [n_rows + 1], ``indices`` (uint8,
uint16 or int32) [nnz], ``data`` float32 [nnz].

Each tile of item rows is scattered into a zeroed float32 tile once per tile of users and scored
with one BLAS GEMM, fused with the top-k selection (arguments as in :mod:`.dense`).
"""

import numpy as np
from numba import njit, prange

from cfprune.kernels.dense import ITEMS_PER_TILE, USERS_PER_TILE
from cfprune.kernels.topk import push_tile


@njit(cache=True, parallel=True)
def score_sparse(queries, indptr, indices, data, item_map, seen_indices, seen_start, seen_end,
                 heap_scores, heap_ids):
    """Top-k of float32 ``queries`` [n, d] against the CSR table (n_rows = len(indptr) - 1)."""
    n_queries, dim = queries.shape
    n_rows = indptr.shape[0] - 1
    n_tiles = (n_queries + USERS_PER_TILE - 1) // USERS_PER_TILE
    for tile in prange(n_tiles):
        first = tile * USERS_PER_TILE
        stop = min(n_queries, first + USERS_PER_TILE)
        users = queries[first:stop]
        seen_pos = seen_start[first:stop].copy()
        buffer = np.empty((stop - first, ITEMS_PER_TILE), dtype=np.float32)
        decoded = np.empty((ITEMS_PER_TILE, dim), dtype=np.float32)
        for row0 in range(0, n_rows, ITEMS_PER_TILE):
            row1 = min(n_rows, row0 + ITEMS_PER_TILE)
            if row1 - row0 < ITEMS_PER_TILE:
                buffer = np.empty((stop - first, row1 - row0), dtype=np.float32)
                decoded = np.empty((row1 - row0, dim), dtype=np.float32)
            decoded[:] = 0.0
            for r in range(row1 - row0):
                for p in range(indptr[row0 + r], indptr[row0 + r + 1]):
                    decoded[r, indices[p]] = data[p]
            np.dot(users, decoded.T, buffer)
            push_tile(heap_scores, heap_ids, first, buffer, row0, item_map,
                      seen_indices, seen_pos, seen_end)
