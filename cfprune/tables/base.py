"""The Table contract: one embedding matrix [n_rows, dim] in one storage."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..arrays import hold, read_only_throughout  # noqa: F401  (re-exported: tables/*, retrieval)
from ..errors import ModelFileError, NoFaissForm, ShapeError

# bytes per scanned row of the early-stop state retrieval derives for an item table: the scan
# order (int32) and the norm bound (float32)
SCAN_STATE_BYTES = 8

# rows decoded at a time by the default ``Table.row_norms``
NORM_CHUNK_ROWS = 8192
# an empty item map: table row r is item r
_EMPTY_MAP = np.empty(0, dtype=np.int32)
_EMPTY_MAP.flags.writeable = False

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

    @property
    def stored(self):
        """The plan of the rows the table stores (a row-pruned plan's inner plan), as
        :attr:`Table.stored`."""
        return self.params.get("inner", self)

    def with_stored(self, stored):
        """This plan's row map over another plan of its stored rows, as
        :meth:`Table.with_stored`: ``stored`` itself when this plan maps no rows."""
        if "inner" not in self.params:
            return stored
        return self.replace(dim=stored.dim, params={**self.params, "inner": stored})

    def replace(self, **changes):
        """A copy with some fields changed."""
        fields = {"storage": self.storage, "n_rows": self.n_rows, "dim": self.dim,
                  "params": self.params}
        fields.update(changes)
        return TablePlan(**fields)


class Table:
    """One embedding table in one storage.

    A storage is one subclass (see docs/architecture.md, "Table"). It sets ``storage`` (the
    name written in the model file; setting it registers the class in :data:`STORAGES`) and
    implements ``n_rows``, ``dim``, ``decode``, ``arrays``, ``params``, ``from_arrays`` and
    ``nbytes_for``. Everything else has a default that works from those: taking and appending
    rows (``take``/``append``, over the per-row arrays named by ``row_arrays``), what the
    retrieval scorer reads (``item_tiles``, ``scan_queries``, ``row_norms``, ``score_batch``,
    ``int8_scorer``, ``rerank``), the rows it stores (``stored``, ``stored_ids``, ``item_map``,
    ``with_stored``, ``fallback``) and its faiss form (``faiss_index``: by default none). A
    storage overrides a default to be faster or to say more. ``nbytes`` is exact: the sum of
    ``.nbytes`` of every array serving needs, nothing else.

    Every array a table holds is read-only (see :func:`hold`): a table never changes after it
    is built, so whatever is derived from it (a cached scan order) stays right, and a write to
    ``table.data`` or to a decoded view such as ``model.item_factors`` raises ValueError. Build
    a new table (``DenseTable(arr.copy())``, ``model.replace(items=...)``) to change values.
    """

    storage = ""
    # float32 [dim] that the rows a table does not store decode to, or None (every row stored,
    # or the missing rows left the catalogue); only a row-pruned table has one
    fallback = None

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

    def query_vectors(self, rows, user_items, items):
        """float32 [n, dim]: the query vectors of rows ``rows`` (int64 [n]) when this table
        serves the users of a model whose item Table is ``items``; ``user_items`` is the users'
        history (scipy CSR [n, n_items], row i that of ``rows[i]``) or None. Default: the rows
        decoded (a folded user table computes them from the history instead)."""
        return self.decode(rows)

    # rows --------------------------------------------------------------------------------------
    def row_arrays(self):
        """The names of the arrays with one entry per row along their first axis (the others
        are fitted arrays, such as codebooks or per-dimension scales, shared by every row).
        Default: every array."""
        return tuple(self.arrays())

    def take(self, rows):
        """The table of rows ``rows`` (int array [n], in that order, repeats allowed) in the same
        storage: per-row arrays sliced, fitted arrays shared unchanged (the same objects)."""
        rows = row_index(rows, self.n_rows)
        per_row = self.row_arrays()
        arrays = {name: a[rows] if name in per_row else a for name, a in self.arrays().items()}
        return type(self).from_arrays(arrays, **self.params())

    def append(self, other):
        """The table of this table's rows followed by those of ``other``: the same storage with
        the same parameters and the same fitted arrays (shared unchanged), else a one-line
        ShapeError naming what differs."""
        check_appendable(self, other)
        per_row = self.row_arrays()
        theirs = other.arrays()
        arrays = {name: np.concatenate([a, theirs[name]]) if name in per_row else a
                  for name, a in self.arrays().items()}
        return type(self).from_arrays(arrays, **self.params())

    # the rows a table stores (a row-pruned table stores some of its rows in an inner table) ----
    @property
    def stored(self):
        """The table of the rows this table stores ([scan_rows, dim]): the table itself, or the
        inner table of a row-pruned table."""
        return self

    def stored_ids(self):
        """int [scan_rows]: the row of this table each stored row is (int64 ``arange`` here)."""
        return np.arange(self.n_rows, dtype=np.int64)

    def item_map(self):
        """int [scan_rows] or int32 [0]: what the retrieval kernels take as the item id of each
        stored row (empty: stored row r is item r)."""
        return _EMPTY_MAP

    def with_stored(self, stored, fallback=None):
        """This table's row map over ``stored``, a table of the same stored rows in another
        storage (or width): the one place a method that works on the stored rows re-wraps them.
        A plain table is its own stored rows, so this is ``stored``; ``fallback``, when given,
        replaces a row-pruned table's fallback (a step that changes the width maps it)."""
        return stored

    # what the retrieval scorer reads ------------------------------------------------------------
    def item_tiles(self):
        """The :class:`~cfprune.kernels.tiled.ItemTiles` the tiled scorer decodes, in the space
        of :meth:`scan_queries`. Default (a storage with no tile decoder of its own): float32
        tiles of the whole ``decode()``, a float32 copy of the table held while it serves."""
        from ..kernels.tiled import float32_tiles
        return float32_tiles(self.decode())

    def scan_queries(self, queries):
        """float32 [n, dim] C-contiguous: user vectors ``queries`` [n, dim] in the space of the
        tiles (``u . x`` is the same in both). Default: unchanged."""
        return queries

    def row_norms(self):
        """float64 [n_rows]: the norms of the rows as the scorer sees them, for the scan order.
        Default: from ``decode`` in chunks of :data:`NORM_CHUNK_ROWS` rows."""
        norms = np.empty(self.n_rows, np.float64)
        for first in range(0, self.n_rows, NORM_CHUNK_ROWS):
            rows = np.arange(first, min(self.n_rows, first + NORM_CHUNK_ROWS))
            block = np.asarray(self.decode(rows), dtype=np.float64)
            norms[rows] = np.sqrt(np.einsum("ij,ij->i", block, block))
        return norms

    # whether batches of any size take :meth:`score_few` (the scan over the stored codes)
    # rather than the tiled GEMM of :meth:`score_batch`
    scans_codes_in_batches = False
    # whether the tiled scorer decodes this storage's tiles cheaply: then a few users over
    # skewed norms are served faster by its early stop than by the code scan (measured at
    # 5k-300k items x 64, 1 user: 0.24-0.31 ms tiled against 0.42-0.62 ms scanned, float32 and
    # int8); a storage whose tiles cost a gather per weight (PQ) says False
    cheap_tiles = True

    def score_batch(self, queries, tiles, order, remaining_norm, n_workers, item_map,
                    seen_indices, seen_start, seen_end, heap_scores, heap_ids):
        """Offer every row to the heaps of one batch of ``queries`` (already through
        :meth:`scan_queries`), scanned in ``order`` with the early stop of ``remaining_norm``
        (arguments as :func:`cfprune.kernels.tiled.score_tiles`; ``tiles``: a function that
        returns :meth:`item_tiles`, made on first use). Default: the tiled scorer."""
        from ..kernels.tiled import score_tiles
        score_tiles(queries, tiles(), order, remaining_norm, n_workers, item_map, seen_indices,
                    seen_start, seen_end, heap_scores, heap_ids)

    def score_few(self, queries, tiles, order, remaining_norm, n_workers, item_map,
                  *seen_and_heaps):
        """The same for a call of a few users (``retrieval.FEW_USERS_MAX``), where no GEMM
        pays: a scan over the stored codes split by item range over the threads
        (:func:`cfprune.kernels.scan.score_few`) when the tiles' kind has one, else
        :meth:`score_batch`. ``order`` is the norm order when the norms are skewed enough for
        its early stop to pay, else the rows in order."""
        from ..kernels.scan import SCAN_KINDS, score_few
        if tiles().kind not in SCAN_KINDS:
            return self.score_batch(queries, tiles, order, remaining_norm, n_workers, item_map,
                                    *seen_and_heaps)
        score_few(queries, tiles(), order, remaining_norm, n_workers, item_map, *seen_and_heaps)

    def int8_scorer(self, n_workers, item_map):
        """``scan(queries, seen_indices, seen_start, seen_end, heap_scores, heap_ids)`` scoring
        users quantised to int8 against int8 codes (``recommend(int8_route="int8")``), or None
        when the storage has no such route (the default: the tiled scorer serves)."""
        return None

    def rerank(self, queries, cand_ids, heap_scores, heap_ids, n_workers):
        """Score the candidates ``cand_ids`` int32 [n, k'] (rows of this table, -1: none) of
        ``queries`` float32 [n, dim] exactly into the heaps (:func:`.kernels.topk.new_heaps`).
        Default: decode the candidate rows once and score them as float32."""
        from ..kernels.rerank import rerank_dense
        present = cand_ids >= 0
        rows = np.unique(cand_ids[present])
        decoded = np.ascontiguousarray(self.decode(rows), dtype=np.float32)
        cand_rows = np.where(present, np.searchsorted(rows, cand_ids), -1).astype(np.int64)
        rerank_dense(queries, decoded, cand_rows, cand_ids, heap_scores, heap_ids, n_workers)

    # faiss --------------------------------------------------------------------------------------
    def faiss_index(self, faiss):
        """An inner-product faiss index (module ``faiss``) holding this table's own codes, row
        ``i`` of the index being row ``i``; :class:`~cfprune.errors.NoFaissForm` with the reason
        when faiss has none (the default)."""
        raise NoFaissForm(f"the {self.storage!r} storage has no faiss index with the same codes")

    def exact_rows(self, x):
        """The table of rows ``x`` float32 [n, dim] in this storage with this table's fitted
        arrays when it holds them exactly (decode gives ``x`` back), else None (the default)."""
        return None

    def __repr__(self):
        return f"{type(self).__name__}({self.n_rows} x {self.dim}, {self.nbytes} bytes)"


def check_appendable(table, other):
    """One-line ShapeError unless the rows of ``other`` can follow those of ``table``: the same
    storage, width and parameters, and the same fitted (not per-row) arrays."""
    if type(other) is not type(table):
        raise ShapeError(f"cannot append {other.storage!r} rows to a {table.storage!r} table")
    if other.dim != table.dim:
        raise ShapeError(f"cannot append rows of {other.dim} dimensions to a table of "
                         f"{table.dim}")
    mine, theirs = table.params(), other.params()
    for key in sorted(set(mine) | set(theirs)):
        if mine.get(key) != theirs.get(key):
            raise ShapeError(f"cannot append rows with {key}={theirs.get(key)!r} to a "
                             f"{table.storage!r} table with {key}={mine.get(key)!r}")
    mine, theirs = table.arrays(), other.arrays()
    per_row = table.row_arrays()
    for name in sorted(set(mine) | set(theirs)):
        if name not in mine or name not in theirs:
            raise ShapeError(f"cannot append rows: array {name!r} is in only one of the two "
                             f"{table.storage!r} tables")
        if name not in per_row and not np.array_equal(mine[name], theirs[name]):
            raise ShapeError(f"cannot append rows: their {name!r} differs from the table's (the "
                             f"rows were encoded with other fitted state)")


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
