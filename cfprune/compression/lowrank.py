"""Rank truncation: ``lowrank:rank=32,mode=joint|items|users``.

``mode=joint`` (default) replaces the score matrix ``U V^T`` [users x items] by its
Frobenius-optimal rank-r approximation, without ever forming it: with thin QR factorisations
``U = Q_u R_u`` and ``V = Q_v R_v``, ``U V^T = Q_u (R_u R_v^T) Q_v^T``, so the SVD of the small
``R_u R_v^T = A S B^T`` [d x d] gives the SVD of ``U V^T`` and its rank-r truncation
``Q_u A_r S_r B_r^T Q_v^T``. It is written as the dense pair ``U' = Q_u A_r sqrt(S_r)``,
``V' = Q_v B_r sqrt(S_r)`` (the singular values split evenly between the sides), whose product is
that truncation exactly.

``mode=items`` truncates the item table alone: ``V ~ P_r S_r W_r^T`` (thin SVD), written as
``V' = P_r S_r``, ``U' = U W_r``, so ``U' V'^T = U (V W_r W_r^T)^T``. ``mode=users`` is the mirror
image. Both cost more score error than the joint truncation at the same rank.

Both tables come out dense float32 with ``rank`` columns (fewer when a side has fewer rows than
``rank``; the step records ``rank_used``). A row-pruned table keeps its wrapper: the truncation is
computed on its kept rows and its fallback vector is mapped by the same linear map as the rows
(for the joint mode ``f' = f R^+ A_r sqrt(S_r)``, exact for a fallback in the span of the rows,
such as their mean). Earlier storages are decoded to float first.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager

import numpy as np

from ..errors import SpecError
from ..tables import DenseTable
from .base import Compressor, Param


_USER_FACTORS = []   # stack of WeakKeyDictionary {user Table: triangular factor R of its stored rows}


def joint_truncation(u, v, rank, r_u=None):
    """Rank-``rank`` factors (U' [n_u, r], V' [n_v, r], singular values [min(d,...)], maps
    T_u [d, r], T_v [d, r]) of ``u v^T`` from float [n_u, d] and [n_v, d], computed in float64.
    ``r_u``: the triangular factor of ``u`` (:func:`triangular_factor`) when known.

    ``U' V'^T`` is the best rank-r approximation of ``u v^T`` in Frobenius norm; ``x @ T_u`` maps
    any vector in the row span of ``u`` as its rows were mapped (likewise ``T_v``). With
    ``u = Q_u R_u`` and ``v = Q_v R_v`` (R from the Cholesky factor of the Gram matrix, so Q is
    never formed: ``U' = u R_u^-1 A_r sqrt(S_r)``, the same as ``Q_u A_r sqrt(S_r)``); a side
    whose Gram matrix is singular (fewer rows than columns) takes the thin QR instead."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    ru = triangular_factor(u) if r_u is None else r_u
    rv = triangular_factor(v)
    if ru is None or rv is None:
        (qu, ru), (qv, rv) = np.linalg.qr(u), np.linalg.qr(v)
        au, bv, s = _split_svd(ru @ rv.T, rank)
        return qu @ au, qv @ bv, s, np.linalg.pinv(ru) @ au, np.linalg.pinv(rv) @ bv
    au, bv, s = _split_svd(ru @ rv.T, rank)
    tu, tv = np.linalg.solve(ru, au), np.linalg.solve(rv, bv)  # d x d (scipy.linalg: heavy import)
    return u @ tu, v @ tv, s, tu, tv


def _split_svd(m, rank):
    """(A_r sqrt(S_r), B_r sqrt(S_r), S) of the SVD ``m = A S B^T``, truncated to ``rank``."""
    a, s, bt = np.linalg.svd(m)
    root = np.sqrt(s[:min(rank, s.shape[0])])
    return a[:, :root.size] * root, bt[:root.size].T * root, s


def triangular_factor(x):
    """float64 [d, d] upper-triangular R with ``R^T R = x^T x`` (the R of a QR of ``x``, float
    [n, d], up to row signs), from the Cholesky factor of the Gram matrix; None when that is not
    positive definite (``x`` of rank below d; always when it has fewer rows than columns, which
    rounding could otherwise hide behind a tiny positive pivot)."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] < x.shape[1]:
        return None
    try:
        return np.linalg.cholesky(x.T @ x).T
    except np.linalg.LinAlgError:
        return None


def table_truncation(x, rank):
    """(x' = P_r S_r [n, r], W_r [d, r], singular values) of the thin SVD ``x = P S W^T``."""
    x = np.asarray(x, dtype=np.float64)
    p, s, wt = np.linalg.svd(x, full_matrices=False)
    r = min(rank, s.shape[0])
    return p[:, :r] * s[:r], wt[:r].T, s


@contextmanager
def shared_user_factorisation():
    """Within the block, the joint truncation factorises each user table once (tables are
    read-only): a search that truncates many row-prunings of one model's items at many ranks
    leaves its users as they are and pays for their Gram matrix and its Cholesky factor once. Dropped on leaving the block."""
    _USER_FACTORS.append(weakref.WeakKeyDictionary())
    try:
        yield
    finally:
        _USER_FACTORS.pop()


def _user_factor(table):
    """The :func:`triangular_factor` of ``table``'s stored rows, from the memo of the innermost
    :func:`shared_user_factorisation` (None outside one: computed by the caller)."""
    if not _USER_FACTORS:
        return None
    memo = _USER_FACTORS[-1]
    if table not in memo:
        memo[table] = triangular_factor(_stored_rows(table))
    return memo[table]


def _stored_rows(table):
    """float64 [n_stored, d]: the rows a table stores (a row-pruned table's kept rows)."""
    return table.stored.decode().astype(np.float64)


def _rewrap(table, rows, mapping):
    """``table``'s row map (``Table.with_stored``) over dense float32 ``rows`` [n_stored, r], its
    fallback, if any, mapped by ``mapping`` [d, r]."""
    fallback = None if table.fallback is None else \
        (table.fallback.astype(np.float64) @ mapping).astype(np.float32)
    return table.with_stored(DenseTable(np.ascontiguousarray(rows, dtype=np.float32)), fallback)


class LowRank(Compressor):
    """Truncate the factorisation to a lower rank (jointly or one table at a time)."""

    name = "lowrank"
    schema = {
        "rank": Param(int, 32, "rank kept (at most the model dimension)", low=1),
        "mode": Param(str, "joint", "joint: best rank-r U V^T; items/users: SVD of one table",
                      choices=("joint", "items", "users")),
    }

    def _compress(self, model, interactions):
        if self.rank > model.dim:
            raise SpecError(f"lowrank: rank={self.rank} exceeds the model dimension {model.dim}")
        if model.rerank is not None:
            raise SpecError("lowrank: the model has a re-rank table; put pq:...,rerank=... after "
                            "lowrank")
        v = _stored_rows(model.items)
        d = model.dim
        u = _stored_rows(model.users)
        if self.mode == "joint":
            u2, v2, s, tu, tv = joint_truncation(u, v, self.rank, _user_factor(model.users))
            info = {"singular_values": s[: min(len(s), 2 * self.rank)],
                    "energy_kept": float((s[: u2.shape[1]] ** 2).sum() / max((s ** 2).sum(),
                                                                            1e-300))}
        elif self.mode == "items":
            v2, w, s = table_truncation(v, self.rank)
            u2, tu, tv = u @ w, w, w
            info = {"singular_values": s[: min(len(s), 2 * self.rank)]}
        else:
            u2, w, s = table_truncation(u, self.rank)
            v2, tu, tv = v @ w, w, w
            info = {"singular_values": s[: min(len(s), 2 * self.rank)]}
        info["rank_used"] = int(u2.shape[1])
        info["dim_before"] = int(d)
        users = _rewrap(model.users, u2, tu)
        items = _rewrap(model.items, v2, tv)
        return model.replace(users=users, items=items), info, {"item_map": tv}

    def fitted_state(self, before, after, info, learned):
        """The linear map T [dim, rank] (float64, ``learned["item_map"]``) that took every item
        row to its rank-r coordinates: a new item vector v becomes ``v @ T``."""
        from .fitted import FittedStep
        return FittedStep(self.name, self.spec_string(), {}, {"map": learned["item_map"]})

    @classmethod
    def encode_rows(cls, table, params, arrays):
        """New rows mapped by the fitted projection, dense float32."""
        x = table.decode().astype(np.float64)
        if x.shape[1] != arrays["map"].shape[0]:
            raise SpecError(f"lowrank: new rows have {x.shape[1]} dimensions, the fitted map "
                            f"takes {arrays['map'].shape[0]}")
        return DenseTable((x @ arrays["map"]).astype(np.float32))

    def plan_table(self, plan, n_users=None, side="items", n_items=None):
        """The ``side`` table's plan (see :meth:`Compressor.plan_table`): dense float32 of the
        rank used, which the singular values bound: at most the stored item rows (modes joint
        and items) and the user rows (joint and users). For ``side="items"`` the item rows are
        ``plan``'s stored rows and ``n_users`` the user rows; for ``side="users"`` the user rows
        are ``plan``'s and ``n_items`` the stored item rows (None: not limiting). A row-pruned
        plan keeps its wrapper."""
        if self.rank > plan.dim:
            raise SpecError(f"lowrank: rank={self.rank} exceeds the model dimension {plan.dim}")
        rows = plan.stored
        item_rows, user_rows = (rows.n_rows, n_users) if side == "items" else \
            (n_items, rows.n_rows)
        rank = self.rank
        if self.mode in ("joint", "items") and item_rows is not None:
            rank = min(rank, int(item_rows))
        if self.mode in ("joint", "users") and user_rows is not None:
            rank = min(rank, int(user_rows))
        return plan.with_stored(DenseTable.plan(rows.n_rows, rank))
