"""Float32 and float16 dense storage."""

import numpy as np

from ..errors import ShapeError
from .base import Table, check_finite, check_matrix, hold, row_index


class _FloatTable(Table):
    """A float matrix stored as it is, in ``dtype``. Arrays: ``data`` [n, d]."""

    dtype = np.float32

    def __init__(self, data):
        data = np.asarray(data)
        if data.ndim != 2:
            raise ShapeError(f"a factor table must be 2-D [rows, factors], got shape {data.shape}")
        if data.dtype.kind != "f":
            raise ShapeError(f"a factor table must be floating point, got dtype {data.dtype}")
        data = check_finite(data, "factor table")
        self.data = hold(np.ascontiguousarray(data, dtype=self.dtype), data)

    @classmethod
    def nbytes_for(cls, n_rows, dim):
        return int(n_rows) * int(dim) * np.dtype(cls.dtype).itemsize

    @property
    def n_rows(self):
        return self.data.shape[0]

    @property
    def dim(self):
        return self.data.shape[1]

    def decode(self, rows=None):
        return np.ascontiguousarray(self.data[row_index(rows, self.n_rows)], dtype=np.float32)

    def arrays(self):
        return {"data": self.data}

    @classmethod
    def from_arrays(cls, arrays, **params):
        return cls(check_matrix(arrays["data"], "data", cls.dtype))

    def exact_rows(self, x):
        x = np.asarray(x, np.float32)
        held = x.astype(self.dtype)
        return type(self)(held) if np.array_equal(held.astype(np.float32), x) else None


class DenseTable(_FloatTable):
    """Plain float32 table. Arrays: ``data`` float32 [n, d]."""

    storage = "dense"
    dtype = np.float32

    def item_tiles(self):
        from ..kernels.tiled import float32_tiles
        return float32_tiles(self.data)

    def rerank(self, queries, cand_ids, heap_scores, heap_ids, n_workers):
        from ..kernels.rerank import rerank_dense
        rerank_dense(queries, self.data, cand_ids.astype(np.int64), cand_ids, heap_scores,
                     heap_ids, n_workers)

    def faiss_index(self, faiss):
        """``IndexFlatIP`` over the rows."""
        index = faiss.IndexFlatIP(self.dim)
        index.add(self.data)
        return index


class Float16Table(_FloatTable):
    """Half-precision table. Arrays: ``data`` float16 [n, d]."""

    storage = "fp16"
    dtype = np.float16

    def item_tiles(self):
        from ..kernels.tiled import float16_tiles
        return float16_tiles(self.data)

    def faiss_index(self, faiss):
        """``IndexScalarQuantizer(QT_fp16)`` holding the float16 bits as its codes."""
        index = faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_fp16,
                                           faiss.METRIC_INNER_PRODUCT)
        index.add_sa_codes(np.ascontiguousarray(self.data).view(np.uint8))
        return index
