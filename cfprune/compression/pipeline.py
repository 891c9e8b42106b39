"""Pipelines: compression steps chained left to right, each on the previous step's output."""

from __future__ import annotations

from ..errors import DataError, SpecError
from .base import Compressor
from .spec import format_spec, parse_spec


class Pipeline(Compressor):
    """A chain of compression steps, itself a compressor (a scikit-learn estimator).

    Parameters
    ----------
    steps : str or list of Compressor
        A spec string (``"prune-rows:keep=0.9|lowrank:rank=32|pq:m=8"``) or the steps themselves
        (a step may be a Pipeline: its steps are spliced in). Stored as given; parsed and
        validated by ``fit``.

    Each step is fitted on the model the previous step returned: a step that needs float factors
    decodes the previous storage, and a per-table step on a row-pruned table compresses its kept
    rows and keeps the row map (see :mod:`cfprune.compression.base`). ``fit`` returns the final
    model, also kept as ``model_``, whose ``spec`` is the canonical spec of the steps (after the
    input model's own spec, if it had one) and whose ``info["compression"]`` holds one record
    per step; ``steps_`` are the fitted steps (validated copies; the given steps are left
    unfitted).

    ``get_params(deep=True)`` names the steps of a list as scikit-learn's ``make_pipeline``
    does (the method name, ``-1``, ``-2``, ... for repeats) and adds their parameters as
    ``<name>__<parameter>``; ``set_params`` accepts those names.
    """

    name = "pipeline"

    def __init__(self, steps):
        self.steps = steps

    # parameters -------------------------------------------------------------------------------
    def get_params(self, deep=True):
        """dict: ``steps`` as given; with ``deep`` and a list of steps, also each named step and
        its parameters (``int8__axis``)."""
        params = {"steps": self.steps}
        if deep and not isinstance(self.steps, str):
            for name, step in self._named_steps():
                params[name] = step
                params.update({f"{name}__{k}": v for k, v in step.get_params(deep=True).items()})
        return params

    def set_params(self, **params):
        """Set ``steps``, a named step (``int8=Int8()``) or a step's parameter
        (``int8__axis="dim"``); returns self."""
        if "steps" in params:
            self.steps = params.pop("steps")
        named = dict(self._named_steps()) if params and not isinstance(self.steps, str) else {}
        for key, value in params.items():
            name, nested, sub = key.partition("__")
            if name not in named:
                raise SpecError(f"pipeline: unknown parameter {key}; valid parameters: steps"
                                f"{''.join(', ' + n for n in named)} and <step>__<parameter>")
            if nested:
                named[name].set_params(**{sub: value})
            else:
                self.steps = [value if step is named[name] else step for step in self.steps]
                named = dict(self._named_steps())
        return self

    def _named_steps(self):
        """[(name, step)] of a list of steps: the method name, numbered ``-1``, ``-2``... when
        it repeats."""
        names = [getattr(step, "name", type(step).__name__.lower()) for step in self.steps]
        seen = {}
        out = []
        for name, step in zip(names, self.steps):
            if names.count(name) > 1:
                seen[name] = seen.get(name, 0) + 1
                name = f"{name}-{seen[name]}"
            out.append((name, step))
        return out

    def validated(self):
        """A Pipeline of validated copies of the steps (a spec string parsed); SpecError on the
        first bad step. This pipeline is left as it is."""
        steps = parse_spec(self.steps) if isinstance(self.steps, str) else self.steps
        if not isinstance(steps, (list, tuple)):
            raise SpecError(f"pipeline: steps must be a spec string or a list of compressors, "
                            f"got {type(steps).__name__}")
        out = []
        for step in steps:
            if not isinstance(step, Compressor):
                raise SpecError(f"a pipeline step must be a Compressor, got "
                                f"{type(step).__name__}")
            step = step.validated()
            out.extend(step.steps if isinstance(step, Pipeline) else [step])
        return Pipeline(out)

    def spec_string(self):
        """The canonical spec string of the steps."""
        return format_spec(self.validated().steps)

    def requires_interactions(self):
        return any(step.requires_interactions() for step in self.validated().steps)

    # fitting ----------------------------------------------------------------------------------
    def fit(self, model, interactions=None):
        """The model compressed by every step in turn (also kept as ``model_``)."""
        work = self.validated()
        needs = [s.spec_string() for s in work.steps if s.requires_interactions()]
        if needs and interactions is None:
            raise DataError(f"{', '.join(needs)} needs the training interactions: pass "
                            f"interactions=")
        for step in work.steps:
            model = step.fit(model, interactions)
        self.steps_ = work.steps
        self.model_ = model
        return model

    def __repr__(self):
        return f"Pipeline({self.steps!r})"

