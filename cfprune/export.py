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
``pq`` (equal sub-spaces)   ``IndexPQ(d, m, nbits)``: the codebooks as faiss's
                            ``[m, 2^nbits, d/m]`` centroids (unused centroids zero), the codes as
                            they are (4-bit: faiss packs sub-space 0 in the low nibble, as cfprune)
``pq`` with OPQ rotation    ``IndexPreTransform(OPQMatrix with A = rotation^T, IndexPQ)``
row-pruned with fallback    the full table, when the fallback has an exact code in the inner
                            storage (float32 always; fp16 when the fallback is float16-exact)
==========================  ======================================================================

Each storage builds its own index (``Table.faiss_index``) or says in one line why it has none
(:class:`~cfprune.errors.NoFaissForm`); this module adds the nearest spec that exports and raises
a one-line :class:`ExportError`: per-row int8/int4 scales (faiss's scalar quantiser has one range
per dimension), 2-bit codes (faiss has no 2-bit scalar quantiser: ``int4:axis=dim``), PQ
sub-spaces of unequal width (faiss splits ``d`` into ``m`` equal parts), pruned items without a
fallback (faiss has no rows that never match), a CSR (magnitude-pruned) table, a storage that
defines no faiss form, and two-stage re-ranking. faiss is an optional dependency (``pip install cfprune[bench]`` or ``faiss-cpu``).
"""

from __future__ import annotations

import numpy as np

from .errors import CfpruneError, MissingDependencyError, NoFaissForm
from .io import atomic_write


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
    """The item table's own faiss form (``Table.faiss_index``), or ExportError saying why it has
    none and the nearest spec that has one."""
    if model.rerank is not None:
        raise ExportError(_why(model, "the model re-ranks candidates with a second table, which "
                                      "a single faiss index cannot express"))
    try:
        return model.items.faiss_index(faiss)
    except NoFaissForm as e:
        raise ExportError(_why(model, str(e))) from None


def _why(model, reason):
    """``"cannot export to faiss: <reason>; nearest spec that exports: <spec>"``."""
    return f"cannot export to faiss: {reason}; nearest spec that exports: " \
           f"{nearest_exportable(model.spec, model.dim)!r}"


def nearest_exportable(spec, dim):
    """``spec`` rewritten so that its item table exports: int8/int4 per dimension, pq with the
    largest ``m`` that divides ``dim`` and no re-rank table, ``int4:axis=dim`` in place of int2,
    fp16 in place of magnitude pruning and of any other item storage (one defined outside
    cfprune), and item row pruning with ``fallback=mean`` when the kept rows stay float32 (dropped
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
        elif items and step.name == "int2":
            step = parse_step(f"int4:axis=dim,table={step.table}")
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
        elif items and step.name not in ("fp16", "lowrank", "distill"):
            step = parse_step(f"fp16:table={step.table}")
        out.append(step)
    return format_spec(out) or "(no compression)"
