"""The Compressor contract: a method that turns a FactorModel into a smaller FactorModel.

A method is a class with

- ``name``: the word users type in a spec string (``"int8"``, ``"prune-rows"``, ...);
- ``schema``: ``{parameter: Param}``, the parameters it takes with their type, default, allowed
  range or choices and a one-line help. :mod:`cfprune.compression.spec` converts and validates spec
  values with it and lists it in ``describe()``;
- ``_compress(model, interactions) -> (FactorModel, info dict, learned dict)``: ``learned``
  holds what the step learnt beyond its output tables (arrays for ``fitted_state``, ``{}`` for
  most methods); it is passed on by return value, never kept on the step.

scikit-learn estimators: ``__init__`` stores every parameter as given, under its own name
(no conversion, no checks), so ``sklearn.base.clone`` and ``type(step)(**step.get_params())``
rebuild the same step; ``set_params`` changes them. Validation happens in ``fit``:
:meth:`Compressor.validated` returns a new step whose parameters are converted and range-checked
by the schema (:meth:`Param.convert`) and cross-checked by the method (``_check_params``), and
the work runs on that copy; the step itself keeps the values as given. ``fit`` leaves its
outputs in attributes ending in ``_`` (``model_``, ``info_``) and reads none of them: learned
state reaches the fitted record by return values. ``fit`` returns the compressed
:class:`~cfprune.models.factors.FactorModel` (the project contract), not ``self``.
:func:`~cfprune.compression.spec.parse_spec` validates at parse time, so a bad spec string fails
before any work.

Every compressed model records its provenance: ``model.spec`` is the previous spec followed by
this step's canonical spec (``"a|b"``), and ``model.info["compression"]`` is a list with one dict
per step (method, parameters, bytes before and after, and what the step measured or chose).
``model.info["catalogue_coverage"]`` is the fraction of items that can still be recommended.

Per-table methods derive from :class:`TableCompressor`: they take ``table=items|users|both`` and
implement ``compress_table(table, ctx) -> (Table, info)``. A table that an earlier step row-pruned
(:class:`~cfprune.tables.PrunedTable`) is compressed through its wrapper: the method sees the inner
table of kept rows and the wrapper (kept ids, fallback) is kept.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..errors import DataError, SpecError
from ..io import jsonable
from ..models.factors import FactorModel

SIDES = ("items", "users")
TRUE_WORDS = ("true", "yes", "1", "on")
FALSE_WORDS = ("false", "no", "0", "off")


@dataclass(frozen=True)
class Param:
    """One parameter of a method.

    kind : int, float, str or bool
    default : the value when the parameter is not given (None only when ``optional``)
    help : one line for ``describe()``
    low, high : inclusive bounds for numbers (None: unbounded); ``low_open``/``high_open`` make
        them exclusive
    choices : the allowed words for a str parameter
    optional : the value may be None, written ``none`` in a spec
    """

    kind: type
    default: object
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | None = None
    optional: bool = False

    def allowed(self):
        """The allowed values in words, e.g. ``float in (0, 1]`` or ``one of norm|popularity``."""
        if self.choices is not None:
            text = "one of " + "|".join(self.choices)
        elif self.kind is bool:
            text = "true|false"
        else:
            text = self.kind.__name__
            if self.low is not None or self.high is not None:
                lo = "-inf" if self.low is None else _format_number(self.low)
                hi = "inf" if self.high is None else _format_number(self.high)
                text += f" in {'(' if self.low_open or self.low is None else '['}{lo}, " \
                        f"{hi}{')' if self.high_open or self.high is None else ']'}"
        if self.optional:
            text += " or none"
        return text

    def convert(self, method, name, value):
        """``value`` (a spec string or a Python value) as this parameter's type, checked against
        its range; SpecError naming method, parameter, value and the allowed values otherwise."""
        def bad(why=""):
            return SpecError(f"{method}: {name}={value!r} is not allowed{why}; expected "
                             f"{self.allowed()}")

        if value is None or (isinstance(value, str) and value.strip().lower() == "none"
                             and self.choices is None):
            if self.optional:
                return None
            raise bad()
        if self.kind is bool:
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            word = str(value).strip().lower()
            if word in TRUE_WORDS:
                return True
            if word in FALSE_WORDS:
                return False
            raise bad()
        if self.kind is str:
            word = str(value).strip().lower()
            if self.choices is not None and word not in self.choices:
                raise bad()
            return word
        if isinstance(value, (bool, np.bool_)):
            raise bad()
        try:
            number = float(value.strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise bad() from None
        if not math.isfinite(number):
            raise bad(" (not finite)")
        if self.kind is int:
            if number != int(number):
                raise bad(" (not an integer)")
            number = int(number)
        if self.low is not None and (number < self.low or (self.low_open and number == self.low)):
            raise bad(" (out of range)")
        if self.high is not None and (number > self.high or
                                      (self.high_open and number == self.high)):
            raise bad(" (out of range)")
        return number


TABLE_PARAM = {"table": Param(str, "items", "which factor table to compress",
                              choices=("items", "users", "both"))}


class Compressor:
    """Base class of every compression method (see the module docstring)."""

    name = ""
    schema: dict = {}
    # deprecated parameter name -> its name in the schema (implicit's names: iterations,
    # learning_rate, regularization, num_threads, seed); accepted with a FutureWarning until
    # cfprune 0.3
    renamed: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "schema" not in cls.__dict__:
            return  # a subclass without its own schema keeps its parent's signature or __init__
        cls.__signature__ = inspect.Signature(
            [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=p.default)
             for k, p in cls.schema.items()])

    def __init__(self, **params):
        for key, p in self.schema.items():
            setattr(self, key, p.default)
        self.set_params(**params)

    # parameters -------------------------------------------------------------------------------
    def get_params(self, deep=True):
        """dict: every parameter of the schema and its value as given (not converted)."""
        return {k: getattr(self, k) for k in self.schema}

    def set_params(self, **params):
        """Set parameters as given (deprecated names translated, unknown names refused; values
        are checked by ``fit``); returns self."""
        params = self._translate(params)
        unknown = sorted(set(params) - set(self.schema))
        if unknown:
            raise SpecError(f"{self.name}: unknown parameter {', '.join(unknown)}; valid "
                            f"parameters: {', '.join(self.schema) or '(none)'}")
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def validated(self):
        """A new step of this class with this step's parameters converted and range-checked by
        the schema and cross-checked by ``_check_params``: the parameters the work reads.
        SpecError (one line, naming the parameter and the allowed values) on the first bad one;
        this step is left as it is."""
        converted = {k: p.convert(self.name, k, getattr(self, k)) for k, p in self.schema.items()}
        step = type(self)(**converted)
        step._check_params()
        return step

    def _translate(self, params):
        """``params`` with deprecated names replaced by the schema's (FutureWarning each)."""
        out = {}
        for key, value in params.items():
            new = self.renamed.get(key)
            if new is not None:
                warnings.warn(f"{self.name}: parameter {key} is deprecated, use {new} (the old "
                              f"name is removed in cfprune 0.3)", FutureWarning, stacklevel=4)
                if new in params:
                    raise SpecError(f"{self.name}: {key} and {new} are the same parameter; "
                                    f"give {new} only")
                key = new
            out[key] = value
        return out

    def _check_params(self):
        """Checks between converted parameters (one parameter's range is checked by its Param);
        runs on the step :meth:`validated` builds."""

    def _non_default(self, key):
        """True when parameter ``key`` is set to something other than its default (the rules
        "x applies only with y" refuse a non-default x)."""
        return getattr(self, key) != self.schema[key].default

    def spec_string(self):
        """The canonical spec of this step: ``name`` then the validated parameters that differ
        from their default, in schema order (``int8:axis=dim``); SpecError when one is bad."""
        parts = [f"{k}={format_value(v)}" for k, v in self.validated().get_params().items()
                 if v != self.schema[k].default]
        return self.name + (":" + ",".join(parts) if parts else "")

    def requires_interactions(self):
        """True when ``fit`` needs the training interactions with these parameters (ask a
        validated or parsed step: the parameters are read as they are)."""
        return False

    # fitting ----------------------------------------------------------------------------------
    def fit(self, model, interactions=None):
        """Compress ``model``; returns the compressed FactorModel (also kept as ``model_``).

        Parameters
        ----------
        model : FactorModel
        interactions : Interactions or scipy CSR [n_users, n_items], optional
            The training interactions, needed by popularity-based methods.
        """
        if not isinstance(model, FactorModel):
            raise DataError(f"{self.name}: fit expects a FactorModel, got {type(model).__name__}")
        work = self.validated()
        matrix = interaction_matrix(interactions, model, self.name)
        if matrix is None and work.requires_interactions():
            raise DataError(f"{work.spec_string()} needs the training interactions: call "
                            f"fit(model, interactions) (CLI: pass the training data)")
        before = model.nbytes
        compressed, info, learned = work._compress(model, matrix)
        spec_string = work.spec_string()
        step = {"method": self.name, "spec": spec_string,
                "params": jsonable(work.get_params()),
                "nbytes_before": int(before), "nbytes_after": int(compressed.nbytes)}
        step.update(jsonable(info))
        model_info = dict(model.info)
        model_info["compression"] = list(model_info.get("compression", [])) + [step]
        model_info["catalogue_coverage"] = catalogue_coverage(compressed.items)
        spec = "|".join(s for s in (model.spec, spec_string) if s)
        fitted = work._record_fitted(model, compressed, info, learned)
        self.model_ = compressed.replace(spec=spec, info=model_info, fitted=fitted)
        self.info_ = step
        return self.model_

    # fitted state (fit once, encode many: see cfprune.compression.fitted) ---------------------
    def fitted_state(self, before, after, info, learned):
        """FittedStep of what this step fitted for the item table (``before``/``after``: the
        models before and after the step, ``info``/``learned``: what ``_compress`` returned), or
        None when the step leaves the items unchanged.
        A method that can encode new items overrides this and defines the classmethod
        ``encode_rows(table, params, arrays) -> Table``."""
        from .fitted import FittedStep
        return FittedStep(self.name, self.spec_string(),
                          {"unsupported": "the method keeps no fitted state to encode new "
                                          "items; recompress with every item"})

    def _record_fitted(self, before, after, info, learned):
        """``before.fitted`` plus this step's record (None when ``before``'s state is unknown)."""
        if before.fitted is None:
            return None
        state = self.fitted_state(before, after, info, learned)
        if state is None:
            return list(before.fitted)
        state.params.setdefault("dim_in", int(before.dim))
        return list(before.fitted) + [state]

    def _compress(self, model, interactions):
        """(FactorModel, info dict, learned dict): the work of the method, run on a validated
        step. ``interactions`` is a CSR matrix [n_users, n_items] or None."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()
                         if v != self.schema[k].default)
        return f"{type(self).__name__}({args})"

    def plan_table(self, plan, side="items"):
        """The :class:`~cfprune.tables.TablePlan` of the ``side`` ("items" or "users") table
        after this step, from ``plan``, that table's plan before it: the exact bytes before
        fitting (the target search's byte model). SpecError for a step whose bytes are known only
        once fitted."""
        raise SpecError(f"{self.spec_string()}: its bytes are known only after fitting (no "
                        f"table plan)")


@dataclass
class TableContext:
    """What a per-table method may need besides the table itself.

    side : "items" or "users"
    model : the FactorModel being compressed
    interactions : CSR [n_users, n_items] or None
    rows : int64 [n_rows of the table]: the model row id of each row of the table (the kept ids
        when the table is the inner table of a PrunedTable)
    """

    side: str
    model: FactorModel
    interactions: sp.csr_matrix | None
    rows: np.ndarray


class TableCompressor(Compressor):
    """A method applied to one or both factor tables independently (parameter ``table``)."""

    schema = dict(TABLE_PARAM)
    through_pruned = True  # compress the inner table of a PrunedTable and keep the wrapper
    changes_items = True

    def sides(self):
        return SIDES if self.table == "both" else (self.table,)

    def compress_table(self, table, ctx):
        """(Table, info dict): the compressed form of ``table`` (any storage)."""
        raise NotImplementedError

    def item_state(self, before, after, info):
        """(params dict, arrays dict) this method fitted on the item table: ``before``/``after``
        are the stored-rows tables before and after the step, ``info`` its item record. The
        default says the method cannot encode new items."""
        return {"unsupported": "the method keeps no fitted state to encode new items; "
                               "recompress with every item"}, {}

    def fitted_state(self, before, after, info, learned):
        from .fitted import FittedStep
        if "items" not in self.sides():
            return None
        params, arrays = self.item_state(before.items.stored, after.items.stored,
                                         info.get("items", {}))
        return FittedStep(self.name, self.spec_string(), params, arrays)

    def _compress(self, model, interactions):
        if model.rerank is not None and "items" in self.sides():
            raise SpecError(f"{self.spec_string()}: the model already has a re-rank table; "
                            f"the step that adds it (pq:...,rerank=...) must be the last step "
                            f"that changes the item table")
        changes, info = {}, {}
        for side in self.sides():
            table = getattr(model, side)
            if self.through_pruned:
                ctx = TableContext(side, model, interactions,
                                   table.stored_ids().astype(np.int64))
                stored, side_info = self.compress_table(table.stored, ctx)
                new = table.with_stored(stored)
            else:
                ctx = TableContext(side, model, interactions, np.arange(table.n_rows))
                new, side_info = self.compress_table(table, ctx)
            side_info = dict(side_info)
            side_info["storage"] = new.storage if new.stored is new else \
                f"{new.storage}({new.stored.storage})"
            side_info["nbytes"] = int(new.nbytes)
            changes[side] = new
            info[side] = side_info
        return model.replace(**changes), info, {}

    def plan_table(self, plan, side="items"):
        """The ``side`` table's plan after this step (see :meth:`Compressor.plan_table`): the
        table unchanged unless the step compresses that side; a row-pruned plan keeps its wrapper
        and the step plans its kept rows (:meth:`plan_rows`)."""
        if side not in self.sides():
            return plan
        if self.through_pruned:
            return plan.with_stored(self.plan_rows(plan.stored))
        return self.plan_rows(plan)

    def plan_rows(self, plan):
        """The plan of the table this step makes of a table planned by ``plan`` (not a pruned
        wrapper)."""
        return Compressor.plan_table(self, plan)


def interaction_matrix(interactions, model, method):
    """The CSR [n_users, n_items] of ``interactions`` (Interactions or sparse), checked against
    the model's shape; None when not given."""
    if interactions is None:
        return None
    matrix = getattr(interactions, "matrix", interactions)
    if not sp.issparse(matrix):
        raise DataError(f"{method}: interactions must be an Interactions or a scipy sparse "
                        f"matrix, got {type(interactions).__name__}")
    matrix = sp.csr_matrix(matrix)
    if matrix.shape != (model.n_users, model.n_items):
        raise DataError(f"{method}: the interactions are {matrix.shape[0]} users x "
                        f"{matrix.shape[1]} items but the model has {model.n_users} users x "
                        f"{model.n_items} items")
    return matrix


def catalogue_coverage(items):
    """Fraction of items that can be recommended (rows not pruned out of the catalogue)."""
    valid = items.valid_rows()
    return 1.0 if valid is None else float(valid.mean()) if valid.size else 0.0


def format_value(v):
    """A parameter value as written in a canonical spec."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _format_number(v)
    return str(v)


def _format_number(v):
    text = repr(float(v))
    return text[:-2] if text.endswith(".0") else text
