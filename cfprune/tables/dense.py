"""Float32 and float16 dense storage."""

import numpy as np

from ..errors import ShapeError
from .base import Table, check_finite, check_matrix, hold, row_index


class DenseTable(Table):
    """Plain float32 table. Arrays: ``data`` float32 [n, d]."""

    storage = "dense"
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


class Float16Table(DenseTable):
    """Half-precision table. Arrays: ``data`` float16 [n, d]."""

    storage = "fp16"
    dtype = np.float16
