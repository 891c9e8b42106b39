"""Export a model's item table as a faiss index holding the same codes.

``export_faiss(model, path)`` writes (and returns) an inner-product faiss index whose stored
codes are the item table's own, so that faiss's unfiltered top-k over the user vectors equals
cfprune's (up to float32 rounding between the two decoders):

==========================  ======================================================================
item storage                faiss index
==========================  ======================================================================
``dense`` (float32)         ``IndexFlatIP``
``fp16``                    ``IndexScalarQuantizer(QT_fp16)``
``int8:axis=dim``           ``IndexScalarQuantizer(QT_8bit)``: faiss decodes a code ``c`` in 0..255
                            as ``vmin + vdiff (c + 0.5) / 255``; cfprune's ``scale q + offset``
                            with ``q = c - 128`` is that with ``vdiff = 255 scale`` and
                            ``vmin = offset - 128.5 scale`` (symmetric: ``offset = 0``)
``int4:axis=dim``           ``IndexScalarQuantizer(QT_4bit)``: ``c`` in 0..15, ``vdiff = 15 scale``,
                            ``vmin = offset - 0.5 scale``; the same nibble packing
``pq`` (equal sub-spaces)   ``IndexPQ(d, m, 8)``: the codebooks as faiss's ``[m, 256, d/m]``
                            centroids (unused centroids zero), the uint8 codes as they are
``pq`` with OPQ rotation    ``IndexPreTransform(OPQMatrix with A = rotation^T, IndexPQ)``
row-pruned with fallback    the full table, when the fallback has an exact code in the inner
                            storage (float32 always; fp16 when the fallback is float16-exact)
==========================  ======================================================================

What faiss cannot express raises a one-line :class:`ExportError` naming why and the nearest spec
that exports: per-row int8/int4 scales (faiss's scalar quantiser has one range per dimension),
PQ sub-spaces of unequal width (faiss splits ``d`` into ``m`` equal parts), pruned items without
a fallback (faiss has no rows that never match), a CSR (magnitude-pruned) table and two-stage
re-ranking. faiss is an optional dependency (``pip install cfprune[bench]`` or ``faiss-cpu``).
"""

from __future__ import annotations

import numpy as np

from .errors import CfpruneError, MissingDependencyError
from .io import atomic_write
from .tables import (DenseTable, Float16Table, Int4Table, Int8Table, PQTable, PrunedTable,
                     SparseTable)


class ExportError(CfpruneError, ValueError):
    """The model's storage has no faiss equivalent with the same codes."""


def export_faiss(model, path=None):
    """A faiss inner-product index of ``model``'s item table with the same codes; written to
    ``path`` atomically when given.

    Parameters
    ----------
    model : FactorModel
    path : str or os.PathLike or None

    Returns
    -------
    faiss.Index with ``ntotal == model.n_items``; ``index.search(users float32 [n, d], k)``
    ranks items by inner product (row ``i`` of the index is item ``i``).
    """
    faiss = _faiss()
    index = _index(faiss, model)
    if path is not None:
        data = faiss.serialize_index(index)
        atomic_write(path, lambda f: f.write(np.asarray(data).tobytes()))
    return index


def _faiss():
    try:
        import faiss
    except ImportError:
        raise MissingDependencyError("faiss export needs faiss: pip install faiss-cpu "
                                     "(or cfprune[bench])") from None
    return faiss


def _index(faiss, model):
    if model.rerank is not None:
        raise ExportError(_why(model, "the model re-ranks candidates with a second table, which "
                                      "a single faiss index cannot express"))
    table = model.items
    if isinstance(table, PrunedTable):
        table = _unpruned(model, table)
    d = table.dim
    ip = faiss.METRIC_INNER_PRODUCT
    if type(table) is DenseTable:
        index = faiss.IndexFlatIP(d)
        index.add(table.data)
        return index
    if isinstance(table, Float16Table):
        index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, ip)
        index.add_sa_codes(np.ascontiguousarray(table.data).view(np.uint8))
        return index
    if isinstance(table, (Int8Table, Int4Table)):
        if table.axis != "dim":
            raise ExportError(_why(model, f"per-row {table.storage} scales have no faiss "
                                          f"equivalent (its scalar quantiser keeps one range per "
                                          f"dimension)"))
        return _scalar_index(faiss, table)
    if isinstance(table, PQTable):
        return _pq_index(faiss, model, table)
    if isinstance(table, SparseTable):
        raise ExportError(_why(model, "a magnitude-pruned (CSR) table has no faiss index with "
                                      "the same storage"))
    raise ExportError(f"a {table.storage!r} item table has no faiss equivalent")


def _scalar_index(faiss, table):
    """IndexScalarQuantizer QT_8bit / QT_4bit with the table's codes and mapped ranges."""
    d = table.dim
    scale = table.scale.astype(np.float64)
    offset = np.zeros(d) if table.offset is None else table.offset.astype(np.float64)
    if isinstance(table, Int8Table):
        qtype, levels = faiss.ScalarQuantizer.QT_8bit, 255
        vmin = offset - 128.5 * scale
        codes = (table.codes.astype(np.int16) + 128).astype(np.uint8)
    else:
        qtype, levels = faiss.ScalarQuantizer.QT_4bit, 15
        vmin = offset - 0.5 * scale
        codes = table.codes
    index = faiss.IndexScalarQuantizer(d, qtype, faiss.METRIC_INNER_PRODUCT)
    trained = np.concatenate([vmin, levels * scale]).astype(np.float32)
    faiss.copy_array_to_vector(trained, index.sq.trained)
    index.is_trained = True
    index.add_sa_codes(np.ascontiguousarray(codes))
    return index


def _pq_index(faiss, model, table):
    """IndexPQ (behind an OPQMatrix when the table is rotated) with the table's codes."""
    d, m = table.dim, table.m
    widths = np.diff(table.bounds)
    if np.any(widths != widths[0]):
        raise ExportError(_why(model, f"pq sub-spaces of unequal width (m={m} does not divide "
                                      f"dim={d}); faiss splits the dimensions evenly"))
    dsub = d // m
    pq = faiss.IndexPQ(d, m, 8, faiss.METRIC_INNER_PRODUCT)
    centroids = np.zeros((m, 256, dsub), np.float32)
    for s in range(m):
        centroids[s, :table.ksub] = table.codebooks[:, s * dsub:(s + 1) * dsub]
    faiss.copy_array_to_vector(centroids.ravel(), pq.pq.centroids)
    pq.is_trained = True
    pq.add_sa_codes(np.ascontiguousarray(table.codes))
    if table.rotation is None:
        return pq
    opq = faiss.OPQMatrix(d, m)
    faiss.copy_array_to_vector(np.ascontiguousarray(table.rotation.T).ravel(), opq.A)
    faiss.copy_array_to_vector(np.zeros(d, np.float32), opq.b)
    opq.is_trained = True
    index = faiss.IndexPreTransform(opq, pq)
    index.is_trained = True
    return index


def _unpruned(model, table):
    """The full table of a row-pruned table whose fallback has an exact code (see module)."""
    inner, fb = table.inner, table.fallback
    if fb is None:
        raise ExportError(_why(model, "pruned items leave the catalogue (prune-rows without a "
                                      "fallback), which a faiss index cannot mark"))
    exact = type(inner) is DenseTable or (
        isinstance(inner, Float16Table) and
        np.array_equal(fb.astype(np.float16).astype(np.float32), fb))
    if not exact:
        raise ExportError(_why(model, f"pruned rows decode to a fallback vector that has no "
                                      f"code in the {inner.storage} table"))
    return type(inner)(table.decode().astype(inner.dtype))


def _why(model, reason):
    """``"cannot export to faiss: <reason>; nearest spec that exports: <spec>"``."""
    return f"cannot export to faiss: {reason}; nearest spec that exports: " \
           f"{nearest_exportable(model.spec, model.dim)!r}"


def nearest_exportable(spec, dim):
    """``spec`` rewritten so that its item table exports: int8/int4 per dimension, pq with the
    largest ``m`` that divides ``dim`` and no re-rank table, fp16 in place of magnitude pruning,
    and item row pruning with ``fallback=mean`` when the kept rows stay float32 (dropped
    otherwise: a fallback has no exact code in a quantised table)."""
    from .compression.spec import format_spec, parse_spec, parse_step
    steps = parse_spec(spec)
    on_items = [getattr(s, "table", "items") in ("items", "both") for s in steps]
    quantised = any(i and s.name not in ("prune-rows", "lowrank", "distill")
                    for s, i in zip(steps, on_items))
    out = []
    for step, items in zip(steps, on_items):
        if items and step.name in ("int8", "int4"):
            step.set_params(axis="dim")
        elif items and step.name == "pq":
            params = {k: v for k, v in step.get_params().items()
                      if k not in ("rerank", "candidates")}
            if dim % step.m:
                params["m"] = max(k for k in range(1, step.m + 1) if dim % k == 0)
            step = type(step)(**params)
        elif items and step.name == "prune-rows":
            if quantised:
                continue
            step.set_params(fallback="mean")
        elif items and step.name == "magnitude":
            step = parse_step("fp16")
        out.append(step)
    return format_spec(out) or "(no compression)"
