"""Exact scorers for dense item tables (float32 and float16) fused with the top-k selection.

Users are split into tiles of :data:`USERS_PER_TILE`, one tile per parallel iteration; each tile
walks the item table in tiles of :data:`ITEMS_PER_TILE` rows, so an item row is read once per tile
of users. The tile scores come from one single-threaded BLAS GEMM (``np.dot`` with ``out``) into a
per-thread buffer and go straight to the bounded top-k selection (:mod:`.topk`). Float16 tiles are
widened through a 65536-entry lookup table (Numba has no float16 arithmetic).

Common arguments of every scorer in this package:

- ``queries`` float32 [n, d]: the users' vectors (C-contiguous);
- ``item_map`` int32 [n_rows] or [0]: item id of each table row (empty: row r is item r);
- ``seen_indices`` int32 [nnz], ``seen_start``/``seen_end`` int64 [n]: query i's seen items are
  ``seen_indices[seen_start[i]:seen_end[i]]``, sorted ascending;
- ``heap_scores`` float32 [n, k], ``heap_ids`` int32 [n, k]: heaps from :func:`.topk.new_heaps`,
  updated in place (unsorted; :func:`.topk.sort_heaps` orders them).
"""

import numpy as np
from numba import njit, prange

from cfprune.kernels.topk import push_tile

USERS_PER_TILE = 64
ITEMS_PER_TILE = 512


def float16_lookup():
    """float32 [65536]: the value of every float16 bit pattern, indexed by its uint16 view."""
    return np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)


@njit(cache=True, parallel=True)
def score_dense(queries, items, item_map, seen_indices, seen_start, seen_end,
                heap_scores, heap_ids):
    """Exact top-k over a float32 table ``items`` [n_rows, d]: score = queries @ items.T."""
    n_queries = queries.shape[0]
    n_rows = items.shape[0]
    n_tiles = (n_queries + USERS_PER_TILE - 1) // USERS_PER_TILE
    for tile in prange(n_tiles):
        first = tile * USERS_PER_TILE
        stop = min(n_queries, first + USERS_PER_TILE)
        users = queries[first:stop]
        seen_pos = seen_start[first:stop].copy()
        buffer = np.empty((stop - first, ITEMS_PER_TILE), dtype=np.float32)
        for row0 in range(0, n_rows, ITEMS_PER_TILE):
            row1 = min(n_rows, row0 + ITEMS_PER_TILE)
            if row1 - row0 < ITEMS_PER_TILE:
                buffer = np.empty((stop - first, row1 - row0), dtype=np.float32)
            np.dot(users, items[row0:row1].T, buffer)
            push_tile(heap_scores, heap_ids, first, buffer, row0, item_map,
                      seen_indices, seen_pos, seen_end)


@njit(cache=True, parallel=True)
def score_float16(queries, items_bits, half_lookup, item_map, seen_indices, seen_start,
                  seen_end, heap_scores, heap_ids):
    """Exact top-k over a float16 table given as its uint16 view ``items_bits`` [n_rows, d];
    ``half_lookup`` is :func:`float16_lookup`."""
    n_queries = queries.shape[0]
    n_rows, dim = items_bits.shape
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
            for r in range(row1 - row0):
                for t in range(dim):
                    decoded[r, t] = half_lookup[items_bits[row0 + r, t]]
            np.dot(users, decoded.T, buffer)
            push_tile(heap_scores, heap_ids, first, buffer, row0, item_map,
                      seen_indices, seen_pos, seen_end)
