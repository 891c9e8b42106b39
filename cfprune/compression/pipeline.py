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

