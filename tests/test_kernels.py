"""Every scorer's top-k equals the brute force over the independently decoded table."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cfprune.errors import ShapeError
from cfprune.kernels.dense import ITEMS_PER_TILE, half_to_float32
from cfprune.kernels.int8 import quantise_queries, score_int8_int8
from cfprune.kernels.fastscan import (HAS_SHUFFLE, HAS_WIDE, block_layout, level_bytes,
                                      level_threshold, quantise_tables, score_fastscan)
from cfprune.kernels.pq import row_norms as pq_row_norms
from cfprune.kernels.pruned import push_fallback
from cfprune.kernels.rerank import rerank_dense, rerank_int8
from cfprune.kernels.scan import SCAN_KINDS, score_few
from cfprune.kernels.tiled import (FLAT_ITEMS, csr_tiles, flat_worker, float16_tiles,
                                   float32_tiles, int4_tiles, int8_tiles, norm_order, pq_tiles,
                                   scan_worker, score_tiles, table_order)
from cfprune.kernels.topk import new_heaps, sort_heaps
from tests.reference_kernels import (assert_topk_matches, decode_affine, decode_csr, decode_pq,
                                     pack_int4, topk_reference, unpack_int4)

SETTINGS = settings(max_examples=25, deadline=None)
EMPTY_MAP = np.empty(0, dtype=np.int32)


@st.composite
def problems(draw, max_items=300, max_dim=12):
    """A random retrieval problem: users, sizes, k (possibly beyond the catalogue), seen rows
    (some empty, some full), whether values are small integers (to force ties), and the route
    (the tiled GEMM scorer, its flat route alone, or the few-users scan)."""
    n_users = draw(st.integers(1, 20))
    n_items = draw(st.integers(1, max_items))
    dim = draw(st.integers(1, max_dim))
    k = draw(st.integers(1, n_items + 5))
    ties = draw(st.booleans())
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    seen = []
    for _ in range(n_users):
        kind = rng.integers(0, 4)
        if kind == 0:
            seen.append(set())
        elif kind == 1:
            seen.append(set(range(n_items)))
        else:
            size = int(rng.integers(0, n_items + 1))
            seen.append(set(rng.choice(n_items, size=size, replace=False).tolist()))
    route = draw(st.sampled_from(["tiled", "flat", "few"]))
    return dict(n_users=n_users, n_items=n_items, dim=dim, k=k, ties=ties, rng=rng, seen=seen,
                route=route)


def values(p, shape):
    """float32 values: small integers when the problem asks for ties, else normal."""
    if p["ties"]:
        return p["rng"].integers(-2, 3, size=shape).astype(np.float32)
    return p["rng"].standard_normal(shape).astype(np.float32)


def seen_arrays(seen):
    """(indices int32, start int64, end int64) of per-user seen sets, sorted per row."""
    rows = [np.array(sorted(s), dtype=np.int32) for s in seen]
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    end = np.cumsum(lengths)
    indices = np.concatenate(rows) if rows else np.empty(0, np.int32)
    return np.ascontiguousarray(indices, dtype=np.int32), end - lengths, end


def reference_norms(decoded):
    """float64 [n]: the row norms of an independently decoded table."""
    return np.sqrt((np.asarray(decoded, np.float64) ** 2).sum(axis=1))


def run(tiles, queries, p, by_norm, item_map=EMPTY_MAP, heaps=None, order=None, n_workers=3,
        decoded=None):
    """The problem's route (the shared tiled scorer, its flat route or the few-users scan) over ``tiles`` (table
    rows ascending, or by descending norm of ``decoded`` (the reference decode) with early stop,
    or the given ``(order, remaining_norm)``); sorted heaps (ids, scores)."""
    n_rows = len(item_map) if len(item_map) else p["n_items"]
    if order is None:
        order = norm_order(reference_norms(decoded)) if by_norm else table_order(n_rows)
    heap_scores, heap_ids = new_heaps(queries.shape[0], p["k"]) if heaps is None else heaps
    route = p.get("route")
    arguments = (queries, tiles, *order, n_workers, item_map, *seen_arrays(p["seen"]),
                 heap_scores, heap_ids)
    if route == "few" and tiles.kind in SCAN_KINDS:
        score_few(*arguments)
    else:
        score_tiles(*arguments, route="flat" if route == "flat" else None)
    sort_heaps(heap_scores, heap_ids)
    return heap_ids, heap_scores


def check(p, queries, decoded, ids, scores, valid=None, rtol=1e-4):
    exact = queries.astype(np.float64) @ decoded.T
    assert_topk_matches(ids, scores, exact, p["k"], p["seen"], valid, rtol=rtol)


@SETTINGS
@given(problems(), st.booleans())
def test_dense_float32(p, by_norm):
    q = values(p, (p["n_users"], p["dim"]))
    items = values(p, (p["n_items"], p["dim"]))
    ids, scores = run(float32_tiles(items), q, p, by_norm, decoded=items)
    check(p, q, items.astype(np.float64), ids, scores)


@SETTINGS
@given(problems(), st.booleans())
def test_dense_float32_ids_exact_with_integer_factors(p, by_norm):
    """Integer factors make every score exact: ids must equal the argsort reference exactly."""
    rng = p["rng"]
    q = rng.integers(-3, 4, size=(p["n_users"], p["dim"])).astype(np.float32)
    items = rng.integers(-3, 4, size=(p["n_items"], p["dim"])).astype(np.float32)
    ids, scores = run(float32_tiles(items), q, p, by_norm, decoded=items)
    ref_ids, ref_scores = topk_reference(q.astype(np.float64) @ items.T, p["k"], p["seen"])
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))


def test_half_to_float32_widens_every_bit_pattern_as_numpy():
    """The intrinsic against NumPy's float16 -> float32 over all 65536 patterns: bit for bit
    for subnormals, both zeros, infinities and every finite value; NaN for NaN (``fpext`` quiets
    signalling NaNs, NumPy keeps their payload)."""
    from numba import njit

    @njit
    def widen(bits, out):
        for i in range(bits.shape[0]):
            out[i] = half_to_float32(bits[i])
    bits = np.arange(65536, dtype=np.uint16)
    got = np.empty(65536, np.float32)
    widen(bits, got)
    expected = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(expected)
    assert nan.sum() == 2 * 1023 and np.isnan(got[nan]).all()
    np.testing.assert_array_equal(got[~nan].view(np.uint32), expected[~nan].view(np.uint32))


@SETTINGS
@given(problems(), st.booleans())
def test_float16(p, by_norm):
    q = values(p, (p["n_users"], p["dim"]))
    items = values(p, (p["n_items"], p["dim"])).astype(np.float16)
    ids, scores = run(float16_tiles(items), q, p, by_norm, decoded=items)
    check(p, q, items.astype(np.float64), ids, scores)


def affine_params(p, n, per_row, symmetric):
    rng = p["rng"]
    scale = (rng.random(n) * 0.1 + 0.01).astype(np.float32)
    offset = None if symmetric else (rng.standard_normal(n) * 0.1).astype(np.float32)
    if p["ties"]:
        scale[:] = 0.5
        if offset is not None:
            offset[:] = 0.25
    return scale, offset


@SETTINGS
@given(problems(), st.booleans(), st.booleans(), st.booleans())
def test_int8_float_users(p, per_row, symmetric, by_norm):
    codes = p["rng"].integers(-128, 128, size=(p["n_items"], p["dim"])).astype(np.int8)
    scale, offset = affine_params(p, p["n_items"] if per_row else p["dim"], per_row, symmetric)
    q = values(p, (p["n_users"], p["dim"]))
    decoded = decode_affine(codes, scale, offset, per_row)
    ids, scores = run(int8_tiles(codes, scale, offset, per_row), q, p, by_norm, decoded=decoded)
    check(p, q, decoded, ids, scores)


@SETTINGS
@given(problems(), st.booleans(), st.booleans())
def test_int8_int8_users_close_to_decoded(p, per_row, symmetric):
    """The int8 x int8 route is approximate: its scores, recomputed exactly for the ids it
    returns, must be within the user-quantisation error of the true top-k scores."""
    codes = p["rng"].integers(-128, 128, size=(p["n_items"], p["dim"])).astype(np.int8)
    scale, offset = affine_params(p, p["n_items"] if per_row else p["dim"], per_row, symmetric)
    q = values(p, (p["n_users"], p["dim"]))
    off = np.empty(0, np.float32) if offset is None else offset
    levels, user_scale, user_sum, user_const = quantise_queries(q, scale, off, per_row)
    heap_scores, heap_ids = new_heaps(q.shape[0], p["k"])
    score_int8_int8(levels, user_scale, user_sum, user_const, codes, scale, off, per_row,
                    EMPTY_MAP, *seen_arrays(p["seen"]), heap_scores, heap_ids)
    sort_heaps(heap_scores, heap_ids)
    decoded = decode_affine(codes, scale, offset, per_row)
    exact = q.astype(np.float64) @ decoded.T
    ref_ids, ref_scores = topk_reference(exact, p["k"], p["seen"])
    np.testing.assert_array_equal(heap_ids < 0, ref_ids < 0)
    present = ref_ids >= 0
    # each user's rounding moves any score by at most |u - u_hat| . |decoded row|
    folded = q if per_row else q * scale
    err = np.abs(folded - levels * user_scale[:, None])
    levels_abs = np.abs(codes.astype(np.float64)) * (scale[:, None] if per_row else 1.0)
    bound = (err.astype(np.float64) @ levels_abs.T).max(axis=1, keepdims=True) + 1e-4
    bound = np.broadcast_to(bound, present.shape)
    true_of_returned = np.take_along_axis(exact, np.maximum(heap_ids, 0), axis=1)
    assert np.all(np.abs(heap_scores - true_of_returned)[present] <= bound[present] + 1e-3)
    assert np.all(true_of_returned[present] >= ref_scores[present] - 2 * bound[present] - 1e-3)


@SETTINGS
@given(problems(), st.booleans(), st.booleans(), st.booleans())
def test_int4(p, per_row, symmetric, by_norm):
    levels = p["rng"].integers(0, 16, size=(p["n_items"], p["dim"]))
    packed = pack_int4(levels)
    np.testing.assert_array_equal(unpack_int4(packed, p["dim"]), levels)
    scale, offset = affine_params(p, p["n_items"] if per_row else p["dim"], per_row, symmetric)
    q = values(p, (p["n_users"], p["dim"]))
    decoded = decode_affine(unpack_int4(packed, p["dim"]), scale, offset, per_row)
    ids, scores = run(int4_tiles(packed, scale, offset, per_row), q, p, by_norm, decoded=decoded)
    check(p, q, decoded, ids, scores)


@SETTINGS
@given(problems(), st.integers(1, 5), st.sampled_from([1, 4, 16, 256]), st.booleans(),
       st.booleans(), st.booleans())
def test_pq(p, m_wanted, ksub, rotate, uneven, by_norm):
    """PQ over decoded tiles (tiled) or lookup tables (few users), with and without rotation,
    even or uneven sub-spaces, any ksub <= 256, by norm with early stop or in row order; codes
    of at most 16 centroids also by the 4-bit fast scan (pair tables, or in-register shuffles of
    quantised tables, over blocks of 32 items)."""
    rng = p["rng"]
    m = min(m_wanted, p["dim"])
    bounds = np.linspace(0, p["dim"], m + 1).round().astype(np.int32)
    if uneven and m > 1:
        cuts = np.sort(rng.choice(np.arange(1, p["dim"]), size=m - 1, replace=False))
        bounds = np.r_[0, cuts, p["dim"]].astype(np.int32)
    codebooks = values(p, (ksub, p["dim"]))
    codes = rng.integers(0, ksub, size=(p["n_items"], m)).astype(np.uint8)
    rotation = None
    if rotate:
        rotation = np.linalg.qr(rng.standard_normal((p["dim"], p["dim"])))[0].astype(np.float32)
    q = values(p, (p["n_users"], p["dim"]))
    rotated = q if rotation is None else np.ascontiguousarray(q @ rotation, dtype=np.float32)
    rotated_rows = decode_pq(codes, codebooks, bounds)
    np.testing.assert_allclose(pq_row_norms(codes, codebooks, bounds),
                               reference_norms(rotated_rows), rtol=1e-12)
    order = norm_order(reference_norms(rotated_rows)) if by_norm else table_order(p["n_items"])
    decoded = decode_pq(codes, codebooks, bounds, rotation)
    rtol = 1e-4 if rotation is None else 1e-3
    ids, scores = run(pq_tiles(codes, codebooks, bounds), rotated, p, None, order=order)
    check(p, q, decoded, ids, scores, rtol=rtol)
    if ksub <= 16:
        packed = pack_int4(codes)
        # the pair tables; in-register shuffles of 32 bytes and, with AVX-512BW, of 64
        routes = {(False, False), (HAS_SHUFFLE, False), (HAS_SHUFFLE, HAS_WIDE)}
        for shuffle, wide in sorted(routes):
            heap_scores, heap_ids = new_heaps(q.shape[0], p["k"])
            score_fastscan(rotated, block_layout(packed, order[0]), codebooks, bounds, *order, 2,
                           EMPTY_MAP, *seen_arrays(p["seen"]), heap_scores, heap_ids,
                           shuffle=shuffle, wide=wide)
            sort_heaps(heap_scores, heap_ids)
            check(p, q, decoded, heap_ids, heap_scores, rtol=rtol)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 150), st.integers(1, 16), st.booleans(), st.booleans(),
       st.integers(0, 2 ** 32 - 1))
def test_quantised_tables_bound_every_score_and_the_threshold_is_the_least_sum(
        n_bytes, ksub, ties, wide, seed):
    """The levels of :func:`quantise_tables` (read at the documented positions) sum to a bound
    ``[base + step * sum, base + step * (sum + n_sub))`` of every code combination's exact score,
    each level the floor of its share (up to rounding); and :func:`level_threshold` is the least level sum whose
    upper bound reaches a k-th best score (0 before the heap is full)."""
    rng = np.random.default_rng(seed)
    n_sub = 2 * n_bytes
    lut = (rng.integers(-3, 4, (n_sub, 16)) if ties else rng.standard_normal((n_sub, 16)))
    lut = lut.astype(np.float32)
    lut[:, ksub:] = 0.0
    levels = np.zeros(level_bytes(n_bytes, wide), np.uint8)
    base, step = quantise_tables(lut, ksub, levels, wide)
    assert 0 < step and n_sub * int(levels.max()) <= 65535
    columns = np.arange(n_sub) // 2
    if wide:  # pairs of 128 bytes: low tables twice, then high tables twice; an odd tail of 32
        paired = columns < n_bytes - n_bytes % 2
        at = np.where(paired, 128 * (columns // 2) + 64 * (np.arange(n_sub) % 2) +
                      32 * (columns % 2), 128 * (columns // 2) + 16 * (np.arange(n_sub) % 2))
        twice = levels[(at + 16)[paired, None] + np.arange(16)]
        np.testing.assert_array_equal(twice, levels[at[paired, None] + np.arange(16)])
    else:
        at = 32 * columns + 16 * (np.arange(n_sub) % 2)
    table = levels[at[:, None] + np.arange(16)].astype(np.int64)
    lows = lut[:, :ksub].astype(np.float64).min(axis=1)
    share = (lut[:, :ksub] - lows[:, None]) / step
    assert np.all(table[:, :ksub] <= share + 1e-6) and np.all(share < table[:, :ksub] + 1 + 1e-6)
    assert np.isclose(base, lows.sum())
    codes = rng.integers(0, ksub, (500, n_sub))
    exact = lut.astype(np.float64)[np.arange(n_sub), codes].sum(axis=1)
    sums = table[np.arange(n_sub), codes].sum(axis=1)
    slack = 1e-9 * (1 + np.abs(lut).sum())
    assert np.all(base + step * sums <= exact + slack)
    assert np.all(exact < base + step * (sums + n_sub) + slack)
    assert level_threshold(-np.inf, 0.0, base, step, n_sub) == 0
    for kth in exact[:20]:
        least = level_threshold(kth, 1e-6, base, step, n_sub)
        if least > 0:
            assert base + step * (least - 1 + n_sub) < kth - 1e-6
        assert least == 0 or base + step * (least + n_sub) >= kth - 1e-6


@settings(max_examples=12, deadline=None)
@given(st.integers(1, 6000), st.sampled_from([(8, 1), (8, 2), (16, 4), (64, 16), (300, 300)]),
       st.integers(1, 4), st.integers(1, 300), st.booleans(), st.booleans(), st.booleans(),
       st.integers(0, 2 ** 32 - 1))
def test_fastscan_over_many_blocks(n_items, dim_m, n_users, k, ties, by_norm, skewed, seed):
    """The 4-bit fast scan over catalogues of many blocks and tiles (the quantised bounds prune,
    the threshold moves during a block, the workers split the tiles), up to m=300 sub-spaces
    (fewer than 256 levels each so that 16-bit sums cannot overflow), every route, against the
    brute force over the decoded rows with seen items removed."""
    dim, m = dim_m
    rng = np.random.default_rng(seed)
    draw = (lambda shape: rng.integers(-2, 3, size=shape)) if ties else rng.standard_normal
    bounds = np.linspace(0, dim, m + 1).round().astype(np.int32)
    n_items = min(n_items, 300_000 // m)  # the reference decode loops over rows
    codebooks = draw((16, dim)).astype(np.float32)
    if skewed:  # norms spread over the centroids: the norm order stops early
        codebooks *= (1.0 + 3.0 * rng.random((16, 1))).astype(np.float32)
    codes = rng.integers(0, 16, size=(n_items, m)).astype(np.uint8)
    decoded = decode_pq(codes, codebooks, bounds)
    q = draw((n_users, dim)).astype(np.float32)
    seen = [set(rng.choice(n_items, size=int(rng.integers(0, min(n_items, 60) + 1)),
                           replace=False).tolist()) for _ in range(n_users)]
    p = dict(k=k, seen=seen)
    order = norm_order(reference_norms(decoded)) if by_norm else table_order(n_items)
    packed = pack_int4(codes)
    routes = {(False, False), (HAS_SHUFFLE, False), (HAS_SHUFFLE, HAS_WIDE)}
    for shuffle, wide in sorted(routes):
        heap_scores, heap_ids = new_heaps(n_users, k)
        score_fastscan(q, block_layout(packed, order[0]), codebooks, bounds, *order, 2,
                       EMPTY_MAP, *seen_arrays(seen), heap_scores, heap_ids, shuffle=shuffle,
                       wide=wide)
        sort_heaps(heap_scores, heap_ids)
        check(p, q, decoded, heap_ids, heap_scores, rtol=1e-4)


@SETTINGS
@given(problems(), st.floats(0.0, 1.0), st.sampled_from([np.uint8, np.uint16, np.int32]),
       st.booleans())
def test_sparse(p, density, index_dtype, by_norm):
    dense = values(p, (p["n_items"], p["dim"]))
    dense[p["rng"].random(dense.shape) > density] = 0.0
    indptr = np.zeros(p["n_items"] + 1, dtype=np.int64)
    indptr[1:] = np.cumsum((dense != 0).sum(axis=1))
    rows, cols = np.nonzero(dense)
    indices = cols.astype(index_dtype)
    data = dense[rows, cols].astype(np.float32)
    q = values(p, (p["n_users"], p["dim"]))
    decoded = decode_csr(indptr, indices, data, p["dim"])
    ids, scores = run(csr_tiles(indptr, indices, data), q, p, by_norm, decoded=decoded)
    check(p, q, decoded, ids, scores)


def test_few_users_scan_refuses_a_tile_kind_it_has_no_scorer_for():
    tiles = csr_tiles(np.zeros(2, np.int64), np.empty(0, np.int32), np.empty(0, np.float32))
    heaps = new_heaps(1, 1)
    with pytest.raises(ShapeError, match="no scorer for tile kind"):
        score_few(np.ones((1, 2), np.float32), tiles, *table_order(1), 1, EMPTY_MAP,
                  *seen_arrays([set()]), *heaps)


@SETTINGS
@given(problems(), st.floats(0.0, 1.0), st.booleans(), st.booleans())
def test_pruned_rows_with_and_without_fallback(p, keep_fraction, with_fallback, by_norm):
    """Scan only the kept rows (mapped to their ids), then the fallback for the others."""
    rng = p["rng"]
    kept = np.flatnonzero(rng.random(p["n_items"]) < keep_fraction).astype(np.int32)
    inner = values(p, (kept.size, p["dim"]))
    fallback = values(p, (p["dim"],))
    q = values(p, (p["n_users"], p["dim"]))
    heaps = new_heaps(q.shape[0], p["k"])
    seen = seen_arrays(p["seen"])
    tiles = float32_tiles(inner)
    order = norm_order(reference_norms(inner)) if by_norm else table_order(kept.size)
    score_tiles(q, tiles, *order, 2, kept, *seen, *heaps)
    decoded = np.zeros((p["n_items"], p["dim"]))
    decoded[kept] = inner
    valid = np.zeros(p["n_items"], dtype=bool)
    valid[kept] = True
    if with_fallback:
        push_fallback(q, fallback, kept, p["n_items"], *seen, *heaps)
        decoded[~valid] = fallback
        valid = None
    sort_heaps(*heaps)
    check(p, q, decoded, heaps[1], heaps[0], valid)


@SETTINGS
@given(problems(), st.booleans(), st.booleans())
def test_rerank_dense_and_int8(p, use_int8, per_row):
    """Re-ranking random candidate lists (with -1 holes) equals the brute force over them."""
    rng = p["rng"]
    n_cand = int(rng.integers(1, p["n_items"] + 3))
    cand = np.full((p["n_users"], n_cand), -1, dtype=np.int32)
    for i in range(p["n_users"]):
        take = rng.permutation(p["n_items"])[:int(rng.integers(0, min(n_cand, p["n_items"]) + 1))]
        cand[i, :take.size] = take
        rng.shuffle(cand[i])
    q = values(p, (p["n_users"], p["dim"]))
    heaps = new_heaps(q.shape[0], p["k"])
    if use_int8:
        codes = rng.integers(-128, 128, size=(p["n_items"], p["dim"])).astype(np.int8)
        scale, offset = affine_params(p, p["n_items"] if per_row else p["dim"], per_row, False)
        rerank_int8(q, codes, scale, offset, per_row, cand.astype(np.int64), cand, *heaps,
                    n_workers=2)
        decoded = decode_affine(codes, scale, offset, per_row)
    else:
        table = values(p, (p["n_items"], p["dim"]))
        rerank_dense(q, table, cand.astype(np.int64), cand, *heaps)
        decoded = table.astype(np.float64)
    sort_heaps(*heaps)
    not_candidate = [set(range(p["n_items"])) - set(c[c >= 0].tolist()) for c in cand]
    exact = q.astype(np.float64) @ decoded.T
    assert_topk_matches(heaps[1], heaps[0], exact, p["k"], not_candidate)


@st.composite
def skewed_problems(draw):
    """Early-stop problems: more rows than one item tile, row norms falling as a power of the
    rank (item r scaled by 2**-floor(a * log2(r + 1)), so values stay exact), duplicated rows
    (exact ties across ids), k small, seen rows that favour the high-norm items."""
    n_users = draw(st.integers(1, 70))
    n_items = draw(st.integers(ITEMS_PER_TILE + 1, 3 * ITEMS_PER_TILE + 7))
    dim = draw(st.integers(1, 8))
    k = draw(st.integers(1, 6))
    slope = draw(st.sampled_from([0.5, 1.0, 2.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    base = rng.integers(-3, 4, size=(n_items, dim)).astype(np.float32)
    copies = rng.integers(0, n_items, size=n_items // 4)
    base[rng.integers(0, n_items, size=copies.size)] = base[copies]
    rank = rng.permutation(n_items)
    items = base * np.float32(2.0) ** -np.floor(slope * np.log2(rank + 1.0))[:, None]
    users = rng.integers(-3, 4, size=(n_users, dim)).astype(np.float32)
    weights = 1.0 / (rank + 1.0)
    seen = [set(rng.choice(n_items, size=int(rng.integers(0, 20)), replace=False,
                           p=weights / weights.sum()).tolist()) for _ in range(n_users)]
    return dict(n_users=n_users, n_items=n_items, dim=dim, k=k, seen=seen,
                users=users, items=items.astype(np.float32))


@settings(max_examples=40, deadline=None)
@given(skewed_problems(), st.integers(1, 4), st.sampled_from(["tiled", "flat"]))
def test_early_stop_by_norm_is_exact(p, n_workers, route):
    """Scanning by descending norm and stopping by the Cauchy-Schwarz bound (per user tile, or
    per block in the flat route) returns exactly the brute-force ids and scores (every score
    here is exact in float32, so ties are exact too)."""
    p["route"] = route
    exact = p["users"].astype(np.float64) @ p["items"].T.astype(np.float64)
    ref_ids, ref_scores = topk_reference(exact, p["k"], p["seen"])
    ids, scores = run(float32_tiles(p["items"]), p["users"], p, by_norm=True,
                      n_workers=n_workers, decoded=p["items"])
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))
    codes = p["items"].astype(np.int8) if np.all(p["items"] == np.round(p["items"])) else None
    if codes is not None:
        tiles = int8_tiles(codes, np.ones(p["dim"], np.float32), None, False)
        ids, scores = run(tiles, p["users"], p, by_norm=True, decoded=p["items"])
        np.testing.assert_array_equal(ids, ref_ids)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(1, 5), st.integers(0, 2 ** 32 - 1),
       st.sampled_from(["tiled", "flat"]))
def test_rows_past_the_bound_are_never_scored(n_users, dim, k, seed, route):
    """Rows placed after a position whose ``remaining_norm`` is 0 are traps (score +1e6 for
    every user): a user whose k-th best is already positive retires there and never sees them;
    the others (here: the users that score every real row below 0) do."""
    rng = np.random.default_rng(seed)
    n_real = ITEMS_PER_TILE if route == "tiled" else FLAT_ITEMS  # the traps start a new tile
    real = rng.standard_normal((n_real, dim)).astype(np.float32)
    real[:, 0] = rng.uniform(0.5, 2.0, n_real)
    traps = np.zeros((2, dim), np.float32)
    traps[:, 0] = [1e6, -1e6]
    users = (0.1 * rng.standard_normal((n_users, dim))).astype(np.float32)
    users[:, 0] = 10 * rng.choice([-1.0, 1.0], n_users)
    items = np.vstack([real, traps])
    order = np.arange(items.shape[0], dtype=np.int32)
    remaining = np.r_[np.full(n_real, np.inf), np.zeros(2)].astype(np.float32)
    p = dict(k=k, seen=[set()] * n_users, n_items=items.shape[0], route=route)
    ids, _ = run(float32_tiles(items), users, p, by_norm=None, order=(order, remaining))
    kth = -np.sort(-(users.astype(np.float64) @ real.T), axis=1)[:, k - 1]
    saw_trap = (ids >= n_real).any(axis=1)
    np.testing.assert_array_equal(saw_trap, kth <= 0)


def test_one_signature_for_every_decoded_storage():
    """dense, fp16, int8, int4 (per row / per dimension, with and without offset), sparse with
    uint8/uint16/int32 indices and PQ share one compiled scorer; calls of other sizes, thread
    counts and read-only tables add none."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((5, 8)).astype(np.float32)
    items = rng.standard_normal((40, 8)).astype(np.float32)
    p = dict(k=3, n_items=40, seen=[{1, 2}, set(), {0}, set(range(40)), {39}])
    codes = rng.integers(-128, 128, size=(40, 8)).astype(np.int8)
    scale = np.ones(40, np.float32)
    packed = pack_int4(rng.integers(0, 16, size=(40, 8)))
    indptr = np.arange(0, 41 * 8, 8, dtype=np.int64)
    indices = np.tile(np.arange(8, dtype=np.int32), 40)
    every = [float32_tiles(items), float16_tiles(items.astype(np.float16)),
             int8_tiles(codes, scale, scale, True), int8_tiles(codes, scale[:8], None, False),
             int4_tiles(packed, scale, None, True), csr_tiles(indptr, indices, items.ravel()),
             csr_tiles(indptr, indices.astype(np.uint8), items.ravel()),
             csr_tiles(indptr, indices.astype(np.uint16), items.ravel()),
             pq_tiles(rng.integers(0, 4, size=(40, 2)).astype(np.uint8), items[:4],
                      np.array([0, 3, 8], np.int32))]
    run(every[0], q, p, by_norm=True, decoded=items)
    run(every[0], q, dict(p, route="flat"), by_norm=True, decoded=items)
    assert len(scan_worker.signatures) == 1
    assert len(flat_worker.signatures) == 1
    for tiles in every:
        for by_norm in (True, False):
            run(tiles, q, p, by_norm, decoded=items)
            run(tiles, q, dict(p, route="flat"), by_norm, decoded=items)
            run(tiles, q[:3], dict(k=4, n_items=40, seen=p["seen"][:3]), by_norm, decoded=items)
            frozen_items = items.copy()
            frozen_items.flags.writeable = False
            run(float32_tiles(frozen_items), q[:2], dict(k=2, n_items=40, seen=p["seen"][:2]),
                by_norm, decoded=items, n_workers=1)
    assert len(scan_worker.signatures) == 1
    assert len(flat_worker.signatures) == 1
