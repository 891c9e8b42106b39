"""Top-k retrieval straight from a model's (compressed) tables.

:func:`recommend` validates its inputs once, walks the users in batches (memory: the tables plus
one batch), decodes each batch's user rows with ``model.users.decode(rows)`` and hands them to the
Numba scorer of the item table's storage (:mod:`cfprune.kernels`, imported on first use), which
fuses scoring, the seen-item filter and the bounded top-k selection. Tables that decode to float32
tiles (dense, fp16, int8, int4, int2, sparse, PQ, and those as the inner table of a row-pruned table)
share one scorer (:mod:`cfprune.kernels.tiled`) that scans the rows by descending decoded norm and
stops each user exactly by the Cauchy-Schwarz bound. Calls of at most ``FEW_USERS_MAX`` users
(and every call on a 4-bit PQ table) scan the stored codes instead, split by item range over the threads (:mod:`cfprune.kernels.scan`;
4-bit PQ in blocks of 32 items, :mod:`cfprune.kernels.fastscan`), with the same stop when the
norms are skewed and in plain row order when they are not (:func:`_few_users_scorer`).
Two-stage retrieval takes ``candidates`` items per user from ``model.items`` and re-ranks them
exactly with ``model.rerank`` (or with the decoded item table when the model has no re-rank
table).

Serving state. The scan order (int32 per row) and the norm bound (float32 per row) are computed
once per item table, from its decoded rows in chunks (NumPy), and kept while the table lives:
8 bytes per row, counted by ``Table.serving_nbytes``. They are reused only while the table's
arrays are the same objects with the same contents: arrays that are read-only down to their
memory are trusted as they are; writeable ones are checked by a CRC-32 of their bytes on every
call, so an in-place change of a row is never answered from a stale order.

Threads: ``num_threads`` Python threads (0: every core) run the ``nogil`` kernels over tiles of
users (:mod:`cfprune.kernels.pool`); BLAS runs single-threaded inside them. The first call in a
process whose kernels are not in Numba's on-disk cache yet says so in one line on stderr before
compiling them."""

from __future__ import annotations

import numbers
import sys
import weakref
import zlib
from importlib import import_module

import numpy as np

from cfprune.errors import ShapeError
from cfprune.interactions import as_csr
from cfprune.kernels.pool import thread_count
from cfprune.tables.base import read_only_throughout

DEFAULT_BATCH_SIZE = 4096
INT8_ROUTES = ("float", "int8")
ROW_READINGS = ("auto", "requested", "model")
_EMPTY_MAP = np.empty(0, dtype=np.int32)
_EMPTY_F32 = np.empty(0, dtype=np.float32)
TILED_STORAGES = ("dense", "fp16", "int8", "int4", "int2", "sparse", "pq")
# calls of at most this many users (after batching) take the few-users route (a scan over the
# stored codes split by item range) instead of the tiled GEMM
FEW_USERS_MAX = 4
# the storages the few-users route scores (int2 and sparse keep the tiled scorer)
FEW_USERS_STORAGES = ("dense", "fp16", "int8", "int4", "pq")
# the few-users route keeps the norm order (and its early stop) when the norm bound at position
# n // SKEW_POSITION is below SKEW_RATIO times the largest norm, else scans rows in plain order
SKEW_POSITION = 4
SKEW_RATIO = 0.5
# rows decoded at a time when computing the norms of a table
NORM_CHUNK_ROWS = 8192
# per item table (weakly held): (fingerprint of its arrays, (order, remaining_norm))
_SCAN_ORDERS = weakref.WeakKeyDictionary()
# per 4-bit PQ table (weakly held): (fingerprint, arrays, codes in blocks of 32 items)
_BLOCKED_CODES = weakref.WeakKeyDictionary()
_ANNOUNCED = []
# the compile time the cold-cache notice announces (retrieval + metric kernels, 2 cores)
COLD_COMPILE_SECONDS = 15
_BLAS = []


def recommend(model, users, user_items, k=10, filter_seen=True, candidates=None,
              batch_size=None, num_threads=None, *, int8_route="float", user_items_rows="auto"):
    """Top-k items by inner product for ``users`` of ``model``, skipping each user's items.

    Parameters
    ----------
    model : FactorModel
        Any storages for ``users``, ``items`` and the optional ``rerank`` table.
    users : int or int array [n]
        User rows of the model.
    user_items : scipy.sparse matrix [n, n_items] or [n_users, n_items], or None
        The users' known items: one row per entry of ``users`` (``implicit``'s convention) or
        one row per model user, indexed by user id (see ``user_items_rows``). Stored entries count as seen. An :class:`~cfprune.interactions.Interactions`
        stands for its matrix. May be None when ``filter_seen`` is False.
    k : int
        Items per user; beyond the eligible items the rows are padded with id -1, score -inf.
    filter_seen : bool
        Skip the items of each user's row of ``user_items``.
    candidates : int or None
        Two-stage retrieval: this many candidates from ``model.items``, re-ranked exactly with
        ``model.rerank`` (or the decoded item table). Default: ``model.candidates`` (or ``10 * k``)
        when the model has a re-rank table, else single stage.
    batch_size : int or None
        Users per batch (default 4096).
    num_threads : int or None
        Threads for this call: 0 means every core; default Numba's thread count (the number of
        cores unless ``NUMBA_NUM_THREADS`` or ``numba.set_num_threads`` says otherwise). BLAS
        runs single-threaded inside the kernels.
    user_items_rows : {"auto", "requested", "model"}
        How ``user_items`` rows map to users: one per entry of ``users``, or one per model user.
        "auto" tells them apart by the row count; when ``users`` lists every model user in
        another order both counts agree, and "auto" raises a ShapeError asking which is meant
        (in order, the two readings are the same).
    int8_route : {"float", "int8"}
        For int8 item tables: float32 users against decoded tiles (exact over the decoded
        table), or users quantised to int8 with int32 accumulation (approximate).

    Returns
    -------
    ids : int32 [n, k]; scores : float32 [n, k]
        Best first; ties broken by lower item id.
    """
    k = positive_int(k, "k")
    rows = _user_rows(users, model.n_users)
    batch_size = DEFAULT_BATCH_SIZE if batch_size is None else positive_int(batch_size,
                                                                               "batch_size")
    if int8_route not in INT8_ROUTES:
        raise ShapeError(f"int8_route={int8_route!r}; expected one of {INT8_ROUTES}")
    if user_items_rows not in ROW_READINGS:
        raise ShapeError(f"user_items_rows={user_items_rows!r}; expected one of {ROW_READINGS}")
    seen_indices, seen_start, seen_end = _seen_rows(user_items, rows, model, filter_seen,
                                                    user_items_rows)
    n_candidates = _candidate_count(model, candidates, k)

    n_workers = thread_count(num_threads)
    ids = np.empty((rows.shape[0], k), dtype=np.int32)
    scores = np.empty((rows.shape[0], k), dtype=np.float32)
    with _blas_controller().limit(limits=1, user_api="blas"):
        scorer = _scorer(model.items, int8_route, n_workers)
        for first in range(0, rows.shape[0], batch_size):
            stop = min(rows.shape[0], first + batch_size)
            batch = rows[first:stop]
            queries = _decode_users(model, batch)
            seen = (seen_indices, seen_start[first:stop], seen_end[first:stop])
            if n_candidates is None:
                heap_scores, heap_ids = _scan(scorer, queries, k, seen)
            else:
                cand_ids = _candidates(scorer, queries, n_candidates, seen)
                heap_scores, heap_ids = _rerank(model, queries, cand_ids, k, n_workers)
            ids[first:stop] = heap_ids
            scores[first:stop] = heap_scores
    return ids, scores


def positive_int(value, name):
    """``value`` as an int, or a one-line ShapeError naming ``name`` unless it is an integer
    >= 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ShapeError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _user_rows(users, n_users):
    """int64 [n]: validated user rows."""
    arr = np.atleast_1d(np.asarray(users))
    if arr.ndim != 1:
        raise ShapeError(f"users must be an int or a 1-D int array, got shape {arr.shape}")
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ShapeError(f"users must be integers, got dtype {arr.dtype}")
    bad = np.flatnonzero((arr < 0) | (arr >= n_users))
    if bad.size:
        raise ShapeError(f"users out of range [0, {n_users}): {arr[bad[:10]].tolist()} "
                         f"at positions {bad[:10].tolist()}")
    return arr.astype(np.int64)


def _seen_rows(user_items, rows, model, filter_seen, reading="auto"):
    """(indices int32 [nnz], start int64 [n], end int64 [n]): each query's sorted seen items."""
    n = rows.shape[0]
    empty = (np.empty(0, dtype=np.int32), np.zeros(n, dtype=np.int64),
             np.zeros(n, dtype=np.int64))
    if not filter_seen:
        return empty
    if user_items is None:
        raise ShapeError("filter_seen=True needs user_items (the users' known items); pass "
                         "filter_seen=False to rank every item")
    csr = as_csr(user_items, "user_items")
    n_rows, n_cols = csr.shape
    if n_cols != model.n_items:
        raise ShapeError(f"user_items has {n_cols} columns but the model has {model.n_items} "
                         f"items")
    if reading == "auto" and n_rows == n == model.n_users and \
            not np.array_equal(rows, np.arange(n)):
        raise ShapeError(f"user_items has {n} rows, one per requested user and one per model "
                         f"user alike, and users are not in order: pass "
                         f"user_items_rows='requested' (row i is users[i]'s, as in implicit) or "
                         f"'model' (row u is user u's)")
    if reading == "requested" and n_rows != n or reading == "model" and n_rows != model.n_users:
        expected = n if reading == "requested" else model.n_users
        raise ShapeError(f"user_items has {n_rows} rows; user_items_rows={reading!r} expects "
                         f"{expected}")
    if n_rows == n and reading != "model":
        lookup = np.arange(n, dtype=np.int64)
    elif n_rows == model.n_users:
        lookup = rows
    else:
        raise ShapeError(f"user_items has {n_rows} rows; expected one per requested user ({n}) "
                         f"or one per model user ({model.n_users})")
    indptr = csr.indptr.astype(np.int64, copy=False)
    return (np.ascontiguousarray(csr.indices, dtype=np.int32), indptr[lookup],
            indptr[lookup + 1])


def _candidate_count(model, candidates, k):
    """Candidates per user for two-stage retrieval, or None for a single stage."""
    if candidates is None:
        if getattr(model, "rerank", None) is None:
            return None
        own = getattr(model, "candidates", None)
        return max(k, own if own is not None else 10 * k)
    return max(k, positive_int(candidates, "candidates"))


def _decode_users(model, rows):
    """float32 [n, d] C-contiguous user vectors; ShapeError naming rows with NaN/Inf."""
    queries = np.ascontiguousarray(model.users.decode(rows), dtype=np.float32)
    finite = np.isfinite(queries).all(axis=1)
    if not finite.all():
        bad = rows[~finite]
        raise ShapeError(f"user vectors hold NaN or Inf in {bad.size} rows: "
                         f"{bad[:10].tolist()}")
    return queries


def _blas_controller():
    """The process's ``threadpoolctl.ThreadpoolController``, made once (finding the BLAS
    libraries reads the process's memory map: too slow to do on every call), after loading the
    BLAS the kernels' ``np.dot`` calls (SciPy's, which Numba binds on first use) so that it is
    limited too."""
    if not _BLAS:
        from threadpoolctl import ThreadpoolController
        import_module("scipy.linalg.cython_blas")
        _BLAS.append(ThreadpoolController())
    return _BLAS[0]


def _scorer(table, int8_route, n_workers):
    """``scan(queries, seen_indices, seen_start, seen_end, heap_scores, heap_ids)``: offers every
    item of ``table`` to the heaps (the Numba scorer of its storage, imported on first use)."""
    item_map, inner = _EMPTY_MAP, table
    if table.storage == "pruned":
        item_map, inner = table.kept, table.inner
    storage = inner.storage
    if storage in TILED_STORAGES and not (storage == "int8" and int8_route == "int8"):
        from cfprune.kernels import tiled
        _announce_cold(tiled.scan_worker)
        order, remaining = _scan_order(inner)
        rotation = getattr(inner, "rotation", None)
        # 4-bit PQ: the fast scan beats decoded tiles for batches too (measured: 200 users x
        # 200k flat items, 2 threads, 0.23 s against 0.68 s)
        fast_scan = storage == "pq" and inner.nbits == 4
        made = {}

        def tiles():  # made on first use (a 4-bit PQ table unpacks its codes for them)
            if "tiles" not in made:
                made["tiles"] = _item_tiles(inner)
            return made["tiles"]

        def few_users(*args):
            if "few" not in made:
                made["few"] = _few_users_scorer(inner, (order, remaining), n_workers, item_map)
            made["few"](*args)

        def scan(queries, *seen_and_heaps):
            if rotation is not None:
                queries = np.ascontiguousarray(queries @ rotation, dtype=np.float32)
            if fast_scan or (queries.shape[0] <= FEW_USERS_MAX and
                             storage in FEW_USERS_STORAGES):
                few_users(queries, *seen_and_heaps)
            else:
                tiled.score_tiles(queries, tiles(), order, remaining, n_workers, item_map,
                                  *seen_and_heaps)
    elif storage == "int8":
        from cfprune.kernels.int8 import int8_users, quantise_queries, score_int8_int8
        _announce_cold(int8_users)
        offset = _EMPTY_F32 if inner.offset is None else inner.offset
        per_row = inner.axis == "row"

        def scan(queries, *seen_and_heaps):
            levels, user_scale, user_sum, user_const = quantise_queries(queries, inner.scale,
                                                                        offset, per_row)
            score_int8_int8(levels, user_scale, user_sum, user_const, inner.codes, inner.scale,
                            offset, per_row, item_map, *seen_and_heaps, n_workers=n_workers)
    else:
        raise ShapeError(f"no retrieval kernel for item storage {storage!r}")
    if table.storage != "pruned" or table.fallback is None:
        return scan
    from cfprune.kernels.pruned import push_fallback

    def scan_with_fallback(queries, *seen_and_heaps):
        scan(queries, *seen_and_heaps)
        push_fallback(queries, table.fallback, item_map, table.n_rows, *seen_and_heaps,
                      n_workers=n_workers)
    return scan_with_fallback


def _few_users_scorer(table, norm_order, n_workers, item_map):
    """``scan(queries, *seen_and_heaps)`` of the few-users route for ``table`` (the inner table
    of a pruned one; queries already rotated): a scan over the stored codes split by item
    range (:mod:`cfprune.kernels.scan`; 4-bit PQ: :mod:`cfprune.kernels.fastscan`), in the
    norm order ``norm_order`` (order, remaining_norm) when the norms are skewed enough for its
    early stop to pay for the gathers, else in plain row order."""
    from cfprune.kernels import tiled
    order, remaining = norm_order
    skewed = order.shape[0] > 0 and \
        remaining[order.shape[0] // SKEW_POSITION] < SKEW_RATIO * remaining[0]
    if not skewed:
        order, remaining = tiled.table_order(order.shape[0])
    if table.storage == "pq" and table.nbits == 4:
        from cfprune.kernels.fastscan import score_fastscan
        blocked = _blocked_codes(table, order, skewed)

        def scan(queries, *seen_and_heaps):
            score_fastscan(queries, blocked, table.codebooks, table.bounds, order, remaining,
                           n_workers, item_map, *seen_and_heaps)
        return scan
    from cfprune.kernels.scan import score_few
    tiles = _item_tiles(table)

    def scan(queries, *seen_and_heaps):
        score_few(queries, tiles, order, remaining, n_workers, item_map, *seen_and_heaps)
    return scan


def _blocked_codes(table, order, by_norm):
    """A 4-bit PQ table's packed codes in blocks of 32 items along ``order`` (its norm order
    when ``by_norm``, else its rows ascending; :func:`cfprune.kernels.fastscan.block_layout`),
    kept while the table lives with the same arrays and contents."""
    from cfprune.kernels.fastscan import block_layout
    arrays = tuple(table.arrays().values())
    mark = (_fingerprint(arrays), bool(by_norm))
    known = _BLOCKED_CODES.get(table)
    if known is not None and known[0] == mark and all(a is b for a, b in zip(known[1], arrays)):
        return known[2]
    blocked = block_layout(table.codes, order)
    _BLOCKED_CODES[table] = (mark, arrays, blocked)
    return blocked


def _item_tiles(table):
    """The :class:`~cfprune.kernels.tiled.ItemTiles` of a dense/fp16/int8/int4/int2/sparse/pq
    table (a PQ table in its rotated space, 4-bit codes unpacked to one byte each)."""
    from cfprune.kernels import tiled
    if table.storage == "dense":
        return tiled.float32_tiles(table.data)
    if table.storage == "fp16":
        return tiled.float16_tiles(table.data)
    if table.storage == "int8":
        return tiled.int8_tiles(table.codes, table.scale, table.offset, table.axis == "row")
    if table.storage == "int4":
        return tiled.int4_tiles(table.codes, table.scale, table.offset, table.axis == "row")
    if table.storage == "int2":
        return tiled.int2_tiles(table.codes, table.scale, table.offset, table.axis == "row")
    if table.storage == "pq":
        return tiled.pq_tiles(table.unpacked_codes(), table.codebooks, table.bounds)
    return tiled.csr_tiles(table.indptr, table.indices, table.data)


def _announce_cold(dispatcher):
    """Say once per process, on stderr, that the retrieval kernels are about to be compiled
    when ``dispatcher`` has nothing in Numba's on-disk cache."""
    if _ANNOUNCED:
        return
    _ANNOUNCED.append(True)
    if not is_cold(dispatcher):
        return
    print(f"cfprune: compiling the Numba kernels once (about {COLD_COMPILE_SECONDS} s); later "
          "runs load them from the cache", file=sys.stderr, flush=True)


def is_cold(dispatcher):
    """True when the Numba ``dispatcher`` (``cache=True``) has no usable entry in its on-disk
    cache (index missing, or written by another version of its source)."""
    cache = getattr(dispatcher, "_cache", None)
    cache_file = getattr(cache, "_cache_file", None)
    if cache_file is None:
        return False
    try:
        return not cache_file._load_index()
    except Exception:  # noqa: BLE001 - an unreadable index means Numba compiles again
        return True


def _fingerprint(arrays):
    """What the scan order of a table's arrays is valid for: their identities, and for every
    array not read-only down to its memory, a CRC-32 of its bytes."""
    marks = []
    for array in arrays:
        marks.append(id(array))
        if not read_only_throughout(array):
            marks.append(zlib.crc32(memoryview(np.ascontiguousarray(array)).cast("B")))
    return tuple(marks)


def _scan_order(table):
    """(order int32, remaining_norm float32) of ``table``'s rows by descending decoded norm (in
    the scorer's space: a PQ table's rotated rows), kept for as long as the table lives with the
    same arrays and contents."""
    from cfprune.kernels.tiled import norm_order
    arrays = tuple(table.arrays().values())
    mark = _fingerprint(arrays)
    known = _SCAN_ORDERS.get(table)
    if known is not None and known[0] == mark and all(
            a is b for a, b in zip(known[1], arrays)):
        return known[2]
    order = norm_order(_row_norms(table))
    _SCAN_ORDERS[table] = (mark, arrays, order)
    return order


def _row_norms(table):
    """float64 [n_rows]: the norms of the rows as the scorer sees them (NumPy, in chunks)."""
    if table.storage == "pq":
        from cfprune.kernels.pq import row_norms
        return row_norms(table.unpacked_codes(), table.codebooks, table.bounds)
    norms = np.empty(table.n_rows, np.float64)
    for first in range(0, table.n_rows, NORM_CHUNK_ROWS):
        rows = np.arange(first, min(table.n_rows, first + NORM_CHUNK_ROWS))
        block = np.asarray(table.decode(rows), dtype=np.float64)
        norms[rows] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return norms


def _scan(scorer, queries, k, seen):
    """Heaps (scores float32 [n, k], ids int32 [n, k]), sorted, from one pass of ``scorer``."""
    from cfprune.kernels.topk import new_heaps, sort_heaps
    heap_scores, heap_ids = new_heaps(queries.shape[0], k)
    scorer(queries, *seen, heap_scores, heap_ids)
    sort_heaps(heap_scores, heap_ids)
    return heap_scores, heap_ids


def _candidates(scorer, queries, n_candidates, seen):
    """int32 [n, n_candidates]: each query's candidates from one pass of ``scorer``, unsorted
    (the re-rank orders them), -1 for empty slots."""
    from cfprune.kernels.topk import EMPTY_ID, new_heaps
    heap_scores, heap_ids = new_heaps(queries.shape[0], n_candidates)
    scorer(queries, *seen, heap_scores, heap_ids)
    heap_ids[heap_ids == EMPTY_ID] = -1
    return heap_ids


def _rerank(model, queries, cand_ids, k, n_workers):
    """Sorted heaps of the top-k of ``cand_ids`` int32 [n, k'] (-1: none), scored exactly."""
    from cfprune.kernels.rerank import rerank_dense, rerank_int8
    from cfprune.kernels.topk import new_heaps, sort_heaps
    table = model.rerank if model.rerank is not None else model.items
    heap_scores, heap_ids = new_heaps(queries.shape[0], k)
    if table.storage == "dense":
        rerank_dense(queries, table.data, cand_ids.astype(np.int64), cand_ids,
                     heap_scores, heap_ids, n_workers)
    elif table.storage == "int8":
        offset = _EMPTY_F32 if table.offset is None else table.offset
        rerank_int8(queries, table.codes, table.scale, offset, table.axis == "row",
                    cand_ids.astype(np.int64), cand_ids, heap_scores, heap_ids, n_workers)
    else:
        present = cand_ids >= 0
        rows = np.unique(cand_ids[present])
        decoded = np.ascontiguousarray(table.decode(rows), dtype=np.float32)
        cand_rows = np.where(present, np.searchsorted(rows, cand_ids), -1).astype(np.int64)
        rerank_dense(queries, decoded, cand_rows, cand_ids, heap_scores, heap_ids, n_workers)
    sort_heaps(heap_scores, heap_ids)
    return heap_scores, heap_ids
