"""Top-k retrieval straight from a model's (compressed) tables.

:func:`recommend` validates its inputs once, walks the users in batches (memory: the tables plus
one batch), decodes each batch's user rows with ``model.users.decode(rows)`` and asks the item
table how to score them (the Table protocol of :mod:`cfprune.tables.base`; no storage is named
here): the rows it stores (``table.stored``, a row-pruned table's inner one, with its
``item_map`` and ``fallback``), their tiles (``item_tiles``, decoded by the one tiled scorer of
:mod:`cfprune.kernels.tiled`, which scans the rows by descending norm and stops each user exactly
by the Cauchy-Schwarz bound), the users in the tiles' space (``scan_queries``: a PQ table's
rotation), the batch scorer (``score_batch``, the tiled GEMM) and, for calls of at most
:data:`FEW_USERS_MAX` users (and for every call on a table that ``scans_codes_in_batches``, 4-bit
PQ), the scan over its stored codes split by item range over the threads (``score_few``:
:mod:`cfprune.kernels.scan`; 4-bit PQ in blocks of 32 items, :mod:`cfprune.kernels.fastscan`),
in the norm order with the same stop when the norms are skewed and in row order when they are
not (:func:`_code_scan_order`), and the int8 route (``int8_scorer``). Two-stage retrieval takes ``candidates`` items per user from ``model.items``
and re-ranks them exactly with ``model.rerank`` (or the item table), by ``Table.rerank``.

Serving state. The scan order (int32 per row) and the norm bound (float32 per row) are computed
once per item table, from ``table.row_norms()`` (decoded rows in chunks, or a PQ table's
codes), and kept while the table lives:
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
from contextlib import contextmanager
from importlib import import_module

import numpy as np

from cfprune.errors import ShapeError
from cfprune.interactions import as_csr
from cfprune.kernels.pool import thread_count
from cfprune.arrays import fingerprint

DEFAULT_BATCH_SIZE = 4096
INT8_ROUTES = ("float", "int8")
ROW_READINGS = ("auto", "requested", "model")
# calls of at most this many users (after batching) take the few-users route (``Table.score_few``:
# a scan over the stored codes split by item range) instead of the tiled GEMM
FEW_USERS_MAX = 4
# the few-users route keeps the norm order (and its early stop) when the norm bound at position
# n // SKEW_POSITION is below SKEW_RATIO times the largest norm, else scans rows in plain order
SKEW_POSITION = 4
SKEW_RATIO = 0.5
# per item table (weakly held): (fingerprint of its arrays, (order, remaining_norm))
_SCAN_ORDERS = weakref.WeakKeyDictionary()
# per item table (weakly held): (its norm order, the order a scan over its codes takes)
_CODE_ORDERS = weakref.WeakKeyDictionary()
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
    history = _history(user_items, rows, model, user_items_rows)
    seen_indices, seen_start, seen_end = _seen_rows(history, rows.shape[0], filter_seen)
    n_candidates = _candidate_count(model, candidates, k)

    n_workers = thread_count(num_threads)
    ids = np.empty((rows.shape[0], k), dtype=np.int32)
    scores = np.empty((rows.shape[0], k), dtype=np.float32)
    with single_threaded_blas():
        scorer = _scorer(model.items, int8_route, n_workers)
        for first in range(0, rows.shape[0], batch_size):
            stop = min(rows.shape[0], first + batch_size)
            batch = rows[first:stop]
            queries = _decode_users(model, batch, _history_batch(history, first, stop))
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


def _history(user_items, rows, model, reading="auto"):
    """(CSR [n_rows, n_items], lookup int64 [n]: the CSR row of each query), or None when
    ``user_items`` is None; ShapeError when its rows cannot be read against ``rows``."""
    if user_items is None:
        return None
    n = rows.shape[0]
    csr = as_csr(user_items, "user_items", rebuild=False)
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
    return csr, lookup


def _seen_rows(history, n, filter_seen):
    """(indices int32 [nnz], start int64 [n], end int64 [n]): each query's sorted seen items."""
    empty = (np.empty(0, dtype=np.int32), np.zeros(n, dtype=np.int64),
             np.zeros(n, dtype=np.int64))
    if not filter_seen:
        return empty
    if history is None:
        raise ShapeError("filter_seen=True needs user_items (the users' known items); pass "
                         "filter_seen=False to rank every item")
    csr, lookup = history
    indptr = csr.indptr.astype(np.int64, copy=False)
    return (np.ascontiguousarray(csr.indices, dtype=np.int32), indptr[lookup],
            indptr[lookup + 1])


def _history_batch(history, first, stop):
    """CSR [stop - first, n_items]: the history rows of queries ``first:stop``, or None."""
    if history is None:
        return None
    csr, lookup = history
    if first == 0 and stop == csr.shape[0] and np.array_equal(lookup, np.arange(stop)):
        return csr     # every row in order (one row per query): no copy (0.06 ms per call)
    return csr[lookup[first:stop]]


def _candidate_count(model, candidates, k):
    """Candidates per user for two-stage retrieval, or None for a single stage."""
    if candidates is None:
        if getattr(model, "rerank", None) is None:
            return None
        own = getattr(model, "candidates", None)
        return max(k, own if own is not None else 10 * k)
    return max(k, positive_int(candidates, "candidates"))


def _decode_users(model, rows, user_items):
    """float32 [n, d] C-contiguous user vectors (``Table.query_vectors``: decoded, or folded in
    from ``user_items``, the rows' history CSR or None); ShapeError naming rows with NaN/Inf."""
    queries = np.ascontiguousarray(model.users.query_vectors(rows, user_items, model.items),
                                   dtype=np.float32)
    finite = np.isfinite(queries).all(axis=1)
    if not finite.all():
        bad = rows[~finite]
        raise ShapeError(f"user vectors hold NaN or Inf in {bad.size} rows: "
                         f"{bad[:10].tolist()}")
    return queries


@contextmanager
def single_threaded_blas():
    """BLAS limited to one thread inside (the kernels call it from their own threads), the
    previous counts restored after. The libraries' setters directly: ``threadpoolctl``'s
    ``limit`` re-reads every library's info on entry, 0.08 ms of a single-user call."""
    libraries = [lib for lib in _blas_controller().lib_controllers
                 if lib.user_api == "blas"]
    before = [lib.get_num_threads() for lib in libraries]
    for lib, count in zip(libraries, before):
        if count != 1:
            lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, count in zip(libraries, before):
            if count != 1:
                lib.set_num_threads(count)


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
    item of ``table`` to the heaps. The table says what its stored rows are and how they are
    scanned (the Table protocol, :mod:`cfprune.tables.base`): ``int8_scorer`` for
    ``int8_route="int8"`` when it has one, else its tiles scanned by ``score_batch`` in the
    cached norm order; a row-pruned table adds its fallback rows."""
    stored, item_map = table.stored, table.item_map()
    scan = stored.int8_scorer(n_workers, item_map) if int8_route == "int8" else None
    if scan is not None:
        from cfprune.kernels.int8 import int8_users
        _announce_cold(int8_users)
    else:
        from cfprune.kernels.tiled import scan_worker
        _announce_cold(scan_worker)
        norm_order = _scan_order(stored)
        code_order = _code_scan_order(stored, norm_order)
        # a few users take the code scan unless the tiled scorer's early stop serves them
        # faster: skewed norms (the code scan keeps the norm order) over cheap tiles
        few_by_codes = code_order is not norm_order or not stored.cheap_tiles
        made = []

        def tiles():   # made on first use (a 4-bit PQ table's fast scan never unpacks its codes)
            if not made:
                made.append(stored.item_tiles())
            return made[0]

        def scan(queries, *seen_and_heaps):
            queries = stored.scan_queries(queries)
            if (queries.shape[0] <= FEW_USERS_MAX and few_by_codes) or \
                    stored.scans_codes_in_batches:
                stored.score_few(queries, tiles, *code_order, n_workers, item_map,
                                 *seen_and_heaps)
            else:
                stored.score_batch(queries, tiles, *norm_order, n_workers, item_map,
                                   *seen_and_heaps)
    if table.fallback is None:
        return scan
    from cfprune.kernels.pruned import push_fallback

    def scan_with_fallback(queries, *seen_and_heaps):
        scan(queries, *seen_and_heaps)
        push_fallback(queries, table.fallback, item_map, table.n_rows, *seen_and_heaps,
                      n_workers=n_workers)
    return scan_with_fallback


def _code_scan_order(table, norm_order):
    """The (order, remaining_norm) a scan over ``table``'s stored codes takes: its norm order
    ``norm_order`` when the norms are skewed enough for the early stop to pay for the gathers,
    else the rows in order (no stop), kept with the norm order it was derived from."""
    known = _CODE_ORDERS.get(table)
    if known is not None and known[0] is norm_order:
        return known[1]
    from cfprune.kernels.tiled import table_order
    order, remaining = norm_order
    skewed = order.shape[0] > 0 and \
        remaining[order.shape[0] // SKEW_POSITION] < SKEW_RATIO * remaining[0]
    chosen = norm_order if skewed else table_order(order.shape[0])
    _CODE_ORDERS[table] = (norm_order, chosen)
    return chosen


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




def _scan_order(table):
    """(order int32, remaining_norm float32) of ``table``'s rows by descending norm as the scorer
    sees them (``table.row_norms()``), kept for as long as the table lives with the same arrays
    and contents."""
    from cfprune.kernels.tiled import norm_order
    arrays = tuple(table.arrays().values())
    mark = fingerprint(arrays)
    known = _SCAN_ORDERS.get(table)
    if known is not None and known[0] == mark and all(
            a is b for a, b in zip(known[1], arrays)):
        return known[2]
    order = norm_order(table.row_norms())
    _SCAN_ORDERS[table] = (mark, arrays, order)
    return order


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
    """Sorted heaps of the top-k of ``cand_ids`` int32 [n, k'] (-1: none), scored exactly by the
    re-rank table (or the item table) itself (``Table.rerank``)."""
    from cfprune.kernels.topk import new_heaps, sort_heaps
    table = model.rerank if model.rerank is not None else model.items
    heap_scores, heap_ids = new_heaps(queries.shape[0], k)
    table.rerank(queries, cand_ids, heap_scores, heap_ids, n_workers)
    sort_heaps(heap_scores, heap_ids)
    return heap_scores, heap_ids
