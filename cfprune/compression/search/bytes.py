"""The search's byte model: the serving bytes of a model's item side, and of a pipeline's item
table before it is fitted, asked of the storages through the steps' table plans
(:meth:`~cfprune.compression.base.Compressor.plan_table`, :class:`~cfprune.tables.TablePlan`)."""

from __future__ import annotations

import math

from ...errors import SpecError
from ...tables import DenseTable
from ..lowrank import LowRank
from ..rows import PruneRows


def serving_bytes(model):
    """Bytes the item side of ``model`` holds to serve: the item table and any re-rank table.

    The search ranks candidates by this figure. The user table is not counted: the search leaves
    it in its storage (only low rank narrows it), and counting it would reward a lower rank for
    shrinking the users rather than the catalogue."""
    return int(model.items.nbytes + (0 if model.rerank is None else model.rerank.nbytes))


def planned_item_bytes(steps, n_items, dim, n_users, reach_kept=None):
    """Exact bytes of the item table ``steps`` (list of Compressor) make of a float32 item table
    of ``n_items`` x ``dim``, before fitting: the steps' plans chained.

    ``n_users``: rows of the user table (a joint low rank keeps at most that many columns);
    ``reach_kept``: the rows a ``prune-rows:by=reach`` step keeps, as the caller counted them.
    ``math.inf`` when a step cannot apply at that shape (more PQ sub-spaces than columns) or
    gives no plan."""
    plan = DenseTable.plan(n_items, dim)
    try:
        for step in steps:
            if isinstance(step, LowRank):
                plan = step.plan_table(plan, n_users=n_users)
            elif isinstance(step, PruneRows):
                plan = step.plan_table(plan, kept=reach_kept)
            else:
                plan = step.plan_table(plan)
    except SpecError:
        return math.inf
    return plan.nbytes
