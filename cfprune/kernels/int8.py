"""int8 item tables (``scale * codes + offset``, per row or per dimension): the tile decoder and
the integer route.

- :func:`decode_affine_tile` decodes rows to float32 exactly as ``Int8Table.decode`` does; the
  float32 users are then scored against the decoded tile by the shared scorer of :mod:`.tiled`
  (exact over the decoded table up to float rounding).
- :func:`score_int8_int8`: the user vector is quantised too (symmetric, one scale per user) and
  the products int8 x int8 are accumulated in int32. Approximate: the user rounding error adds to
  the table's. Items are offered in ascending id order (no norm-ordered early stop: its scores are
  not inner products of the users with the decoded rows).

``scale`` float32 [n_rows] (``per_row``) or [d]; ``offset`` the same, or [0] when symmetric. The
other arguments are described in :mod:`.tiled`.
"""

import numpy as np
from numba import njit

from cfprune.kernels.dense import ITEMS_PER_TILE, USERS_PER_TILE
from cfprune.kernels.pool import frozen, run_blocks
from cfprune.kernels.topk import push_tile


@njit(cache=True, nogil=True)
def decode_affine_tile(levels, scale, offset, per_row, rows, out):
    """Write ``scale * levels[rows] + offset`` (float32) into ``out[:len(rows)]``."""
    dim = out.shape[1]
    has_offset = offset.shape[0] > 0
    for r in range(rows.shape[0]):
        row = rows[r]
        if per_row:
            s = scale[row]
            o = offset[row] if has_offset else np.float32(0.0)
            for t in range(dim):
                out[r, t] = s * np.float32(levels[row, t]) + o
        elif has_offset:
            for t in range(dim):
                out[r, t] = scale[t] * np.float32(levels[row, t]) + offset[t]
        else:
            for t in range(dim):
                out[r, t] = scale[t] * np.float32(levels[row, t])


def quantise_queries(queries, scale, offset, per_row):
    """Symmetric int8 quantisation of the users for :func:`score_int8_int8`.

    Folds a per-dimension ``scale`` into the user vector first. Returns ``(levels int8 [n, d],
    user_scale float32 [n], user_sum float32 [n], user_const float32 [n])`` with
    ``queries[i] . decode(r) ~= user_scale[i] * row_scale[r] * (levels[i] . codes[r])
    + row_offset[r] * user_sum[i] + user_const[i]`` (row terms 1 and 0 for ``axis=dim``).
    """
    queries = np.asarray(queries, dtype=np.float32)
    folded = queries if per_row else queries * scale[None, :]
    peak = np.abs(folded).max(axis=1)
    user_scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    levels = np.clip(np.rint(folded / user_scale[:, None]), -127, 127).astype(np.int8)
    user_sum = queries.sum(axis=1, dtype=np.float32)
    if per_row or offset.shape[0] == 0:
        user_const = np.zeros(queries.shape[0], np.float32)
    else:
        user_const = (queries @ offset).astype(np.float32)
    return levels, user_scale, user_sum, user_const


def score_int8_int8(levels, user_scale, user_sum, user_const, codes, scale, offset, per_row,
                    item_map, seen_indices, seen_start, seen_end, heap_scores, heap_ids,
                    n_workers=1):
    """Top-k with int8 users x int8 items accumulated in int32 (see :func:`quantise_queries`),
    the users split over ``n_workers`` threads."""
    args = (frozen(levels, np.int8), frozen(user_scale, np.float32),
            frozen(user_sum, np.float32), frozen(user_const, np.float32),
            frozen(codes, np.int8), frozen(scale, np.float32), frozen(offset, np.float32),
            bool(per_row), frozen(item_map, np.int32), frozen(seen_indices, np.int32),
            frozen(seen_start, np.int64), frozen(seen_end, np.int64), heap_scores, heap_ids)
    run_blocks(lambda start, stop: int8_users(start, stop, *args), levels.shape[0], n_workers,
               USERS_PER_TILE)


@njit(cache=True, nogil=True)
def int8_users(start, stop, levels, user_scale, user_sum, user_const, codes, scale, offset,
               per_row, item_map, seen_indices, seen_start, seen_end, heap_scores, heap_ids):
    """:func:`score_int8_int8` for the queries ``start:stop``."""
    n_rows, dim = codes.shape
    has_offset = per_row and offset.shape[0] > 0
    buffer = np.empty((USERS_PER_TILE, ITEMS_PER_TILE), dtype=np.float32)
    for first in range(start, stop, USERS_PER_TILE):
        n_users = min(stop, first + USERS_PER_TILE) - first
        seen_pos = seen_start[first:first + n_users].copy()
        for row0 in range(0, n_rows, ITEMS_PER_TILE):
            row1 = min(n_rows, row0 + ITEMS_PER_TILE)
            for r in range(row1 - row0):
                row = row0 + r
                item_codes = codes[row]
                row_scale = scale[row] if per_row else np.float32(1.0)
                row_offset = offset[row] if has_offset else np.float32(0.0)
                for u in range(n_users):
                    user = levels[first + u]
                    acc = np.int32(0)
                    for t in range(dim):
                        acc += np.int32(np.int16(user[t]) * np.int16(item_codes[t]))
                    buffer[u, r] = (user_scale[first + u] * row_scale * np.float32(acc)
                                    + row_offset * user_sum[first + u] + user_const[first + u])
            push_tile(heap_scores, heap_ids, first, buffer[:n_users], row0, row1 - row0,
                      item_map, seen_indices, seen_pos, seen_end)
