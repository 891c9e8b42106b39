"""Tile decoder of sparse (CSR) item tables: ``indptr`` int64 [n_rows + 1], ``indices`` (uint8,
uint16 or int32) [nnz], ``data`` float32 [nnz].

Rows are scattered into a zeroed float32 tile, scored by the shared scorer of :mod:`.tiled`.
"""

from numba import njit


@njit(cache=True)
def decode_csr_tile(indptr, indices, data, rows, out):
    """Scatter the CSR rows ``rows`` into ``out[:len(rows)]`` (zeros elsewhere)."""
    for r in range(rows.shape[0]):
        out[r] = 0.0
        row = rows[r]
        for p in range(indptr[row], indptr[row + 1]):
            out[r, indices[p]] = data[p]
