"""FactorModel: a user table and an item table, whatever their storage."""

from __future__ import annotations

import numpy as np

from ..errors import ModelFileError, ShapeError
from ..io import load_arrays, save_arrays
from ..tables import DenseTable, Table, table_from_arrays
from .fitted import FittedStep

SIDES = ("users", "items", "rerank")


def as_table(t, name):
    """A Table from a Table or a float array [n, d] (wrapped as float32 dense)."""
    if isinstance(t, Table):
        return t
    a = np.asarray(t)
    if a.ndim != 2:
        raise ShapeError(f"{name} factors must be 2-D [rows, factors], got shape {a.shape}")
    if a.dtype.kind != "f":
        raise ShapeError(f"{name} factors must be floating point, got dtype {a.dtype}")
    try:
        return DenseTable(a)
    except ShapeError as e:
        raise ShapeError(f"{name} factors: {e}") from None


class FactorModel:
    """A matrix-factorisation model whose score is ``users[u] . items[i]``.

    Parameters
    ----------
    users : Table or float array [n_users, dim]
    items : Table or float array [n_items, dim]
    rerank : Table [n_items, dim] or None
        A second, more exact item table used to re-rank the candidates scanned from ``items``
        (two-stage retrieval).
    user_ids, item_ids : array [n_users], [n_items] or None
        Raw ids of the rows, kept through compression and saving.
    spec : str
        The compression spec that produced the model ("" for an uncompressed model).
    info : dict
        JSON-able provenance (training parameters, dataset, ...).
    fitted : list of FittedStep or None
        What each compression step fitted on the item table (codebooks, rotation, scales, the
        low-rank map, ...), in order: plain records (:mod:`cfprune.models.fitted`) that
        :func:`cfprune.add_items` encodes new items with, without refitting. ``[]`` for an
        uncompressed model; None when unknown (a model read from a version-1 file).
    """

    def __init__(self, users, items, *, rerank=None, user_ids=None, item_ids=None, spec="",
                 info=None, candidates=None, fitted=None):
        self.users = as_table(users, "user")
        self.items = as_table(items, "item")
        self.rerank = None if rerank is None else as_table(rerank, "rerank")
        if self.users.dim != self.items.dim:
            raise ShapeError(f"user factors have {self.users.dim} dimensions but item factors have "
                             f"{self.items.dim}; they must agree")
        if self.rerank is not None and self.rerank.shape != self.items.shape:
            raise ShapeError(f"rerank table has shape {self.rerank.shape}, expected "
                             f"{self.items.shape}")
        self.user_ids = _ids(user_ids, self.users.n_rows, "user_ids")
        self.item_ids = _ids(item_ids, self.items.n_rows, "item_ids")
        self.spec = spec
        self.info = dict(info or {})
        self.candidates = None if candidates is None else int(candidates)
        self.fitted = list(fitted) if fitted is not None else ([] if not spec else None)

    # sizes ----------------------------------------------------------------------------------
    @property
    def n_users(self):
        return self.users.n_rows

    @property
    def n_items(self):
        return self.items.n_rows

    @property
    def dim(self):
        return self.items.dim

    @property
    def nbytes(self):
        """Exact serving bytes: every array of the user, item and re-rank tables."""
        return self.users.nbytes + self.items.nbytes + \
            (0 if self.rerank is None else self.rerank.nbytes)

    def tables(self):
        """dict side -> Table of the tables this model holds."""
        out = {"users": self.users, "items": self.items}
        if self.rerank is not None:
            out["rerank"] = self.rerank
        return out

    def replace(self, **changes):
        """A copy with some of users/items/rerank/spec/info/candidates replaced."""
        kw = dict(users=self.users, items=self.items, rerank=self.rerank, user_ids=self.user_ids,
                  item_ids=self.item_ids, spec=self.spec, info=self.info,
                  candidates=self.candidates, fitted=self.fitted)
        kw.update(changes)
        return FactorModel(**kw)

    # new users (new items: cfprune.add_items, which encodes them with the fitted state) -----
    def fold_in_users(self, user_items, regularization=None, alpha=None):
        """float32 [n, dim]: users folded in from ``user_items`` (CSR [n, n_items]) by the
        closed-form ALS step against this model's (compressed, decoded) item table.
        ``regularization``/``alpha`` default to the training values in ``info``."""
        from .foldin import fold_in_users
        reg = self.info.get("regularization") if regularization is None else regularization
        if reg is None:
            raise ShapeError("fold_in_users needs the ALS regularization, which the model's "
                             "info does not record: pass regularization=")
        alpha = self.info.get("alpha", 1.0) if alpha is None else alpha
        return fold_in_users(self.items.decode(), user_items, float(reg), float(alpha))

    # factors --------------------------------------------------------------------------------
    @property
    def user_factors(self):
        """float32 [n_users, dim]: the decoded user table."""
        return self.users.decode()

    @property
    def item_factors(self):
        """float32 [n_items, dim]: the decoded item table."""
        return self.items.decode()

    # retrieval ------------------------------------------------------------------------------
    def recommend(self, users, user_items, k=10, filter_seen=True, candidates=None,
                  batch_size=None, num_threads=None, *, user_items_rows="auto"):
        """Top-k items for ``users`` by inner product, skipping the items each user has.

        Parameters
        ----------
        users : int or int array [n]
        user_items : scipy.sparse CSR
            The users' known items: one row per entry of ``users`` (``implicit``'s convention),
            or one row per model user indexed by user id (``user_items_rows="requested"`` or
            ``"model"``; ``"auto"`` tells them apart by the row count, and when ``users``
            lists every model user in another order, where both counts agree, raises a
            ShapeError asking which is meant).
        k : int
            Number of items per user; more than the catalogue is padded with id -1, score -inf.
        filter_seen : bool
            Skip the items of each user's row of ``user_items``.
        candidates : int or None
            Two-stage retrieval: scan this many candidates from ``items`` and re-rank them with
            ``rerank`` (default: the model's own ``candidates`` when it has a re-rank table).

        Returns
        -------
        ids : int32 [n, k]; scores : float32 [n, k]
            Best first; ties broken by lower item id.
        """
        from ..retrieval import recommend
        return recommend(self, users, user_items, k=k, filter_seen=filter_seen,
                         candidates=candidates, batch_size=batch_size, num_threads=num_threads,
                         user_items_rows=user_items_rows)

    # persistence ----------------------------------------------------------------------------
    def save(self, path):
        """Write the model atomically to ``path`` (versioned ``.npz``, see :mod:`cfprune.io`)."""
        info = dict(self.info)
        if self.candidates is not None:
            info["candidates"] = self.candidates
        fitted = None if self.fitted is None else [f.record() for f in self.fitted]
        save_arrays(path, self.tables(), ids={"users": self.user_ids, "items": self.item_ids},
                    spec=self.spec, info=info, fitted=fitted)

    @classmethod
    def load(cls, path):
        """Read and verify a model written by :meth:`save`."""
        meta, sides, ids, fitted = load_arrays(path, with_fitted=True)
        tables = {}
        for side, t in meta["tables"].items():
            if side not in SIDES:
                raise ModelFileError(f"{path}: unknown table side {side!r}")
            try:
                table = table_from_arrays(t["storage"], sides[side], t.get("params", {}))
            except (KeyError, TypeError, ShapeError) as e:
                raise ModelFileError(f"{path}: the {side} table does not match its "
                                     f"{t.get('storage')!r} schema: {e}") from None
            if list(table.shape) != list(t["shape"]):
                raise ModelFileError(f"{path}: the {side} table has shape {table.shape}, the "
                                     f"file says {tuple(t['shape'])}")
            tables[side] = table
        if "users" not in tables or "items" not in tables:
            raise ModelFileError(f"{path} holds no users and items tables")
        info = dict(meta.get("info", {}))
        candidates = info.pop("candidates", None)
        try:
            return cls(tables["users"], tables["items"], rerank=tables.get("rerank"),
                       user_ids=ids.get("users"), item_ids=ids.get("items"),
                       spec=meta.get("spec", ""), info=info, candidates=candidates,
                       fitted=_fitted_steps(fitted, meta.get("spec", "")))
        except ShapeError as e:
            raise ModelFileError(f"{path}: {e}") from None

    def __repr__(self):
        s = f", spec={self.spec!r}" if self.spec else ""
        return (f"FactorModel(users={self.users!r}, items={self.items!r}{s}, "
                f"nbytes={self.nbytes})")


def _ids(ids, n, name):
    if ids is None:
        return None
    ids = np.asarray(ids)
    if ids.shape != (n,):
        raise ShapeError(f"{name} has shape {ids.shape}, expected ({n},)")
    return ids


def _fitted_steps(records, spec):
    """list of FittedStep from a file's fitted records (None: unknown, unless the model is
    uncompressed)."""
    if records is None:
        return None if spec else []
    return [FittedStep.from_record(r, arrays) for r, arrays in records]
