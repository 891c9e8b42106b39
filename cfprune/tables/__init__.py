"""Table storages: one embedding matrix in one storage each (see docs/architecture.md)."""

from ..errors import ModelFileError
from .base import Table
from .dense import DenseTable, Float16Table
from .pq import PQTable, subspace_bounds
from .pruned import PrunedTable
from .scalar import Int2Table, Int4Table, Int8Table
from .sparse import SparseTable

STORAGES = {cls.storage: cls for cls in (DenseTable, Float16Table, Int8Table, Int4Table,
                                         Int2Table, PQTable, SparseTable, PrunedTable)}


def table_from_arrays(storage, arrays, params):
    """Rebuild a Table of the named storage from its arrays and params."""
    if storage not in STORAGES:
        raise ModelFileError(f"unknown table storage {storage!r}; known: {sorted(STORAGES)}")
    return STORAGES[storage].from_arrays(arrays, **params)


__all__ = ["Table", "DenseTable", "Float16Table", "Int8Table", "Int4Table", "Int2Table",
           "PQTable",
           "SparseTable", "PrunedTable", "STORAGES", "table_from_arrays", "subspace_bounds"]
