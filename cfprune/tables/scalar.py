"""Affine scalar-quantised storage: int8 codes, int4 codes packed two per byte and int2 codes
packed four per byte.

A weight is decoded as ``scale * q + offset``; ``scale`` and ``offset`` are float32 and hold one
value per row (``axis="row"``) or one per dimension (``axis="dim"``). A symmetric table has no
``offset`` array at all (it would be zeros), so its bytes are not counted.
"""

import numpy as np

from ..errors import ShapeError
from .base import Table, check_matrix, hold, row_index

AXES = ("row", "dim")


class _AffineTable(Table):
    """Shared decode and checks of the affine storages; subclasses say how codes unpack."""

    def __init__(self, codes, scale, offset=None, *, axis="row", dim=None):
        if axis not in AXES:
            raise ShapeError(f"axis={axis!r}; expected one of {AXES}")
        self.codes = check_matrix(codes, "codes", self.code_dtype)
        self.axis = axis
        self._dim = self._dim_from_codes(self.codes, dim)
        n = self.n_rows if axis == "row" else self._dim
        self.scale = _vector(scale, "scale", n)
        self.offset = None if offset is None else _vector(offset, "offset", n)
        sources = (codes, scale, offset)
        self.codes, self.scale, self.offset = (hold(a, *sources) for a in
                                               (self.codes, self.scale, self.offset))

    @property
    def n_rows(self):
        return self.codes.shape[0]

    @property
    def dim(self):
        return self._dim

    @property
    def symmetric(self):
        return self.offset is None

    def levels(self, rows=None):
        """The integer levels q as int16 [n, dim] (before scale and offset)."""
        raise NotImplementedError

    def decode(self, rows=None):
        idx = row_index(rows, self.n_rows)
        q = self.levels(idx).astype(np.float32)
        if self.axis == "row":
            scale = self.scale[idx][:, None]
            offset = None if self.offset is None else self.offset[idx][:, None]
        else:
            scale = self.scale[None, :]
            offset = None if self.offset is None else self.offset[None, :]
        out = q * scale
        if offset is not None:
            out += offset
        return np.ascontiguousarray(out, dtype=np.float32)

    def arrays(self):
        out = {"codes": self.codes, "scale": self.scale}
        if self.offset is not None:
            out["offset"] = self.offset
        return out

    def params(self):
        return {"axis": self.axis, "dim": self.dim}

    @classmethod
    def from_arrays(cls, arrays, **params):
        return cls(arrays["codes"], arrays["scale"], arrays.get("offset"), **params)


class Int8Table(_AffineTable):
    """int8 codes in [-128, 127]. Arrays: ``codes`` int8 [n, d], ``scale`` and ``offset``
    float32 [n] (axis=row) or [d] (axis=dim)."""

    storage = "int8"
    code_dtype = np.int8

    def _dim_from_codes(self, codes, dim):
        if dim is not None and dim != codes.shape[1]:
            raise ShapeError(f"dim={dim} but int8 codes have {codes.shape[1]} columns")
        return codes.shape[1]

    def levels(self, rows=None):
        return self.codes[row_index(rows, self.n_rows)].astype(np.int16)


class Int4Table(_AffineTable):
    """4-bit codes in [0, 15], two per byte: dimension 2j in the low nibble of byte j, 2j+1 in
    the high nibble. Arrays: ``codes`` uint8 [n, ceil(d/2)], ``scale``/``offset`` as int8."""

    storage = "int4"
    code_dtype = np.uint8

    def _dim_from_codes(self, codes, dim):
        if dim is None:
            dim = 2 * codes.shape[1]
        if (dim + 1) // 2 != codes.shape[1]:
            raise ShapeError(f"dim={dim} needs {(dim + 1) // 2} packed columns, codes have "
                             f"{codes.shape[1]}")
        return int(dim)

    def levels(self, rows=None):
        packed = self.codes[row_index(rows, self.n_rows)]
        q = np.empty((packed.shape[0], 2 * packed.shape[1]), np.int16)
        q[:, 0::2] = packed & 0x0F
        q[:, 1::2] = packed >> 4
        return q[:, :self.dim]

    @staticmethod
    def pack(levels):
        """uint8 [n, ceil(d/2)] from integer levels [n, d] in [0, 15]."""
        levels = np.asarray(levels)
        if levels.size and (levels.min() < 0 or levels.max() > 15):
            raise ShapeError("int4 levels must lie in [0, 15]")
        n, d = levels.shape
        padded = np.zeros((n, d + (d % 2)), np.uint8)
        padded[:, :d] = levels
        return np.ascontiguousarray(padded[:, 0::2] | (padded[:, 1::2] << 4), dtype=np.uint8)


class Int2Table(_AffineTable):
    """2-bit codes in [0, 3], four per byte: dimension 4j + t in bits 2t..2t+1 of byte j.
    Arrays: ``codes`` uint8 [n, ceil(d/4)], ``scale``/``offset`` as int8."""

    storage = "int2"
    code_dtype = np.uint8

    def _dim_from_codes(self, codes, dim):
        if dim is None:
            dim = 4 * codes.shape[1]
        if (dim + 3) // 4 != codes.shape[1]:
            raise ShapeError(f"dim={dim} needs {(dim + 3) // 4} packed columns, codes have "
                             f"{codes.shape[1]}")
        return int(dim)

    def levels(self, rows=None):
        packed = self.codes[row_index(rows, self.n_rows)]
        q = np.empty((packed.shape[0], 4 * packed.shape[1]), np.int16)
        for t in range(4):
            q[:, t::4] = (packed >> (2 * t)) & 3
        return q[:, :self.dim]

    @staticmethod
    def pack(levels):
        """uint8 [n, ceil(d/4)] from integer levels [n, d] in [0, 3]."""
        levels = np.asarray(levels)
        if levels.size and (levels.min() < 0 or levels.max() > 3):
            raise ShapeError("int2 levels must lie in [0, 3]")
        n, d = levels.shape
        padded = np.zeros((n, 4 * ((d + 3) // 4)), np.uint8)
        padded[:, :d] = levels
        out = padded[:, 0::4] | (padded[:, 1::4] << 2) | (padded[:, 2::4] << 4) | \
            (padded[:, 3::4] << 6)
        return np.ascontiguousarray(out, dtype=np.uint8)


def _vector(v, name, n):
    v = np.ascontiguousarray(v, dtype=np.float32)
    if v.shape != (n,):
        raise ShapeError(f"{name} has shape {v.shape}, expected ({n},)")
    if not np.all(np.isfinite(v)):
        raise ShapeError(f"{name} holds NaN or Inf")
    return v
