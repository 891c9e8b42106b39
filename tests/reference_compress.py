"""Brute-force NumPy references for the compression tests, written independently of
cfprune.compression: plain loops and dense linear algebra, no shared helpers."""

import numpy as np


def unpack_nibbles(packed, dim):
    """int [n, dim] levels from int4 bytes: dimension 2j low nibble, 2j+1 high nibble."""
    n = packed.shape[0]
    out = np.zeros((n, dim), np.int64)
    for i in range(n):
        for j in range(dim):
            byte = int(packed[i, j // 2])
            out[i, j] = (byte & 15) if j % 2 == 0 else (byte >> 4)
    return out


def affine_decode(levels, scale, offset, axis):
    """float64 scale * q + offset with one scale per row or per column, by loops."""
    n, d = levels.shape
    out = np.zeros((n, d))
    for i in range(n):
        for j in range(d):
            k = i if axis == "row" else j
            out[i, j] = float(scale[k]) * levels[i, j] + (0.0 if offset is None else
                                                          float(offset[k]))
    return out


def pq_lookup(codes, codebooks, bounds, rotation=None):
    """float64 [n, d]: row i is, per sub-space s, codebooks[codes[i, s]] on its columns, then
    multiplied by rotation.T."""
    n, m = codes.shape
    d = codebooks.shape[1]
    out = np.zeros((n, d))
    for i in range(n):
        for s in range(m):
            for j in range(int(bounds[s]), int(bounds[s + 1])):
                out[i, j] = codebooks[int(codes[i, s]), j]
    if rotation is not None:
        out = out @ rotation.astype(np.float64).T
    return out


def nearest_codes(x_rot, codebooks, bounds):
    """int [n, m]: the nearest centroid per sub-space by brute force over every centroid."""
    n, m = x_rot.shape[0], len(bounds) - 1
    out = np.zeros((n, m), np.int64)
    for s in range(m):
        lo, hi = int(bounds[s]), int(bounds[s + 1])
        for i in range(n):
            dist = [np.sum((x_rot[i, lo:hi].astype(np.float64) - codebooks[c, lo:hi]) ** 2)
                    for c in range(codebooks.shape[0])]
            out[i, s] = int(np.argmin(dist))
    return out


def anisotropic_loss_one(x, x_hat, eta):
    """h_par ||r_par||^2 + h_perp ||r_perp||^2 with h_perp = 1, h_par = eta, for one row."""
    x = np.asarray(x, np.float64)
    r = x - np.asarray(x_hat, np.float64)
    sq = x @ x
    r_par = (r @ x) / sq * x if sq > 0 else np.zeros_like(x)
    r_perp = r - r_par
    return eta * (r_par @ r_par) + r_perp @ r_perp


def best_rank_approximation(u, v, r):
    """float64 [n_u, n_v]: the rank-r truncated SVD of the dense score matrix u v^T."""
    s_mat = np.asarray(u, np.float64) @ np.asarray(v, np.float64).T
    p, s, qt = np.linalg.svd(s_mat, full_matrices=False)
    return (p[:, :r] * s[:r]) @ qt[:r]


def items_svd_scores(u, v, r):
    """float64 [n_u, n_v]: u times the rank-r truncated SVD of v, transposed."""
    p, s, qt = np.linalg.svd(np.asarray(v, np.float64), full_matrices=False)
    v_r = (p[:, :r] * s[:r]) @ qt[:r]
    return np.asarray(u, np.float64) @ v_r.T


def top_fraction(scores, n_keep):
    """sorted list of the n_keep ids of largest score, ties to the lower id (Python sort)."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:n_keep])


def column_counts(matrix):
    """list of the number of stored entries per column, by walking the COO triples."""
    coo = matrix.tocoo()
    counts = [0] * matrix.shape[1]
    for j in coo.col:
        counts[int(j)] += 1
    return np.array(counts)


def saved_table_bytes(path):
    """Sum of nbytes of every users/, items/ and rerank/ array in a saved .npz."""
    total = 0
    with np.load(path, allow_pickle=False) as npz:
        for key in npz.files:
            if key.split("/")[0] in ("users", "items", "rerank"):
                total += npz[key].nbytes
    return total


def topk_overlap(u, v_ref, v_var, k):
    """Mean |top-k(u v_var^T) ∩ top-k(u v_ref^T)| / k, ties to lower id, by Python sorting."""
    total = 0
    for row in range(u.shape[0]):
        a = u[row] @ v_ref.T
        b = u[row] @ v_var.T
        top_a = set(sorted(range(len(a)), key=lambda i: (-a[i], i))[:k])
        top_b = set(sorted(range(len(b)), key=lambda i: (-b[i], i))[:k])
        total += len(top_a & top_b)
    return total / (k * u.shape[0])


def unpack_crumbs(packed, dim):
    """int [n, dim] levels from int2 bytes: dimension 4j + t in bits 2t..2t+1 of byte j."""
    n = packed.shape[0]
    out = np.zeros((n, dim), np.int64)
    for i in range(n):
        for j in range(dim):
            out[i, j] = (int(packed[i, j // 4]) >> (2 * (j % 4))) & 3
    return out


def reach_items(u, v, seen_dense, k):
    """Sorted ids of the items in some user's top-k of ``u v^T`` (users with a seen item only,
    seen items skipped, ties to the lower id), by full sort per user."""
    scores = u.astype(np.float64) @ v.astype(np.float64).T
    kept = set()
    for i in range(u.shape[0]):
        if not seen_dense[i].any():
            continue
        eligible = [j for j in range(v.shape[0]) if not seen_dense[i, j]]
        eligible.sort(key=lambda j: (-scores[i, j], j))
        kept.update(eligible[:k])
    return np.array(sorted(kept), dtype=np.int64)
