"""Encoding new items with the fitted state: :func:`add_items`, fit once, encode many.

Fitting and encoding are two steps, as in scikit-learn: a method fits its state once (codebooks,
rotation, scales and offsets, the low-rank projection, the magnitude threshold) and can then
encode rows it has never seen with it. Each step of a compression records a
:class:`~cfprune.models.fitted.FittedStep` (a plain record, kept by the model) in
``model.fitted`` (in order); :func:`add_items` runs new item vectors through the recorded steps,
left to right (:func:`encode_new_items`), then appends them to the model's item table
(:func:`cfprune.compression.fitted.append_rows`). The fitted arrays are reused as they are (the
same array objects, so byte-identical); only the per-row arrays grow (codes, per-row scales, the
kept-row map).

How each step encodes a new item vector (its method's ``encode_rows``, :func:`encode_step`):

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

import numpy as np

from ..errors import ShapeError
from ..tables import DenseTable
from .fitted import NoFittedState, append_rows
from .spec import method_class


def encode_step(step, table):
    """The Table of new rows ``table`` (any storage, the step's input) encoded by ``step`` (a
    FittedStep) with its fitted state, through its method's ``encode_rows``."""
    if "unsupported" in step.params:
        raise NoFittedState(f"{step.spec}: {step.params['unsupported']}")
    encode = getattr(method_class(step.method), "encode_rows", None)
    if encode is None:
        raise NoFittedState(f"{step.spec}: the method keeps no fitted state to encode new "
                            f"items; recompress with every item")
    return encode(table, step.params, step.arrays)


def add_items(model, vectors, item_ids=None):
    """A copy of ``model`` (a FactorModel) with new items appended, encoded with the fitted
    state of every compression step (no refit: codebooks, rotation, scales and maps stay
    byte-identical).

    Parameters
    ----------
    model : FactorModel
        A model from :func:`cfprune.compress` (or its file), or an uncompressed one.
    vectors : float array [n_new, d]
        The new items' factors in the space of the model before compression (e.g. item
        factors of the ALS model the compressed model came from).
    item_ids : array [n_new] or None
        Raw ids of the new items; required when the model has item ids.

    Returns
    -------
    FactorModel with ``n_items + n_new`` items, the new ones at rows ``n_items ..``.
    """
    x = np.asarray(vectors)
    if x.ndim != 2 or x.dtype.kind != "f":
        raise ShapeError(f"vectors must be a 2-D float array [n_new, dim], got {x.dtype} "
                         f"{x.shape}")
    if not np.all(np.isfinite(x)):
        raise ShapeError("vectors hold NaN or Inf")
    if model.fitted is None:
        raise NoFittedState(f"the model ({model.spec}) carries no fitted state (read from a "
                            f"model file version 1, or built outside compress): "
                            f"recompress it to add items")
    dim_in = model.fitted[0].params["dim_in"] if model.fitted else model.dim
    if x.shape[1] != dim_in:
        raise ShapeError(f"vectors have {x.shape[1]} dimensions; the model encodes items of "
                         f"{dim_in}")
    ids = None
    if model.item_ids is not None:
        if item_ids is None:
            raise ShapeError("the model has item ids: pass item_ids for the new items")
        ids = np.concatenate([model.item_ids, np.asarray(item_ids)])
        if np.unique(ids).size != ids.size:
            raise ShapeError("item_ids repeat an id the model already has (or each other)")
    elif item_ids is not None:
        raise ShapeError("the model has no item ids: leave item_ids out")
    if ids is not None and ids.shape[0] != model.n_items + x.shape[0]:
        raise ShapeError(f"item_ids has {ids.shape[0] - model.n_items} ids for "
                         f"{x.shape[0]} vectors")
    new, new_rerank = encode_new_items(model.fitted, x)
    items = append_rows(model.items, new)
    rerank = None
    if model.rerank is not None:
        if new_rerank is None:
            raise NoFittedState("the model's re-rank table has no fitted step to encode "
                                "new items with")
        rerank = append_rows(model.rerank, new_rerank)
    return model.replace(items=items, rerank=rerank, item_ids=ids)


def encode_new_items(fitted, vectors):
    """(Table of the new rows in the final item storage, re-rank Table or None).

    ``fitted`` : list of FittedStep (``model.fitted``); ``vectors`` : float32 [n, dim] in the
    space of the model before its first compression step."""
    table = DenseTable(np.ascontiguousarray(vectors, dtype=np.float32))
    rerank = None
    for step in fitted:
        out = encode_step(step, table)
        if isinstance(out, tuple):          # pq with rerank: (codes table, re-rank table)
            out, rerank = out
        table = out
    return table, rerank
