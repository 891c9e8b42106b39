"""Scorer for product-quantised item tables by asymmetric distance computation (ADC).

Arrays: ``codes`` uint8 [n_rows, m], ``codebooks`` float32 [ksub, d] (sub-space s owns columns
``bounds[s]:bounds[s + 1]``), ``bounds`` int32 [m + 1]. The queries given to the scorer are the
users already rotated (``users @ rotation`` when the table has a rotation), since
``u . x = (u @ rotation) . x_rot``.

For a tile of :data:`PQ_USERS_PER_TILE` users the lookup table ``lut[s, c, u]`` (float32
[m, ksub, tile]) holds the inner product of user u's sub-vector s with centroid c. The codes are
then scanned item-major: each code byte is read once per tile of users and adds the contiguous
vector ``lut[s, code, :]`` to the tile's scores, so the additions run across users in SIMD lanes.
Scores go to the top-k selection as in :mod:`.dense` (same arguments).
"""

import numpy as np
from numba import njit, prange

from cfprune.kernels.dense import ITEMS_PER_TILE
from cfprune.kernels.topk import push_tile

PQ_USERS_PER_TILE = 16


@njit(cache=True)
def build_lookup(rotated, first, n_users, codebooks, bounds, lut):
    """Fill ``lut`` [m, ksub, PQ_USERS_PER_TILE] for users ``first:first + n_users`` (others 0)."""
    m = bounds.shape[0] - 1
    ksub = codebooks.shape[0]
    lut[:] = 0.0
    for s in range(m):
        for c in range(ksub):
            for u in range(n_users):
                acc = np.float32(0.0)
                for t in range(bounds[s], bounds[s + 1]):
                    acc += rotated[first + u, t] * codebooks[c, t]
                lut[s, c, u] = acc


@njit(cache=True, parallel=True)
def score_pq(rotated, codes, codebooks, bounds, item_map, seen_indices, seen_start, seen_end,
             heap_scores, heap_ids):
    """Top-k of the rotated users float32 [n, d] against the PQ codes (ADC, item-major)."""
    n_queries = rotated.shape[0]
    n_rows, m = codes.shape
    ksub = codebooks.shape[0]
    n_tiles = (n_queries + PQ_USERS_PER_TILE - 1) // PQ_USERS_PER_TILE
    for tile in prange(n_tiles):
        first = tile * PQ_USERS_PER_TILE
        n_users = min(n_queries, first + PQ_USERS_PER_TILE) - first
        seen_pos = seen_start[first:first + n_users].copy()
        lut = np.empty((m, ksub, PQ_USERS_PER_TILE), dtype=np.float32)
        build_lookup(rotated, first, n_users, codebooks, bounds, lut)
        tile_scores = np.empty((ITEMS_PER_TILE, PQ_USERS_PER_TILE), dtype=np.float32)
        for row0 in range(0, n_rows, ITEMS_PER_TILE):
            row1 = min(n_rows, row0 + ITEMS_PER_TILE)
            for r in range(row1 - row0):
                acc = tile_scores[r]
                for u in range(PQ_USERS_PER_TILE):
                    acc[u] = 0.0
                for s in range(m):
                    entry = lut[s, codes[row0 + r, s]]
                    for u in range(PQ_USERS_PER_TILE):
                        acc[u] += entry[u]
            push_tile(heap_scores, heap_ids, first, tile_scores[:row1 - row0, :n_users].T, row0,
                      item_map, seen_indices, seen_pos, seen_end)
