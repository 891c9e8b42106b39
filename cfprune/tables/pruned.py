"""Row-pruned storage: only the kept rows are stored, in any inner storage."""

import numpy as np

from ..errors import NoFaissForm, ShapeError
from .base import Table, check_matrix, hold, row_index, table_from_arrays


def kept_nbytes(n_rows, n_kept):
    """Bytes a table of ``n_rows`` rows holds to say which ``n_kept`` rows it kept: the smaller
    of the sorted ids (:func:`kept_dtype`) and a bitmap of ``ceil(n_rows / 8)`` bytes (ties: the
    ids)."""
    ids = kept_dtype(n_rows).itemsize * n_kept
    bits = (n_rows + 7) // 8
    return ids if ids <= bits else bits


def kept_dtype(n_rows):
    """dtype of the kept-row ids of a table of ``n_rows`` rows: uint16 (2 bytes per kept row)
    when every id fits, i.e. ``n_rows <= 65536``, else int32.

    Retrieval hands ``kept`` to the Numba scorers as their int32 item map; a uint16 map is
    widened on each scan call (a transient int32 copy, 4 bytes per kept row, freed when the call
    returns), so what the table holds while it serves is the uint16 array ``nbytes`` counts."""
    return np.dtype(np.uint16) if n_rows <= 65536 else np.dtype(np.int32)


class PrunedTable(Table):
    """A table of ``n_rows`` rows of which only ``kept`` are stored.

    Arrays: either ``kept`` [n_kept] (sorted, unique row ids; uint16 when ``n_rows <= 65536``,
    else int32: see :func:`kept_dtype`) or, when smaller (:func:`kept_nbytes`), ``kept_bits``
    uint8 [ceil(n_rows / 8)] (``np.packbits`` of the kept-row mask, padding bits zero); then
    ``.kept`` is computed from the bitmap on each access (a transient array, not held);
    ``inner/<name>`` the arrays of the inner table of ``n_kept`` rows (row j of it is row
    ``kept[j]``), optional ``fallback`` float32 [dim]. A row that was not kept decodes as
    ``fallback`` (for users: the rule that answers every pruned user), or, without a fallback,
    as zeros and is marked invalid by :meth:`valid_rows` (for items: the item left the catalogue
    and is never recommended).
    """

    storage = "pruned"

    def __init__(self, inner, kept, n_rows, fallback=None):
        source = kept
        kept = np.asarray(kept)
        if kept.ndim != 1 or kept.shape[0] != inner.n_rows:
            raise ShapeError(f"kept has shape {kept.shape}, expected ({inner.n_rows},): one id "
                             f"per inner row")
        if kept.size and not np.issubdtype(kept.dtype, np.integer):
            raise ShapeError(f"kept must hold integer row ids, got dtype {kept.dtype}")
        wide = kept.astype(np.int64)
        if wide.size and (wide[0] < 0 or wide[-1] >= n_rows or np.any(np.diff(wide) <= 0)):
            raise ShapeError(f"kept must be sorted unique row ids in [0, {n_rows})")
        if isinstance(inner, PrunedTable):
            raise ShapeError("a pruned table cannot wrap another pruned table")
        kept = np.ascontiguousarray(kept, dtype=kept_dtype(n_rows))
        self.inner = inner
        self._n_rows = int(n_rows)
        self._ids = self._bits = None
        if kept_nbytes(self._n_rows, kept.size) < kept.nbytes:
            mask = np.zeros(self._n_rows, bool)
            mask[kept] = True
            self._bits = hold(np.packbits(mask))
        else:
            self._ids = hold(kept, source)
        if fallback is not None:
            fallback = check_matrix(fallback, "fallback", np.float32, ndim=1)
            if fallback.shape != (inner.dim,):
                raise ShapeError(f"fallback has shape {fallback.shape}, expected ({inner.dim},)")
        self.fallback = hold(fallback, fallback)

    @classmethod
    def nbytes_for(cls, n_rows, dim, inner, fallback=False):
        """The kept-row map (:func:`kept_nbytes`), the inner table (``inner``: the TablePlan of
        the kept rows) and the optional float32 fallback row."""
        return (kept_nbytes(int(n_rows), inner.n_rows) + inner.nbytes +
                (4 * int(dim) if fallback else 0))

    def with_inner(self, inner, fallback=None):
        """This table's kept rows over another inner table of the same rows, with this table's
        fallback (or ``fallback`` when given: a step that changes the width maps it)."""
        return PrunedTable(inner, self.kept, self.n_rows,
                           self.fallback if fallback is None else fallback)

    with_stored = with_inner

    @property
    def stored(self):
        return self.inner

    def stored_ids(self):
        return self.kept

    def item_map(self):
        return self.kept

    def take(self, rows):
        """The pruned table of rows ``rows``: the kept ones among them, the same fallback."""
        where = self.inner_rows(rows)
        hit = where >= 0
        return PrunedTable(self.inner.take(where[hit]), np.flatnonzero(hit), where.shape[0],
                           self.fallback)

    def append(self, other):
        """The rows of ``other`` follow, the stored ones kept: ``other`` is a table in the inner
        storage (every new row kept) or a pruned one over it with the same fallback."""
        if other.stored is not other and not _same_vector(other.fallback, self.fallback):
            raise ShapeError("cannot append rows: their fallback differs from the table's")
        kept = np.concatenate([self.kept.astype(np.int64),
                               self.n_rows + np.asarray(other.stored_ids(), np.int64)])
        return PrunedTable(self.inner.append(other.stored), kept, self.n_rows + other.n_rows,
                           self.fallback)

    def faiss_index(self, faiss):
        """The full table in the inner storage (pruned rows holding the fallback), when the
        fallback has an exact code there."""
        if self.fallback is None:
            raise NoFaissForm("pruned items leave the catalogue (prune-rows without a "
                              "fallback), which a faiss index cannot mark")
        fallback = self.inner.exact_rows(self.fallback[None])
        if fallback is None:
            raise NoFaissForm(f"pruned rows decode to a fallback vector that has no code in "
                              f"the {self.inner.storage} table")
        where = self.inner_rows()
        where[where < 0] = self.inner.n_rows
        return self.inner.append(fallback).take(where).faiss_index(faiss)

    @property
    def kept(self):
        """Sorted kept row ids [n_kept] (uint16 or int32, :func:`kept_dtype`), read-only."""
        if self._ids is not None:
            return self._ids
        ids = np.flatnonzero(np.unpackbits(self._bits, count=self._n_rows))
        ids = ids.astype(kept_dtype(self._n_rows))
        ids.flags.writeable = False
        return ids

    @property
    def n_rows(self):
        return self._n_rows

    @property
    def dim(self):
        return self.inner.dim

    @property
    def scan_rows(self):
        return self.inner.n_rows

    def inner_rows(self, rows=None):
        """int64 [n]: the inner row of each requested row, -1 where the row was pruned."""
        idx = row_index(rows, self.n_rows)
        rows = np.arange(self.n_rows) if isinstance(idx, slice) else idx
        kept = self.kept
        if kept.size == 0:
            return np.full(rows.shape[0], -1, np.int64)
        pos = np.minimum(np.searchsorted(kept, rows), kept.shape[0] - 1)
        return np.where(kept[pos] == rows, pos, -1).astype(np.int64)

    def decode(self, rows=None):
        where = self.inner_rows(rows)
        out = np.zeros((where.shape[0], self.dim), np.float32)
        hit = where >= 0
        if hit.any():
            out[hit] = self.inner.decode(where[hit])
        if self.fallback is not None:
            out[~hit] = self.fallback
        return out

    def valid_rows(self):
        if self.fallback is not None:
            return None
        valid = np.zeros(self.n_rows, bool)
        valid[self.kept] = True
        return valid

    def arrays(self):
        out = {"kept": self._ids} if self._bits is None else {"kept_bits": self._bits}
        out.update({f"inner/{k}": v for k, v in self.inner.arrays().items()})
        if self.fallback is not None:
            out["fallback"] = self.fallback
        return out

    def params(self):
        return {"n_rows": self.n_rows, "inner_storage": self.inner.storage,
                "inner_params": self.inner.params()}

    @classmethod
    def from_arrays(cls, arrays, **params):
        inner_arrays = {k[len("inner/"):]: v for k, v in arrays.items() if k.startswith("inner/")}
        inner = table_from_arrays(params["inner_storage"], inner_arrays,
                                  params.get("inner_params", {}))
        n_rows = params["n_rows"]
        if "kept_bits" in arrays:
            bits = np.asarray(arrays["kept_bits"])
            if bits.dtype != np.uint8 or bits.shape != ((n_rows + 7) // 8,):
                raise ShapeError(f"kept_bits is {bits.dtype} {bits.shape}, expected uint8 "
                                 f"({(n_rows + 7) // 8},) for {n_rows} rows")
            mask = np.unpackbits(bits)
            if mask[n_rows:].any():
                raise ShapeError("kept_bits has bits set past the last row")
            kept = np.flatnonzero(mask[:n_rows])
        else:
            kept = arrays["kept"]
        return cls(inner, kept, n_rows, arrays.get("fallback"))


def _same_vector(a, b):
    return (a is None) == (b is None) and (a is None or np.array_equal(a, b))
