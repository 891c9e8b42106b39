"""Every compressor is a scikit-learn estimator: each registered method (with its defaults and
with a non-default parameter set drawn from its schema) and a Pipeline clone with
``sklearn.base.clone``, round-trip ``get_params``, are validated in ``fit`` and keep no learned
state between fits."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from cfprune.compression import Int8, LowRank, Pipeline, PruneRows
from cfprune.facade import compress
from cfprune.compression.spec import METHODS, method_class
from cfprune.errors import SpecError
from cfprune.models.factors import FactorModel

# parameters whose non-default value is documented to make reruns differ in the last bits
# (distill with several threads is Hogwild): left at their default when two fits are compared
RERUN_VARIES = {"num_threads"}


def small_model(seed=0, n_users=30, n_items=50, dim=32):
    """A random model recorded as ALS (fold-users reads the constants from its info)."""
    rng = np.random.default_rng(seed)
    return FactorModel(rng.normal(size=(n_users, dim)).astype(np.float32),
                       rng.normal(size=(n_items, dim)).astype(np.float32),
                       info={"algorithm": "als", "regularization": 1.0, "alpha": 2.0})


def small_interactions(n_users=30, n_items=50, seed=0):
    m = sp.random(n_users, n_items, density=0.2, random_state=seed, format="csr")
    m.data[:] = 1.0
    return m.astype(np.float32)


def inside(p, v):
    """True when number ``v`` lies in the range of Param ``p``."""
    if p.low is not None and (v < p.low or (p.low_open and v == p.low)):
        return False
    return not (p.high is not None and (v > p.high or (p.high_open and v == p.high)))


def other_values(p):
    """Values of Param ``p`` other than its default, read from the schema: the other choices,
    the other truth value, or small numbers inside the range."""
    if p.choices is not None:
        return [c for c in p.choices if c != p.default]
    if p.kind is bool:
        return [not p.default]
    if p.kind is int:
        low = 0 if p.low is None else int(p.low) + int(p.low_open)
        values = [low + 1, low + 2, low]
    else:
        low = 0.0 if p.low is None else p.low
        base = p.default if p.default is not None else (p.high if p.high is not None else
                                                        low + 1.0)
        values = [(low + base) / 2, (low + (base if p.high is None else p.high)) / 2, base * 2]
    return [v for v in values if v != p.default and inside(p, v)]


def non_default_params(cls):
    """A parameter set of ``cls`` with as many parameters away from their default as the
    method's rules between parameters allow: in schema order each parameter takes the first of
    its other values with which the set still validates."""
    params = {}
    for key, p in cls.schema.items():
        for value in other_values(p):
            try:
                cls(**params, **{key: value}).validated()
            except SpecError:
                continue
            params[key] = value
            break
    return params


CASES = [pytest.param(name, which, id=f"{name}-{which}") for name in METHODS
         for which in ("defaults", "non-default")]


def make(name, which):
    cls = method_class(name)
    return cls, ({} if which == "defaults" else non_default_params(cls))


def assert_same_table(x, y):
    """The same storage, parameters and arrays (a folded user table has no vectors to
    decode)."""
    assert x.storage == y.storage and x.params() == y.params()
    mine, theirs = x.arrays(), y.arrays()
    assert sorted(mine) == sorted(theirs)
    for key in mine:
        np.testing.assert_array_equal(mine[key], theirs[key])


def assert_same_fit(a, b):
    assert a.spec == b.spec
    for side in ("users", "items"):
        assert_same_table(getattr(a, side), getattr(b, side))
    assert (a.rerank is None) == (b.rerank is None)
    if a.rerank is not None:
        assert_same_table(a.rerank, b.rerank)


@pytest.mark.parametrize("name", METHODS)
def test_the_non_default_sets_move_parameters(name):
    cls = method_class(name)
    params = non_default_params(cls)
    assert len(params) >= min(2, len(cls.schema))
    for key, value in params.items():
        assert value != cls.schema[key].default


@pytest.mark.parametrize("name, which", CASES)
def test_clone_and_get_params_round_trip(name, which):
    cls, params = make(name, which)
    est = cls(**params)
    expected = {key: params.get(key, p.default) for key, p in cls.schema.items()}
    assert est.get_params() == expected and est.get_params(deep=False) == expected
    rebuilt = type(est)(**est.get_params())
    assert all(rebuilt.get_params()[k] is v for k, v in est.get_params().items())
    copy = clone(est)
    assert type(copy) is cls and copy is not est
    assert copy.get_params() == est.get_params()
    assert clone(copy).get_params() == expected


@pytest.mark.parametrize("name, which", CASES)
def test_the_clone_fits_like_the_original_and_a_fitted_clone_is_unfitted(name, which):
    cls, params = make(name, which)
    params = {k: v for k, v in params.items() if k not in RERUN_VARIES}
    model, seen = small_model(), small_interactions()
    est = cls(**params)
    copy = clone(est)
    out = est.fit(model, seen)
    assert isinstance(out, FactorModel) and est.model_ is out
    assert_same_fit(out, copy.fit(model, seen))
    assert set(vars(est)) == set(cls.schema) | {"model_", "info_"}
    assert est.get_params() == {k: params.get(k, p.default) for k, p in cls.schema.items()}
    fresh = clone(est)
    assert not hasattr(fresh, "model_") and not hasattr(fresh, "info_")
    assert fresh.get_params() == est.get_params()


@pytest.mark.parametrize("name, which", CASES)
def test_a_second_fit_sees_nothing_of_the_first(name, which):
    cls, params = make(name, which)
    params = {k: v for k, v in params.items() if k not in RERUN_VARIES}
    est = cls(**params)
    est.fit(small_model(seed=1, dim=40), small_interactions(seed=1))
    other, seen = small_model(seed=2, n_items=45, dim=36), small_interactions(n_items=45, seed=2)
    again = est.fit(other, seen)
    first = cls(**params).fit(other, seen)
    assert_same_fit(again, first)
    assert [s.params for s in again.fitted] == [s.params for s in first.fitted]
    for got, want in zip(again.fitted, first.fitted):
        assert sorted(got.arrays) == sorted(want.arrays)
        for key in got.arrays:
            np.testing.assert_array_equal(got.arrays[key], want.arrays[key])


def bad_value(p):
    """A value Param ``p`` refuses: an unknown word, a non-number, or a number out of range."""
    if p.choices is not None:
        return "bogus"
    if p.kind is bool:
        return "maybe"
    if p.low is not None:
        return p.low - 1
    return "abc"


@pytest.mark.parametrize("name", METHODS)
def test_invalid_values_are_stored_and_fail_at_fit_in_one_line(name):
    cls = method_class(name)
    model = small_model()
    for key, p in cls.schema.items():
        value = bad_value(p)
        est = cls(**{key: value})                  # stored as given
        assert est.get_params()[key] is value
        assert clone(est).get_params()[key] == value
        with pytest.raises(SpecError) as e:
            est.fit(model, small_interactions())
        message = str(e.value)
        assert "\n" not in message and f"{key}=" in message and name in message
        assert not hasattr(est, "model_")


@pytest.mark.parametrize("name", METHODS)
def test_set_params_sets_as_given_and_refuses_unknown_names(name):
    cls = method_class(name)
    est = cls()
    key, p = next(iter(cls.schema.items()))
    value = other_values(p)[0]
    assert est.set_params(**{key: value}) is est and est.get_params()[key] is value
    with pytest.raises(SpecError) as e:
        est.set_params(no_such_parameter=1)
    assert "\n" not in str(e.value) and "no_such_parameter" in str(e.value)
    for key in cls.schema:
        assert key in str(e.value)


def test_deprecated_names_still_translate_in_set_params():
    est = method_class("pq")()
    with pytest.warns(FutureWarning, match="iters is deprecated, use iterations"):
        est.set_params(iters=3)
    assert est.iterations == 3


# pipelines -------------------------------------------------------------------------------------

PIPELINE_SPEC = "prune-rows:keep=0.5,by=popularity|lowrank:rank=6|int8:axis=dim"


def pipeline_steps():
    return [PruneRows(keep=0.5, by="popularity"), LowRank(rank=6), Int8(axis="dim")]


@pytest.mark.parametrize("steps", [PIPELINE_SPEC, "list"])
def test_pipeline_clones_round_trips_and_fits_like_its_clone(steps):
    steps = pipeline_steps() if steps == "list" else steps
    pipe = Pipeline(steps)
    assert pipe.get_params(deep=False) == {"steps": steps}
    assert pipe.get_params()["steps"] is steps
    copy = clone(pipe)
    assert type(copy) is Pipeline and copy is not pipe
    if isinstance(steps, list):
        assert copy.steps is not steps and len(copy.steps) == 3
        assert all(a is not b and a.get_params() == b.get_params()
                   for a, b in zip(copy.steps, steps))
        deep = pipe.get_params(deep=True)
        assert deep["int8__axis"] == "dim" and deep["lowrank__rank"] == 6
        assert deep["prune-rows"] is steps[0]
    values = lambda params: {k: v for k, v in params.items()
                             if k != "steps" and not hasattr(v, "get_params")}
    assert values(copy.get_params()) == values(pipe.get_params())
    if isinstance(steps, str):
        assert copy.steps == steps
    model, seen = small_model(), small_interactions()
    out = pipe.fit(model, seen)
    assert isinstance(out, FactorModel) and pipe.model_ is out
    assert out.spec == "prune-rows:keep=0.5,by=popularity|lowrank:rank=6|int8:axis=dim"
    assert_same_fit(out, copy.fit(model, seen))
    # the same as fitting the steps one after the other
    one_by_one = model
    for step in pipeline_steps():
        one_by_one = step.fit(one_by_one, seen)
    assert_same_fit(out, one_by_one)
    fresh = clone(pipe)
    assert not hasattr(fresh, "model_") and not hasattr(fresh, "steps_")
    if isinstance(steps, list):
        assert not any(hasattr(step, "model_") for step in steps)  # the given steps stay unfitted


def test_pipeline_set_params_reaches_the_steps():
    pipe = Pipeline(pipeline_steps())
    pipe.set_params(int8__axis="row", lowrank__rank=4)
    assert pipe.steps[2].axis == "row" and pipe.steps[1].rank == 4
    out = pipe.fit(small_model(), small_interactions())
    assert out.spec == "prune-rows:keep=0.5,by=popularity|lowrank:rank=4|int8"
    pipe.set_params(steps="fp16")
    assert pipe.get_params(deep=True) == {"steps": "fp16"}
    with pytest.raises(SpecError, match="unknown parameter int8__axis"):
        pipe.set_params(int8__axis="dim")
    twice = Pipeline([Int8(), Int8(table="users")])
    assert twice.get_params()["int8-2__table"] == "users"


def test_pipeline_validates_in_fit():
    bad = Pipeline("int8|pq:bits=3")                  # stored as given
    assert bad.get_params() == {"steps": "int8|pq:bits=3"}
    with pytest.raises(SpecError, match="unknown parameter bits") as e:
        bad.fit(small_model())
    assert "\n" not in str(e.value)
    with pytest.raises(SpecError, match="axis='col'"):
        Pipeline([Int8(), Int8(axis="col")]).fit(small_model())
    with pytest.raises(SpecError, match="must be a Compressor"):
        Pipeline(["int8"]).fit(small_model())


def test_a_pipeline_is_a_step_of_a_pipeline_and_of_compress():
    model, seen = small_model(), small_interactions()
    nested = Pipeline([Pipeline(pipeline_steps()[:2]), Int8(axis="dim")])
    assert_same_fit(nested.fit(model, seen), compress(model, PIPELINE_SPEC, seen))
    assert_same_fit(compress(model, Pipeline(PIPELINE_SPEC), seen), nested.model_)
