"""Fitted state as compression keeps it: the step records, and new rows appended to a table.

Each step of a compression records a :class:`~cfprune.models.fitted.FittedStep` (a plain record
the model keeps, re-exported here for the methods) in ``model.fitted``; :mod:`.encode` encodes
new items with those records and :func:`append_rows` appends them to the model's tables. The
fitted arrays are reused as they are (the same array objects, so byte-identical); only the
per-row arrays grow (codes, per-row scales, the kept-row map).
"""

from __future__ import annotations

from ..errors import CfpruneError
from ..models.fitted import FittedStep  # noqa: F401  (re-exported: the methods record their steps)


class NoFittedState(CfpruneError, ValueError):
    """A model or a step cannot encode new rows with what it fitted."""




def append_rows(table, new):
    """``table`` with the rows of ``new`` appended (``Table.append``); the fitted arrays are
    shared unchanged.

    ``new`` holds rows in the storage of ``table`` (its inner storage for a row-pruned table: the
    new rows are kept, with row ids ``n_rows .. n_rows + len(new) - 1``)."""
    return table.append(new)
