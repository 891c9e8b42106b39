"""The closed-form ALS user step, batched: the numeric core of every fold-in in the package.

For user u with items I and confidences ``c`` (``alpha * r``, ``implicit``'s convention) the
exact minimiser of the implicit-ALS loss with the item table ``V`` fixed (Hu, Koren and Volinsky
2008) solves ``(G + V_I^T diag(c - 1) V_I) x = V_I^T c`` with ``G = V^T V + reg I`` (the Gram
matrix of the whole item table, shared by every user).

The per-user corrections ``V_I^T diag(c - 1) V_I`` are stacked float32 matrix products (BLAS)
over users grouped by their number of items (rounded up to four lengths per octave, the padding
weighted 0); one Numba kernel (:func:`cholesky_solve`) then adds ``G`` in float64, factors each
``d x d`` system by LAPACK's Cholesky and solves the two triangles. Measured at d=64 on ML-1M
(about 70 items per user), the matrix products take about half the time and the factorisations
the other half; a loop of per-user NumPy solves is about three times slower, a stacked
``np.linalg.solve`` (LU) a third slower, and a Numba kernel that accumulates and factors each
system in its own loops slower still (``benchmarks/bench_whole_model.py`` prints the serving
cost per user).
"""

from __future__ import annotations

import numba
import numpy as np

from ..errors import ShapeError
from .pool import frozen

# bytes of the stacked float32 item rows of one group of users, and of its float64 systems
BLOCK_BYTES = 1 << 24


def item_gram(blocks, dim, regularization):
    """float64 [dim, dim]: ``V^T V + regularization * I`` over the row blocks of ``V``
    (an iterable of float arrays [m, dim], e.g. a table decoded in chunks)."""
    gram = np.zeros((dim, dim), np.float64)
    for block in blocks:
        b = np.asarray(block, dtype=np.float64)
        gram += b.T @ b
    gram[np.diag_indices(dim)] += float(regularization)
    return gram


def padded_lengths(counts):
    """int64 [n]: each count rounded up to one of four lengths per octave (at least 4; 0 stays
    0), so that users of similar history lengths share one stacked product."""
    counts = np.asarray(counts, dtype=np.int64)
    lengths = np.maximum(counts, 4)
    shift = np.maximum(np.floor(np.log2(lengths)).astype(np.int64) - 2, 0)
    lengths = ((lengths + (1 << shift) - 1) >> shift) << shift
    return np.where(counts > 0, lengths, 0)


def solve_users(gram, vectors, indptr, indices, confidence):
    """float32 [n, d]: the ALS user step for the ``n`` users of a CSR history.

    Parameters
    ----------
    gram : float64 [d, d]
        ``V^T V + reg I`` of the item table (:func:`item_gram`).
    vectors : float [m, d]
        The item rows the history refers to (row ``indices[p]`` of it is the item of entry p).
    indptr : int [n + 1]; indices : int [nnz]
        The users' entries (CSR structure, one row per user).
    confidence : float [nnz]
        ``alpha * r`` per entry.

    A user without entries gets the zero vector."""
    d = gram.shape[0]
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    confidence = np.asarray(confidence, dtype=np.float32)
    rows = np.asarray(vectors, dtype=np.float32)
    counts = np.diff(indptr)
    out = np.zeros((counts.shape[0], d), np.float32)
    lengths = padded_lengths(counts)
    order = np.argsort(lengths, kind="stable")
    sorted_lengths = lengths[order]
    first = np.searchsorted(sorted_lengths, 1)
    groups = np.flatnonzero(np.diff(sorted_lengths[first:], prepend=-1)) + first
    ends = np.append(groups[1:], sorted_lengths.shape[0])
    for start, end in zip(groups, ends):
        length = int(sorted_lengths[start])
        per = max(1, min(BLOCK_BYTES // (4 * length * d), BLOCK_BYTES // (8 * d * d)))
        for lo in range(start, end, per):
            users = order[lo:min(end, lo + per)]
            out[users] = _solve_group(gram, rows, indptr, indices, confidence, users, length)
    return out


def _solve_group(gram, rows, indptr, indices, confidence, users, length):
    """float32 [len(users), d]: the step for users whose entry count is at most ``length``."""
    position = np.arange(length)
    begin, count = indptr[users][:, None], (indptr[users + 1] - indptr[users])[:, None]
    present = position < count
    entry = np.where(present, begin + position, begin)      # padding repeats the first entry
    x = rows[indices[entry]]                                 # float32 [b, length, d]
    c = np.where(present, confidence[entry], 0.0).astype(np.float32)
    weight = np.where(present, c - 1.0, 0.0).astype(np.float32)
    corrections = np.matmul((x * weight[:, :, None]).transpose(0, 2, 1), x)
    rhs = np.matmul(c[:, None, :], x)[:, 0, :]
    out = np.empty((users.shape[0], gram.shape[0]), np.float32)
    try:
        cholesky_solve(frozen(corrections, np.float32), frozen(gram, np.float64),
                       frozen(rhs, np.float32), out)
    except np.linalg.LinAlgError:
        raise ShapeError("fold-in: a user's normal equations are not positive definite "
                         "(regularization 0, or confidences alpha * r below 1?); use a positive "
                         "regularization and alpha * r >= 1") from None
    return out


@numba.njit(cache=True, nogil=True)
def cholesky_solve(corrections, gram, rhs, out):
    """``out[u] = (gram + corrections[u])^-1 rhs[u]`` for every u: float32 [b, d, d] and
    float64 [d, d] systems, float32 [b, d] right-hand sides, float32 [b, d] out; each system is
    formed in float64 and factored by LAPACK's Cholesky (``np.linalg.cholesky``, which raises
    LinAlgError when one is not positive definite)."""
    d = gram.shape[0]
    a = np.empty((d, d), np.float64)
    y = np.empty(d, np.float64)
    for u in range(corrections.shape[0]):
        for i in range(d):
            for j in range(d):
                a[i, j] = gram[i, j] + corrections[u, i, j]
        lower = np.linalg.cholesky(a)
        for i in range(d):
            s = np.float64(rhs[u, i])
            for j in range(i):
                s -= lower[i, j] * y[j]
            y[i] = s / lower[i, i]
        for i in range(d - 1, -1, -1):
            s = y[i]
            for j in range(i + 1, d):
                s -= lower[j, i] * y[j]
            y[i] = s / lower[i, i]
        for i in range(d):
            out[u, i] = y[i]
