"""Brute-force NumPy references for the retrieval kernels, written independently of cfprune.

Decoders follow the array layouts of docs/architecture.md; the top-k is a full sort with the tie
rule (higher score first, then lower item id), seen and invalid items removed, padded with id -1
and score -inf.
"""

import numpy as np


def decode_affine(levels, scale, offset, per_row):
    """float64 [n, d]: ``scale * levels + offset`` broadcast per row or per dimension."""
    levels = levels.astype(np.float64)
    scale = scale.astype(np.float64)
    offset = np.zeros_like(scale) if offset is None else offset.astype(np.float64)
    if per_row:
        return levels * scale[:, None] + offset[:, None]
    return levels * scale[None, :] + offset[None, :]


def unpack_int4(packed, dim):
    """int levels [n, dim] from bytes holding dimension 2j low and 2j+1 high."""
    n, n_bytes = packed.shape
    levels = np.zeros((n, 2 * n_bytes), dtype=np.int64)
    for j in range(n_bytes):
        levels[:, 2 * j] = packed[:, j] % 16
        levels[:, 2 * j + 1] = packed[:, j] // 16
    return levels[:, :dim]


def pack_int4(levels):
    """uint8 [n, ceil(d/2)] packing of levels in [0, 15]."""
    n, d = levels.shape
    packed = np.zeros((n, (d + 1) // 2), dtype=np.uint8)
    for t in range(d):
        packed[:, t // 2] += (levels[:, t] * (16 if t % 2 else 1)).astype(np.uint8)
    return packed


def decode_pq(codes, codebooks, bounds, rotation=None):
    """float64 [n, d] of a product-quantised table."""
    n, m = codes.shape
    out = np.zeros((n, codebooks.shape[1]))
    for s in range(m):
        lo, hi = bounds[s], bounds[s + 1]
        for i in range(n):
            out[i, lo:hi] = codebooks[codes[i, s], lo:hi]
    if rotation is not None:
        out = out @ rotation.astype(np.float64).T
    return out


def decode_csr(indptr, indices, data, dim):
    """float64 [n, dim] of a CSR table."""
    n = len(indptr) - 1
    out = np.zeros((n, dim))
    for i in range(n):
        for p in range(indptr[i], indptr[i + 1]):
            out[i, int(indices[p])] = data[p]
    return out


def topk_reference(scores, k, seen=None, valid=None):
    """(ids int32 [n, k], scores float64 [n, k]) by full sort with the tie rule.

    ``scores`` [n, n_items]; ``seen`` a list of per-user item-id collections (or None);
    ``valid`` bool [n_items] (or None).
    """
    n, n_items = scores.shape
    ids = np.full((n, k), -1, dtype=np.int32)
    best = np.full((n, k), -np.inf)
    for i in range(n):
        eligible = np.ones(n_items, dtype=bool) if valid is None else valid.copy()
        if seen is not None:
            eligible[np.asarray(list(seen[i]), dtype=np.int64)] = False
        items = np.flatnonzero(eligible)
        order = np.lexsort((items, -scores[i, items]))[:k]
        ids[i, :order.size] = items[order]
        best[i, :order.size] = scores[i, items[order]]
    return ids, best


def assert_topk_matches(ids, scores, exact_scores, k, seen=None, valid=None, rtol=1e-4):
    """Check a kernel's (ids, scores) against the brute force on ``exact_scores`` [n, n_items].

    Scores must agree within ``rtol`` of the row's largest magnitude, every returned id must be
    eligible and score (exactly computed) what was returned, pads must sit where the reference
    pads, and ids must equal the reference wherever the reference score is separated from its
    neighbours (ties and near-ties may order either way).
    """
    ref_ids, ref_scores = topk_reference(exact_scores, k + 1, seen, valid)
    n = exact_scores.shape[0]
    assert ids.shape == (n, k) and scores.shape == (n, k)
    assert ids.dtype == np.int32 and scores.dtype == np.float32
    for i in range(n):
        finite = np.isfinite(exact_scores[i])
        scale = max(1.0, float(np.abs(exact_scores[i][finite]).max(initial=0.0)))
        tol = rtol * scale
        pad = ref_ids[i, :k] < 0
        np.testing.assert_array_equal(ids[i] < 0, pad, err_msg=f"padding of row {i}")
        assert np.all(np.isneginf(scores[i, pad]))
        got = ids[i, ~pad]
        assert len(set(got.tolist())) == got.size, f"duplicate ids in row {i}: {got}"
        if seen is not None:
            assert not set(got.tolist()) & set(np.asarray(list(seen[i])).tolist())
        if valid is not None:
            assert valid[got].all()
        np.testing.assert_allclose(scores[i, ~pad], ref_scores[i, :k][~pad], rtol=0, atol=tol)
        np.testing.assert_allclose(exact_scores[i, got], scores[i, ~pad], rtol=0, atol=tol)
        ref_row = ref_scores[i]
        for p in np.flatnonzero(~pad):
            neighbours = [ref_row[q] for q in (p - 1, p + 1) if 0 <= q < k + 1]
            if all(abs(ref_row[p] - s) > 2 * tol for s in neighbours):
                assert ids[i, p] == ref_ids[i, p], f"row {i} position {p}"
