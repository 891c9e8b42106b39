"""The search's byte model: the serving bytes of a model (its item side, or the whole model), and
of a pipeline's tables before they are fitted, asked of the storages through the steps' table
plans (:meth:`~cfprune.compression.base.Compressor.plan_table` with its ``side`` argument,
:class:`~cfprune.tables.TablePlan`)."""

from __future__ import annotations

import math

from ...errors import SpecError
from ...tables import DenseTable
from ..lowrank import LowRank
from ..rows import PruneRows

SIDES = ("items", "both")


def serving_bytes(model, side="items"):
    """Bytes ``model`` holds to serve: ``side="items"`` the item table and any re-rank table;
    ``side="both"`` the whole model, the user table too.

    A search with ``side="items"`` ranks candidates by the item side: it leaves the user table in
    its storage (only low rank narrows it), and counting it would reward a lower rank for
    shrinking the users rather than the catalogue. With ``side="both"`` it compresses the users
    too and ranks by the whole model."""
    items = int(model.items.nbytes + (0 if model.rerank is None else model.rerank.nbytes))
    return items if side == "items" else items + int(model.users.nbytes)


def planned_item_bytes(steps, n_items, dim, n_users, reach_kept=None):
    """Exact bytes of the item table ``steps`` (list of Compressor) make of a float32 item table
    of ``n_items`` x ``dim``, before fitting: the steps' plans chained.

    ``n_users``: rows of the user table (a joint low rank keeps at most that many columns);
    ``reach_kept``: the rows a ``prune-rows:by=reach`` step keeps, as the caller counted them.
    ``math.inf`` when a step cannot apply at that shape (more PQ sub-spaces than columns) or
    gives no plan."""
    return planned_bytes(steps, n_items, dim, n_users, reach_kept, side="items")


def planned_bytes(steps, n_items, dim, n_users, reach_kept=None, side="items"):
    """Exact serving bytes ``steps`` make of a float32 model of ``n_users`` x ``n_items`` x
    ``dim`` before fitting (see :func:`serving_bytes` for ``side``): the item table's plans
    chained, and with ``side="both"`` the user table's plans chained too (``side="users"`` of
    each step's ``plan_table``). ``math.inf`` when a step has no plan at that shape."""
    items = DenseTable.plan(n_items, dim)
    users = DenseTable.plan(n_users, dim)
    try:
        for step in steps:
            before = items
            if isinstance(step, LowRank):
                items = step.plan_table(items, n_users=n_users)
                users = step.plan_table(users, side="users", n_items=before.stored.n_rows)
            elif isinstance(step, PruneRows):
                items = step.plan_table(items, kept=reach_kept)
                users = step.plan_table(users, side="users")
            else:
                items = step.plan_table(items)
                users = step.plan_table(users, side="users")
    except SpecError:
        return math.inf
    return items.nbytes if side == "items" else items.nbytes + users.nbytes
