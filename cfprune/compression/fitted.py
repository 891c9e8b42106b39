"""Fitted state as compression keeps it: the step records, and new rows appended to a table.

Each step of a compression records a :class:`~cfprune.models.fitted.FittedStep` (a plain record
the model keeps, re-exported here for the methods) in ``model.fitted``; :mod:`.encode` encodes
new items with those records and :func:`append_rows` appends them to the model's tables. The
fitted arrays are reused as they are (the same array objects, so byte-identical); only the
per-row arrays grow (codes, per-row scales, the kept-row map).
"""

from __future__ import annotations

import numpy as np

from ..errors import CfpruneError, ShapeError
from ..models.fitted import FittedStep  # noqa: F401  (re-exported: the methods record their steps)
from ..tables import (DenseTable, Float16Table, Int2Table, Int4Table, Int8Table, PQTable,
                      PrunedTable, SparseTable)


class NoFittedState(CfpruneError, ValueError):
    """A model or a step cannot encode new rows with what it fitted."""


def inner(table):
    """The stored-rows table of a (possibly row-pruned) table."""
    return table.inner if isinstance(table, PrunedTable) else table


def append_rows(table, new):
    """``table`` with the rows of ``new`` appended; the fitted arrays are shared unchanged.

    ``new`` holds rows in the storage of ``table`` (its inner storage for a row-pruned table: the
    new rows are kept, with row ids ``n_rows .. n_rows + len(new) - 1``)."""
    if isinstance(table, PrunedTable):
        kept = np.concatenate([table.kept, np.arange(table.n_rows, table.n_rows + new.n_rows,
                                                     dtype=np.int32)])
        return PrunedTable(append_rows(table.inner, new), kept, table.n_rows + new.n_rows,
                           table.fallback)
    if type(new) is not type(table):
        raise ShapeError(f"new rows are in {new.storage!r} storage but the table is "
                         f"{table.storage!r}")
    if new.dim != table.dim:
        raise ShapeError(f"new rows have {new.dim} dimensions, the table {table.dim}")
    if isinstance(table, (DenseTable, Float16Table)):
        return type(table)(np.concatenate([table.data, new.data]))
    if isinstance(table, (Int8Table, Int4Table, Int2Table)):
        codes = np.concatenate([table.codes, new.codes])
        if table.axis == "row":
            scale = np.concatenate([table.scale, new.scale])
            offset = None if table.offset is None else np.concatenate([table.offset, new.offset])
        else:
            _same(table.scale, new.scale, "scale")
            _same(table.offset, new.offset, "offset")
            scale, offset = table.scale, table.offset
        return type(table)(codes, scale, offset, axis=table.axis, dim=table.dim)
    if isinstance(table, PQTable):
        _same(table.codebooks, new.codebooks, "codebooks")
        _same(table.rotation, new.rotation, "rotation")
        if new.nbits != table.nbits:
            raise NoFittedState(f"the new rows have {new.nbits}-bit codes, the table "
                                f"{table.nbits}-bit")
        return PQTable(np.concatenate([table.codes, new.codes]), table.codebooks, table.bounds,
                       table.rotation, nbits=table.nbits)
    if isinstance(table, SparseTable):
        indptr = np.concatenate([table.indptr, table.indptr[-1] + new.indptr[1:]])
        indices = np.concatenate([table.indices, new.indices.astype(table.indices.dtype)])
        return SparseTable(indptr, indices, np.concatenate([table.data, new.data]),
                           dim=table.dim)
    raise NoFittedState(f"rows cannot be appended to a {table.storage!r} table")


def _same(a, b, name):
    if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
        raise NoFittedState(f"the new rows were encoded with a different {name} than the item "
                            f"table's: the model's fitted state does not match its table")
