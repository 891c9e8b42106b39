"""The Table contract: one embedding matrix [n_rows, dim] in one storage."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..arrays import hold, read_only_throughout  # noqa: F401  (re-exported: tables/*, retrieval)
from ..errors import ModelFileError, ShapeError

# bytes per scanned row of the early-stop state retrieval derives for an item table: the scan
# order (int32) and the norm bound (float32)
SCAN_STATE_BYTES = 8

# storage name -> Table subclass; every subclass with a ``storage`` name registers itself
STORAGES = {}


def table_from_arrays(storage, arrays, params):
    """Rebuild a Table of the named storage from its arrays and params."""
    if storage not in STORAGES:
        raise ModelFileError(f"unknown table storage {storage!r}; known: {sorted(STORAGES)}")
    return STORAGES[storage].from_arrays(arrays, **params)


@dataclass(frozen=True)
class TablePlan:
    """A table before it is built: its storage class, its shape and the keyword parameters of
    that storage's :meth:`Table.nbytes_for`. The search's byte model chains plans through the
    compression steps (``Compressor.plan_table``) and asks the last one for its bytes.

    storage : a Table subclass; n_rows, dim : int; params : dict (for a row-pruned table,
    ``{"inner": TablePlan of the kept rows, "fallback": bool}``)."""

    storage: type
    n_rows: int
    dim: int
    params: dict = field(default_factory=dict)

    @property
    def nbytes(self):
        """Exact bytes the built table will hold (``Table.nbytes``)."""
        return int(self.storage.nbytes_for(self.n_rows, self.dim, **self.params))

    def replace(self, **changes):
        """A copy with some fields changed."""
        fields = {"storage": self.storage, "n_rows": self.n_rows, "dim": self.dim,
                  "params": self.params}
        fields.update(changes)
        return TablePlan(**fields)


class Table:
    """One embedding table in one storage.

    Subclasses set ``storage`` (the name written in the model file) and implement ``decode``,
    ``arrays``, ``params`` and ``from_arrays``. ``nbytes`` is exact: the sum of ``.nbytes`` of
    every array serving needs, nothing else.

    Every array a table holds is read-only (see :func:`hold`): a table never changes after it
    is built, so whatever is derived from it (a cached scan order) stays right, and a write to
    ``table.data`` or to a decoded view such as ``model.item_factors`` raises ValueError. Build
    a new table (``DenseTable(arr.copy())``, ``model.replace(items=...)``) to change values.
    """

    storage = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("storage"):
            STORAGES[cls.storage] = cls

    @classmethod
    def nbytes_for(cls, n_rows, dim, **params):
        """int: exactly the ``nbytes`` of a table of this storage with ``n_rows`` x ``dim`` and
        these parameters, computed before it is built (the search's byte model)."""
        raise NotImplementedError(f"the {cls.storage!r} storage gives no byte count before it "
                                  f"is built")

    @classmethod
    def plan(cls, n_rows, dim, **params):
        """The :class:`TablePlan` of such a table."""
        return TablePlan(cls, int(n_rows), int(dim), params)

    @property
    def n_rows(self):
        raise NotImplementedError

    @property
    def dim(self):
        raise NotImplementedError

    @property
    def shape(self):
        return (self.n_rows, self.dim)

    @property
    def nbytes(self):
        return int(sum(a.nbytes for a in self.arrays().values()))

    @property
    def scan_rows(self):
        """Rows the retrieval scorer scans when this table serves the items."""
        return self.n_rows

    @property
    def serving_nbytes(self):
        """Bytes to serve this table as an item table: ``nbytes`` plus the early-stop state that
        retrieval derives once from it (scan order int32 + norm bound float32 per scanned row,
        :data:`SCAN_STATE_BYTES`). Not stored in the model file."""
        return self.nbytes + SCAN_STATE_BYTES * self.scan_rows

    def decode(self, rows=None):
        """float32 [n, dim] (C-contiguous): the rows ``rows`` (all when None), decoded."""
        raise NotImplementedError

    def arrays(self):
        """dict[str, ndarray]: every array serving needs, by name."""
        raise NotImplementedError

    def params(self):
        """dict of JSON scalars needed besides the arrays to rebuild the table."""
        return {}

    @classmethod
    def from_arrays(cls, arrays, **params):
        raise NotImplementedError

    def valid_rows(self):
        """bool [n_rows] marking rows that exist (False: an item out of the catalogue), or None
        when every row is valid."""
        return None

    def __repr__(self):
        return f"{type(self).__name__}({self.n_rows} x {self.dim}, {self.nbytes} bytes)"


def row_index(rows, n_rows):
    """Validate ``rows`` (None, int or int array) against ``n_rows``; int64 1-D or slice(None)."""
    if rows is None or isinstance(rows, slice):
        return slice(None) if rows is None else rows
    rows = np.atleast_1d(np.asarray(rows))
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise ShapeError(f"rows must be a 1-D integer array, got {rows.dtype} {rows.shape}")
    rows = rows.astype(np.int64, copy=False)
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise ShapeError(f"row index out of range [0, {n_rows}): min {rows.min()}, max {rows.max()}")
    return rows


def check_matrix(a, name, dtype=None, ndim=2):
    """``a`` as a C-contiguous array of ``ndim`` dimensions (and ``dtype`` when given)."""
    a = np.asarray(a)
    if a.ndim != ndim:
        raise ShapeError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if dtype is not None:
        if a.dtype != np.dtype(dtype):
            raise ShapeError(f"{name} must have dtype {np.dtype(dtype)}, got {a.dtype}")
    return np.ascontiguousarray(a)


def check_finite(a, name):
    """Raise ShapeError naming the first rows of ``a`` that hold NaN or Inf."""
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        bad = np.flatnonzero(~np.isfinite(a).reshape(a.shape[0], -1).all(axis=1))
        shown = ", ".join(str(b) for b in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise ShapeError(f"{name} has NaN or Inf in {len(bad)} rows: {shown}{more}")
    return a
