"""4-bit PQ codes scanned in blocks of 32 items through pair lookup tables (the few-users route).

A 4-bit PQ table stores two codes per byte (sub-space 2j low nibble, 2j + 1 high). For one user,
byte column j contributes ``pair[j, byte] = lut[2j, byte & 15] + lut[2j + 1, byte >> 4]``: a
256-entry float32 table per byte column (``ceil(m/2)`` of them, 8 KiB at m=16), so an item costs
``ceil(m/2)`` lookups instead of ``m``. The codes are laid out in blocks of :data:`BLOCK` items
(:func:`block_layout`: ``blocked[b, j, i]`` is byte j of the item at scan position
``32 b + i``), so that the inner loop runs over 32 items with contiguous code loads, as faiss's
fast-scan does. faiss then holds 8-bit quantised tables in SIMD registers and looks up 32 codes
with one in-register shuffle (``pshufb``), accumulating in 16 bits; Numba cannot express that
shuffle, so here each lookup is a load from L1 (or a gather when LLVM vectorises the loop) and the
sums stay float32: they are the scores of the decoded rows up to float rounding, and no re-check
pass is needed.

Early stop as in :mod:`.scan`: the blocks follow the table's scan order, tiles of
:data:`BLOCKS_PER_TILE` blocks go round-robin to the workers, each with its own heaps, and a user
retires when ``reach(u) * remaining_norm[p0]`` falls below its worker's k-th best score.
"""

import numpy as np
from numba import njit

from cfprune.kernels.pool import frozen, run_workers
from cfprune.kernels.scan import merge_heaps
from cfprune.kernels.topk import EMPTY_ID, beats_root, reach, replace_root, sorted_contains

BLOCK = 32
BLOCKS_PER_TILE = 32


def block_layout(packed, order):
    """uint8 [ceil(n/32), n_bytes, 32]: the packed 4-bit codes ``packed`` uint8 [n, n_bytes] of
    the rows ``order`` int32 [n] (scan order), 32 items per block (the last block padded with
    code 0; padded positions are never offered)."""
    n, n_bytes = packed.shape
    n_blocks = (n + BLOCK - 1) // BLOCK
    rows = np.zeros(n_blocks * BLOCK, np.int64)
    rows[:n] = order
    return np.ascontiguousarray(packed[rows].reshape(n_blocks, BLOCK, n_bytes).transpose(0, 2, 1))


@njit(cache=True, nogil=True)
def pair_tables(queries, codebooks, bounds, pairs):
    """``pairs`` float32 [n, n_bytes, 256]: per user and byte column, the score of every byte
    (two 4-bit codes) of the rotated ``queries`` float32 [n, d]."""
    m = bounds.shape[0] - 1
    ksub = codebooks.shape[0]
    lut = np.zeros((m + 1, 16), np.float32)
    for u in range(queries.shape[0]):
        for s in range(m + 1):
            for c in range(16):
                lut[s, c] = 0.0
        for s in range(m):
            for c in range(ksub):
                dot = np.float32(0.0)
                for t in range(bounds[s], bounds[s + 1]):
                    dot += queries[u, t] * codebooks[c, t]
                lut[s, c] = dot
        for j in range(pairs.shape[1]):
            for byte in range(256):
                pairs[u, j, byte] = lut[2 * j, byte & 15] + lut[2 * j + 1, byte >> 4]


@njit(cache=True, nogil=True)
def fastscan_worker(rotated, worker, n_workers, blocked, codebooks, bounds, order,
                    remaining_norm, item_map, seen_indices, seen_start, seen_end, heap_scores,
                    heap_ids):
    """Offer the scan positions of tiles ``worker, worker + n_workers, ...`` of the blocked
    codes ``blocked`` (:func:`block_layout` of the rows ``order``) to this worker's heaps."""
    n_users = rotated.shape[0]
    n_rows = order.shape[0]
    n_blocks, n_bytes, _ = blocked.shape
    pairs = np.empty((n_users, n_bytes, 256), np.float32)
    pair_tables(rotated, codebooks, bounds, pairs)
    user_reach = np.empty(n_users, np.float64)
    active = np.ones(n_users, np.bool_)
    for u in range(n_users):
        user_reach[u] = reach(rotated[u])
    acc = np.empty(BLOCK, np.float32)
    mapped = item_map.shape[0] > 0
    n_tiles = (n_blocks + BLOCKS_PER_TILE - 1) // BLOCKS_PER_TILE
    for tile in range(worker, n_tiles, n_workers):
        b0 = tile * BLOCKS_PER_TILE
        bound = np.float64(remaining_norm[b0 * BLOCK])
        n_active = 0
        for u in range(n_users):
            if active[u] and user_reach[u] * bound < heap_scores[u, 0]:
                active[u] = False
            n_active += active[u]
        if n_active == 0:
            break
        for b in range(b0, min(n_blocks, b0 + BLOCKS_PER_TILE)):
            codes = blocked[b]
            for u in range(n_users):
                if not active[u]:
                    continue
                table = pairs[u]
                for i in range(BLOCK):
                    acc[i] = table[0, codes[0, i]]
                for j in range(1, n_bytes):
                    column = table[j]
                    line = codes[j]
                    for i in range(BLOCK):
                        acc[i] += column[line[i]]
                hs, hi = heap_scores[u], heap_ids[u]
                for i in range(min(BLOCK, n_rows - b * BLOCK)):
                    score = acc[i]
                    if score < hs[0]:
                        continue
                    row = order[b * BLOCK + i]
                    item = item_map[row] if mapped else row
                    if beats_root(hs, hi, score, item) and \
                            not sorted_contains(seen_indices, seen_start[u], seen_end[u], item):
                        replace_root(hs, hi, score, item)


def score_fastscan(rotated, blocked, codebooks, bounds, order, remaining_norm, n_workers,
                   item_map, seen_indices, seen_start, seen_end, heap_scores, heap_ids):
    """Top-k of a handful of rotated users float32 [n, d] over a 4-bit PQ table's codes in
    :func:`block_layout` (of the rows ``order``), ``n_workers`` threads splitting the blocks;
    other arguments as in :func:`.tiled.score_tiles`. Memory: the pair tables (``n x ceil(m/2)
    x 1 KiB``) and the heaps."""
    n_queries, n_rows = rotated.shape[0], order.shape[0]
    if n_queries == 0 or n_rows == 0:
        return
    n_tiles = (blocked.shape[0] + BLOCKS_PER_TILE - 1) // BLOCKS_PER_TILE
    n_workers = max(1, min(int(n_workers), n_tiles))
    k = heap_scores.shape[1]
    worker_scores = np.full((n_workers, n_queries, k), -np.inf, np.float32)
    worker_ids = np.full((n_workers, n_queries, k), EMPTY_ID, np.int32)
    args = (frozen(blocked, np.uint8), frozen(codebooks, np.float32), frozen(bounds, np.int32),
            frozen(order, np.int32), frozen(remaining_norm, np.float32),
            frozen(item_map, np.int32), frozen(seen_indices, np.int32),
            frozen(seen_start, np.int64), frozen(seen_end, np.int64))
    rotated = frozen(rotated, np.float32)

    def work(worker):
        fastscan_worker(rotated, worker, n_workers, *args, worker_scores[worker],
                        worker_ids[worker])
    run_workers(work, n_workers)
    merge_heaps(worker_scores, worker_ids, heap_scores, heap_ids)
