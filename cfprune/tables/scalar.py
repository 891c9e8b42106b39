"""Affine scalar-quantised storage: int8 codes, int4 codes packed two per byte and int2 codes
packed four per byte.

A weight is decoded as ``scale * q + offset``; ``scale`` and ``offset`` are float32 and hold one
value per row (``axis="row"``) or one per dimension (``axis="dim"``). A symmetric table has no
``offset`` array at all (it would be zeros), so its bytes are not counted.
"""

import numpy as np

from ..errors import NoFaissForm, ShapeError
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

    @classmethod
    def nbytes_for(cls, n_rows, dim, axis="row", symmetric=False):
        """Codes plus a float32 scale (and offset, unless ``symmetric``) per row or dimension."""
        if axis not in AXES:
            raise ShapeError(f"axis={axis!r}; expected one of {AXES}")
        vectors = (1 if symmetric else 2) * 4 * (n_rows if axis == "row" else dim)
        return int(n_rows) * cls.code_columns(dim) + vectors

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

    def row_arrays(self):
        """The codes, and the scale and offset when they are per row."""
        return tuple(self.arrays()) if self.axis == "row" else ("codes",)

    def _offset_or_empty(self):
        return np.empty(0, np.float32) if self.offset is None else self.offset

    def _faiss_scalar_index(self, faiss, qtype, levels, lowest, codes):
        """``IndexScalarQuantizer(qtype)`` holding ``codes``: faiss decodes a code ``c`` in
        ``0..levels`` as ``vmin + vdiff (c + 0.5) / levels`` per dimension, which is cfprune's
        ``scale q + offset`` (``q = c + lowest``) with ``vdiff = levels scale`` and
        ``vmin = offset + (lowest - 0.5) scale``."""
        if self.axis != "dim":
            raise NoFaissForm(f"per-row {self.storage} scales have no faiss equivalent (its "
                              f"scalar quantiser keeps one range per dimension)")
        scale = self.scale.astype(np.float64)
        offset = np.zeros(self.dim) if self.offset is None else self.offset.astype(np.float64)
        index = faiss.IndexScalarQuantizer(self.dim, qtype, faiss.METRIC_INNER_PRODUCT)
        trained = np.concatenate([offset + (lowest - 0.5) * scale, levels * scale])
        faiss.copy_array_to_vector(trained.astype(np.float32), index.sq.trained)
        index.is_trained = True
        index.add_sa_codes(np.ascontiguousarray(codes))
        return index


class Int8Table(_AffineTable):
    """int8 codes in [-128, 127]. Arrays: ``codes`` int8 [n, d], ``scale`` and ``offset``
    float32 [n] (axis=row) or [d] (axis=dim)."""

    storage = "int8"
    code_dtype = np.int8

    @staticmethod
    def code_columns(dim):
        return int(dim)

    def _dim_from_codes(self, codes, dim):
        if dim is not None and dim != codes.shape[1]:
            raise ShapeError(f"dim={dim} but int8 codes have {codes.shape[1]} columns")
        return codes.shape[1]

    def levels(self, rows=None):
        return self.codes[row_index(rows, self.n_rows)].astype(np.int16)

    def item_tiles(self):
        from ..kernels.tiled import int8_tiles
        return int8_tiles(self.codes, self.scale, self.offset, self.axis == "row")

    def int8_scorer(self, n_workers, item_map):
        """Users quantised to int8 per user, int32 accumulation against the codes
        (:mod:`cfprune.kernels.int8`): approximate."""
        from ..kernels.int8 import quantise_queries, score_int8_int8
        offset, per_row = self._offset_or_empty(), self.axis == "row"

        def scan(queries, *seen_and_heaps):
            levels, user_scale, user_sum, user_const = quantise_queries(queries, self.scale,
                                                                        offset, per_row)
            score_int8_int8(levels, user_scale, user_sum, user_const, self.codes, self.scale,
                            offset, per_row, item_map, *seen_and_heaps, n_workers=n_workers)
        return scan

    def rerank(self, queries, cand_ids, heap_scores, heap_ids, n_workers):
        from ..kernels.rerank import rerank_int8
        rerank_int8(queries, self.codes, self.scale, self._offset_or_empty(),
                    self.axis == "row", cand_ids.astype(np.int64), cand_ids, heap_scores,
                    heap_ids, n_workers)

    def faiss_index(self, faiss):
        """``IndexScalarQuantizer(QT_8bit)`` (per-dimension scales only) over the codes + 128."""
        codes = (self.codes.astype(np.int16) + 128).astype(np.uint8)
        return self._faiss_scalar_index(faiss, faiss.ScalarQuantizer.QT_8bit, 255, -128, codes)


class _PackedTable(_AffineTable):
    """Codes of ``bits`` bits (levels 0 .. 2^bits - 1), ``8 // bits`` per byte: dimension
    ``per_byte * j + t`` in bits ``bits * t`` .. ``bits * (t + 1) - 1`` of byte ``j``. Arrays:
    ``codes`` uint8 [n, ceil(d / per_byte)], ``scale``/``offset`` as int8."""

    bits = 0
    code_dtype = np.uint8

    @classmethod
    def code_columns(cls, dim):
        """Bytes per row of packed codes: ``ceil(dim / per_byte)``."""
        return -(-int(dim) // (8 // cls.bits))

    def _dim_from_codes(self, codes, dim):
        per_byte = 8 // self.bits
        if dim is None:
            dim = per_byte * codes.shape[1]
        if -(-dim // per_byte) != codes.shape[1]:
            raise ShapeError(f"dim={dim} needs {-(-dim // per_byte)} packed columns, codes have "
                             f"{codes.shape[1]}")
        return int(dim)

    def levels(self, rows=None):
        packed = self.codes[row_index(rows, self.n_rows)]
        per_byte, mask = 8 // self.bits, (1 << self.bits) - 1
        q = np.empty((packed.shape[0], per_byte * packed.shape[1]), np.int16)
        for t in range(per_byte):
            q[:, t::per_byte] = (packed >> (self.bits * t)) & mask
        return q[:, :self.dim]

    @classmethod
    def pack(cls, levels):
        """uint8 [n, ceil(d / per_byte)] from integer levels [n, d] in [0, 2^bits - 1]."""
        levels = np.asarray(levels)
        top = (1 << cls.bits) - 1
        if levels.size and (levels.min() < 0 or levels.max() > top):
            raise ShapeError(f"{cls.storage} levels must lie in [0, {top}]")
        per_byte = 8 // cls.bits
        n, d = levels.shape
        padded = np.zeros((n, per_byte * -(-d // per_byte)), np.uint8)
        padded[:, :d] = levels
        out = np.zeros((n, padded.shape[1] // per_byte), np.uint8)
        for t in range(per_byte):
            out |= padded[:, t::per_byte] << (cls.bits * t)
        return np.ascontiguousarray(out, dtype=np.uint8)


class Int4Table(_PackedTable):
    """4-bit codes in [0, 15], two per byte: dimension 2j in the low nibble of byte j, 2j+1 in
    the high nibble. Arrays: ``codes`` uint8 [n, ceil(d/2)], ``scale``/``offset`` as int8."""

    storage = "int4"
    bits = 4

    def item_tiles(self):
        from ..kernels.tiled import int4_tiles
        return int4_tiles(self.codes, self.scale, self.offset, self.axis == "row")

    def faiss_index(self, faiss):
        """``IndexScalarQuantizer(QT_4bit)`` (per-dimension scales only): the same nibbles."""
        return self._faiss_scalar_index(faiss, faiss.ScalarQuantizer.QT_4bit, 15, 0, self.codes)


class Int2Table(_PackedTable):
    """2-bit codes in [0, 3], four per byte: dimension 4j + t in bits 2t..2t+1 of byte j.
    Arrays: ``codes`` uint8 [n, ceil(d/4)], ``scale``/``offset`` as int8."""

    storage = "int2"
    bits = 2

    def item_tiles(self):
        from ..kernels.tiled import int2_tiles
        return int2_tiles(self.codes, self.scale, self.offset, self.axis == "row")

    def faiss_index(self, faiss):
        raise NoFaissForm("faiss's scalar quantiser has no 2-bit codes")


def _vector(v, name, n):
    v = np.ascontiguousarray(v, dtype=np.float32)
    if v.shape != (n,):
        raise ShapeError(f"{name} has shape {v.shape}, expected ({n},)")
    if not np.all(np.isfinite(v)):
        raise ShapeError(f"{name} holds NaN or Inf")
    return v
