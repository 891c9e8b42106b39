"""Product-quantised item tables: the tile decoder of the shared scorer and the lookup-table scan.

Arrays: ``codes`` uint8 [n_rows, m], ``codebooks`` float32 [ksub, d] (ksub <= 256; sub-space s
owns columns ``bounds[s]:bounds[s + 1]``, of any widths), ``bounds`` int32 [m + 1]. The queries
given to the scorers are the users already rotated (``users @ rotation`` when the table has a
rotation), since ``u . x = (u @ rotation) . x_rot``.

Two routes, both over the rows in the early-stop order of :mod:`.tiled` (descending norm of the
decoded rotated rows, which :func:`row_norms` computes from the codes):

- :func:`decode_pq_tile`: a tile of rows becomes float32 (codebook gathers) and goes through the
  shared GEMM scorer (:func:`.tiled.score_tiles` with :func:`.tiled.pq_tiles`): the route for
  batches of users.
- :func:`lookup_worker`: asymmetric distance computation for a tile of
  :data:`PQ_USERS_PER_TILE` users: the lookup table ``lut[s, c, u]`` (float32 [m, ksub, tile])
  holds the inner product of user u's sub-vector s with centroid c, and each code byte adds the
  contiguous vector ``lut[s, code, :]`` to the tile's scores (the additions run across users in
  SIMD lanes). Users retire by the same Cauchy-Schwarz bound as in :mod:`.tiled`. The route for
  a handful of users, where a GEMM tile would be mostly empty.
"""

import numpy as np
from numba import njit

from cfprune.kernels.dense import ITEMS_PER_TILE
from cfprune.kernels.pool import frozen, run_workers
from cfprune.kernels.topk import offer_rows, reach

PQ_USERS_PER_TILE = 16


def row_norms(codes, codebooks, bounds):
    """float64 [n_rows]: the norm of every decoded (rotated) row, from the squared norm of each
    centroid's part in each sub-space (NumPy, no decode of the table)."""
    squares = np.asarray(codebooks, np.float64) ** 2
    total = np.zeros(codes.shape[0], np.float64)
    for s in range(codes.shape[1]):
        part = squares[:, bounds[s]:bounds[s + 1]].sum(axis=1)
        total += part[codes[:, s]]
    return np.sqrt(total)


@njit(cache=True, nogil=True)
def decode_pq_tile(codes, codebooks, bounds, rows, out):
    """Write the decoded (rotated) rows ``rows`` of ``codes`` into ``out[:len(rows)]``."""
    m = bounds.shape[0] - 1
    for r in range(rows.shape[0]):
        row = rows[r]
        for s in range(m):
            c = codes[row, s]
            for t in range(bounds[s], bounds[s + 1]):
                out[r, t] = codebooks[c, t]


@njit(cache=True, nogil=True)
def lookup_worker(rotated, worker, n_workers, codes, codebooks, bounds, order, remaining_norm,
                  item_map, seen_indices, seen_start, seen_end, heap_scores, heap_ids):
    """Top-k of the rotated users float32 [n, d] against the PQ codes by lookup tables, for the
    user tiles ``worker, worker + n_workers, ...``; rows in ``order`` with early stop by
    ``remaining_norm`` (arguments as in :func:`.tiled.score_tiles`)."""
    n_queries = rotated.shape[0]
    n_rows, m = codes.shape
    ksub = codebooks.shape[0]
    lanes = PQ_USERS_PER_TILE
    lut = np.zeros((m, ksub, lanes), np.float32)
    scores = np.empty((lanes, ITEMS_PER_TILE), np.float32)
    acc = np.empty(lanes, np.float32)
    user_reach = np.empty(lanes, np.float64)
    active = np.empty(lanes, np.bool_)
    n_tiles = (n_queries + lanes - 1) // lanes
    for tile in range(worker, n_tiles, n_workers):
        first = tile * lanes
        n_users = min(n_queries, first + lanes) - first
        for s in range(m):  # lanes without a user score 0 (their sums are never offered)
            for c in range(ksub):
                for u in range(n_users, lanes):
                    lut[s, c, u] = 0.0
        for u in range(n_users):
            query = rotated[first + u]
            user_reach[u] = reach(query)
            active[u] = True
            for s in range(m):
                for c in range(ksub):
                    dot = np.float32(0.0)
                    for t in range(bounds[s], bounds[s + 1]):
                        dot += query[t] * codebooks[c, t]
                    lut[s, c, u] = dot
        for p0 in range(0, n_rows, ITEMS_PER_TILE):
            bound = np.float64(remaining_norm[p0])
            n_active = 0
            for u in range(n_users):
                if active[u] and user_reach[u] * bound < heap_scores[first + u, 0]:
                    active[u] = False
                if active[u]:
                    n_active += 1
            if n_active == 0:
                break
            rows = order[p0:min(n_rows, p0 + ITEMS_PER_TILE)]
            for r in range(rows.shape[0]):
                row = rows[r]
                for u in range(lanes):
                    acc[u] = 0.0
                for s in range(m):
                    entry = lut[s, codes[row, s]]
                    for u in range(lanes):
                        acc[u] += entry[u]
                for u in range(lanes):
                    scores[u, r] = acc[u]
            for u in range(n_users):
                if active[u]:
                    query = first + u
                    offer_rows(heap_scores[query], heap_ids[query], scores[u], rows, item_map,
                               seen_indices, seen_start[query], seen_end[query])


def score_pq(rotated, codes, codebooks, bounds, order, remaining_norm, n_workers, item_map,
             seen_indices, seen_start, seen_end, heap_scores, heap_ids):
    """:func:`lookup_worker` over every tile of users of ``rotated`` float32 [n, d] on
    ``n_workers`` threads (arguments as in :func:`.tiled.score_tiles`)."""
    if rotated.shape[0] == 0 or codes.shape[0] == 0:
        return
    args = (frozen(codes, np.uint8), frozen(codebooks, np.float32), frozen(bounds, np.int32),
            frozen(order, np.int32), frozen(remaining_norm, np.float32),
            frozen(item_map, np.int32), frozen(seen_indices, np.int32),
            frozen(seen_start, np.int64), frozen(seen_end, np.int64), heap_scores, heap_ids)
    rotated = frozen(rotated, np.float32)
    n_tiles = (rotated.shape[0] + PQ_USERS_PER_TILE - 1) // PQ_USERS_PER_TILE
    n_workers = max(1, min(int(n_workers), n_tiles))
    run_workers(lambda worker: lookup_worker(rotated, worker, n_workers, *args), n_workers)
