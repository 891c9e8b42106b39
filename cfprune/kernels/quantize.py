"""Encoding kernels of the compressors: affine levels of a float32 table and nearest PQ centroids.

Both run over row ranges on the threads of :mod:`.pool` (``nogil``), one pass over the input, no
float64 copy of the table:

- :func:`affine_levels`: ``clip(rint((x - offset) / scale), qmin, qmax)`` computed in float64
  per element (the exact arithmetic of the NumPy formulation it replaces), scale and offset per
  row or per dimension;
- :func:`nearest_centroids`: per sub-space the centroid of least squared distance
  ``||c||^2 - 2 x_s . c`` (float64, ties to the lower code), the encoder of
  :mod:`cfprune.compression.pq`, with the centroids transposed so that the distances to all
  centroids of a row run in SIMD lanes;
- :func:`kmeans_subspaces`: Lloyd's k-means (k-means++ start or a warm start) of every
  sub-space, the sub-spaces spread over the threads, assignment by the same distance kernel.
"""

import numpy as np
from numba import njit

from cfprune.kernels.pool import frozen, run_blocks, run_workers, thread_count


@njit(cache=True, nogil=True)
def affine_rows(start, stop, x, scale, offset, per_row, qmin, qmax, out):
    """``out[start:stop]`` int16 levels of ``x[start:stop]`` float32 (see the module)."""
    dim = x.shape[1]
    for i in range(start, stop):
        for t in range(dim):
            j = i if per_row else t
            level = np.rint((np.float64(x[i, t]) - offset[j]) / scale[j])
            out[i, t] = np.int16(min(max(level, qmin), qmax))


def affine_levels(x, scale, offset, per_row, qmin, qmax):
    """int16 [n, d]: the affine levels of ``x`` float32 [n, d] for ``scale``/``offset``
    (float64, [n] per row or [d] per dimension), clipped to ``[qmin, qmax]``."""
    x = frozen(x, np.float32)
    out = np.empty(x.shape, np.int16)
    args = (x, frozen(scale, np.float64), frozen(offset, np.float64), bool(per_row),
            float(qmin), float(qmax), out)
    run_blocks(lambda start, stop: affine_rows(start, stop, *args), x.shape[0],
               thread_count(None), 4096)
    return out


@njit(cache=True, nogil=True, fastmath={"nnan", "nsz", "reassoc", "contract"})
def _distances(x, i, lo, hi, centroids_t, squares, dist):
    """``dist[c]`` = ``||c||^2 - 2 x_s . c`` for the sub-space columns ``lo:hi`` of row ``i``
    (``centroids_t`` float64 [d, ksub], the centroids transposed: the loop over centroids runs in
    SIMD lanes); returns the smallest distance."""
    ksub = dist.shape[0]
    for c in range(ksub):
        dist[c] = squares[c]
    for t in range(lo, hi):
        weight = -2.0 * np.float64(x[i, t])
        for c in range(ksub):
            dist[c] += weight * centroids_t[t, c]
    least = dist[0]
    for c in range(1, ksub):
        least = min(least, dist[c])
    return least


@njit(cache=True, nogil=True)
def _nearest(x, i, lo, hi, centroids_t, squares, dist):
    """(code, distance) of the nearest centroid (first of equals) of row ``i``'s sub-space."""
    least = _distances(x, i, lo, hi, centroids_t, squares, dist)
    for c in range(dist.shape[0]):
        if dist[c] == least:
            return c, least
    return 0, least


@njit(cache=True, nogil=True)
def nearest_rows(start, stop, x, centroids_t, bounds, squares, out):
    """``out[start:stop]`` uint8 [., m]: the nearest centroid per sub-space of the rows."""
    m = bounds.shape[0] - 1
    dist = np.empty(centroids_t.shape[1], np.float64)
    for i in range(start, stop):
        for s in range(m):
            out[i, s] = _nearest(x, i, bounds[s], bounds[s + 1], centroids_t, squares[s],
                                 dist)[0]


def _squares(centroids_t, bounds):
    m = bounds.shape[0] - 1
    squares = np.empty((m, centroids_t.shape[1]), np.float64)
    for s in range(m):
        part = centroids_t[bounds[s]:bounds[s + 1]]
        squares[s] = (part * part).sum(0)
    return squares


def nearest_centroids(x, codebooks, bounds):
    """uint8 [n, m]: per sub-space the nearest of the ``codebooks`` float32 [ksub, d] centroids
    to the rows of ``x`` float32 [n, d] (squared L2, ties to the lower code)."""
    x = frozen(x, np.float32)
    centroids_t = frozen(np.asarray(codebooks, np.float64).T, np.float64)
    bounds = frozen(bounds, np.int32)
    squares = frozen(_squares(centroids_t, bounds), np.float64)
    out = np.empty((x.shape[0], bounds.shape[0] - 1), np.uint8)
    run_blocks(lambda start, stop: nearest_rows(start, stop, x, centroids_t, bounds, squares,
                                                out),
               x.shape[0], thread_count(None), 1024)
    return out


@njit(cache=True, nogil=True)
def kmeans_subspace(x, lo, hi, centroids_t, iters, first, draws, seeded):
    """Lloyd's k-means of the columns ``lo:hi`` of ``x`` float32 [n, d] into ``centroids_t``
    float64 [d, ksub] (rows ``lo:hi`` written). Unless ``seeded`` (``centroids_t`` holds the
    start), k-means++ picks the start: row ``first``, then each next centre with probability
    proportional to the squared distance to the nearest centre so far (``draws`` float64
    [ksub] uniform in [0, 1)). An emptied cluster moves to the row farthest from its centre.
    Stops after ``iters`` iterations or when no code changes."""
    n = x.shape[0]
    ksub = centroids_t.shape[1]
    if not seeded:
        nearest = np.empty(n, np.float64)
        for t in range(lo, hi):
            centroids_t[t, 0] = x[first, t]
        for i in range(n):
            acc = 0.0
            for t in range(lo, hi):
                diff = np.float64(x[i, t]) - centroids_t[t, 0]
                acc += diff * diff
            nearest[i] = acc
        for c in range(1, ksub):
            total = nearest.sum()
            pick = n - 1
            if total > 0:
                target = draws[c] * total
                running = 0.0
                for i in range(n):
                    running += nearest[i]
                    if running > target:
                        pick = i
                        break
            else:
                pick = min(c, n - 1)
            for t in range(lo, hi):
                centroids_t[t, c] = x[pick, t]
            for i in range(n):
                acc = 0.0
                for t in range(lo, hi):
                    diff = np.float64(x[i, t]) - centroids_t[t, c]
                    acc += diff * diff
                nearest[i] = min(nearest[i], acc)
    codes = np.full(n, -1, np.int64)
    distance = np.empty(n, np.float64)
    dist = np.empty(ksub, np.float64)
    squares = np.empty(ksub, np.float64)
    sums = np.empty((hi - lo, ksub), np.float64)
    counts = np.empty(ksub, np.int64)
    for _ in range(iters):
        for c in range(ksub):
            acc = 0.0
            for t in range(lo, hi):
                acc += centroids_t[t, c] * centroids_t[t, c]
            squares[c] = acc
        changed = 0
        for i in range(n):
            code, least = _nearest(x, i, lo, hi, centroids_t, squares, dist)
            changed += code != codes[i]
            codes[i] = code
            distance[i] = least
        if changed == 0:
            break
        sums[:] = 0.0
        counts[:] = 0
        for i in range(n):
            counts[codes[i]] += 1
            for t in range(lo, hi):
                sums[t - lo, codes[i]] += x[i, t]
        for c in range(ksub):
            if counts[c] == 0:
                far = np.argmax(distance)
                distance[far] = -np.inf
                for t in range(lo, hi):
                    centroids_t[t, c] = x[far, t]
            else:
                for t in range(lo, hi):
                    centroids_t[t, c] = sums[t - lo, c] / counts[c]


def kmeans_subspaces(x, bounds, ksub, iters, seed, init=None, n_workers=None):
    """float32 [ksub, d]: k-means centroids of every sub-space of ``x`` float32 [n, d]
    (``n >= ksub``), sub-spaces spread over the threads; ``init`` float32 [ksub, d] warm-starts
    them, else k-means++ seeded by ``seed + s`` for sub-space ``s``."""
    x = frozen(x, np.float32)
    n, d = x.shape
    m = len(bounds) - 1
    centroids_t = np.zeros((d, ksub), np.float64)
    seeded = init is not None
    if seeded:
        centroids_t[:] = np.asarray(init, np.float64).T
    starts, draws = [], []
    for s in range(m):
        rng = np.random.default_rng(seed + s)
        starts.append(int(rng.integers(n)))
        draws.append(rng.random(ksub))
    workers = max(1, min(m, thread_count(n_workers)))

    def work(worker):
        for s in range(worker, m, workers):
            kmeans_subspace(x, int(bounds[s]), int(bounds[s + 1]), centroids_t, int(iters),
                            starts[s], draws[s], seeded)
    run_workers(work, workers)
    return np.ascontiguousarray(centroids_t.T, dtype=np.float32)
