"""The one tiled scorer of every storage that decodes to float32 tiles, with exact early stop.

Storages ``dense``, ``fp16``, ``int8``, ``int4``, ``int2``, ``sparse`` and ``pq`` (also as the
inner table of a row-pruned table) differ only in how a tile of item rows becomes float32. :class:`ItemTiles`
carries the arrays of one table together with its storage kind (the arrays of the other storages
are empty placeholders, every array is passed read-only and sparse indices as bytes, so one
compiled signature serves every storage), and :func:`decode_tile` dispatches on the kind to the
decoders of :mod:`.dense`, :mod:`.int8`, :mod:`.packed`, :mod:`.sparse` and :mod:`.pq`.

:func:`score_tiles` walks the table rows in the order ``order`` in item tiles of
``ITEMS_PER_TILE`` for tiles of ``USERS_PER_TILE`` users: each item tile is decoded once per tile
of users, scored with one single-threaded BLAS GEMM into a per-worker buffer and offered to the
bounded top-k selection (:mod:`.topk`). ``n_workers`` threads of :mod:`.pool` each run the
``nogil`` kernel :func:`scan_worker` over the user tiles ``worker, worker + n_workers, ...``
(round-robin, which keeps them balanced when the tiles are sorted by cost).

Early stop (exact maximum inner product search). ``remaining_norm[p]`` bounds the norm of every
row in ``order[p:]``; with the rows in descending order of norm (:func:`norm_order`) it falls
fast on real factor tables. By Cauchy-Schwarz no row left can score more than
``||u|| * remaining_norm[p]``, so a user retires from its tile as soon as that bound (widened by
the worst float32 rounding of a dot product, see :func:`.topk.reach`) is strictly below the score of its
k-th best item: a row still to come could neither beat nor tie it. A full heap is implied, since an
empty slot scores -inf. The GEMM then runs only over the users still active, and the user tile
stops when none is left. So that a tile's users retire together, the first item tile is scanned
for all users in input order, and the users are then regrouped (in NumPy, between the two kernel
calls) by the norm level at which their bound predicts they stop before the rest of the table is
scanned.

Two routes for the rest of the table. When the norms fall fast (ALS factors) users retire at
different depths and the fine tiles above pay: only the users still active enter each GEMM. When
they are flat (normalised rows, cosine models) the bound prunes little, and the fine tiles cost
about twice per score what a plain scan does (the item tile decoded again for every 64 users,
small GEMMs). The flat route (:func:`flat_worker`) decodes each item tile of
:data:`FLAT_ITEMS` rows once per worker into a panel and scores it in registers, 32 items
against 8 users at a time, each score compared there with its user's k-th best
(:mod:`.panel`): no score matrix is written or read back, and the products run faster than
OpenBLAS's sgemm on these shapes (0.80 against 1.23 ns per score of 64 coordinates, one core).
It keeps the bound, per user and tile. The choice is made after the first
item tile: the flat route when the users' stop levels predict that they scan more than
:data:`FLAT_FRACTION` of the rest (:func:`scanned_fraction`) and at least :data:`FLAT_MIN_ROWS`
rows are left.

Common arguments of the scorers of this package:

- ``queries`` float32 [n, d]: the users' vectors (C-contiguous);
- ``item_map`` int32 [n_rows] or [0]: item id of each table row (empty: row r is item r);
- ``seen_indices`` int32 [nnz], ``seen_start``/``seen_end`` int64 [n]: query i's seen items are
  ``seen_indices[seen_start[i]:seen_end[i]]``, sorted ascending;
- ``heap_scores`` float32 [n, k], ``heap_ids`` int32 [n, k]: heaps from :func:`.topk.new_heaps`,
  updated in place (unsorted; :func:`.topk.sort_heaps` orders them).
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from cfprune.kernels.dense import (ITEMS_PER_TILE, USERS_PER_TILE, decode_float16_tile,
                                   decode_float32_tile)
from cfprune.kernels.int8 import decode_affine_tile
from cfprune.kernels.packed import decode_packed_tile
from cfprune.kernels.panel import PANEL_ITEMS, PANEL_USERS, block_scores, to_panel
from cfprune.kernels.pool import frozen, run_blocks, run_workers
from cfprune.kernels.pq import decode_pq_tile
from cfprune.kernels.sparse import decode_csr_tile, index_bytes
from cfprune.kernels.topk import offer_rows, reach, widening

KIND_FLOAT32, KIND_FLOAT16, KIND_INT8, KIND_INT4, KIND_CSR, KIND_PQ, KIND_INT2 = range(7)
# the flat route (:func:`flat_worker`): item tiles of FLAT_ITEMS rows, each decoded once per
# worker into a panel (256 KiB at d = 64, in L2)
FLAT_ITEMS = 1024
# the flat route is taken when, after the first item tile, the users' bounds predict that they
# scan more than this fraction of the rows left (the pruned route costs about twice as much per
# score: its GEMMs are 64 x 512, and every user tile decodes the item tile again)
FLAT_FRACTION = 0.5
# and only with at least this many rows left: on fewer, both routes take well under a
# millisecond and a process need not compile the flat kernel (1.4 s cold) for so small a table
FLAT_MIN_ROWS = 2 * FLAT_ITEMS
# positions of the bound that :func:`scanned_fraction` reads (a sample, evenly spaced)
FRACTION_PROBES = 4096


class ItemTiles(NamedTuple):
    """One item table as the arrays its tile decoder reads; unused fields are empty arrays.

    ``kind`` is one of the ``KIND_*`` constants. Fields: ``float32`` float32 [n, d];
    ``float16_bits`` uint16 [n, d] (the float16 table's bits); ``codes8`` int8 [n, d];
    ``bytes2d`` uint8 [n, ceil(d/2)] (int4 levels), [n, ceil(d/4)] (int2 levels) or [n, m]
    (PQ codes); ``scale``/``offset`` float32 (per row
    when ``per_row``, else per dimension;
    ``offset`` [0] when symmetric); ``indptr`` int64 [n + 1], ``index_bytes`` uint8 and
    ``index_width`` (see :func:`.sparse.index_bytes`), ``values`` float32 [nnz];
    ``codebooks`` float32 [ksub, d] and ``bounds`` int32 [m + 1] (PQ, rotated space).
    """

    kind: int
    float32: np.ndarray
    float16_bits: np.ndarray
    codes8: np.ndarray
    bytes2d: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    per_row: bool
    indptr: np.ndarray
    index_bytes: np.ndarray
    index_width: int
    values: np.ndarray
    codebooks: np.ndarray
    bounds: np.ndarray


_DTYPES = dict(float32=np.float32, float16_bits=np.uint16, codes8=np.int8, bytes2d=np.uint8,
               scale=np.float32, offset=np.float32, indptr=np.int64, index_bytes=np.uint8, values=np.float32, codebooks=np.float32,
               bounds=np.int32)
_TWO_D = ("float32", "float16_bits", "codes8", "bytes2d", "codebooks")


def _item_tiles(kind, **arrays):
    fields = {name: np.empty((0, 0) if name in _TWO_D else 0, dtype)
              for name, dtype in _DTYPES.items()}
    fields.update(arrays)
    fields = {name: frozen(value, _DTYPES[name]) if name in _DTYPES else value
              for name, value in fields.items()}
    fields.setdefault("per_row", False)
    fields.setdefault("index_width", 4)
    return ItemTiles(kind=int(kind), **fields)


def float32_tiles(items):
    """:class:`ItemTiles` of a float32 table [n, d]."""
    return _item_tiles(KIND_FLOAT32, float32=items)


def float16_tiles(items):
    """:class:`ItemTiles` of a float16 table [n, d]."""
    return _item_tiles(KIND_FLOAT16,
                       float16_bits=np.ascontiguousarray(items, np.float16).view(np.uint16))


def _affine(kind, codes_field, codes, scale, offset, per_row):
    return _item_tiles(kind, **{codes_field: codes}, scale=scale,
                       offset=np.empty(0, np.float32) if offset is None else offset,
                       per_row=bool(per_row))


def int8_tiles(codes, scale, offset, per_row):
    """:class:`ItemTiles` of an int8 table (``offset`` None when symmetric)."""
    return _affine(KIND_INT8, "codes8", codes, scale, offset, per_row)


def int4_tiles(packed, scale, offset, per_row):
    """:class:`ItemTiles` of an int4 table (``offset`` None when symmetric)."""
    return _affine(KIND_INT4, "bytes2d", packed, scale, offset, per_row)


def int2_tiles(packed, scale, offset, per_row):
    """:class:`ItemTiles` of an int2 table (``offset`` None when symmetric)."""
    return _affine(KIND_INT2, "bytes2d", packed, scale, offset, per_row)


def csr_tiles(indptr, indices, data):
    """:class:`ItemTiles` of a sparse (CSR) table (indices uint8, uint16 or int32)."""
    raw, width = index_bytes(np.asarray(indices))
    return _item_tiles(KIND_CSR, indptr=indptr, index_bytes=raw, index_width=int(width),
                       values=data)


def pq_tiles(codes, codebooks, bounds):
    """:class:`ItemTiles` of a PQ table in its rotated space: ``codes`` uint8 [n, m],
    ``codebooks`` float32 [ksub, d], ``bounds`` int32 [m + 1] (score users ``@ rotation``)."""
    return _item_tiles(KIND_PQ, bytes2d=codes, codebooks=codebooks, bounds=bounds)


@njit(cache=True, nogil=True)
def decode_tile(tiles, rows, out):
    """Decode the table rows ``rows`` int32 [m] of ``tiles`` into ``out`` float32 [>= m, d]."""
    kind = tiles.kind
    if kind == KIND_FLOAT32:
        decode_float32_tile(tiles.float32, rows, out)
    elif kind == KIND_FLOAT16:
        decode_float16_tile(tiles.float16_bits, rows, out)
    elif kind == KIND_INT8:
        decode_affine_tile(tiles.codes8, tiles.scale, tiles.offset, tiles.per_row, rows, out)
    elif kind == KIND_INT4:
        decode_packed_tile(tiles.bytes2d, 4, tiles.scale, tiles.offset, tiles.per_row, rows, out)
    elif kind == KIND_INT2:
        decode_packed_tile(tiles.bytes2d, 2, tiles.scale, tiles.offset, tiles.per_row, rows, out)
    elif kind == KIND_CSR:
        decode_csr_tile(tiles.indptr, tiles.index_bytes, tiles.index_width, tiles.values, rows,
                        out)
    else:
        decode_pq_tile(tiles.bytes2d, tiles.codebooks, tiles.bounds, rows, out)


def norm_order(norms):
    """(order int32 [n_rows], remaining_norm float32 [n_rows]) for the early-stop scan, from
    the rows' decoded norms ``norms`` float64 [n_rows] (as the scorer sees the rows).

    The rows are ranked by descending norm (ties by row) and cut into item tiles of
    ``ITEMS_PER_TILE``; within a tile they go back to ascending row order (the gathers then run
    forward through memory), and every position gets its tile's largest norm, rounded up: a bound
    for the norms of the rows from there on.
    """
    norms = np.asarray(norms, dtype=np.float64)
    n_rows = norms.shape[0]
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


@njit(cache=True, nogil=True)
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
            for t in range(users.shape[1]):
                users[kept, t] = users[a, t]
            user_reach[kept] = user_reach[a]
        kept += 1
    return kept


@njit(cache=True, nogil=True)
def scan_user_tile(queries, user_order, first, stop, tiles, order, remaining_norm, p_begin,
                   p_end, item_map, seen_indices, seen_start, seen_end, heap_scores, heap_ids,
                   decoded, buffer):
    """Offer the rows ``order[p_begin:p_end]`` to the queries ``user_order[first:stop]``, each
    retiring by ``remaining_norm``; ``decoded`` float32 [w, d] and ``buffer`` float32
    [USERS_PER_TILE, w] (``w`` at least one item tile of this range) are the caller's scratch."""
    dim = queries.shape[1]
    n_active = stop - first
    active = np.empty(n_active, np.int64)
    users = np.empty((n_active, dim), np.float32)
    user_reach = np.empty(n_active, np.float64)
    for a in range(n_active):
        active[a] = user_order[first + a]
        for t in range(dim):
            users[a, t] = queries[active[a], t]
        user_reach[a] = reach(users[a])
    for p0 in range(p_begin, p_end, ITEMS_PER_TILE):
        n_active = retire_users(active, users, user_reach, n_active,
                                np.float64(remaining_norm[p0]), heap_scores)
        if n_active == 0:
            break
        rows = order[p0:min(p_end, p0 + ITEMS_PER_TILE)]
        decode_tile(tiles, rows, decoded)
        # the GEMM spans the whole scratch width; columns past len(rows) are never offered
        scores = buffer[:n_active]
        np.dot(users[:n_active], decoded.T, scores)
        for a in range(n_active):
            query = active[a]
            offer_rows(heap_scores[query], heap_ids[query], scores[a], rows, item_map,
                       seen_indices, seen_start[query], seen_end[query])


@njit(cache=True, nogil=True)
def scan_worker(queries, user_order, worker, n_workers, tiles, order, remaining_norm, p_begin,
                p_end, item_map, seen_indices, seen_start, seen_end, heap_scores, heap_ids):
    """:func:`scan_user_tile` over the user tiles ``worker, worker + n_workers, ...`` of
    ``user_order`` int64 [n] (tiles of ``USERS_PER_TILE`` consecutive entries)."""
    dim = queries.shape[1]
    width = min(ITEMS_PER_TILE, p_end - p_begin)
    decoded = np.zeros((width, dim), np.float32)
    buffer = np.empty((USERS_PER_TILE, width), np.float32)
    n_users = user_order.shape[0]
    n_tiles = (n_users + USERS_PER_TILE - 1) // USERS_PER_TILE
    for tile in range(worker, n_tiles, n_workers):
        first = tile * USERS_PER_TILE
        scan_user_tile(queries, user_order, first, min(n_users, first + USERS_PER_TILE), tiles,
                       order, remaining_norm, p_begin, p_end, item_map, seen_indices,
                       seen_start, seen_end, heap_scores, heap_ids, decoded, buffer)


@njit(cache=True, nogil=True)
def flat_worker(users, user_order, user_reach, first, stop, tiles, order, remaining_norm, p_begin,
                p_end, item_map, seen_indices, seen_start, seen_end, heap_scores, heap_ids):
    """The flat route: offer the rows ``order[p_begin:p_end]`` to the users ``first:stop`` of
    ``users`` float32 [n, d] (query ``user_order[a]`` is row ``a``, ``user_reach`` float64 [n]
    its :func:`.topk.reach`).

    Item tiles of :data:`FLAT_ITEMS` rows are decoded once, laid out as a panel
    (:func:`.panel.to_panel`) and scored block by block (32 items) against groups of
    :data:`.panel.PANEL_USERS` users in registers (:func:`.panel.block_scores`), each compared
    there with the user's k-th best score: only the blocks where a user has a score at least as
    good are offered (:func:`.topk.offer_rows`). A user whose bound ``user_reach * remaining_norm``
    (as in :func:`scan_user_tile`) is below its k-th best gets an infinite threshold, a group of
    such users is skipped, and the scan ends when every user has retired."""
    dim = users.shape[1]
    decoded = np.zeros((FLAT_ITEMS, dim), np.float32)
    panel = np.zeros(FLAT_ITEMS * dim, np.float32)
    n_span = stop - first
    n_groups = (n_span + PANEL_USERS - 1) // PANEL_USERS
    grouped = np.zeros(n_groups * PANEL_USERS * dim, np.float32)  # padded to whole groups
    for a in range(n_span):
        for t in range(dim):
            grouped[a * dim + t] = users[first + a, t]
    thresholds = np.full(n_groups * PANEL_USERS, np.inf, np.float32)
    group_active = np.zeros(n_groups, np.bool_)
    block_out = np.empty(PANEL_USERS * PANEL_ITEMS, np.float32)
    for p0 in range(p_begin, p_end, FLAT_ITEMS):
        rows = order[p0:min(p_end, p0 + FLAT_ITEMS)]
        n_rows = rows.shape[0]
        bound = np.float64(remaining_norm[p0])
        n_active = 0
        group_active[:] = False
        for a in range(n_span):
            kth = heap_scores[user_order[first + a], 0]
            if user_reach[first + a] * bound < kth:
                thresholds[a] = np.inf
            else:
                thresholds[a] = kth
                group_active[a // PANEL_USERS] = True
                n_active += 1
        if n_active == 0:
            break
        decode_tile(tiles, rows, decoded)
        to_panel(decoded, n_rows, panel)
        for b in range((n_rows + PANEL_ITEMS - 1) // PANEL_ITEMS):
            j0 = b * PANEL_ITEMS
            block_rows = rows[j0:min(n_rows, j0 + PANEL_ITEMS)]
            for g in range(n_groups):
                if not group_active[g]:
                    continue
                passed = block_scores(grouped, g * PANEL_USERS * dim, panel, j0 * dim, dim,
                                      thresholds, g * PANEL_USERS, block_out)
                if passed == 0:
                    continue
                for r in range(PANEL_USERS):
                    if not (passed >> r) & 1:
                        continue
                    a = g * PANEL_USERS + r
                    query = user_order[first + a]
                    offer_rows(heap_scores[query], heap_ids[query],
                               block_out[r * PANEL_ITEMS:(r + 1) * PANEL_ITEMS], block_rows,
                               item_map, seen_indices, seen_start[query], seen_end[query])
                    thresholds[a] = heap_scores[query, 0]


def _flat_range(queries, user_order, user_reach, n_workers, tiles, order, remaining_norm,
                p_begin, p_end, item_map, seen_indices, seen_start, seen_end, heap_scores,
                heap_ids):
    """:func:`flat_worker` with the users ``user_order`` split into ``n_workers`` contiguous
    spans (each worker decodes every item tile: its heaps are its own, nothing to merge)."""
    users = frozen(queries[user_order], np.float32)
    user_reach = frozen(user_reach[user_order], np.float64)
    user_order = frozen(user_order, np.int64)
    n_users = user_order.shape[0]

    def work(start, stop):
        flat_worker(users, user_order, user_reach, start, stop, tiles, order, remaining_norm,
                    int(p_begin), int(p_end), item_map, seen_indices, seen_start, seen_end,
                    heap_scores, heap_ids)
    run_blocks(work, n_users, n_workers, -(-n_users // max(1, int(n_workers))))


def scanned_fraction(stop_level, remaining_norm, head):
    """The mean fraction of the positions ``head:`` that the users' bounds predict they scan:
    a user with ``stop_level`` (k-th best over reach) scans on while ``remaining_norm`` (non-
    increasing) is at least its level. Pessimistic: the k-th best only rises as the scan goes.
    Read on at most :data:`FRACTION_PROBES` evenly spaced positions, so that one user's call
    does not pay a pass over a million-row bound (a float64 copy of it cost 5 ms per call at 1M
    rows, as much as the scan)."""
    rest = remaining_norm[head:]
    if rest.shape[0] == 0:
        return 0.0
    probes = -rest[::max(1, rest.shape[0] // FRACTION_PROBES)].astype(np.float64)
    reached = np.searchsorted(probes, -stop_level, side="right")
    return float(reached.mean()) / probes.shape[0]


def _scan_range(queries, user_order, n_workers, tiles, order, remaining_norm, p_begin, p_end,
                item_map, seen_indices, seen_start, seen_end, heap_scores, heap_ids):
    n_tiles = (user_order.shape[0] + USERS_PER_TILE - 1) // USERS_PER_TILE
    n_workers = max(1, min(int(n_workers), n_tiles))

    def work(worker):
        scan_worker(queries, user_order, worker, n_workers, tiles, order, remaining_norm,
                    int(p_begin), int(p_end), item_map, seen_indices, seen_start, seen_end,
                    heap_scores, heap_ids)
    run_workers(work, n_workers)


def _frozen_inputs(queries, order, remaining_norm, item_map, seen_indices, seen_start,
                   seen_end):
    """The scorers' read-only inputs as the kernels take them (one compiled signature)."""
    return (frozen(queries, np.float32), frozen(order, np.int32),
            frozen(remaining_norm, np.float32), frozen(item_map, np.int32),
            frozen(seen_indices, np.int32), frozen(seen_start, np.int64),
            frozen(seen_end, np.int64))


def _user_reach(queries):
    """float64 [n]: :func:`.topk.reach` of every query (NumPy)."""
    return np.sqrt(np.einsum("ij,ij->i", queries, queries, dtype=np.float64)) * \
        widening(queries.shape[1])


def score_tiles(queries, tiles, order, remaining_norm, n_workers, item_map, seen_indices,
                seen_start, seen_end, heap_scores, heap_ids, route=None):
    """Top-k of float32 ``queries`` [n, d] over the table ``tiles`` scanned in ``order`` int32
    [n_rows] (a permutation of its rows), stopping each query early by ``remaining_norm`` float32
    [n_rows] (a bound on the norms of ``order[p:]``, non-increasing; +inf: no early stop), with
    ``n_workers`` threads.

    The first item tile is scanned for every query in input order; the queries are then
    regrouped into user tiles by the norm level at which their bound predicts they stop (k-th
    best so far over reach), so that a tile's users retire together, and the rest is scanned,
    by the flat route when that level predicts a scan of more than :data:`FLAT_FRACTION` of it
    (and :data:`FLAT_MIN_ROWS` rows at least are left). ``route="flat"`` takes the flat route
    over every position instead (the tests draw both routes on the same problems).
    """
    n_queries = queries.shape[0]
    n_rows = order.shape[0]
    if n_queries == 0 or n_rows == 0:
        return
    queries, order, remaining_norm, *seen = _frozen_inputs(
        queries, order, remaining_norm, item_map, seen_indices, seen_start, seen_end)
    shared = (tiles, order, remaining_norm)
    seen = (*seen, heap_scores, heap_ids)
    if route == "flat":
        _flat_range(queries, np.arange(n_queries, dtype=np.int64), _user_reach(queries),
                    n_workers, *shared, 0, n_rows, *seen)
        return
    head = min(n_rows, ITEMS_PER_TILE)
    _scan_range(queries, np.arange(n_queries, dtype=np.int64), n_workers, *shared, 0, head,
                *seen)
    if head == n_rows:
        return
    user_reach = _user_reach(queries)
    kth = heap_scores[:, 0].astype(np.float64)
    stop_level = np.full(n_queries, -np.inf)
    np.divide(kth, user_reach, out=stop_level, where=user_reach > 0)
    regrouped = np.argsort(-stop_level, kind="stable").astype(np.int64)
    if scanned_fraction(stop_level, remaining_norm, head) > FLAT_FRACTION and \
            n_rows - head >= FLAT_MIN_ROWS:
        _flat_range(queries, regrouped, user_reach, n_workers, *shared, head, n_rows, *seen)
    else:
        _scan_range(queries, regrouped, n_workers, *shared, head, n_rows, *seen)

