"""Tile decoder of sparse (CSR) item tables: ``indptr`` int64 [n_rows + 1], ``indices`` (uint8,
uint16 or int32) [nnz], ``data`` float32 [nnz].

The column indices reach the kernel as their little-endian bytes (uint8 [nnz * width]) with the
byte width, so that one compiled scorer serves every index dtype. Rows are scattered into a
zeroed float32 tile, scored by the shared scorer of :mod:`.tiled`.
"""

import numpy as np
from numba import njit


def index_bytes(indices):
    """(uint8 [nnz * width] little-endian bytes, width) of a CSR ``indices`` array."""
    indices = np.ascontiguousarray(indices, dtype=indices.dtype.newbyteorder("<"))
    return indices.view(np.uint8).reshape(-1), indices.dtype.itemsize


@njit(cache=True, nogil=True)
def column(index_bytes, width, p):
    """Entry ``p`` of the indices given by :func:`index_bytes` (width 1, 2 or 4)."""
    if width == 1:
        return np.int64(index_bytes[p])
    if width == 2:
        return np.int64(index_bytes[2 * p]) | (np.int64(index_bytes[2 * p + 1]) << 8)
    q = 4 * p
    return (np.int64(index_bytes[q]) | (np.int64(index_bytes[q + 1]) << 8)
            | (np.int64(index_bytes[q + 2]) << 16) | (np.int64(index_bytes[q + 3]) << 24))


@njit(cache=True, nogil=True)
def decode_csr_tile(indptr, index_bytes, width, data, rows, out):
    """Scatter the CSR rows ``rows`` into ``out[:len(rows)]`` (zeros elsewhere)."""
    dim = out.shape[1]
    for r in range(rows.shape[0]):
        for t in range(dim):
            out[r, t] = 0.0
        row = rows[r]
        for p in range(indptr[row], indptr[row + 1]):
            out[r, column(index_bytes, width, p)] = data[p]
