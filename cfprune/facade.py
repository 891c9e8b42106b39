"""``cfprune.compress``: one call that compresses a model by a spec or searches for the smallest
pipeline meeting recall targets.

It sits above both :mod:`cfprune.compression.pipeline` (a spec applied step by step) and
:mod:`cfprune.compression.search` (the target search, which builds pipelines itself), so neither
imports the other through it.
"""

from __future__ import annotations

from .compression.base import Compressor
from .compression.pipeline import Pipeline
from .errors import SpecError


def compress(model, spec=None, interactions=None, *, target=None, budget_bytes=None,
             **search_options):
    """Compress ``model`` by ``spec``, or search for the smallest pipeline meeting ``target``,
    and return the new FactorModel.

    Parameters
    ----------
    model : FactorModel
    spec : str, Compressor, list of Compressor or Pipeline
        e.g. ``"int8:axis=auto"`` or ``"prune-rows:keep=0.9,by=popularity|lowrank:rank=32|pq:m=8"``
    interactions : Interactions or scipy CSR [n_users, n_items], optional
        The training interactions (needed by ``prune-rows:by=popularity|reach`` and the search).
    target : str, optional
        Instead of ``spec``: ``"recall@20>=0.97,coverage@20>=0.90"``, each share relative to
        ``model`` on a validation part carved from ``interactions``; see
        :func:`cfprune.compression.search.search` (``search_options`` go there). The search
        record is in ``model.info["search"]``.
    budget_bytes : int, optional
        Instead of ``spec``: the best first target metric within this many serving bytes.
    """
    if target is not None or budget_bytes is not None:
        if spec is not None:
            raise SpecError("give either a spec or a target/budget_bytes to search, not both")
        from .compression.search import search
        return search(model, interactions, "recall@20" if target is None else target,
                      budget_bytes, **search_options).model
    if search_options:
        raise SpecError(f"{', '.join(sorted(search_options))} apply to a target search "
                        f"(target= or budget_bytes=)")
    if spec is None:
        raise SpecError("compress needs a spec (e.g. 'int8') or a target (e.g. "
                        "'recall@20>=0.97')")
    if isinstance(spec, Pipeline):
        pipeline = spec
    elif isinstance(spec, Compressor):
        pipeline = Pipeline([spec])
    else:
        pipeline = Pipeline(spec)
    return pipeline.fit(model, interactions)
