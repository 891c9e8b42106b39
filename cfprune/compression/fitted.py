"""Fitted state: what a compression step learnt, kept so that new rows are encoded without refit.

Fitting and encoding are two steps, as in scikit-learn: a method fits its state once (codebooks,
rotation, scales and offsets, the low-rank projection, the magnitude threshold) and can then
encode rows it has never seen with it. Each step of a compression records a :class:`FittedStep`
in ``model.fitted`` (in order), and :func:`encode_new_items` runs new item vectors through the
recorded steps, left to right, then :func:`append_rows` appends them to the model's item table.
The fitted arrays are reused as they are (the same array objects, so byte-identical); only the
per-row arrays grow (codes, per-row scales, the kept-row map).

How each step encodes a new item vector (the step's ``encode_rows``):

- ``fp16``, ``int8:axis=row``, ``int4:axis=row``: state-free per row (a new row gets its own
  scale and offset, as the fit would have given it);
- ``int8:axis=dim``/``int4:axis=dim``: the fitted per-dimension scale and offset, values outside
  the fitted range clipped to the end codes;
- ``pq``: the fitted codebooks (and OPQ rotation): nearest centroid per sub-space, then the
  anisotropic coordinate descent when ``loss=anisotropic``; with ``rerank=`` the new rows are also
  appended to the re-rank table;
- ``lowrank``: the fitted linear map ``T`` [dim, rank]: ``v' = v @ T`` (the map that took every
  fitted row to its rank-r coordinates);
- ``magnitude``: the fitted magnitude threshold (``sparsity`` over the table) or ``tau``; with
  ``scope=row`` each new row keeps its own largest weights;
- ``prune-rows``: a new item is always kept: it is appended to the kept-row map with its new row
  id (a new item has no interactions to rank it by, and leaving it out of the catalogue would make
  ``add_items`` a no-op);
- ``distill``: cannot encode without retraining the student (:class:`NoFittedState`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import CfpruneError
from ..tables import DenseTable
from ..tables.base import hold


class NoFittedState(CfpruneError, ValueError):
    """A model or a step cannot encode new rows with what it fitted."""


@dataclass
class FittedStep:
    """What one compression step fitted, for the item side.

    method : the method's name (``"pq"``)
    spec : the step's canonical spec (``"pq:m=8,rotation=opq"``)
    params : JSON scalars the encoding needs (``{"axis": "dim"}``), plus ``dim_in`` (the width
        of the rows the step took); ``{"unsupported": why}`` when it cannot encode new rows
    arrays : name -> ndarray, read-only (``codebooks``, ``rotation``, ``scale``, ``map``, ...);
        empty for state-free and identity steps
    """

    method: str
    spec: str
    params: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)

    def __post_init__(self):
        # the fitted arrays as a table holds them: read-only, a caller's writeable array copied
        self.arrays = {name: hold(np.ascontiguousarray(a), a) for name, a in self.arrays.items()}

    def encode_rows(self, table):
        """The Table of new rows ``table`` (any storage, the step's input) encoded by this step
        with its fitted state."""
        if "unsupported" in self.params:
            raise NoFittedState(f"{self.spec}: {self.params['unsupported']}")
        from .spec import method_class
        cls = method_class(self.method)
        encode = getattr(cls, "encode_rows", None)
        if encode is None:
            raise NoFittedState(f"{self.spec}: the method keeps no fitted state to encode new "
                                f"items; recompress with every item")
        return encode(table, self.params, self.arrays)


def encode_new_items(fitted, vectors):
    """(Table of the new rows in the final item storage, re-rank Table or None).

    ``fitted`` : list of FittedStep (``model.fitted``); ``vectors`` : float32 [n, dim] in the
    space of the model before its first compression step."""
    table = DenseTable(np.ascontiguousarray(vectors, dtype=np.float32))
    rerank = None
    for step in fitted:
        out = step.encode_rows(table)
        if isinstance(out, tuple):          # pq with rerank: (codes table, re-rank table)
            out, rerank = out
        table = out
    return table, rerank


def append_rows(table, new):
    """``table`` with the rows of ``new`` appended (``Table.append``); the fitted arrays are
    shared unchanged.

    ``new`` holds rows in the storage of ``table`` (its inner storage for a row-pruned table: the
    new rows are kept, with row ids ``n_rows .. n_rows + len(new) - 1``)."""
    return table.append(new)
