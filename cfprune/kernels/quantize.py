"""Encoding kernels of the compressors: affine levels of a float32 table and nearest PQ centroids.

Both run over row ranges on the threads of :mod:`.pool` (``nogil``), one pass over the input, no
float64 copy of the table:

- :func:`affine_levels`: ``clip(rint((x - offset) / scale), qmin, qmax)`` computed in float64
  per element (the exact arithmetic of the NumPy formulation it replaces), scale and offset per
  row or per dimension;
- :func:`nearest_centroids`: per sub-space the centroid of least squared distance (ties to the
  lower code), the encoder of :mod:`cfprune.compression.pq`, rows spread over the threads;
- :func:`kmeans_subspaces`: Lloyd's k-means (k-means++ start or a warm start) of every
  sub-space, the sub-spaces spread over the threads, assignment by the same nearest-centroid
  step.

The nearest-centroid step (:func:`_nearest`) computes the float32 distances
``||x_s||^2 + ||c||^2 - 2 x_s . c`` of a row to all ``ksub`` centroids at once (the centroids
transposed, so that the loop over centroids runs in SIMD lanes) and takes the least as an integer
minimum of their bit patterns (non-negative float32 values order as their int32 bits; LLVM
vectorises integer minimum reductions, not float ones). When another centroid lies within the
float32 rounding bound of the least distance (two distances rounded below zero, whose bits order
backwards, always are), the row is decided again in float64 over all centroids
(:func:`_nearest_exact`), so the codes are those of exact arithmetic on the stored float32
centroids, whatever the blocks or threads. faiss computes these distances as a BLAS GEMM of a
block of rows against the centroids: with ``d / m = 4`` columns per sub-space that GEMM has an
inner dimension of 4, where sgemm runs far below its peak (one thread, 65,536 rows x 256
centroids x 4 columns: 28 ms for sgemm over blocks of 256 rows + argmin, 9 ms for this step).
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


FASTMATH = {"nnan", "ninf", "nsz", "contract", "reassoc"}
# |float32 distance - exact distance| <= (dsub + 3) * 2^-24 * (||c||^2 + ||x||^2 + 2 ||x|| ||c||)
# to first order; a runner-up within twice that (rounded up to 4 (dsub + 2)) is decided in float64
ROUNDING = 4.0 * 2.0 ** -24


@njit(cache=True, nogil=True)
def _nearest_exact(x, i, lo, hi, centroids_t):
    """(code, squared distance) of the nearest centroid of ``x[i, lo:hi]`` in float64 over
    every centroid (``centroids_t`` float32 [., ksub], rows ``lo:hi``; first of equals)."""
    best, least = 0, np.inf
    for c in range(centroids_t.shape[1]):
        acc = 0.0
        for t in range(lo, hi):
            diff = np.float64(x[i, t]) - np.float64(centroids_t[t, c])
            acc += diff * diff
        if acc < least:
            best, least = c, acc
    return best, least


@njit(cache=True, nogil=True, fastmath=FASTMATH)
def _nearest(x, i, lo, hi, centroids_t, squares, reach, dist, keys):
    """(code, float64 squared distance) of the centroid nearest to ``x[i, lo:hi]`` (first of
    equals): ``centroids_t`` float32 [., ksub] (rows ``lo:hi``), ``squares`` float32 [ksub]
    their squared norms, ``reach`` float32 [2] = (max ||c||^2, 2 max ||c||); ``dist`` float32
    [ksub + 1] scratch and ``keys`` its int32 view (see the module docstring; the last slot turns
    the least key back into its float)."""
    ksub = centroids_t.shape[1]
    norm = np.float32(0.0)
    for t in range(lo, hi):
        norm += x[i, t] * x[i, t]
    weight = np.float32(-2.0) * x[i, lo]
    for c in range(ksub):
        dist[c] = squares[c] + norm + weight * centroids_t[lo, c]
    for t in range(lo + 1, hi):
        weight = np.float32(-2.0) * x[i, t]
        for c in range(ksub):
            dist[c] += weight * centroids_t[t, c]
    # a distance rounded below zero has a negative key, and the least key then belongs to the
    # negative distance nearest zero: every more negative one lies below the margin, so the row
    # is decided in float64
    least = np.int32(0x7F800000)  # the bits of +inf
    for c in range(ksub):
        least = min(least, keys[c])
    keys[ksub] = least
    margin = dist[ksub] + np.float32(ROUNDING * (hi - lo + 2)) * (
        reach[0] + norm + reach[1] * np.sqrt(norm))
    code = ksub
    close = 0
    for c in range(ksub):
        code = min(code, c if keys[c] == least else ksub)
        close += np.int32(dist[c] <= margin)
    if close > 1:
        return _nearest_exact(x, i, lo, hi, centroids_t)
    acc = 0.0
    for t in range(lo, hi):
        diff = np.float64(x[i, t]) - np.float64(centroids_t[t, code])
        acc += diff * diff
    return code, acc


@njit(cache=True, nogil=True)
def nearest_rows(start, stop, x, centroids_t, bounds, squares, reach, codes, errors):
    """``codes[start:stop]`` uint8 [., m]: the nearest centroid per sub-space of the rows of
    ``x`` float32 [n, d]; ``errors[start:stop]`` float64: their squared distance summed over the
    sub-spaces (``squares`` float32 [m, ksub], ``reach`` float32 [m, 2], see :func:`_nearest`)."""
    m = bounds.shape[0] - 1
    dist = np.empty(centroids_t.shape[1] + 1, np.float32)
    keys = dist.view(np.int32)
    for i in range(start, stop):
        total = 0.0
        for s in range(m):
            # int64 bounds, as k-means passes them: one compiled _nearest for both
            code, error = _nearest(x, i, np.int64(bounds[s]), np.int64(bounds[s + 1]),
                                   centroids_t, squares[s], reach[s], dist, keys)
            codes[i, s] = code
            total += error
        errors[i] = total


def nearest_centroids(x, codebooks, bounds):
    """(codes uint8 [n, m], errors float64 [n]): per sub-space the nearest of the ``codebooks``
    float32 [ksub, d] centroids to the rows of ``x`` float32 [n, d] (squared L2, ties to the
    lower code), and each row's squared distance to its reconstruction."""
    x = frozen(x, np.float32)
    codebooks = np.asarray(codebooks, np.float32)
    bounds = frozen(bounds, np.int32)
    m = bounds.shape[0] - 1
    squares = np.empty((m, codebooks.shape[0]), np.float32)
    reach = np.empty((m, 2), np.float32)
    for s in range(m):
        part = codebooks[:, bounds[s]:bounds[s + 1]].astype(np.float64)
        squares[s] = (part * part).sum(1)
        reach[s] = squares[s].max(), 2.0 * np.sqrt(squares[s].max())
    # writeable like the arrays k-means makes for the same step: one compiled _nearest for both
    centroids_t = np.array(codebooks.T, np.float32, order="C")
    codes = np.empty((x.shape[0], m), np.uint8)
    errors = np.empty(x.shape[0], np.float64)
    run_blocks(lambda start, stop: nearest_rows(start, stop, x, centroids_t, bounds, squares,
                                                reach, codes, errors),
               x.shape[0], thread_count(None), 1024)
    return codes, errors


SEEDING_BLOCK = 256


@njit(cache=True, nogil=True, fastmath={"nnan", "nsz", "contract", "reassoc"})
def _kmeans_plus_plus(x, centroids, first, draws):
    """The k-means++ start of the rows of ``x`` float32 [n, dsub] into ``centroids`` float64
    [ksub, dsub]: row ``first``, then each next centre the row where the running sum of the
    squared distances to the nearest centre so far first exceeds ``draws[c]`` (float64 [ksub],
    uniform in [0, 1)) times their total (the row of index ``c`` when the total is 0). The
    distances run over blocks of rows, the columns transposed (SIMD lanes over rows), and the
    running sum over the blocks' totals before the rows of one block."""
    n, dsub = x.shape
    ksub = centroids.shape[0]
    columns = np.empty((dsub, n), np.float64)
    for i in range(n):
        for t in range(dsub):
            columns[t, i] = x[i, t]
    nearest = np.full(n, 1.0e300)
    block = np.empty(SEEDING_BLOCK, np.float64)
    n_blocks = (n + SEEDING_BLOCK - 1) // SEEDING_BLOCK
    block_totals = np.zeros(n_blocks, np.float64)
    total = 0.0
    for c in range(ksub):
        pick = first
        if c > 0:
            pick = n - 1
            if total > 0:
                # the block where the running sum passes the target, then the row within it
                target = draws[c] * total
                running = 0.0
                b = 0
                while b < n_blocks - 1 and running + block_totals[b] <= target:
                    running += block_totals[b]
                    b += 1
                for i in range(b * SEEDING_BLOCK, n):
                    running += nearest[i]
                    if running > target:
                        pick = i
                        break
            else:
                pick = min(c, n - 1)
        for t in range(dsub):
            centroids[c, t] = x[pick, t]
        total = 0.0
        for b in range(n_blocks):
            start = b * SEEDING_BLOCK
            size = min(n, start + SEEDING_BLOCK) - start
            block[:size] = 0.0
            for t in range(dsub):
                centre = centroids[c, t]
                for j in range(size):
                    diff = columns[t, start + j] - centre
                    block[j] += diff * diff
            part = 0.0
            for j in range(size):
                nearest[start + j] = min(nearest[start + j], block[j])
                part += nearest[start + j]
            block_totals[b] = part
            total += part


@njit(cache=True, nogil=True)
def kmeans_subspace(x, centroids, iters, first, draws, seeded):
    """Lloyd's k-means of the rows of ``x`` float32 [n, dsub] (one sub-space) into
    ``centroids`` float64 [ksub, dsub]. Unless ``seeded`` (``centroids`` holds the start),
    k-means++ picks the start: row ``first``, then each next centre with probability
    proportional to the squared distance to the nearest centre so far (``draws`` float64
    [ksub] uniform in [0, 1)). Each iteration assigns the rows to the float32 centroids
    (:func:`_nearest`) and moves every centroid to the mean of its rows; an emptied cluster
    moves to the row farthest from its centre. Stops after ``iters`` iterations or when no code
    changes."""
    n, dsub = x.shape
    ksub = centroids.shape[0]
    if not seeded:
        _kmeans_plus_plus(x, centroids, first, draws)
    centroids_t = np.empty((dsub, ksub), np.float32)
    squares = np.empty(ksub, np.float32)
    reach = np.empty(2, np.float32)
    dist = np.empty(ksub + 1, np.float32)
    keys = dist.view(np.int32)
    codes = np.full(n, -1, np.int64)
    distance = np.empty(n, np.float64)
    sums = np.empty((ksub, dsub), np.float64)
    counts = np.empty(ksub, np.int64)
    for _ in range(iters):
        widest = 0.0
        for c in range(ksub):
            acc = 0.0
            for t in range(dsub):
                value = np.float32(centroids[c, t])
                centroids_t[t, c] = value
                acc += np.float64(value) * np.float64(value)
            squares[c] = acc
            widest = max(widest, acc)
        reach[0] = widest
        reach[1] = 2.0 * np.sqrt(widest)
        changed = 0
        for i in range(n):
            code, error = _nearest(x, i, np.int64(0), dsub, centroids_t, squares, reach, dist,
                                   keys)
            changed += code != codes[i]
            codes[i] = code
            distance[i] = error
        if changed == 0:
            break
        sums[:] = 0.0
        counts[:] = 0
        for i in range(n):
            counts[codes[i]] += 1
            for t in range(dsub):
                sums[codes[i], t] += x[i, t]
        for c in range(ksub):
            if counts[c] == 0:
                far = np.argmax(distance)
                distance[far] = -np.inf
                for t in range(dsub):
                    centroids[c, t] = x[far, t]
            else:
                for t in range(dsub):
                    centroids[c, t] = sums[c, t] / counts[c]


def kmeans_subspaces(x, bounds, ksub, iters, seed, init=None, n_workers=None):
    """float32 [ksub, d]: k-means centroids of every sub-space of ``x`` float32 [n, d]
    (``n >= ksub``), sub-spaces spread over the threads; ``init`` float32 [ksub, d] warm-starts
    them, else k-means++ seeded by ``seed + s`` for sub-space ``s``."""
    x = np.asarray(x, np.float32)
    n, d = x.shape
    m = len(bounds) - 1
    out = np.empty((ksub, d), np.float32)
    seeded = init is not None
    starts, draws = [], []
    for s in range(m):
        rng = np.random.default_rng(seed + s)
        starts.append(int(rng.integers(n)))
        draws.append(rng.random(ksub))
    workers = max(1, min(m, thread_count(n_workers)))

    def work(worker):
        for s in range(worker, m, workers):
            lo, hi = int(bounds[s]), int(bounds[s + 1])
            centroids = np.zeros((ksub, hi - lo), np.float64)
            if seeded:
                centroids[:] = np.asarray(init, np.float64)[:, lo:hi]
            kmeans_subspace(frozen(x[:, lo:hi], np.float32), centroids, int(iters), starts[s],
                            draws[s], seeded)
            out[:, lo:hi] = centroids
    run_workers(work, workers)
    return out
