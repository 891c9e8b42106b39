"""The one tiled scorer of every storage that decodes to float32 tiles, with exact early stop.

Storages ``dense``, ``fp16``, ``int8``, ``int4`` and ``sparse`` (also as the inner table of a
row-pruned table) differ only in how a tile of item rows becomes float32. :class:`ItemTiles`
carries the arrays of one table together with its storage kind (the arrays of the other storages
are empty placeholders, so one compiled signature serves every storage for given dtypes), and
:func:`decode_tile` dispatches on the kind to the decoders of :mod:`.dense`, :mod:`.int8`,
:mod:`.int4` and :mod:`.sparse`.

:func:`score_tiles` walks the table rows in the order ``order`` in item tiles of
``ITEMS_PER_TILE`` for tiles of ``USERS_PER_TILE`` users: each item tile is decoded once per tile
of users, scored with one single-threaded BLAS GEMM into a per-worker buffer and offered to the
bounded top-k selection (:mod:`.topk`). ``n_workers`` parallel workers take the user tiles
round-robin.

Early stop (exact maximum inner product search). ``remaining_norm[p]`` bounds the norm of every
row in ``order[p:]``; with the rows in descending order of norm (:func:`norm_order`) it falls
fast on real factor tables. By Cauchy-Schwarz no row left can score more than
``||u|| * remaining_norm[p]``, so a user retires from its tile as soon as that bound (widened by
the worst float32 rounding of a dot product, see :func:`reach`) is strictly below the score of its
k-th best item: a row still to come could neither beat nor tie it. A full heap is implied, since an
empty slot scores -inf. The GEMM then runs only over the users still active, and the user tile
stops when none is left. So that a tile's users retire together, the first item tile is scanned
for all users in input order, and the users are then regrouped by the norm level at which their
bound predicts they stop before the rest of the table is scanned.

Common arguments of the scorers of this package:

- ``queries`` float32 [n, d]: the users' vectors (C-contiguous);
- ``item_map`` int32 [n_rows] or [0]: item id of each table row (empty: row r is item r);
- ``seen_indices`` int32 [nnz], ``seen_start``/``seen_end`` int64 [n]: query i's seen items are
  ``seen_indices[seen_start[i]:seen_end[i]]``, sorted ascending;
- ``heap_scores`` float32 [n, k], ``heap_ids`` int32 [n, k]: heaps from :func:`.topk.new_heaps`,
  updated in place (unsorted; :func:`.topk.sort_heaps` orders them).
"""

from functools import lru_cache
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from cfprune.kernels.dense import (ITEMS_PER_TILE, USERS_PER_TILE, decode_float16_tile,
                                   decode_float32_tile, float16_lookup)
from cfprune.kernels.int2 import decode_int2_tile
from cfprune.kernels.int4 import decode_int4_tile
from cfprune.kernels.int8 import decode_affine_tile
from cfprune.kernels.sparse import decode_csr_tile
from cfprune.kernels.topk import offer_rows

KIND_FLOAT32, KIND_FLOAT16, KIND_INT8, KIND_INT4, KIND_CSR, KIND_INT2 = range(6)

_EMPTY_F32 = np.empty(0, np.float32)


class ItemTiles(NamedTuple):
    """One item table as the arrays its tile decoder reads; unused fields are empty arrays.

    ``kind`` is one of the ``KIND_*`` constants. Fields: ``float32`` float32 [n, d];
    ``float16_bits`` uint16 [n, d] (the float16 table's bits) and ``half_lookup`` float32
    [65536]; ``codes8`` int8 [n, d]; ``packed4`` uint8 [n, ceil(d/2)]; ``scale``/``offset``
    float32 (per row when ``per_row``, else per dimension; ``offset`` [0] when symmetric);
    ``indptr`` int64 [n + 1], ``indices`` uint8/uint16/int32 [nnz], ``values`` float32 [nnz];
    ``packed2`` uint8 [n, ceil(d/4)] (int2, with ``scale``/``offset`` as int4).
    """

    kind: int
    float32: np.ndarray
    float16_bits: np.ndarray
    half_lookup: np.ndarray
    codes8: np.ndarray
    packed4: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    per_row: bool
    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray
    packed2: np.ndarray


def _item_tiles(kind, **arrays):
    fields = dict(float32=np.empty((0, 0), np.float32),
                  float16_bits=np.empty((0, 0), np.uint16), half_lookup=_EMPTY_F32,
                  codes8=np.empty((0, 0), np.int8), packed4=np.empty((0, 0), np.uint8),
                  scale=_EMPTY_F32, offset=_EMPTY_F32, per_row=False,
                  indptr=np.empty(0, np.int64), indices=np.empty(0, np.int32),
                  values=_EMPTY_F32, packed2=np.empty((0, 0), np.uint8))
    fields.update(arrays)
    return ItemTiles(kind=kind, **fields)


@lru_cache(maxsize=1)
def _half_lookup():
    return float16_lookup()


def float32_tiles(items):
    """:class:`ItemTiles` of a float32 table [n, d]."""
    return _item_tiles(KIND_FLOAT32, float32=items)


def float16_tiles(items):
    """:class:`ItemTiles` of a float16 table [n, d]."""
    return _item_tiles(KIND_FLOAT16, float16_bits=items.view(np.uint16),
                       half_lookup=_half_lookup())


def int8_tiles(codes, scale, offset, per_row):
    """:class:`ItemTiles` of an int8 table (``offset`` None when symmetric)."""
    return _item_tiles(KIND_INT8, codes8=codes, scale=scale,
                       offset=_EMPTY_F32 if offset is None else offset, per_row=bool(per_row))


def int4_tiles(packed, scale, offset, per_row):
    """:class:`ItemTiles` of an int4 table (``offset`` None when symmetric)."""
    return _item_tiles(KIND_INT4, packed4=packed, scale=scale,
                       offset=_EMPTY_F32 if offset is None else offset, per_row=bool(per_row))


def int2_tiles(packed, scale, offset, per_row):
    """:class:`ItemTiles` of an int2 table (``offset`` None when symmetric)."""
    return _item_tiles(KIND_INT2, packed2=packed, scale=scale,
                       offset=_EMPTY_F32 if offset is None else offset, per_row=bool(per_row))


def csr_tiles(indptr, indices, data):
    """:class:`ItemTiles` of a sparse (CSR) table."""
    return _item_tiles(KIND_CSR, indptr=indptr, indices=indices, values=data)


@njit(cache=True)
def decode_tile(tiles, rows, out):
    """Decode the table rows ``rows`` int32 [m] of ``tiles`` into ``out`` float32 [m, d]."""
    kind = tiles.kind
    if kind == KIND_FLOAT32:
        decode_float32_tile(tiles.float32, rows, out)
    elif kind == KIND_FLOAT16:
        decode_float16_tile(tiles.float16_bits, tiles.half_lookup, rows, out)
    elif kind == KIND_INT8:
        decode_affine_tile(tiles.codes8, tiles.scale, tiles.offset, tiles.per_row, rows, out)
    elif kind == KIND_INT4:
        decode_int4_tile(tiles.packed4, tiles.scale, tiles.offset, tiles.per_row, rows, out)
    elif kind == KIND_INT2:
        decode_int2_tile(tiles.packed2, tiles.scale, tiles.offset, tiles.per_row, rows, out)
    else:
        decode_csr_tile(tiles.indptr, tiles.indices, tiles.values, rows, out)


@njit(cache=True, parallel=True)
def row_norms(tiles, n_rows, dim):
    """float64 [n_rows]: the Euclidean norm of every decoded row of ``tiles``."""
    norms = np.empty(n_rows, np.float64)
    n_chunks = (n_rows + ITEMS_PER_TILE - 1) // ITEMS_PER_TILE
    for chunk in prange(n_chunks):
        row0 = chunk * ITEMS_PER_TILE
        row1 = min(n_rows, row0 + ITEMS_PER_TILE)
        rows = np.arange(row0, row1).astype(np.int32)
        decoded = np.empty((row1 - row0, dim), np.float32)
        decode_tile(tiles, rows, decoded)
        for r in range(row1 - row0):
            acc = 0.0
            for t in range(dim):
                acc += np.float64(decoded[r, t]) ** 2
            norms[row0 + r] = np.sqrt(acc)
    return norms


def norm_order(tiles, n_rows, dim):
    """(order int32 [n_rows], remaining_norm float32 [n_rows]) for the early-stop scan.

    The rows are ranked by descending decoded norm (ties by row) and cut into item tiles of
    ``ITEMS_PER_TILE``; within a tile they go back to ascending row order (the gathers then run
    forward through memory), and every position gets its tile's largest norm, rounded up: a bound
    for the norms of the rows from there on.
    """
    norms = row_norms(tiles, n_rows, dim)
    order = np.argsort(-norms, kind="stable").astype(np.int32)
    remaining = np.empty(n_rows, np.float32)
    for first in range(0, n_rows, ITEMS_PER_TILE):
        block = slice(first, first + ITEMS_PER_TILE)
        remaining[block] = np.nextafter(np.float32(norms[order[first]]), np.float32(np.inf))
        order[block] = np.sort(order[block])
    return order, remaining


def table_order(n_rows):
    """(order, remaining_norm) of a plain scan: rows ascending, no bound (+inf), no early stop."""
    return np.arange(n_rows, dtype=np.int32), np.full(n_rows, np.inf, np.float32)


@njit(cache=True)
def reach(query):
    """``||query||`` widened by the worst rounding of a float32 dot product of this length.

    A computed score ``fl(u . v)`` exceeds the exact one by at most ``gamma_d ||u|| ||v||``,
    ``gamma_d ~ d * 2**-24`` in any summation order; the factor adds a margin for the float32
    norms and the bound's own rounding.
    """
    acc = 0.0
    for t in range(query.shape[0]):
        acc += np.float64(query[t]) ** 2
    return np.sqrt(acc) * (1.0 + (query.shape[0] + 8) * 2.0 ** -22)


@njit(cache=True)
def retire_users(active, users, user_reach, n_active, bound, heap_scores):
    """Drop from the first ``n_active`` entries of ``active`` (query indices) the queries whose
    ``user_reach * bound`` is below their k-th best score, compacting ``active`` and the matching
    rows of ``users`` and ``user_reach`` in place; return how many stay."""
    kept = 0
    for a in range(n_active):
        if user_reach[a] * bound < heap_scores[active[a], 0]:
            continue
        if kept != a:
            active[kept] = active[a]
            users[kept] = users[a]
            user_reach[kept] = user_reach[a]
        kept += 1
    return kept


@njit(cache=True)
def scan_user_tile(queries, users_of_tile, tiles, order, remaining_norm, p_begin, p_end,
                   item_map, seen_indices, seen_start, seen_end, heap_scores, heap_ids,
                   decoded, buffer):
    """Offer the rows ``order[p_begin:p_end]`` to the queries ``users_of_tile`` int64 [<= tile],
    each retiring by ``remaining_norm``; ``decoded`` and ``buffer`` are the caller's scratch."""
    dim = queries.shape[1]
    active = users_of_tile.copy()
    n_active = active.shape[0]
    users = np.empty((n_active, dim), np.float32)
    user_reach = np.empty(n_active, np.float64)
    for a in range(n_active):
        users[a] = queries[active[a]]
        user_reach[a] = reach(users[a])
    for p0 in range(p_begin, p_end, ITEMS_PER_TILE):
        n_active = retire_users(active, users, user_reach, n_active,
                                np.float64(remaining_norm[p0]), heap_scores)
        if n_active == 0:
            break
        rows = order[p0:min(p_end, p0 + ITEMS_PER_TILE)]
        m = rows.shape[0]
        decode_tile(tiles, rows, decoded[:m])
        scores = buffer[:n_active * m].reshape((n_active, m))
        np.dot(users[:n_active], decoded[:m].T, scores)
        for a in range(n_active):
            query = active[a]
            offer_rows(heap_scores[query], heap_ids[query], scores[a], rows, item_map,
                       seen_indices, seen_start[query], seen_end[query])


@njit(cache=True, parallel=True)
def scan_user_tiles(queries, user_order, n_workers, tiles, order, remaining_norm, p_begin,
                    p_end, item_map, seen_indices, seen_start, seen_end, heap_scores, heap_ids):
    """:func:`scan_user_tile` over the tiles of consecutive entries of ``user_order`` int64 [n].
    ``n_workers`` parallel workers take the tiles round-robin, which keeps them balanced when
    the tiles are sorted by cost."""
    dim = queries.shape[1]
    n_tiles = (user_order.shape[0] + USERS_PER_TILE - 1) // USERS_PER_TILE
    for worker in prange(min(n_workers, n_tiles)):
        decoded = np.empty((ITEMS_PER_TILE, dim), np.float32)
        buffer = np.empty(USERS_PER_TILE * ITEMS_PER_TILE, np.float32)
        for tile in range(worker, n_tiles, n_workers):
            first = tile * USERS_PER_TILE
            scan_user_tile(queries, user_order[first:first + USERS_PER_TILE], tiles, order,
                           remaining_norm, p_begin, p_end, item_map, seen_indices, seen_start,
                           seen_end, heap_scores, heap_ids, decoded, buffer)


@njit(cache=True)
def score_tiles(queries, tiles, order, remaining_norm, n_workers, item_map, seen_indices,
                seen_start, seen_end, heap_scores, heap_ids):
    """Top-k of float32 ``queries`` [n, d] over the table ``tiles`` scanned in ``order`` int32
    [n_rows] (a permutation of its rows), stopping each query early by ``remaining_norm`` float32
    [n_rows] (a bound on the norms of ``order[p:]``, non-increasing; +inf: no early stop), with
    ``n_workers`` parallel workers (the Numba thread count).

    The first item tile is scanned for every query in input order; the queries are then
    regrouped into user tiles by the norm level at which their bound predicts they stop (k-th
    best so far over reach), so that a tile's users retire together, and the rest is scanned.
    """
    n_queries = queries.shape[0]
    n_rows = order.shape[0]
    head = min(n_rows, ITEMS_PER_TILE)
    scan_user_tiles(queries, np.arange(n_queries), n_workers, tiles, order, remaining_norm, 0,
                    head, item_map, seen_indices, seen_start, seen_end, heap_scores, heap_ids)
    if head == n_rows:
        return
    stop_level = np.empty(n_queries, np.float64)
    for i in range(n_queries):
        user_reach = reach(queries[i])
        stop_level[i] = heap_scores[i, 0] / user_reach if user_reach > 0 else -np.inf
    regrouped = np.argsort(-stop_level, kind="mergesort")
    scan_user_tiles(queries, regrouped, n_workers, tiles, order, remaining_norm, head, n_rows,
                    item_map, seen_indices, seen_start, seen_end, heap_scores, heap_ids)
