"""Table storages: one embedding matrix in one storage each (see docs/architecture.md)."""

from .base import STORAGES, Table, TablePlan, table_from_arrays
from .dense import DenseTable, Float16Table
from .folded import FoldedUsers
from .pq import PQTable, subspace_bounds
from .pruned import PrunedTable
from .scalar import Int2Table, Int4Table, Int8Table
from .sparse import SparseTable

__all__ = ["Table", "DenseTable", "Float16Table", "FoldedUsers", "Int8Table", "Int4Table", "Int2Table",
           "PQTable",
           "SparseTable", "PrunedTable", "STORAGES", "TablePlan", "table_from_arrays", "subspace_bounds"]
