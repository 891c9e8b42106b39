"""Sparse (CSR) storage for magnitude-pruned tables.

Bytes are counted honestly: each kept weight costs 4 bytes of value plus its column index (1, 2
or 4 bytes by ``dim``), and every row 8 bytes of ``indptr``. At 50% sparsity and dim > 256 a CSR
table is no smaller than the dense float32 one.
"""

import numpy as np
import scipy.sparse as sp

from ..errors import NoFaissForm, ShapeError
from .base import Table, check_appendable, check_matrix, hold, row_index


def index_dtype(dim):
    """The smallest unsigned dtype that holds a column index below ``dim``."""
    if dim <= 256:
        return np.dtype(np.uint8)
    if dim <= 65536:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


class SparseTable(Table):
    """Arrays: ``indptr`` int64 [n+1], ``indices`` [nnz] (uint8 / uint16 / int32 by dim, sorted
    within a row), ``data`` float32 [nnz]."""

    storage = "sparse"

    def __init__(self, indptr, indices, data, *, dim):
        self.indptr = check_matrix(indptr, "indptr", np.int64, ndim=1)
        self.indices = check_matrix(indices, "indices", index_dtype(dim), ndim=1)
        self.data = check_matrix(data, "data", np.float32, ndim=1)
        self._dim = int(dim)
        nnz = self.data.shape[0]
        if self.indices.shape[0] != nnz or self.indptr[0] != 0 or self.indptr[-1] != nnz or \
                np.any(np.diff(self.indptr) < 0):
            raise ShapeError(f"inconsistent CSR: indptr ends at {self.indptr[-1]}, "
                             f"{self.indices.shape[0]} indices, {nnz} values")
        if nnz and int(self.indices.max()) >= self._dim:
            raise ShapeError(f"a column index {int(self.indices.max())} >= dim={dim}")
        sources = (indptr, indices, data)
        self.indptr, self.indices, self.data = (hold(a, *sources) for a in
                                                (self.indptr, self.indices, self.data))

    @classmethod
    def from_dense(cls, dense):
        """Keep the non-zeros of a float [n, d] array."""
        m = sp.csr_matrix(np.asarray(dense, np.float32))
        m.sort_indices()
        d = dense.shape[1]
        return cls(m.indptr.astype(np.int64), m.indices.astype(index_dtype(d)),
                   m.data.astype(np.float32), dim=d)

    @classmethod
    def nbytes_for(cls, n_rows, dim, nnz):
        """int64 row pointers, column indices of :func:`index_dtype` and float32 values."""
        return 8 * (int(n_rows) + 1) + int(nnz) * (index_dtype(dim).itemsize + 4)

    @property
    def n_rows(self):
        return self.indptr.shape[0] - 1

    @property
    def dim(self):
        return self._dim

    @property
    def density(self):
        return self.data.shape[0] / max(self.n_rows * self.dim, 1)

    def decode(self, rows=None):
        m = sp.csr_matrix((self.data, self.indices.astype(np.int64), self.indptr),
                          shape=(self.n_rows, self.dim))
        idx = row_index(rows, self.n_rows)
        return np.ascontiguousarray(m[idx].toarray(), dtype=np.float32)

    def arrays(self):
        return {"indptr": self.indptr, "indices": self.indices, "data": self.data}

    def params(self):
        return {"dim": self.dim}

    @classmethod
    def from_arrays(cls, arrays, **params):
        return cls(arrays["indptr"], arrays["indices"], arrays["data"], **params)

    def take(self, rows):
        """The rows ``rows`` with their stored entries (explicit zeros included)."""
        idx = row_index(rows, self.n_rows)
        rows = np.arange(self.n_rows) if isinstance(idx, slice) else idx
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        lengths = stops - starts
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # position of every kept entry in the stored arrays, row after row
        entries = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return SparseTable(indptr, self.indices[entries], self.data[entries], dim=self.dim)

    def append(self, other):
        check_appendable(self, other)
        indptr = np.concatenate([self.indptr, self.indptr[-1] + other.indptr[1:]])
        return SparseTable(indptr, np.concatenate([self.indices, other.indices]),
                           np.concatenate([self.data, other.data]), dim=self.dim)

    def item_tiles(self):
        from ..kernels.tiled import csr_tiles
        return csr_tiles(self.indptr, self.indices, self.data)

    def faiss_index(self, faiss):
        raise NoFaissForm("a magnitude-pruned (CSR) table has no faiss index with the same "
                          "storage")
