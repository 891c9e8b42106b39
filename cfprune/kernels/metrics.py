"""Numba kernels: per-user ranking metrics from ranked item ids and the test CSR.

Inputs shared by the kernels:

- ``ranked`` int32 [n_batch, width]: item ids, best first, ``-1`` padding at the end; ids of one
  row are distinct.
- ``users`` int32 [n_batch]: the test-matrix row of each ranked row.
- ``test_indptr`` int64 [n_test_users + 1], ``test_indices`` int32 [nnz]: the full test CSR, indices
  sorted within each row. Every stored pair is relevant (binary relevance; values are ignored).
- ``ks`` int64 [n_ks]: cut-offs, strictly increasing, >= 1. A cut-off beyond ``width`` reads the
  missing positions as padding.

The per-user values land in one float64 array ``values[metric, j, b]`` for metric row ``metric``
(the module constants below), cut-off ``ks[j]`` and batch row ``b``. A metric that is undefined for
a user (recall of a user with no test item, tail recall of a user with no tail test item, overlap
with an empty baseline list, AUC when every or no item is relevant) is NaN.
"""

import numpy as np
from numba import njit

from cfprune.kernels.pool import frozen, run_blocks
from cfprune.kernels.topk import sorted_contains

HITS = 0
RECALL = 1
TRUNCATED_RECALL = 2
PRECISION = 3
NDCG = 4
AVERAGE_PRECISION = 5
HIT_RATE = 6
RECIPROCAL_RANK = 7
AUC = 8
TAIL_HITS = 9
TAIL_RECALL = 10
OVERLAP = 11
N_METRICS = 12

USERS_PER_BLOCK = 64


def ranking_metrics(ranked, users, test_indptr, test_indices, ks, n_items, tail, baseline,
                    n_workers=1):
    """Per-user ranking metrics at every cut-off, the users split over ``n_workers`` threads.

    Parameters
    ----------
    ranked, users, test_indptr, test_indices, ks
        See the module docstring.
    n_items : int
        Catalogue size (the AUC's negatives are ``n_items - |relevant|``, as in ``implicit``).
    tail : bool [n_items]
        True for the items counted by ``TAIL_HITS`` / ``TAIL_RECALL``.
    baseline : int32 [n_batch, width_b]
        Another model's ranked ids for the same users; ``width_b == 0`` leaves ``OVERLAP`` NaN.

    Returns
    -------
    values : float64 [N_METRICS, n_ks, n_batch]
        ``HITS``: relevant items in the top k. ``RECALL``: hits / |relevant|.
        ``TRUNCATED_RECALL``: hits / min(k, |relevant|). ``PRECISION``: hits / k.
        ``NDCG``: DCG with 1 / log2(rank + 1) over the ideal DCG of min(k, |relevant|) hits.
        ``AVERAGE_PRECISION``: the sum of precision at each hit rank over min(k, |relevant|).
        ``HIT_RATE``: 1 if any hit. ``RECIPROCAL_RANK``: 1 / rank of the first hit, 0 if none.
        ``AUC``: ``implicit``'s AUC limited to the top k (misses before each hit count as
        ranked below it, the rest of the catalogue as tied with the unranked positives).
        ``TAIL_HITS``, ``TAIL_RECALL``: hits among tail items and over the user's tail test items.
        ``OVERLAP``: |top k ∩ baseline top k| / number of valid baseline ids in the top k.
    n_relevant : int64 [n_batch]
        Test items of each user.
    n_tail_relevant : int64 [n_batch]
        Test items of each user that are in ``tail``.
    """
    n_batch = ranked.shape[0]
    n_ks = ks.shape[0]
    max_k = int(ks[n_ks - 1])
    ideal = np.zeros(max_k + 1)
    ideal[1:] = np.cumsum(1.0 / np.log2(np.arange(max_k) + 2.0))
    values = np.zeros((N_METRICS, n_ks, n_batch))
    n_relevant = np.zeros(n_batch, np.int64)
    n_tail_relevant = np.zeros(n_batch, np.int64)
    args = (frozen(ranked, np.int32), frozen(users, np.int32), frozen(test_indptr, np.int64),
            frozen(test_indices, np.int32), frozen(ks, np.int64), int(n_items),
            frozen(tail, np.bool_), frozen(baseline, np.int32), frozen(ideal, np.float64),
            values, n_relevant, n_tail_relevant)
    run_blocks(lambda start, stop: metrics_users(start, stop, *args), n_batch, n_workers,
               USERS_PER_BLOCK)
    return values, n_relevant, n_tail_relevant


@njit(cache=True, nogil=True)
def metrics_users(start, stop, ranked, users, test_indptr, test_indices, ks, n_items, tail,
                  baseline, ideal, values, n_relevant, n_tail_relevant):
    """:func:`ranking_metrics` for the batch rows ``start:stop``; ``ideal`` float64 [max_k + 1]
    holds the ideal DCG of 0..max_k hits."""
    # baseline_rank[item]: the item's rank in the current user's baseline list, -1 if absent
    baseline_rank = np.full(n_items if baseline.shape[1] > 0 else 0, -1, np.int64)
    for b in range(start, stop):
        _user_metrics(b, ranked, users, test_indptr, test_indices, ks, n_items, tail, baseline,
                      ideal, baseline_rank, values, n_relevant, n_tail_relevant)


@njit(cache=True, nogil=True)
def _user_metrics(b, ranked, users, test_indptr, test_indices, ks, n_items, tail, baseline,
                  ideal, baseline_rank, values, n_relevant, n_tail_relevant):
    """Fill ``values[:, :, b]``, ``n_relevant[b]``, ``n_tail_relevant[b]`` for batch row b."""
    width = ranked.shape[1]
    width_b = baseline.shape[1]
    n_ks = ks.shape[0]
    max_k = ks[n_ks - 1]
    u = users[b]
    start = test_indptr[u]
    end = test_indptr[u + 1]
    n_rel = end - start
    n_tail = 0
    for t in range(start, end):
        if tail[test_indices[t]]:
            n_tail += 1
    n_relevant[b] = n_rel
    n_tail_relevant[b] = n_tail
    n_neg = n_items - n_rel
    hits = 0
    tail_hits = 0
    misses = 0
    first_hit = -1
    dcg = 0.0
    precision_sum = 0.0
    auc_sum = 0.0
    j = 0
    for p in range(max_k):
        item = ranked[b, p] if p < width else -1
        if item >= 0 and sorted_contains(test_indices, start, end, item):
            hits += 1
            dcg += 1.0 / np.log2(p + 2.0)
            precision_sum += hits / (p + 1.0)
            if first_hit < 0:
                first_hit = p
            if tail[item]:
                tail_hits += 1
        else:
            misses += 1
            auc_sum += hits
        while j < n_ks and ks[j] == p + 1:
            k = p + 1
            values[HITS, j, b] = hits
            values[PRECISION, j, b] = hits / k
            values[HIT_RATE, j, b] = 1.0 if hits > 0 else 0.0
            values[RECIPROCAL_RANK, j, b] = 1.0 / (first_hit + 1.0) if hits > 0 else 0.0
            values[TAIL_HITS, j, b] = tail_hits
            if n_rel > 0:
                m = min(k, n_rel)
                values[RECALL, j, b] = hits / n_rel
                values[TRUNCATED_RECALL, j, b] = hits / m
                values[NDCG, j, b] = dcg / ideal[m]
                values[AVERAGE_PRECISION, j, b] = precision_sum / m
            else:
                values[RECALL, j, b] = np.nan
                values[TRUNCATED_RECALL, j, b] = np.nan
                values[NDCG, j, b] = np.nan
                values[AVERAGE_PRECISION, j, b] = np.nan
            if n_rel > 0 and n_neg > 0:
                values[AUC, j, b] = (auc_sum + 0.5 * (hits + n_rel) * (n_neg - misses)) / (
                    float(n_rel) * n_neg)
            else:
                values[AUC, j, b] = np.nan
            values[TAIL_RECALL, j, b] = tail_hits / n_tail if n_tail > 0 else np.nan
            j += 1
    if width_b == 0:
        for j in range(n_ks):
            values[OVERLAP, j, b] = np.nan
        return
    # an id at model rank p and baseline rank q is shared by every top k with k > max(p, q)
    limit_b = min(width_b, max_k)
    for q in range(limit_b):
        if baseline[b, q] >= 0:
            baseline_rank[baseline[b, q]] = q
    for p in range(min(width, max_k)):
        item = ranked[b, p]
        if item >= 0 and baseline_rank[item] >= 0:
            last = max(p, baseline_rank[item])
            for j in range(n_ks):
                if ks[j] > last:
                    values[OVERLAP, j, b] += 1.0
    for q in range(limit_b):
        if baseline[b, q] >= 0:
            baseline_rank[baseline[b, q]] = -1
    valid = 0
    j = 0
    for q in range(max_k):
        if q < width_b and baseline[b, q] >= 0:
            valid += 1
        while j < n_ks and ks[j] == q + 1:
            if valid > 0:
                values[OVERLAP, j, b] /= valid
            else:
                values[OVERLAP, j, b] = np.nan
            j += 1


def mark_first_positions(ranked, first_position):
    """Coverage accumulator: lower ``first_position[item]`` to the best rank it reached.

    ranked : int32 [n_batch, width] (``-1`` ignored); first_position : int64 [n_items], updated in
    place, initialised by the caller to a value >= every cut-off. Item ``i`` appears in some top-k
    list of the users seen so far iff ``first_position[i] < k``. NumPy, no kernel.
    """
    ranked = np.asarray(ranked)
    positions = np.broadcast_to(np.arange(ranked.shape[1], dtype=np.int64), ranked.shape)
    valid = ranked >= 0
    np.minimum.at(first_position, ranked[valid], positions[valid])
