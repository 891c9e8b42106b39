"""Pipelines: compression steps chained left to right, each on the previous step's output."""

from __future__ import annotations

from ..errors import DataError, SpecError
from .base import Compressor
from .spec import format_spec, parse_spec


class Pipeline:
    """A chain of compression steps.

    Parameters
    ----------
    steps : str or list of Compressor
        A spec string (``"prune-rows:keep=0.9|lowrank:rank=32|pq:m=8"``) or the steps themselves.

    Each step is fitted on the model the previous step returned: a step that needs float factors
    decodes the previous storage, and a per-table step on a row-pruned table compresses its kept
    rows and keeps the row map (see :mod:`cfprune.compression.base`). After ``fit``, ``model_`` is
    the final model, whose ``spec`` is the canonical spec of the steps (after the input model's
    own spec, if it had one) and whose ``info["compression"]`` holds one record per step.
    """

    def __init__(self, steps):
        if isinstance(steps, str):
            steps = parse_spec(steps)
        steps = list(steps)
        for step in steps:
            if not isinstance(step, Compressor):
                raise SpecError(f"a pipeline step must be a Compressor, got "
                                f"{type(step).__name__}")
        self.steps = steps

    def spec_string(self):
        """The canonical spec string of the steps."""
        return format_spec(self.steps)

    def fit(self, model, interactions=None):
        """The model compressed by every step in turn (also kept as ``model_``)."""
        needs = [s.spec_string() for s in self.steps if s.requires_interactions()]
        if needs and interactions is None:
            raise DataError(f"{', '.join(needs)} needs the training interactions: pass "
                            f"interactions=")
        for step in self.steps:
            model = step.fit(model, interactions)
        self.model_ = model
        return model

    def __repr__(self):
        return f"Pipeline({self.spec_string()!r})"


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
        from .search import search
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
