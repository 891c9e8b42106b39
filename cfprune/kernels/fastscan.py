"""4-bit PQ codes scanned in blocks of 32 items with in-register table lookups (faiss's fast scan).

A 4-bit PQ table stores two codes per byte (sub-space 2j low nibble, 2j + 1 high). The codes are
laid out in blocks of :data:`BLOCK` items (:func:`block_layout`: ``blocked[b, j, i]`` is byte j
of the item at scan position ``32 b + i``), so that one 32-byte load holds a byte column of a
whole block, as in faiss's fast scan (Andre, Kermarrec, Le Scouarnec, VLDB 2015).

The shuffle route (:func:`shuffle_worker`, AVX2): per user, the float tables ``lut[s, c] = u_s .
centroid_c`` are quantised to 8-bit levels with one step for every sub-space
(:func:`quantise_tables`); per block, :func:`_block_mask` looks the 32 codes of each byte column
up in those levels with ``vpshufb`` (a Numba intrinsic emitting the LLVM x86 shuffle; with
AVX-512BW two columns per 64-byte shuffle), keeps 16-bit sums in registers and compares them in
registers with the user's level threshold (:func:`level_threshold`: the least sum whose upper
bound reaches the k-th best score), giving one 32-bit mask; only the masked items are scored
exactly (float32 sums of ``lut``, so the top-k is that of the decoded rows) and offered. On
normalised catalogues about 150 of 1M items pass per user (the bound is ``m`` steps wide, the
threshold near its final value after a few thousand items): the scan itself is the cost, at one
user as fast per thread as faiss's (both read the 8 bytes per item from memory at the same
rate), for batches faster (the users take turns over a tile of blocks held in L1). faiss
shares each code load among a group of queries (its ``qbs``) and compiles a kernel per group
size and per result handler; here one compiled kernel serves every call (start-up time), each
user re-loading the block's codes from L1.

Without AVX2, the pair tables (:func:`fastscan_worker`): byte column j contributes ``pair[j,
byte] = lut[2j, byte & 15] + lut[2j + 1, byte >> 4]``, a 256-entry float32 table per byte column
(8 KiB at m=16), each lookup a load from L1, the sums the scores themselves.

Early stop as in :mod:`.scan`: the blocks follow the table's scan order, tiles of
:data:`BLOCKS_PER_TILE` blocks go round-robin to the workers, each with its own heaps, and a user
retires when ``reach(u) * remaining_norm[p0]`` falls below its worker's k-th best score.
"""
import numpy as np
from llvmlite import binding, ir
from numba import njit, types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic, register_jitable

from cfprune.kernels.pool import frozen, run_workers, workers_for
from cfprune.kernels.scan import merge_heaps
from cfprune.kernels.topk import (EMPTY_ID, beats_root, reach, replace_root, retire_by_bound,
                                  sorted_contains)

BLOCK = 32
BLOCKS_PER_TILE = 32
# a second worker only for calls offering more rows (x users) than this: one user over 500k
# rows scans in 0.29 ms on one worker here and in 0.34 ms on two (the thread hop)
FASTSCAN_ROWS_PER_WORKER = 2 ** 19
# the in-register shuffle route needs AVX2 (vpshufb on 32 bytes); other CPUs take the pair tables
_FEATURES = binding.get_host_cpu_features()
HAS_SHUFFLE = bool(_FEATURES.get("avx2"))
# 64-byte shuffles (two byte columns per vpshufb) where AVX-512BW is there: the kernel holds
# both widths then and takes a flag (tests run both), else only the 32-byte one
HAS_WIDE = HAS_SHUFFLE and bool(_FEATURES.get("avx512bw"))


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


@register_jitable
def level_bytes(n_bytes, wide):
    """Bytes of one user's quantised tables (:func:`quantise_tables`) for ``n_bytes`` byte
    columns."""
    if wide:
        return 128 * (n_bytes // 2) + 32 * (n_bytes % 2)
    return 32 * n_bytes


@njit(cache=True, nogil=True)
def quantise_tables(lut, ksub, levels, wide):
    """Quantise ``lut`` float32 [2 * n_bytes, 16] to ``levels`` uint8 [level_bytes(n_bytes, wide)]:
    ``floor((lut[s, c] - low_s) / step)`` with one ``step`` for all sub-spaces (the widest range
    over ``top``, 255 or less so that a sum of ``2 * n_bytes`` levels fits 16 bits). Layout, as
    :func:`_block_mask` loads it: byte column j (sub-spaces 2j low nibble, 2j + 1 high) holds 16
    levels of 2j then 16 of 2j + 1 at ``32 j``; with ``wide``, columns go in pairs of 128 bytes
    (2p's low table twice, 2p + 1's low table twice, then the same for the high tables: a 64-byte
    register each), an odd last column as 32 bytes after them. Returns (base = sum of the lows,
    step): a row's score lies in ``[base + step * sum, base + step * (sum + n_subspaces))`` up to
    float rounding."""
    n_sub = lut.shape[0]
    n_bytes = n_sub // 2
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
        j, nibble = s // 2, s % 2
        paired = wide and j < n_bytes - n_bytes % 2
        for c in range(16):
            level = 0.0
            if c < ksub:
                level = min(top, max(0.0, np.floor((np.float64(lut[s, c]) - lows[s]) / step)))
            if paired:
                at = 128 * (j // 2) + 64 * nibble + 32 * (j % 2) + c
                levels[at] = np.uint8(level)
                levels[at + 16] = np.uint8(level)
            elif wide:
                levels[128 * (j // 2) + 16 * nibble + c] = np.uint8(level)
            else:
                levels[32 * j + 16 * nibble + c] = np.uint8(level)
    return base, step


def _add_lookups(builder, pshufb, codes_v, low_table, high_table, both, odd):
    """Look up the low and high nibbles of the code bytes ``codes_v`` (an LLVM <n x i8>) in the
    tables (<n x i8>, 16 entries per 16-byte lane) and add the results, read as <n/2 x i16>, to
    the accumulators ``both`` (as they are) and ``odd`` (shifted right by 8)."""
    bytes_t = codes_v.type
    words_t = ir.VectorType(ir.IntType(16), bytes_t.count // 2)
    nibble = ir.Constant(bytes_t, [15] * bytes_t.count)
    eight = ir.Constant(words_t, [8] * words_t.count)
    low = builder.call(pshufb, [low_table, builder.and_(codes_v, nibble)])
    high = builder.call(pshufb, [high_table, builder.and_(
        builder.lshr(codes_v, ir.Constant(bytes_t, [4] * bytes_t.count)), nibble)])
    low, high = builder.bitcast(low, words_t), builder.bitcast(high, words_t)
    builder.store(builder.add(builder.load(both), builder.add(low, high)), both)
    builder.store(builder.add(builder.load(odd), builder.add(builder.lshr(low, eight),
                                                             builder.lshr(high, eight))), odd)


@intrinsic
def _block_mask(typingctx, levels, levels_at, codes, codes_at, n_bytes, threshold, wide):
    """uint32: which of the 32 items of one block have a level sum >= ``threshold`` (uint16). The
    block's codes are ``codes[codes_at + 32 j + i]`` (byte column j of item i, uint8), the user's
    levels ``levels[levels_at:]`` as :func:`quantise_tables` lays them out. Per column: two
    in-register 16-entry lookups (``vpshufb``: AVX2 on 32 bytes, one column with its table in both
    lanes; with ``wide`` (bool, only where :data:`HAS_WIDE`), AVX-512BW on 64 bytes, two columns at
    once) and 16-bit sums kept in registers, as in faiss's fast scan: a lookup result read as words
    adds ``level(2w) + 256 level(2w + 1)`` to one accumulator and, shifted, ``level(2w + 1)`` to
    another, so no widening is needed (the even sums are recovered mod 2^16 at the end). Bit w of
    the mask is item 2w, bit 16 + w item 2w + 1."""
    sig = types.uint32(levels, types.intp, codes, types.intp, types.intp, types.intp,
                       types.boolean)

    def codegen(context, builder, signature, args):
        levels_a, levels_i, codes_a, codes_i, n_bytes_v, threshold_v, wide_v = args
        levels_p = builder.gep(context.make_array(signature.args[0])(context, builder,
                                                                     levels_a).data, [levels_i])
        codes_p = builder.gep(context.make_array(signature.args[2])(context, builder,
                                                                    codes_a).data, [codes_i])
        byte, half, word = ir.IntType(8), ir.IntType(16), ir.IntType(32)
        index_t = n_bytes_v.type
        v16, v32, v64 = (ir.VectorType(byte, n) for n in (16, 32, 64))
        w16, w32 = ir.VectorType(half, 16), ir.VectorType(half, 32)

        def load(pointer, at, vector_t):
            return builder.load(builder.bitcast(builder.gep(pointer, [at]),
                                                vector_t.as_pointer()), align=1)

        def const(value):
            return ir.Constant(index_t, value)

        def lanes(start, stop):
            return ir.Constant(ir.VectorType(word, stop - start), list(range(start, stop)))
        pshufb = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v32, [v32, v32]),
                                                "llvm.x86.avx2.pshuf.b")
        both = cgutils.alloca_once_value(builder, ir.Constant(w16, [0] * 16))
        odd = cgutils.alloca_once_value(builder, ir.Constant(w16, [0] * 16))
        twice = ir.Constant(ir.VectorType(word, 32), [i % 16 for i in range(32)])

        def narrow_column(table_at, column_at):
            low_table = load(levels_p, table_at, v16)
            high_table = load(levels_p, builder.add(table_at, const(16)), v16)
            _add_lookups(builder, pshufb, load(codes_p, column_at, v32),
                         builder.shuffle_vector(low_table, low_table, twice),
                         builder.shuffle_vector(high_table, high_table, twice), both, odd)
        def narrow_columns():
            with cgutils.for_range(builder, n_bytes_v) as loop:
                at = builder.mul(loop.index, const(BLOCK))
                narrow_column(at, at)

        def wide_columns():
            pshufb_wide = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(v64, [v64, v64]), "llvm.x86.avx512.pshuf.b.512")
            both_wide = cgutils.alloca_once_value(builder, ir.Constant(w32, [0] * 32))
            odd_wide = cgutils.alloca_once_value(builder, ir.Constant(w32, [0] * 32))
            n_pairs = builder.lshr(n_bytes_v, const(1))
            with cgutils.for_range(builder, n_pairs) as loop:
                table_at = builder.mul(loop.index, const(128))
                _add_lookups(builder, pshufb_wide, load(codes_p, builder.mul(loop.index,
                                                                             const(64)), v64),
                             load(levels_p, table_at, v64),
                             load(levels_p, builder.add(table_at, const(64)), v64),
                             both_wide, odd_wide)
            for wide, narrow in ((both_wide, both), (odd_wide, odd)):
                value = builder.load(wide)
                low_half = builder.shuffle_vector(value, value, lanes(0, 16))
                high_half = builder.shuffle_vector(value, value, lanes(16, 32))
                builder.store(builder.add(low_half, high_half), narrow)
            is_odd = builder.icmp_unsigned("!=", builder.and_(n_bytes_v, const(1)), const(0))
            with builder.if_then(is_odd):
                narrow_column(builder.mul(n_pairs, const(128)), builder.mul(n_pairs, const(64)))
        if HAS_WIDE:  # the 64-byte shuffle exists on this CPU: both widths, chosen by the flag
            is_wide = builder.icmp_unsigned("!=", wide_v, ir.Constant(wide_v.type, 0))
            with builder.if_else(is_wide) as (then, otherwise):
                with then:
                    wide_columns()
                with otherwise:
                    narrow_columns()
        else:
            narrow_columns()
        odd_sums = builder.load(odd)
        eight = ir.Constant(w16, [8] * 16)
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


@register_jitable
def level_threshold(kth, slack, base, step, n_sub):
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
                   heap_ids, wide):
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
    wide = wide and HAS_WIDE
    per_user = level_bytes(n_bytes, wide)
    levels = np.empty(n_users * per_user, np.uint8)
    bases = np.empty(n_users, np.float64)
    steps = np.empty(n_users, np.float64)
    slack = np.empty(n_users, np.float64)
    user_reach = np.empty(n_users, np.float64)
    active = np.ones(n_users, np.bool_)
    for u in range(n_users):
        subspace_tables(rotated[u], codebooks, bounds, luts[u])
        bases[u], steps[u] = quantise_tables(
            luts[u], ksub, levels[u * per_user:(u + 1) * per_user], wide)
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
            threshold = level_threshold(hs[0], slack[u], bases[u], steps[u], n_sub)
            for b in range(b0, min(n_blocks, b0 + BLOCKS_PER_TILE)):
                first = b * n_bytes * BLOCK
                mask = _block_mask(levels, u * per_user, blocked, first, n_bytes,
                                   threshold, wide)
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
                        threshold = level_threshold(hs[0], slack[u], bases[u], steps[u],
                                                     n_sub)


def score_fastscan(rotated, blocked, codebooks, bounds, order, remaining_norm, n_workers,
                   item_map, seen_indices, seen_start, seen_end, heap_scores, heap_ids,
                   shuffle=HAS_SHUFFLE, wide=HAS_WIDE):
    """Top-k of rotated users float32 [n, d] over a 4-bit PQ table's codes in
    :func:`block_layout` (of the rows ``order``), ``n_workers`` threads splitting the blocks;
    other arguments as in :func:`.tiled.score_tiles`. ``shuffle``: the in-register route
    (:func:`shuffle_worker`; ``wide``: its 64-byte shuffles, where :data:`HAS_WIDE`), else the
    pair tables (:func:`fastscan_worker`). Memory per user and worker: the float tables (64
    bytes per sub-space) and quantised ones (at most 64 per byte column), or the pair tables
    (1 KiB per byte column); and the heaps."""
    n_queries, n_rows = rotated.shape[0], order.shape[0]
    if n_queries == 0 or n_rows == 0:
        return
    n_tiles = (blocked.shape[0] + BLOCKS_PER_TILE - 1) // BLOCKS_PER_TILE
    n_workers = min(workers_for(n_workers, n_rows * n_queries, FASTSCAN_ROWS_PER_WORKER),
                    n_tiles)
    k = heap_scores.shape[1]
    worker_scores = np.full((n_workers, n_queries, k), -np.inf, np.float32)
    worker_ids = np.full((n_workers, n_queries, k), EMPTY_ID, np.int32)
    args = (frozen(blocked, np.uint8), frozen(codebooks, np.float32), frozen(bounds, np.int32),
            frozen(order, np.int32), frozen(remaining_norm, np.float32),
            frozen(item_map, np.int32), frozen(seen_indices, np.int32),
            frozen(seen_start, np.int64), frozen(seen_end, np.int64))
    rotated = frozen(rotated, np.float32)

    if shuffle:
        args = (args[0].reshape(-1),) + args[1:]

    def work(worker):
        if shuffle:
            shuffle_worker(rotated, worker, n_workers, *args, worker_scores[worker],
                           worker_ids[worker], bool(wide))
        else:
            fastscan_worker(rotated, worker, n_workers, *args, worker_scores[worker],
                            worker_ids[worker])
    run_workers(work, n_workers)
    merge_heaps(worker_scores, worker_ids, heap_scores, heap_ids)
