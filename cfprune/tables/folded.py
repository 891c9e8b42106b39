"""Users folded in from their history: a user table that ships no vectors.

``FoldedUsers`` (storage ``folded``) stands in for the user table of an ALS model: it holds no
array, only what the ALS user step needs (``regularization``, ``alpha``) and the table's shape.
Serving computes each requested user's vector from that user's interactions (the ``user_items``
rows ``recommend`` and ``evaluate`` take anyway) against the item table as it is stored, by the
closed-form ALS step (:mod:`cfprune.kernels.foldin`): ``(G + V_I^T diag(c - 1) V_I) x = V_I^T c``
with ``c = alpha * r`` and ``G = V^T V + regularization * I``.

``G`` (float64 [d, d]) is derived once per item table from its decoded rows (in chunks, pruned
rows as they decode) and cached while that table lives with the same arrays, as retrieval caches
the scan order; a new item table (``cfprune.add_items``) gets its own. It is not in the model
file: ``nbytes`` is 0 (no array), and :attr:`FoldedUsers.serving_nbytes` is the ``8 d^2`` bytes
of ``G``.
"""

from __future__ import annotations

import weakref

import numpy as np

from ..errors import DataError, ShapeError
from ..arrays import fingerprint
from .base import NORM_CHUNK_ROWS, Table, row_index

# item table (weakly held) -> (fingerprint of its arrays, its arrays, {regularization: G})
_GRAMS = weakref.WeakKeyDictionary()


class FoldedUsers(Table):
    """``n_rows`` users of ``dim`` factors, folded in at serving time (no arrays).

    Parameters
    ----------
    n_rows, dim : int
    regularization : float > 0; alpha : float > 0
        The ALS training values (``model.info`` of :func:`cfprune.train_als`)."""

    storage = "folded"

    def __init__(self, n_rows, dim, regularization, alpha):
        self._n_rows, self._dim = _count(n_rows, "n_rows"), _count(dim, "dim")
        self.regularization = _positive(regularization, "regularization")
        self.alpha = _positive(alpha, "alpha")

    @classmethod
    def nbytes_for(cls, n_rows, dim, **params):
        """0: the table stores no array."""
        return 0

    @property
    def n_rows(self):
        return self._n_rows

    @property
    def dim(self):
        return self._dim

    @property
    def serving_nbytes(self):
        """Bytes serving derives: the item Gram matrix ``G`` (float64 [d, d]), once per item
        table."""
        return 8 * self.dim * self.dim

    def arrays(self):
        return {}

    def params(self):
        return {"n_rows": self.n_rows, "dim": self.dim,
                "regularization": self.regularization, "alpha": self.alpha}

    @classmethod
    def from_arrays(cls, arrays, **params):
        if arrays:
            raise ShapeError(f"a folded user table holds no arrays, got {sorted(arrays)}")
        return cls(**params)

    def decode(self, rows=None):
        raise DataError("the users are folded in from their interactions at serving time "
                        "(fold-users): they have no stored vectors; pass user_items to "
                        "recommend/evaluate, and put steps that need user vectors (lowrank, a "
                        "users-side quantiser) before fold-users")

    def take(self, rows):
        rows = row_index(rows, self.n_rows)
        n = len(range(self.n_rows)[rows]) if isinstance(rows, slice) else rows.shape[0]
        return FoldedUsers(n, self.dim, self.regularization, self.alpha)

    def append(self, other):
        if not isinstance(other, FoldedUsers) or other.dim != self.dim or \
                (other.regularization, other.alpha) != (self.regularization, self.alpha):
            raise ShapeError(f"cannot append {other!r} to {self!r}: both must be folded users "
                             f"of the same width, regularization and alpha")
        return FoldedUsers(self.n_rows + other.n_rows, self.dim, self.regularization,
                           self.alpha)

    # serving ------------------------------------------------------------------------------------
    def query_vectors(self, rows, user_items, items):
        """float32 [n, dim]: users ``rows`` folded in from ``user_items`` (CSR [n, n_items], row
        i the interactions of ``rows[i]``) against ``items`` (the item Table as stored)."""
        if user_items is None:
            raise DataError("the users are folded in from their interactions (fold-users): "
                            "pass user_items to recommend/evaluate")
        n = np.atleast_1d(np.asarray(rows)).shape[0]
        if getattr(user_items, "format", None) != "csr":
            raise ShapeError(f"user_items must be a scipy CSR matrix, got "
                             f"{type(user_items).__name__}")
        if user_items.shape != (n, items.n_rows):
            raise ShapeError(f"user_items rows for {n} users over {items.n_rows} items expected, "
                             f"got shape {user_items.shape}")
        return self.fold_in(user_items, items)

    def fold_in(self, user_items, items):
        """float32 [n, dim]: the ALS user step of each row of ``user_items`` (scipy CSR [n,
        n_items]) against the item Table ``items``."""
        from ..kernels.foldin import solve_users
        if items.dim != self.dim:
            raise ShapeError(f"the item table has {items.dim} dimensions, the folded users "
                             f"{self.dim}")
        columns, local = np.unique(user_items.indices, return_inverse=True)
        vectors = items.decode(columns.astype(np.int64)) if columns.size else \
            np.zeros((0, self.dim), np.float32)
        return solve_users(self.gram(items), vectors, user_items.indptr, local.ravel(),
                           self.alpha * np.asarray(user_items.data, dtype=np.float64))

    def gram(self, items):
        """float64 [dim, dim]: ``V^T V + regularization * I`` of ``items`` as decoded, cached
        while the item table lives with the same arrays and contents."""
        from ..kernels.foldin import item_gram
        arrays = tuple(items.arrays().values())
        mark = fingerprint(arrays)
        known = _GRAMS.get(items)
        if known is None or known[0] != mark or not all(a is b for a, b in
                                                       zip(known[1], arrays)):
            known = (mark, arrays, {})
            _GRAMS[items] = known
        if self.regularization not in known[2]:
            known[2][self.regularization] = item_gram(_chunks(items), items.dim,
                                                      self.regularization)
        return known[2][self.regularization]

    def __repr__(self):
        return (f"FoldedUsers({self.n_rows} x {self.dim}, regularization="
                f"{self.regularization:g}, alpha={self.alpha:g})")


def _chunks(table):
    """The decoded rows of ``table`` in blocks of :data:`NORM_CHUNK_ROWS`."""
    for first in range(0, table.n_rows, NORM_CHUNK_ROWS):
        yield table.decode(np.arange(first, min(table.n_rows, first + NORM_CHUNK_ROWS)))




def _count(value, name):
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ShapeError(f"folded users: {name} must be a non-negative integer, got {value!r}")
    return int(value)


def _positive(value, name):
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ShapeError(f"folded users: {name} must be a positive number, got {value!r}")
    return value
