"""Interactions: a user x item log over dense indices, with the raw-id maps both ways.

The log is held as one CSR matrix whose non-zeros are the (user, item) pairs, sorted by user then
item, with no duplicates. ``ratings`` and ``timestamps`` are aligned with ``matrix.data`` (entry
``j`` of each belongs to the ``j``-th stored pair), so filtering and splitting only ever select
entries, and the id maps stay shared by every split of one dataset.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .errors import DataError, ShapeError

DUPLICATE_RULES = ("sum", "last", "max")


class Interactions:
    """A user x item interaction log.

    Attributes
    ----------
    matrix : scipy.sparse.csr_matrix, float32, shape (n_users, n_items)
        The implicit-feedback matrix: one stored value per (user, item) pair (1.0 after
        :meth:`implicit`, otherwise the rating), indices sorted within each row.
    ratings : ndarray float32 [nnz]
        The explicit rating of each stored pair, aligned with ``matrix.data``.
    has_ratings : bool
        False when the source had no ratings (implicit feedback: a log of events, each a
        positive); ``ratings`` then counts the events of each pair and :meth:`implicit` applies
        no threshold.
    timestamps : ndarray int64 [nnz] or None
        The time of each stored pair, aligned with ``matrix.data``; None when the source has none.
    user_ids, item_ids : ndarray [n_users], [n_items]
        Raw id of each dense index (int64 or str).
    name : str
        Where the data came from (a dataset name or a file path).
    """

    def __init__(self, matrix, ratings=None, timestamps=None, *, user_ids=None, item_ids=None,
                 name="", has_ratings=True):
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        matrix.sum_duplicates()
        matrix.sort_indices()
        if ratings is None:
            ratings = matrix.data.copy()
        ratings = np.ascontiguousarray(ratings, dtype=np.float32)
        if ratings.shape != (matrix.nnz,):
            raise ShapeError(f"ratings has shape {ratings.shape}, expected ({matrix.nnz},), one per "
                             f"stored pair")
        if timestamps is not None:
            timestamps = np.ascontiguousarray(timestamps, dtype=np.int64)
            if timestamps.shape != (matrix.nnz,):
                raise ShapeError(f"timestamps has shape {timestamps.shape}, expected "
                                 f"({matrix.nnz},)")
        n_users, n_items = matrix.shape
        self.matrix = matrix
        self.ratings = ratings
        self.timestamps = timestamps
        self.user_ids = _id_array(user_ids, n_users, "user_ids")
        self.item_ids = _id_array(item_ids, n_items, "item_ids")
        self.name = name
        self.has_ratings = bool(has_ratings)
        self._user_index = None
        self._item_index = None

    # construction ---------------------------------------------------------------------------
    @classmethod
    def from_log(cls, users, items, ratings=None, timestamps=None, *, duplicates="sum", name=""):
        """Build from raw ids of any hashable type.

        Parameters
        ----------
        users, items : array-like [n]
            Raw user and item ids, one per event.
        ratings : array-like float [n] or None
            Event weights; None for implicit feedback: 1.0 per event, and the log's
            ``has_ratings`` is False (no threshold applies to it).
        timestamps : array-like int [n] or None
        duplicates : {"sum", "last", "max"}
            How events on the same (user, item) pair combine: ratings summed, the last event in
            file order kept, or the largest kept. Timestamps take the latest time.
        """
        if duplicates not in DUPLICATE_RULES:
            raise DataError(f"duplicates={duplicates!r}; expected one of {DUPLICATE_RULES}")
        users = np.asarray(users)
        items = np.asarray(items)
        if users.shape != items.shape or users.ndim != 1:
            raise ShapeError(f"users {users.shape} and items {items.shape} must be 1-D of one length")
        n = users.shape[0]
        has_ratings = ratings is not None
        ratings = np.ones(n, np.float32) if ratings is None else np.asarray(ratings, np.float32)
        if ratings.shape != (n,):
            raise ShapeError(f"ratings has shape {ratings.shape}, expected ({n},)")
        if not np.all(np.isfinite(ratings)):
            bad = int(np.flatnonzero(~np.isfinite(ratings))[0])
            raise DataError(f"rating of event {bad} is {ratings[bad]}; ratings must be finite")
        u, user_ids = _factorize(users, "user")
        i, item_ids = _factorize(items, "item")
        key = u * len(item_ids) + i
        order = np.argsort(key, kind="stable")
        key_sorted = key[order]
        starts = np.flatnonzero(np.r_[True, key_sorted[1:] != key_sorted[:-1]])
        ends = np.r_[starts[1:], n]
        r_sorted = ratings[order]
        if duplicates == "sum":
            r = np.add.reduceat(r_sorted, starts) if n else r_sorted
        elif duplicates == "max":
            r = np.maximum.reduceat(r_sorted, starts) if n else r_sorted
        else:
            r = r_sorted[ends - 1]
        ts = None
        if timestamps is not None:
            t = np.asarray(timestamps, np.int64)
            if t.shape != (n,):
                raise ShapeError(f"timestamps has shape {t.shape}, expected ({n},)")
            ts = np.maximum.reduceat(t[order], starts) if n else t
        uk = key_sorted[starts] // max(len(item_ids), 1)
        ik = key_sorted[starts] % max(len(item_ids), 1)
        matrix = sp.csr_matrix((r.astype(np.float32), (uk, ik)),
                               shape=(len(user_ids), len(item_ids)), dtype=np.float32)
        # pairs are unique and sorted by (user, item), so CSR order equals key order
        return cls(matrix, r, ts, user_ids=user_ids, item_ids=item_ids, name=name,
                   has_ratings=has_ratings)

    # views ----------------------------------------------------------------------------------
    @property
    def shape(self):
        return self.matrix.shape

    @property
    def n_users(self):
        return self.matrix.shape[0]

    @property
    def n_items(self):
        return self.matrix.shape[1]

    @property
    def nnz(self):
        return self.matrix.nnz

    @property
    def user_index(self):
        """dict raw user id -> dense index."""
        if self._user_index is None:
            self._user_index = {k: j for j, k in enumerate(self.user_ids.tolist())}
        return self._user_index

    @property
    def item_index(self):
        """dict raw item id -> dense index."""
        if self._item_index is None:
            self._item_index = {k: j for j, k in enumerate(self.item_ids.tolist())}
        return self._item_index

    def entry_users(self):
        """int32 [nnz]: the user index of each stored pair."""
        return np.repeat(np.arange(self.n_users, dtype=np.int32), np.diff(self.matrix.indptr))

    def __repr__(self):
        ts = "with" if self.timestamps is not None else "without"
        return (f"Interactions({self.name!r}: {self.n_users} users x {self.n_items} items, "
                f"{self.nnz} pairs, {ts} timestamps)")

    # derived logs ---------------------------------------------------------------------------
    def select(self, mask):
        """A log with the same shape and id maps holding only the entries where ``mask`` is True.

        mask : bool [nnz], aligned with ``matrix.data``.
        """
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.nnz,):
            raise ShapeError(f"entry mask has shape {mask.shape}, expected ({self.nnz},)")
        m = self.matrix
        counts = np.bincount(self.entry_users()[mask], minlength=self.n_users)
        indptr = np.r_[0, np.cumsum(counts)].astype(m.indptr.dtype)
        matrix = sp.csr_matrix((m.data[mask], m.indices[mask], indptr), shape=m.shape)
        ts = None if self.timestamps is None else self.timestamps[mask]
        out = Interactions.__new__(Interactions)
        out.matrix, out.ratings, out.timestamps = matrix, self.ratings[mask], ts
        out.user_ids, out.item_ids, out.name = self.user_ids, self.item_ids, self.name
        out.has_ratings = self.has_ratings
        out._user_index, out._item_index = self._user_index, self._item_index
        return out

    def implicit(self, threshold=4.0, min_user_interactions=0, min_item_interactions=0):
        """Binary implicit feedback: keep pairs with rating >= ``threshold`` (None keeps all),
        set their value to 1.0, then, when a minimum is set, drop users and items with too few
        interactions, repeating until both minimums hold (a k-core); users and items left empty
        are then removed too and the indices renumbered densely, the id maps following. With
        both minimums 0 the shape is kept.

        A log without ratings (``has_ratings`` False: implicit feedback) keeps every pair
        whatever ``threshold`` is. A threshold that drops every pair of a rated log raises
        DataError naming the threshold and the ratings' range."""
        if threshold is None or not self.has_ratings:
            keep = np.ones(self.nnz, bool)
        else:
            keep = self.ratings >= threshold
            if self.nnz and not keep.any():
                raise DataError(
                    f"{self.name or 'the log'}: every one of its {self.nnz} rated pairs is below "
                    f"the threshold {threshold:g} (ratings run from {self.ratings.min():g} to "
                    f"{self.ratings.max():g}); lower the threshold (--threshold), or keep every "
                    f"event with threshold=None (--threshold -1)")
        out = self.select(keep)
        out.matrix.data[:] = 1.0
        if min_user_interactions or min_item_interactions:
            out = out._core(int(min_user_interactions), int(min_item_interactions))
        return out

    def _core(self, min_user, min_item):
        cur = self
        while True:
            users_ok = np.diff(cur.matrix.indptr) >= max(min_user, 1)
            item_counts = np.bincount(cur.matrix.indices, minlength=cur.n_items)
            items_ok = item_counts >= max(min_item, 1)
            if users_ok.all() and items_ok.all():
                return cur
            cur = cur.restrict(np.flatnonzero(users_ok), np.flatnonzero(items_ok))

    def restrict(self, users, items):
        """A log over a subset of users and items (dense indices, sorted), renumbered 0..n-1."""
        users = np.asarray(users, np.int64)
        items = np.asarray(items, np.int64)
        sub = self.matrix[users][:, items].tocsr()
        # recover the entry alignment: map each kept entry back to its position in self
        pos = sp.csr_matrix((np.arange(1, self.nnz + 1, dtype=np.float64), self.matrix.indices,
                             self.matrix.indptr), shape=self.shape)[users][:, items].tocsr()
        pos.sort_indices()
        sub.sort_indices()
        idx = pos.data.astype(np.int64) - 1
        ts = None if self.timestamps is None else self.timestamps[idx]
        return Interactions(sub, self.ratings[idx], ts, user_ids=self.user_ids[users],
                            item_ids=self.item_ids[items], name=self.name,
                            has_ratings=self.has_ratings)

    def item_counts(self):
        """int64 [n_items]: how many users interacted with each item."""
        return np.bincount(self.matrix.indices, minlength=self.n_items).astype(np.int64)


def _factorize(raw, what):
    """(int64 codes [n], sorted unique ids): dense indices of raw ids in sorted id order (a hash
    pass, several times faster than a sort-based unique on tens of millions of events)."""
    import pandas as pd  # imported here: loading a model for serving never needs pandas

    codes, uniques = pd.factorize(raw, sort=True)
    if codes.size and codes.min() < 0:
        bad = int(np.flatnonzero(codes < 0)[0])
        raise DataError(f"{what} id of event {bad} is missing")
    return codes.astype(np.int64, copy=False), np.asarray(uniques)


def _id_array(ids, n, what):
    if ids is None:
        return np.arange(n, dtype=np.int64)
    ids = np.asarray(ids)
    if ids.shape != (n,):
        raise ShapeError(f"{what} has shape {ids.shape}, expected ({n},)")
    if ids.dtype == object:
        ids = ids.astype(str)
    return ids


def as_csr(x, name, rebuild=True):
    """The canonical float32 CSR (sorted indices, no duplicates) of an :class:`Interactions` or a
    scipy.sparse matrix; ShapeError naming ``name`` for anything else. ``rebuild=False``: a
    matrix already in that form comes back as it is, not as a new object over its arrays (for
    callers that only read it: building one costs 0.05 ms, much of a single-user call)."""
    matrix = x.matrix if isinstance(x, Interactions) else x
    if not sp.issparse(matrix):
        raise ShapeError(f"{name} must be an Interactions or a scipy.sparse matrix, got "
                         f"{type(x).__name__}")
    if not rebuild and matrix.format == "csr" and matrix.dtype == np.float32 and \
            matrix.has_canonical_format:
        return matrix
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    return csr
