"""Product-quantised item tables: the tile decoder of the shared scorer and the lookup-table scan.

Arrays: ``codes`` uint8 [n_rows, m], ``codebooks`` float32 [ksub, d] (ksub <= 256; sub-space s
owns columns ``bounds[s]:bounds[s + 1]``, of any widths), ``bounds`` int32 [m + 1]. The queries
given to the scorers are the users already rotated (``users @ rotation`` when the table has a
rotation), since ``u . x = (u @ rotation) . x_rot``.

Batches: :func:`decode_pq_tile` turns a tile of rows into float32 (codebook gathers) for the
shared GEMM scorer (:func:`.tiled.score_tiles` with :func:`.tiled.pq_tiles`), over the rows in
the early-stop order of :mod:`.tiled` (descending norm of the decoded rotated rows, which
:func:`row_norms` computes from the codes). A handful of users scan the codes by lookup tables
instead (:mod:`.scan`; 4-bit codes :mod:`.fastscan`).
"""

import numpy as np
from numba import njit



def row_norms(codes, codebooks, bounds):
    """float64 [n_rows]: the norm of every decoded (rotated) row, from the squared norm of each
    centroid's part in each sub-space (NumPy, no decode of the table)."""
    squares = np.asarray(codebooks, np.float64) ** 2
    total = np.zeros(codes.shape[0], np.float64)
    for s in range(codes.shape[1]):
        part = squares[:, bounds[s]:bounds[s + 1]].sum(axis=1)
        total += part[codes[:, s]]
    return np.sqrt(total)


@njit(cache=True, nogil=True)
def decode_pq_tile(codes, codebooks, bounds, rows, out):
    """Write the decoded (rotated) rows ``rows`` of ``codes`` into ``out[:len(rows)]``."""
    m = bounds.shape[0] - 1
    for r in range(rows.shape[0]):
        row = rows[r]
        for s in range(m):
            c = codes[row, s]
            for t in range(bounds[s], bounds[s + 1]):
                out[r, t] = codebooks[c, t]
