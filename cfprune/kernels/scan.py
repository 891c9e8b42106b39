"""The few-users route: a tight scan over the stored codes themselves, split by item range.

For one user (or a handful) a GEMM has nothing to amortise: the tiled scorer of :mod:`.tiled`
decodes every item tile into float32 scratch and multiplies a nearly empty user tile by it. This
route instead scores the stored rows directly, one row at a time, for every user of the call:

- ``float32``: a dot product over the row (vectorised by LLVM: reassociation allowed);
- ``float16``: the bits widened exactly in registers (:func:`.dense.half_to_float32`, LLVM's
  ``fpext``: ``vcvtph2ps`` once the loop is vectorised);
- ``int8``: float-times-int8 with the scales folded into the user: per dimension, the user
  ``u * scale`` and the constant ``u . offset``; per row, ``scale[r] * (u . q_r) +
  offset[r] * sum(u)``; ``int4`` the same after unpacking the nibbles in registers;
- ``pq`` (8-bit codes, unpacked): a lookup table ``lut[s, c] = u_s . centroid_c`` per user, one
  addition per code.

The other kinds (int2, sparse) keep the tiled scorer (:data:`SCAN_KINDS`): compiling their
decoders into this kernel too would cost more start-up than their rare single-user calls win.
PQ codes have a worker kernel of their own (:func:`scan_lookups_worker`: the kind a
compile-time constant and :func:`score_rows` an overload on it), so a first single-user call on
PQ compiles the lookup scorer only, not the dot products of the four dense storages, which share
:func:`scan_values_worker`. Each has one signature, so a call dispatches in Numba's C fast path
(a kind made literal at the Python boundary would go through Numba's typing on every call: 50 ms
of a single-user call at 1M items, measured).
No float32 copy of the table is made: the scratch is four rows. The positions
``order[0:n_rows]`` are cut into tiles of :data:`SCAN_TILE` rows dealt round-robin to the
workers (tile ``t`` to worker ``t % n_workers``); each worker keeps its own heaps (the caller's
heaps are merged with them at the end, :func:`merge_heaps`). Early stop as in :mod:`.tiled`, at
tile granularity: a user retires when ``reach(u) * remaining_norm[p0]`` is below the k-th best
score of the worker's own heap (a lower bound on the merged one, so the stop stays exact). With
the plain order (:func:`.tiled.table_order`, bound +inf) the check never fires and the tiles run
forward through memory.
"""

import numpy as np
from numba import njit, types
from numba.extending import overload

from cfprune.errors import ShapeError
from cfprune.kernels.dense import half_to_float32
from cfprune.kernels.pool import frozen, run_workers, workers_for
from cfprune.kernels.tiled import KIND_FLOAT16, KIND_FLOAT32, KIND_INT4, KIND_INT8, KIND_PQ
from cfprune.kernels.topk import EMPTY_ID, is_worse, offer_rows, reach, replace_root, \
    retire_by_bound

SCAN_TILE = 1024
# a second worker only for calls offering more rows (x users) than this (a thread hop costs about
# as much as one worker's scan of 32k dense rows)
FEW_ROWS_PER_WORKER = 2 ** 15
# the tile kinds this route scores (others raise in score_few)
SCAN_KINDS = (KIND_FLOAT32, KIND_FLOAT16, KIND_INT8, KIND_INT4, KIND_PQ)
FAST = {"reassoc", "contract", "nsz", "arcp"}


def _stored_value(value):
    """float32 of one stored value in compiled code: float16 bits (uint16) widened exactly
    (:func:`.dense.half_to_float32`), float32 or int8 levels as they are."""
    raise TypeError("_stored_value runs inside compiled kernels only")


@overload(_stored_value)
def _stored_value_of_type(value):
    if value == types.uint16:
        return lambda value: half_to_float32(value)
    return lambda value: np.float32(value)


@njit(cache=True, nogil=True, fastmath=FAST)
def _dot4(values, r0, r1, r2, r3, query, scores, j):
    """``scores[j:j + 4]`` = the rows ``r0..r3`` of ``values`` [., d] (float32, float16 bits or
    int8 levels) dotted with ``query``: four independent sums, so the loads of four rows
    overlap."""
    a0 = np.float32(0.0)
    a1 = np.float32(0.0)
    a2 = np.float32(0.0)
    a3 = np.float32(0.0)
    for t in range(query.shape[0]):
        q = query[t]
        a0 += _stored_value(values[r0, t]) * q
        a1 += _stored_value(values[r1, t]) * q
        a2 += _stored_value(values[r2, t]) * q
        a3 += _stored_value(values[r3, t]) * q
    scores[j] = a0
    scores[j + 1] = a1
    scores[j + 2] = a2
    scores[j + 3] = a3


@njit(cache=True, nogil=True, fastmath=FAST)
def _dot4_int4(packed, r0, r1, r2, r3, query, scores, j):
    """:func:`_dot4` over int4 levels packed two per byte (dimension 2t low, 2t + 1 high)."""
    a0 = np.float32(0.0)
    a1 = np.float32(0.0)
    a2 = np.float32(0.0)
    a3 = np.float32(0.0)
    dim = query.shape[0]
    for t in range(dim // 2):
        lo, hi = query[2 * t], query[2 * t + 1]
        b0, b1, b2, b3 = packed[r0, t], packed[r1, t], packed[r2, t], packed[r3, t]
        a0 += np.float32(b0 & 15) * lo + np.float32(b0 >> 4) * hi
        a1 += np.float32(b1 & 15) * lo + np.float32(b1 >> 4) * hi
        a2 += np.float32(b2 & 15) * lo + np.float32(b2 >> 4) * hi
        a3 += np.float32(b3 & 15) * lo + np.float32(b3 >> 4) * hi
    if dim % 2:
        last, t = query[dim - 1], dim // 2
        a0 += np.float32(packed[r0, t] & 15) * last
        a1 += np.float32(packed[r1, t] & 15) * last
        a2 += np.float32(packed[r2, t] & 15) * last
        a3 += np.float32(packed[r3, t] & 15) * last
    scores[j] = a0
    scores[j + 1] = a1
    scores[j + 2] = a2
    scores[j + 3] = a3


@njit(cache=True, nogil=True)
def _widen_rows(tiles, kind, rows, j, count, scratch):
    """Write the stored values of the rows ``rows[j:j + count]`` as float32 into
    ``scratch[:count]`` (float16 bits widened exactly; int8/int4 levels before scale and
    offset; float32 copied), zeros in the rest of the 4 scratch rows."""
    dim = scratch.shape[1]
    for i in range(4):
        if i >= count:
            for t in range(dim):
                scratch[i, t] = 0.0
            continue
        row = rows[j + i]
        if kind == KIND_FLOAT32:
            for t in range(dim):
                scratch[i, t] = tiles.float32[row, t]
        elif kind == KIND_FLOAT16:
            for t in range(dim):
                scratch[i, t] = half_to_float32(tiles.float16_bits[row, t])
        elif kind == KIND_INT8:
            for t in range(dim):
                scratch[i, t] = np.float32(tiles.codes8[row, t])
        else:  # KIND_INT4
            for t in range(dim // 2):
                byte = tiles.bytes2d[row, t]
                scratch[i, 2 * t] = np.float32(byte & 15)
                scratch[i, 2 * t + 1] = np.float32(byte >> 4)
            if dim % 2:
                scratch[i, dim - 1] = np.float32(tiles.bytes2d[row, dim // 2] & 15)


@njit(cache=True, nogil=True, fastmath=FAST)
def _lookup_pq(codes, row, lut):
    acc = np.float32(0.0)
    for s in range(lut.shape[0]):
        acc += lut[s, codes[row, s]]
    return acc


@njit(cache=True, nogil=True)
def prepare_users(tiles, kind, queries, folded, user_sum, user_const, luts):
    """Per user: ``folded`` float32 [n, d] (the user with a per-dimension int8/int4 scale
    folded in), ``user_sum`` (sum of the user, for per-row offsets), ``user_const`` (``u .
    offset`` per dimension) and, for PQ, ``luts`` float32 [n, m, ksub]."""
    n, dim = queries.shape
    affine = kind == KIND_INT8 or kind == KIND_INT4
    has_offset = tiles.offset.shape[0] > 0
    for u in range(n):
        total = np.float32(0.0)
        const = np.float32(0.0)
        for t in range(dim):
            value = queries[u, t]
            total += value
            if affine and not tiles.per_row:
                folded[u, t] = value * tiles.scale[t]
                if has_offset:
                    const += value * tiles.offset[t]
            else:
                folded[u, t] = value
        user_sum[u] = total
        user_const[u] = const
        if kind == KIND_PQ:
            bounds, codebooks = tiles.bounds, tiles.codebooks
            for s in range(bounds.shape[0] - 1):
                for c in range(codebooks.shape[0]):
                    dot = np.float32(0.0)
                    for t in range(bounds[s], bounds[s + 1]):
                        dot += queries[u, t] * codebooks[c, t]
                    luts[u, s, c] = dot


def score_rows(tiles, kind, rows, user, folded, user_sum, user_const, luts, scores, scratch):
    """``scores[j]`` float32: user ``user``'s score of the table rows ``rows[j]``, in compiled
    code only: :func:`_score_rows_of_kind` chooses the scorer of the constant ``kind`` when the
    caller compiles, so a kernel holds one storage's scorer (the PQ lookup or the dot
    products over stored values), not every storage's."""
    raise TypeError("score_rows runs inside compiled kernels only")


@overload(score_rows, prefer_literal=True)
def _score_rows_of_kind(tiles, kind, rows, user, folded, user_sum, user_const, luts, scores,
                        scratch):
    if isinstance(kind, types.IntegerLiteral) and kind.literal_value == KIND_PQ:
        return _score_lookups
    return _score_stored_values


def _score_lookups(tiles, kind, rows, user, folded, user_sum, user_const, luts, scores,
                   scratch):
    """:func:`score_rows` of 8-bit PQ codes: one lookup-table addition per code."""
    lut = luts[user]
    for j in range(rows.shape[0]):
        scores[j] = _lookup_pq(tiles.bytes2d, rows[j], lut)


def _score_stored_values(tiles, kind, rows, user, folded, user_sum, user_const, luts, scores,
                         scratch):
    """:func:`score_rows` of float32, float16, int8 and int4 rows: four rows' dot products at a
    time, then the int8/int4 scale and offset."""
    query = folded[user]
    n_rows = rows.shape[0]
    for j in range(0, n_rows, 4):
        count = min(4, n_rows - j)
        if kind == KIND_FLOAT32 and count == 4:
            _dot4(tiles.float32, rows[j], rows[j + 1], rows[j + 2], rows[j + 3], query,
                  scores, j)
        elif kind == KIND_INT8 and count == 4:
            _dot4(tiles.codes8, rows[j], rows[j + 1], rows[j + 2], rows[j + 3], query,
                  scores, j)
        elif kind == KIND_FLOAT16 and count == 4:
            _dot4(tiles.float16_bits, rows[j], rows[j + 1], rows[j + 2], rows[j + 3], query,
                  scores, j)
        elif kind == KIND_INT4 and count == 4:
            _dot4_int4(tiles.bytes2d, rows[j], rows[j + 1], rows[j + 2], rows[j + 3], query,
                       scores, j)
        else:
            _widen_rows(tiles, kind, rows, j, count, scratch)
            # scores has room for 4 past j (SCAN_TILE is a multiple of 4)
            _dot4(scratch, 0, 1, 2, 3, query, scores, j)
    if kind == KIND_INT8 or kind == KIND_INT4:
        has_offset = tiles.offset.shape[0] > 0
        for j in range(n_rows):
            row = rows[j]
            if tiles.per_row:
                dot = tiles.scale[row] * scores[j]
                if has_offset:
                    dot += tiles.offset[row] * user_sum[user]
            else:
                dot = scores[j] + user_const[user]
            scores[j] = dot


@njit(cache=True, nogil=True)
def _scan_few(queries, worker, n_workers, tiles, kind, order, remaining_norm, item_map,
              seen_indices, seen_start, seen_end, heap_scores, heap_ids):
    """Offer the positions of tiles ``worker, worker + n_workers, ...`` of ``order`` to this
    worker's heaps ``heap_scores``/``heap_ids`` [n, k] (see the module docstring). ``kind`` is
    ``tiles.kind``: a compile-time constant from :func:`scan_lookups_worker`, read at run time
    from :func:`scan_values_worker`."""
    n_users, dim = queries.shape
    n_rows = order.shape[0]
    m = max(tiles.bounds.shape[0] - 1, 1)
    ksub = max(tiles.codebooks.shape[0], 1)
    folded = np.empty((n_users, dim), np.float32)
    user_sum = np.empty(n_users, np.float32)
    user_const = np.empty(n_users, np.float32)
    luts = np.empty((n_users if kind == KIND_PQ else 0, m, ksub), np.float32)
    prepare_users(tiles, kind, queries, folded, user_sum, user_const, luts)
    user_reach = np.empty(n_users, np.float64)
    active = np.ones(n_users, np.bool_)
    for u in range(n_users):
        user_reach[u] = reach(queries[u])
    scores = np.empty(SCAN_TILE, np.float32)
    scratch = np.empty((4, dim), np.float32)
    n_tiles = (n_rows + SCAN_TILE - 1) // SCAN_TILE
    for tile in range(worker, n_tiles, n_workers):
        p0 = tile * SCAN_TILE
        bound = np.float64(remaining_norm[p0])
        if retire_by_bound(active, user_reach, bound, heap_scores) == 0:
            break
        rows = order[p0:min(n_rows, p0 + SCAN_TILE)]
        for u in range(n_users):
            if not active[u]:
                continue
            score_rows(tiles, kind, rows, u, folded, user_sum, user_const, luts, scores, scratch)
            offer_rows(heap_scores[u], heap_ids[u], scores, rows, item_map, seen_indices,
                       seen_start[u], seen_end[u])


@njit(cache=True, nogil=True)
def scan_lookups_worker(queries, worker, n_workers, tiles, order, remaining_norm, item_map,
                        seen_indices, seen_start, seen_end, heap_scores, heap_ids):
    """:func:`_scan_few` over 8-bit PQ codes, a kernel of its own (the kind a constant, so it
    holds the lookup scorer only)."""
    _scan_few(queries, worker, n_workers, tiles, KIND_PQ, order, remaining_norm, item_map,
              seen_indices, seen_start, seen_end, heap_scores, heap_ids)


@njit(cache=True, nogil=True)
def scan_values_worker(queries, worker, n_workers, tiles, order, remaining_norm, item_map,
                       seen_indices, seen_start, seen_end, heap_scores, heap_ids):
    """:func:`_scan_few` over float32, float16, int8 or int4 rows (one kernel for the four:
    the kind read at run time)."""
    _scan_few(queries, worker, n_workers, tiles, tiles.kind, order, remaining_norm, item_map,
              seen_indices, seen_start, seen_end, heap_scores, heap_ids)


@njit(cache=True, nogil=True)
def merge_heaps(worker_scores, worker_ids, heap_scores, heap_ids):
    """Offer every entry of the workers' heaps float32/int32 [w, n, k] to the heaps [n, k]."""
    for w in range(worker_scores.shape[0]):
        for u in range(heap_scores.shape[0]):
            for j in range(worker_scores.shape[2]):
                item = worker_ids[w, u, j]
                if item == EMPTY_ID:
                    continue
                score = worker_scores[w, u, j]
                if is_worse(heap_scores[u, 0], heap_ids[u, 0], score, item):
                    replace_root(heap_scores[u], heap_ids[u], score, item)


def score_few(queries, tiles, order, remaining_norm, n_workers, item_map, seen_indices,
              seen_start, seen_end, heap_scores, heap_ids):
    """Top-k of a handful of float32 ``queries`` [n, d] over ``tiles`` (a
    :class:`.tiled.ItemTiles`) with ``n_workers`` threads splitting the rows; arguments as in
    :func:`.tiled.score_tiles` (``order``/``remaining_norm`` from :func:`.tiled.norm_order` or
    :func:`.tiled.table_order`). Memory: one item tile of scores per worker, the heaps, and
    for PQ one lookup table per user. ShapeError for a tile kind not in :data:`SCAN_KINDS`."""
    if tiles.kind not in SCAN_KINDS:
        raise ShapeError(f"the few-users scan has no scorer for tile kind {tiles.kind}")
    n_queries, n_rows = queries.shape[0], order.shape[0]
    if n_queries == 0 or n_rows == 0:
        return
    n_tiles = (n_rows + SCAN_TILE - 1) // SCAN_TILE
    n_workers = min(workers_for(n_workers, n_rows * n_queries, FEW_ROWS_PER_WORKER), n_tiles)
    k = heap_scores.shape[1]
    worker_scores = np.full((n_workers, n_queries, k), -np.inf, np.float32)
    worker_ids = np.full((n_workers, n_queries, k), EMPTY_ID, np.int32)
    kernel = scan_lookups_worker if tiles.kind == KIND_PQ else scan_values_worker
    args = (frozen(queries, np.float32), tiles, frozen(order, np.int32),
            frozen(remaining_norm, np.float32), frozen(item_map, np.int32),
            frozen(seen_indices, np.int32), frozen(seen_start, np.int64),
            frozen(seen_end, np.int64))

    def work(worker):
        kernel(args[0], worker, n_workers, *args[1:], worker_scores[worker],
               worker_ids[worker])
    run_workers(work, n_workers)
    merge_heaps(worker_scores, worker_ids, heap_scores, heap_ids)
