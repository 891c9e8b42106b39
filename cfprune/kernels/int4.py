"""Scorer for int4 item tables: two 4-bit levels per byte (dimension 2j in the low nibble of
byte j, 2j+1 in the high nibble), decoded as ``scale * q + offset`` per row or per dimension.

Tiles of item rows are unpacked and decoded to float32 once per tile of users and scored with one
BLAS GEMM, fused with the top-k selection (arguments as in :mod:`.dense` and :mod:`.int8`).
"""

import numpy as np
from numba import njit, prange

from cfprune.kernels.dense import ITEMS_PER_TILE, USERS_PER_TILE
from cfprune.kernels.topk import push_tile


@njit(cache=True)
def decode_int4_tile(packed, row0, row1, scale, offset, per_row, out):
    """Write the decoded rows ``row0:row1`` of ``packed`` uint8 [n, ceil(d/2)] into ``out``."""
    dim = out.shape[1]
    has_offset = offset.shape[0] > 0
    for r in range(row1 - row0):
        row = row0 + r
        s = scale[row] if per_row else np.float32(1.0)
        o = offset[row] if per_row and has_offset else np.float32(0.0)
        for t in range(dim):
            byte = packed[row, t >> 1]
            level = np.float32((byte >> 4) if t & 1 else (byte & 15))
            if per_row:
                out[r, t] = s * level + o
            elif has_offset:
                out[r, t] = scale[t] * level + offset[t]
            else:
                out[r, t] = scale[t] * level


@njit(cache=True, parallel=True)
def score_int4(queries, packed, scale, offset, per_row, item_map, seen_indices, seen_start,
               seen_end, heap_scores, heap_ids):
    """Top-k of float32 ``queries`` [n, d] against the int4 table ``packed``."""
    n_queries, dim = queries.shape
    n_rows = packed.shape[0]
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
            decode_int4_tile(packed, row0, row1, scale, offset, per_row, decoded)
            np.dot(users, decoded.T, buffer)
            push_tile(heap_scores, heap_ids, first, buffer, row0, item_map,
                      seen_indices, seen_pos, seen_end)
