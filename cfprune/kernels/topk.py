"""The one bounded top-k selection every scorer feeds, and the seen-item skip.

A query's running top-k lives in two rows of length ``k``: ``heap_scores`` float32 and
``heap_ids`` int32, kept as a binary heap whose root (position 0) is the *worst* entry kept so
far. "Worse" is the tie rule turned round: a lower score, or an equal score with a higher item id.
A candidate is first compared with the root and rejected at once when it is not better (the common
case once the heap has filled), so the selection costs one comparison per scored item; an
accepted candidate replaces the root and sifts down (log k). After the scan, one NumPy
lexsort of the rows (:func:`sort_heaps`) orders them best first.

Empty slots hold score ``-inf`` and the id :data:`EMPTY_ID` (the largest int32, so any real item
with score ``-inf`` still beats an empty slot); :func:`sort_heaps` turns them into id ``-1``.

Seen items are looked up in the user's sorted CSR row (``seen_indices[start:end]``, item ids
ascending), only for candidates that pass the threshold, so the look-up costs nothing for the
items rejected by score. Scorers that offer items in ascending id order (:func:`push_tile`) walk
the row with a pointer that only moves forward; scorers that offer them in any order
(:func:`offer_rows`, used by the norm-ordered scan) search it by bisection.
"""

import numpy as np
from numba import njit
from numba.extending import register_jitable

EMPTY_ID = np.iinfo(np.int32).max
# scores :func:`offer_rows` checks against the root at once before it offers them one by one
OFFER_CHUNK = 64


def new_heaps(n_queries, k):
    """Empty heaps for ``n_queries`` queries: (scores float32 [n, k] = -inf, ids int32 [n, k])."""
    return (np.full((n_queries, k), -np.inf, dtype=np.float32),
            np.full((n_queries, k), EMPTY_ID, dtype=np.int32))


@njit(cache=True, nogil=True)
def is_worse(score_a, id_a, score_b, id_b):
    """True when (score_a, id_a) ranks below (score_b, id_b): lower score, or tie and higher id."""
    return score_a < score_b or (score_a == score_b and id_a > id_b)


@njit(cache=True, nogil=True)
def replace_root(heap_scores, heap_ids, score, item):
    """Put ``(score, item)`` in place of the root (the worst entry) and restore the heap order."""
    k = heap_scores.shape[0]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= k:
            break
        right = child + 1
        if right < k and is_worse(heap_scores[right], heap_ids[right],
                                  heap_scores[child], heap_ids[child]):
            child = right
        if is_worse(heap_scores[child], heap_ids[child], score, item):
            heap_scores[pos] = heap_scores[child]
            heap_ids[pos] = heap_ids[child]
            pos = child
        else:
            break
    heap_scores[pos] = score
    heap_ids[pos] = item


@njit(cache=True, nogil=True)
def beats_root(heap_scores, heap_ids, score, item):
    """True when ``(score, item)`` would enter the heap (NaN scores never do)."""
    root = heap_scores[0]
    return score > root or (score == root and item < heap_ids[0])


@njit(cache=True, nogil=True)
def advance_seen(seen_indices, pos, end, item):
    """Move the seen-row pointer ``pos`` forward to the first seen id >= ``item``; return it."""
    while pos < end and seen_indices[pos] < item:
        pos += 1
    return pos


@njit(cache=True, nogil=True)
def push(heap_scores, heap_ids, score, item, seen_indices, pos, end):
    """Offer one item (ids must be offered in ascending order); return the new seen pointer.

    The item enters the heap when it beats the root and is not in ``seen_indices[pos:end]``.
    """
    if beats_root(heap_scores, heap_ids, score, item):
        pos = advance_seen(seen_indices, pos, end, item)
        if not (pos < end and seen_indices[pos] == item):
            replace_root(heap_scores, heap_ids, score, item)
    return pos


@njit(cache=True, nogil=True)
def push_row(heap_scores, heap_ids, scores, first_row, item_map, seen_indices, pos, end):
    """Offer ``scores[jj]`` for the table rows ``first_row + jj``, ``jj < len(scores)``.

    ``item_map`` int32 maps a table row to its item id (a pruned table's ``kept``); an empty
    ``item_map`` means row ``r`` is item ``r``. Returns the new seen pointer.
    """
    mapped = item_map.shape[0] > 0
    for jj in range(scores.shape[0]):
        score = scores[jj]
        if score < heap_scores[0]:
            continue
        row = first_row + jj
        item = item_map[row] if mapped else row
        pos = push(heap_scores, heap_ids, score, item, seen_indices, pos, end)
    return pos


def sort_heaps(heap_scores, heap_ids):
    """Sort every query's heap row (float32 [n, k], int32 [n, k]) in place, best first (higher
    score, then lower id); empty slots go last as id -1, score -inf. NumPy, no kernel."""
    order = np.lexsort((heap_ids, -heap_scores), axis=-1)
    heap_scores[...] = np.take_along_axis(heap_scores, order, axis=-1)
    heap_ids[...] = np.take_along_axis(heap_ids, order, axis=-1)
    empty = heap_ids == EMPTY_ID
    heap_ids[empty] = -1
    heap_scores[empty] = -np.inf


@njit(cache=True, nogil=True)
def push_tile(heap_scores, heap_ids, first_query, tile_scores, first_row, n_rows, item_map,
              seen_indices, seen_pos, seen_end):
    """Offer the first ``n_rows`` columns of a tile of scores float32 [n_users, >= n_rows]
    (table rows ``first_row + j``) to the heaps of queries ``first_query + u``; ``seen_pos``
    int64 [n_users] holds (and receives) each user's pointer.
    """
    for u in range(tile_scores.shape[0]):
        query = first_query + u
        seen_pos[u] = push_row(heap_scores[query], heap_ids[query], tile_scores[u][:n_rows],
                               first_row, item_map, seen_indices, seen_pos[u], seen_end[query])


@njit(cache=True, nogil=True)
def sorted_contains(indices, start, end, item):
    """True when ``item`` is in the sorted slice ``indices[start:end]`` (bisection)."""
    lo, hi = start, end
    while lo < hi:
        mid = (lo + hi) >> 1
        if indices[mid] < item:
            lo = mid + 1
        else:
            hi = mid
    return lo < end and indices[lo] == item


@register_jitable
def retire_by_bound(active, user_reach, bound, heap_scores):
    """Mark inactive (``active`` bool [n_users], in place) every query whose ``user_reach *
    bound`` (its reach times the largest norm not yet scanned) is below its k-th best score
    ``heap_scores[u, 0]``: no row left can enter its heap. Returns how many stay active."""
    n_active = 0
    for u in range(active.shape[0]):
        if active[u] and user_reach[u] * bound < heap_scores[u, 0]:
            active[u] = False
        n_active += active[u]
    return n_active


@njit(cache=True, nogil=True)
def count_at_least(scores, first, stop, threshold):
    """How many of ``scores[first:stop]`` float32 are >= ``threshold`` (NaN never is): one pass
    with no branch, which LLVM vectorises."""
    count = 0
    for j in range(first, stop):
        count += scores[j] >= threshold
    return count


@njit(cache=True, nogil=True)
def offer_rows(heap_scores, heap_ids, scores, rows, item_map, seen_indices, start, end):
    """Offer ``scores[j]`` float32 for the table rows ``rows[j]`` int32, ``j < len(rows)``, in
    any order.

    ``item_map`` as in :func:`push_row`; the item enters one query's heap when it beats the root
    and is not in ``seen_indices[start:end]``. Once the heap has filled almost every score is
    below the root: a vectorised count (:func:`count_at_least`) over all the scores, then over
    chunks of :data:`OFFER_CHUNK`, skips them before the scalar loop touches one.
    """
    n_rows = rows.shape[0]
    if count_at_least(scores, 0, n_rows, heap_scores[0]) == 0:
        return
    mapped = item_map.shape[0] > 0
    for first in range(0, n_rows, OFFER_CHUNK):
        stop = min(n_rows, first + OFFER_CHUNK)
        if count_at_least(scores, first, stop, heap_scores[0]) == 0:
            continue
        for j in range(first, stop):
            score = scores[j]
            if not score >= heap_scores[0]:
                continue
            item = item_map[rows[j]] if mapped else rows[j]
            if beats_root(heap_scores, heap_ids, score, item) and \
                    not sorted_contains(seen_indices, start, end, item):
                replace_root(heap_scores, heap_ids, score, item)


@register_jitable
def widening(dim):
    """The factor by which :func:`reach` widens the norm of a ``dim``-long vector (callable from
    Python and from kernels)."""
    return 1.0 + (dim + 8) * 2.0 ** -22


@njit(cache=True, nogil=True)
def reach(query):
    """``||query||`` widened by the worst rounding of a float32 dot product of this length: a
    user whose ``reach * (bound on the norms of the rows left)`` is below its k-th best score can
    retire (Cauchy-Schwarz). A computed score ``fl(u . v)`` exceeds the exact one by at most
    ``gamma_d ||u|| ||v||``, ``gamma_d ~ d * 2**-24`` in any summation order; :func:`widening`
    adds a margin for the float32 norms and the bound's own rounding."""
    acc = 0.0
    for t in range(query.shape[0]):
        acc += np.float64(query[t]) ** 2
    return np.sqrt(acc) * widening(query.shape[0])
