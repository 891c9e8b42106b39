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
from llvmlite import binding, ir
from numba import njit, types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from cfprune.kernels.pool import frozen, run_workers
from cfprune.kernels.scan import merge_heaps
from cfprune.kernels.topk import (EMPTY_ID, beats_root, reach, replace_root, retire_by_bound,
                                  sorted_contains)

BLOCK = 32
BLOCKS_PER_TILE = 32
# the in-register shuffle route needs AVX2 (vpshufb on 32 bytes); other CPUs take the pair tables
HAS_SHUFFLE = "avx2" in binding.get_host_cpu_features().flatten()


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
        if retire_by_bound(active, user_reach, bound, heap_scores) == 0:
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


@njit(cache=True, nogil=True)
def subspace_tables(query, codebooks, bounds, lut):
    """``lut`` float32 [2 * n_bytes, 16]: ``query_s . centroid_c`` per sub-space s and code c
    (zero past the ``ksub`` centroids and for the padding sub-space of an odd m)."""
    m = bounds.shape[0] - 1
    lut[:] = 0.0
    for s in range(m):
        for c in range(codebooks.shape[0]):
            dot = np.float32(0.0)
            for t in range(bounds[s], bounds[s + 1]):
                dot += query[t] * codebooks[c, t]
            lut[s, c] = dot


@njit(cache=True, nogil=True)
def quantise_tables(lut, ksub, levels):
    """Quantise ``lut`` float32 [2 * n_bytes, 16] to ``levels`` uint8 [n_bytes * 32] (byte
    column j: 16 levels of sub-space 2j, then 16 of 2j + 1): ``floor((lut[s, c] - low_s) /
    step)`` with one ``step`` for all sub-spaces (the widest range over ``top``, 255 or less so
    that a sum of ``2 * n_bytes`` levels fits 16 bits). Returns (base = sum of the lows, step):
    a row's score lies in ``[base + step * sum, base + step * (sum + n_subspaces))`` up to float
    rounding."""
    n_sub = lut.shape[0]
    top = min(255, 65535 // n_sub)
    widest = 0.0
    base = 0.0
    lows = np.empty(n_sub, np.float64)
    for s in range(n_sub):
        low, high = np.inf, -np.inf
        for c in range(ksub):
            low = min(low, np.float64(lut[s, c]))
            high = max(high, np.float64(lut[s, c]))
        lows[s] = low
        base += low
        widest = max(widest, high - low)
    step = widest / top if widest > 0 else 1.0
    for s in range(n_sub):
        for c in range(16):
            level = 0.0
            if c < ksub:
                level = min(top, max(0.0, np.floor((np.float64(lut[s, c]) - lows[s]) / step)))
            levels[(s // 2) * 32 + (s % 2) * 16 + c] = np.uint8(level)
    return base, step


@intrinsic
def _block_mask(typingctx, levels, levels_at, codes, codes_at, n_bytes, threshold):
    """uint32: which of the 32 items of one block have a level sum >= ``threshold`` (uint16).
    The block's codes are ``codes[codes_at + 32 j + i]`` (byte column j of item i, uint8) and
    byte column j's levels ``levels[levels_at + 32 j:][:32]`` (sub-space 2j's 16, then 2j +
    1's). Per column: two in-register 16-entry lookups (AVX2 ``vpshufb``, the table in both
    lanes) and 16-bit sums kept in registers, as in faiss's fast scan: a 32-byte lookup result
    read as 16 words adds ``level(2w) + 256 level(2w + 1)`` to one accumulator and, shifted,
    ``level(2w + 1)`` to another, so no widening is needed (the even sums are recovered mod 2^16
    at the end). Bit w of the mask is item 2w, bit 16 + w item 2w + 1."""
    sig = types.uint32(levels, types.intp, codes, types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        levels_a, levels_i, codes_a, codes_i, n_bytes_v, threshold_v = args
        levels_p = builder.gep(context.make_array(signature.args[0])(context, builder,
                                                                     levels_a).data, [levels_i])
        codes_p = builder.gep(context.make_array(signature.args[2])(context, builder,
                                                                    codes_a).data, [codes_i])
        byte, half, word = ir.IntType(8), ir.IntType(16), ir.IntType(32)
        v16, v32, w16 = ir.VectorType(byte, 16), ir.VectorType(byte, 32), ir.VectorType(half, 16)
        both_lanes = ir.Constant(ir.VectorType(word, 32), [i % 16 for i in range(32)])
        nibble = ir.Constant(v32, [15] * 32)
        eight = ir.Constant(w16, [8] * 16)
        pshufb = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v32, [v32, v32]),
                                                "llvm.x86.avx2.pshuf.b")
        both = cgutils.alloca_once_value(builder, ir.Constant(w16, [0] * 16))
        odd = cgutils.alloca_once_value(builder, ir.Constant(w16, [0] * 16))
        with cgutils.for_range(builder, n_bytes_v) as loop:
            at = builder.mul(loop.index, ir.Constant(loop.index.type, BLOCK))
            table_p = builder.gep(levels_p, [at])
            low_table = builder.load(builder.bitcast(table_p, v16.as_pointer()), align=1)
            high_table = builder.load(builder.bitcast(
                builder.gep(table_p, [ir.Constant(at.type, 16)]), v16.as_pointer()), align=1)
            low_table = builder.shuffle_vector(low_table, low_table, both_lanes)
            high_table = builder.shuffle_vector(high_table, high_table, both_lanes)
            codes_v = builder.load(builder.bitcast(builder.gep(codes_p, [at]), v32.as_pointer()),
                                   align=1)
            low = builder.call(pshufb, [low_table, builder.and_(codes_v, nibble)])
            high = builder.call(pshufb, [high_table, builder.and_(
                builder.lshr(codes_v, ir.Constant(v32, [4] * 32)), nibble)])
            low, high = builder.bitcast(low, w16), builder.bitcast(high, w16)
            builder.store(builder.add(builder.load(both), builder.add(low, high)), both)
            builder.store(builder.add(builder.load(odd), builder.add(
                builder.lshr(low, eight), builder.lshr(high, eight))), odd)
        odd_sums = builder.load(odd)
        even_sums = builder.sub(builder.load(both), builder.shl(odd_sums, eight))
        limit = builder.trunc(threshold_v, half)
        limit = builder.insert_element(ir.Constant(w16, ir.Undefined), limit,
                                       ir.Constant(word, 0))
        limit = builder.shuffle_vector(limit, limit, ir.Constant(ir.VectorType(word, 16),
                                                                 [0] * 16))

        def mask(sums):
            return builder.zext(builder.bitcast(builder.icmp_unsigned(">=", sums, limit),
                                                half), word)
        return builder.or_(mask(even_sums), builder.shl(mask(odd_sums),
                                                         ir.Constant(word, 16)))
    return sig, codegen


@njit(cache=True, nogil=True)
def _level_threshold(kth, slack, base, step, n_sub):
    """The smallest level sum (int, 0..65535) whose bound ``base + step * (sum + n_sub)``
    reaches the k-th best score ``kth`` less the rounding ``slack`` (0 while the heap is not
    full)."""
    need = np.ceil((np.float64(kth) - slack - base) / step - n_sub)
    if not need > 0.0:  # also -inf
        return 0
    return int(min(need, 65535.0))


@njit(cache=True, nogil=True)
def shuffle_worker(rotated, worker, n_workers, blocked, codebooks, bounds, order,
                   remaining_norm, item_map, seen_indices, seen_start, seen_end, heap_scores,
                   heap_ids):
    """:func:`fastscan_worker` with 8-bit quantised tables looked up in registers: per block
    and user, 16-bit sums of quantised levels bound each item's score from above (``base + step
    * (sum + n_subspaces)``, :func:`_block_mask`); only items whose bound reaches the k-th best
    score are scored exactly (float32 sums of ``lut``) and offered. Within a tile the users
    take turns, each over all the tile's blocks (its tables stay in L1). ``blocked`` here is
    :func:`block_layout` flattened (uint8 [n_blocks * n_bytes * 32])."""
    n_users = rotated.shape[0]
    n_rows = order.shape[0]
    n_bytes = (bounds.shape[0] - 1 + 1) // 2
    n_blocks = blocked.shape[0] // (n_bytes * BLOCK)
    n_sub = 2 * n_bytes
    ksub = codebooks.shape[0]
    luts = np.empty((n_users, n_sub, 16), np.float32)
    levels = np.empty(n_users * n_bytes * BLOCK, np.uint8)
    bases = np.empty(n_users, np.float64)
    steps = np.empty(n_users, np.float64)
    slack = np.empty(n_users, np.float64)
    user_reach = np.empty(n_users, np.float64)
    active = np.ones(n_users, np.bool_)
    for u in range(n_users):
        subspace_tables(rotated[u], codebooks, bounds, luts[u])
        bases[u], steps[u] = quantise_tables(
            luts[u], ksub, levels[u * n_bytes * BLOCK:(u + 1) * n_bytes * BLOCK])
        # float32 rounding of the exact sums and of the bound itself
        slack[u] = 1e-5 * (np.abs(luts[u]).sum() + abs(bases[u])) + 1e-30
        user_reach[u] = reach(rotated[u])
    mapped = item_map.shape[0] > 0
    n_tiles = (n_blocks + BLOCKS_PER_TILE - 1) // BLOCKS_PER_TILE
    for tile in range(worker, n_tiles, n_workers):
        b0 = tile * BLOCKS_PER_TILE
        bound = np.float64(remaining_norm[b0 * BLOCK])
        if retire_by_bound(active, user_reach, bound, heap_scores) == 0:
            break
        for u in range(n_users):
            if not active[u]:
                continue
            hs, hi = heap_scores[u], heap_ids[u]
            lut = luts[u]
            threshold = _level_threshold(hs[0], slack[u], bases[u], steps[u], n_sub)
            for b in range(b0, min(n_blocks, b0 + BLOCKS_PER_TILE)):
                first = b * n_bytes * BLOCK
                mask = _block_mask(levels, u * n_bytes * BLOCK, blocked, first, n_bytes,
                                   threshold)
                while mask != 0:
                    bit = np.int64(trailing_zeros(mask))
                    mask &= mask - np.uint32(1)
                    i = 2 * bit if bit < 16 else 2 * (bit - 16) + 1
                    if b * BLOCK + i >= n_rows:
                        continue
                    score = np.float32(0.0)
                    for j in range(n_bytes):
                        code = blocked[first + j * BLOCK + i]
                        score += lut[2 * j, code & 15] + lut[2 * j + 1, code >> 4]
                    if score < hs[0]:
                        continue
                    row = order[b * BLOCK + i]
                    item = item_map[row] if mapped else row
                    if beats_root(hs, hi, score, item) and \
                            not sorted_contains(seen_indices, seen_start[u], seen_end[u], item):
                        replace_root(hs, hi, score, item)
                        threshold = _level_threshold(hs[0], slack[u], bases[u], steps[u],
                                                     n_sub)


def score_fastscan(rotated, blocked, codebooks, bounds, order, remaining_norm, n_workers,
                   item_map, seen_indices, seen_start, seen_end, heap_scores, heap_ids,
                   shuffle=HAS_SHUFFLE):
    """Top-k of a handful of rotated users float32 [n, d] over a 4-bit PQ table's codes in
    :func:`block_layout` (of the rows ``order``), ``n_workers`` threads splitting the blocks;
    other arguments as in :func:`.tiled.score_tiles`. Memory: the pair tables (``n x ceil(m/2)
    x 1 KiB``) and the heaps. ``shuffle``: the in-register route (:func:`shuffle_worker`),
    else the pair tables (:func:`fastscan_worker`)."""
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

    kernel = shuffle_worker if shuffle else fastscan_worker
    if shuffle:
        args = (args[0].reshape(-1),) + args[1:]

    def work(worker):
        kernel(rotated, worker, n_workers, *args, worker_scores[worker], worker_ids[worker])
    run_workers(work, n_workers)
    merge_heaps(worker_scores, worker_ids, heap_scores, heap_ids)
