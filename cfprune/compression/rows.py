"""Row pruning: ``prune-rows:keep=0.9,by=norm|popularity|budget|reach``.

Keeps a subset of a table's rows and stores them as a :class:`~cfprune.tables.PrunedTable`:

- ``by=norm``: the ``round(keep * n)`` rows of largest L2 norm;
- ``by=popularity``: the ``round(keep * n)`` rows with the most training interactions (items:
  users who interacted; users: items interacted with) — needs the training interactions;
- ``by=budget``: as many rows as fit in ``budget_bytes`` (the whole pruned table: kept ids, kept
  rows in their current storage and the fallback), rows taken in ``order=norm|popularity``.
  With ``table=both`` the budget applies to each table;
- ``by=reach,k=K`` (items only): keep the items that appear in at least one training user's
  top-``K`` list of the model being pruned (seen items filtered, as served; users with no
  training interaction are not asked). Every such list is unchanged by the pruning, so those
  users lose nothing at any cut-off up to ``K``; the rows are taken by how many lists they
  appear in. Needs the training interactions.

Ties go to the lower row id. At least one row is kept.

What a pruned row becomes (``fallback``):

- users (``fallback=auto`` means ``mean``): the mean of the user rows before pruning, so a pruned
  user is served the average user's ranking; ``zero`` stores a zero vector (every item scores 0
  and ties fall to the lowest item ids); ``none`` stores nothing (rows decode as zeros and are
  marked invalid).
- items (``fallback=auto`` means ``none``): a pruned item leaves the catalogue: it is never
  recommended (``valid_rows()`` False). ``fallback=mean`` instead gives every pruned item the mean
  item row, so it stays recommendable with a generic score.

The step records, per table, the rows kept and their fraction, and for items the catalogue
coverage (fraction of items still recommendable) and, when the interactions are given, the
fraction of training interactions that fall on kept items.

A table that is already row-pruned is pruned further among its kept rows. Rows are selected in
their current storage (dense, fp16, int8, int4, int2, pq, sparse), so ``int8|prune-rows`` keeps the
int8 codes.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..errors import SpecError
from ..tables import PrunedTable
from .base import Param, TableCompressor


def rank_rows(scores):
    """int64 [n]: row ids by decreasing score, ties to the lower id."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.lexsort((np.arange(scores.shape[0]), -scores))


class PruneRows(TableCompressor):
    """Keep the largest-norm, most popular, budget-fitting or reached rows of a table."""

    name = "prune-rows"
    schema = {
        "keep": Param(float, 0.9, "fraction of rows kept (by=norm|popularity)", low=0.0,
                      high=1.0, low_open=True),
        "by": Param(str, "norm", "which rows to keep",
                    choices=("norm", "popularity", "budget", "reach")),
        "k": Param(int, 20, "by=reach: keep the items in some training user's top-k", low=1),
        "budget_bytes": Param(int, None, "by=budget: bytes the pruned table may take", low=1,
                              optional=True),
        "order": Param(str, "norm", "by=budget: rows taken by norm or popularity",
                       choices=("norm", "popularity")),
        "fallback": Param(str, "auto", "pruned rows: auto (users mean, items none), mean, zero "
                          "or none (items leave the catalogue)",
                          choices=("auto", "mean", "zero", "none")),
        **TableCompressor.schema,
    }
    through_pruned = False

    def _check_params(self):
        if self.by == "budget" and self.budget_bytes is None:
            raise SpecError("prune-rows: by=budget needs budget_bytes=<bytes>")
        if self.by != "budget" and self.budget_bytes is not None:
            raise SpecError(f"prune-rows: budget_bytes applies to by=budget, not by={self.by}")
        if self.by != "budget" and self._non_default("order"):
            raise SpecError(f"prune-rows: order applies to by=budget, not by={self.by}")
        if self.by in ("budget", "reach") and self._non_default("keep"):
            raise SpecError(f"prune-rows: by={self.by} decides how many rows to keep; drop keep=")
        if self.by != "reach" and self._non_default("k"):
            raise SpecError(f"prune-rows: k applies to by=reach, not by={self.by}")
        if self.by == "reach" and self.table != "items":
            raise SpecError("prune-rows: by=reach prunes the item table; use table=items")

    def requires_interactions(self):
        return self.by == "reach" or \
            "popularity" in (self.by, self.order if self.by == "budget" else None)

    def compress_table(self, table, ctx):
        inner, ids = table.stored, table.stored_ids().astype(np.int64)
        criterion = self.order if self.by == "budget" else self.by
        if criterion == "norm":
            scores = np.linalg.norm(inner.decode().astype(np.float64), axis=1)
        elif criterion == "reach":
            scores = reach_counts(ctx.model, ctx.interactions, self.k)[ids]
        else:
            counts = _counts(ctx.interactions, ctx.side)
            scores = counts[ids]
        ranked = rank_rows(scores)
        fallback = self._fallback(inner, ctx.side)
        if self.by == "budget":
            n_keep = self._fit_budget(inner, ids, ranked, table.n_rows, fallback)
        elif self.by == "reach":
            n_keep = max(1, int(np.count_nonzero(scores)))
        else:
            n_keep = max(1, int(np.floor(self.keep * inner.n_rows + 0.5)))
        chosen = np.sort(ranked[:n_keep])
        pruned = PrunedTable(inner.take(chosen), ids[chosen], table.n_rows, fallback)
        info = {"rows": int(table.n_rows), "kept": int(n_keep),
                "kept_fraction": n_keep / max(table.n_rows, 1),
                "fallback": "none" if fallback is None else self._fallback_rule(ctx.side)}
        if ctx.side == "items":
            valid = pruned.valid_rows()
            info["catalogue_coverage"] = 1.0 if valid is None else float(valid.mean())
            if ctx.interactions is not None:
                counts = _counts(ctx.interactions, "items")
                info["interactions_kept"] = float(counts[ids[chosen]].sum() /
                                                  max(counts.sum(), 1))
        return pruned, info

    def item_state(self, before, after, info):
        """Nothing: a new item is always kept (appended to the kept-row map, see
        :func:`cfprune.compression.fitted.append_rows`)."""
        return {}, {}

    @classmethod
    def encode_rows(cls, table, params, arrays):
        """New items pass unchanged: they are kept, in the storage they arrive in."""
        return table

    def _fallback_rule(self, side):
        if self.fallback == "auto":
            return "mean" if side == "users" else "none"
        return self.fallback

    def _fallback(self, inner, side):
        """float32 [d] or None: what pruned rows decode to."""
        rule = self._fallback_rule(side)
        if rule == "none":
            return None
        if rule == "zero":
            return np.zeros(inner.dim, np.float32)
        return inner.decode().astype(np.float64).mean(axis=0).astype(np.float32)

    def _fit_budget(self, inner, ids, ranked, n_rows, fallback):
        """The largest number of top-ranked rows whose PrunedTable fits ``budget_bytes``."""
        def size(n):
            chosen = np.sort(ranked[:n])
            return PrunedTable(inner.take(chosen), ids[chosen], n_rows, fallback).nbytes

        if size(1) > self.budget_bytes:
            raise SpecError(f"prune-rows: budget_bytes={self.budget_bytes} cannot hold even one "
                            f"row ({size(1)} bytes)")
        lo, hi = 1, inner.n_rows
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if size(mid) <= self.budget_bytes:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def plan_table(self, plan, kept=None, side="items"):
        """The pruned ``side`` table's plan (see :meth:`Compressor.plan_table`): the kept rows in
        the storage they had. ``kept``: how many rows by=reach keeps (what the caller measured
        with :func:`reach_counts`; by=norm|popularity derive it from ``keep``)."""
        if side not in self.sides():
            return plan
        rows = plan.stored
        if self.by in ("norm", "popularity"):
            kept = max(1, int(np.floor(self.keep * rows.n_rows + 0.5)))
        elif self.by == "budget" or kept is None:
            raise SpecError(f"{self.spec_string()}: how many rows it keeps is known only when "
                            f"fitted (by=reach: pass kept=)")
        return PrunedTable.plan(plan.n_rows, plan.dim, inner=rows.replace(n_rows=int(kept)),
                                fallback=self._fallback_rule(side) != "none")


_REACH_MEMO = []   # stack of dicts {pair key: (model, interactions, ids)}


def reach_counts(model, interactions, k):
    """int64 [n_items]: in how many top-``k`` lists of ``model`` each item appears, over the
    users with at least one interaction in ``interactions`` (CSR [n_users, n_items], their seen
    items filtered). The users are those the model serves: a folded user table
    (``fold-users``) folds them in from ``interactions`` against the current item table.

    Inside :func:`shared_reach_lists` the lists of a model and interactions are ranked once, at
    the largest ``k`` asked, and every smaller ``k`` counts their first ``k`` entries (the same
    lists: a top-k is the head of a longer top list)."""
    ids = reach_lists(model, interactions, k)
    ids = ids[ids >= 0]
    return np.bincount(ids, minlength=model.n_items).astype(np.int64)


def reach_lists(model, interactions, k):
    """int32 [n, k]: ``model``'s top-``k`` ids (seen items filtered, -1 for none) of the ``n``
    users with at least one interaction in ``interactions``, ascending; inside
    :func:`shared_reach_lists` the heads of the lists ranked once at the largest ``k`` asked."""
    if not _REACH_MEMO:
        return _reach_lists(model, interactions, k)
    memo = _REACH_MEMO[-1]
    key = _pair_key(model, interactions)
    held = memo.get(key)
    if held is None or held[2].shape[1] < k:
        held = (model, interactions, _reach_lists(model, interactions, k))
        memo[key] = held      # holding the objects keeps their ids from being reused
    return held[2][:, :k]


def _pair_key(model, interactions):
    """The model by identity, the interactions by the arrays they view (a step wraps the CSR it
    is given anew, sharing its arrays); the memo holds both, so neither can be reused."""
    return (id(model), interactions.shape, interactions.nnz,
            interactions.indptr.ctypes.data, interactions.indices.ctypes.data)


def _reach_lists(model, interactions, k):
    users = np.flatnonzero(np.diff(interactions.indptr) > 0)
    ids, _ = model.recommend(users, interactions, k=k, filter_seen=True)
    return ids


@contextmanager
def shared_reach_lists():
    """Within the block, :func:`reach_counts` ranks each (model, interactions) pair once: the
    first call should ask for the largest ``k``. The lists (int32 [n_users, k] per pair) are
    dropped on leaving it."""
    _REACH_MEMO.append({})
    try:
        yield
    finally:
        _REACH_MEMO.pop()


def _counts(interactions, side):
    """int64 interaction counts per item (side="items") or per user."""
    if side == "items":
        return np.bincount(interactions.indices, minlength=interactions.shape[1]).astype(np.int64)
    return np.diff(interactions.indptr).astype(np.int64)
