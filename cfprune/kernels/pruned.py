"""The fallback step of row-pruned item tables.

When a pruned table has a ``fallback`` vector, every item that was not kept scores
``u . fallback``: the same score for all of them, so by the tie rule only the lowest unseen
non-kept ids can enter the top-k. :func:`push_fallback` offers them in ascending id order after the
kept rows were scanned, and stops at the first one the heap rejects.
"""

import numpy as np
from numba import njit

from cfprune.kernels.pool import frozen, run_blocks
from cfprune.kernels.topk import advance_seen, beats_root, replace_root


def push_fallback(queries, fallback, kept, n_items, seen_indices, seen_start, seen_end,
                  heap_scores, heap_ids, n_workers=1):
    """Offer the non-kept items (ids in [0, n_items) not in sorted ``kept``) with score
    ``queries[i] . fallback`` to each query's heap, skipping seen items."""
    args = (frozen(queries, np.float32), frozen(fallback, np.float32), frozen(kept, np.int32),
            int(n_items), frozen(seen_indices, np.int32), frozen(seen_start, np.int64),
            frozen(seen_end, np.int64), heap_scores, heap_ids)
    run_blocks(lambda start, stop: fallback_users(start, stop, *args), queries.shape[0],
               n_workers)


@njit(cache=True, nogil=True)
def fallback_users(start, stop, queries, fallback, kept, n_items, seen_indices, seen_start,
                   seen_end, heap_scores, heap_ids):
    """:func:`push_fallback` for the queries ``start:stop``."""
    dim = queries.shape[1]
    n_kept = kept.shape[0]
    for i in range(start, stop):
        score = np.float32(0.0)
        for t in range(dim):
            score += queries[i, t] * fallback[t]
        kept_pos = 0
        seen_pos = seen_start[i]
        end = seen_end[i]
        for item in range(n_items):
            while kept_pos < n_kept and kept[kept_pos] < item:
                kept_pos += 1
            if kept_pos < n_kept and kept[kept_pos] == item:
                continue
            if not beats_root(heap_scores[i], heap_ids[i], score, item):
                break
            seen_pos = advance_seen(seen_indices, seen_pos, end, item)
            if seen_pos < end and seen_indices[seen_pos] == item:
                continue
            replace_root(heap_scores[i], heap_ids[i], score, item)
