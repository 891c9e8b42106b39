"""Spec strings: parsing, typed validation with messages naming the valid options, canonical
output, the method registry and describe()."""

import pytest
from hypothesis import given, settings, strategies as st

from cfprune.compression import spec as spec_module
from cfprune.compression.base import Param, format_value
from cfprune.compression.spec import (METHODS, canonical_spec, describe, format_spec, method_class,
                                   parse_spec)
from cfprune.errors import SpecError

BUILTIN = ["prune-rows", "magnitude", "lowrank", "fp16", "int8", "int4", "pq"]


def test_parse_chain_with_types():
    steps = parse_spec(" Prune-Rows: keep = 0.8 , by=POPULARITY | lowrank:rank=32|pq:m=8,"
                       "rotation=opq,eta=2.5,rerank=int8,candidates=100 ")
    assert [s.name for s in steps] == ["prune-rows", "lowrank", "pq"]
    assert steps[0].keep == 0.8 and steps[0].by == "popularity"
    assert steps[1].rank == 32 and isinstance(steps[1].rank, int)
    assert steps[2].m == 8 and steps[2].rotation == "opq" and steps[2].eta == 2.5
    assert steps[2].rerank == "int8" and steps[2].candidates == 100
    assert parse_spec("") == [] and parse_spec("   ") == []


def test_bool_and_none_values():
    (step,) = parse_spec("int8:symmetric=yes")
    assert step.symmetric is True
    (step,) = parse_spec("magnitude:tau=none,sparsity=0.25")
    assert step.tau is None and step.sparsity == 0.25
    with pytest.raises(SpecError, match="rank"):
        parse_spec("lowrank:rank=none")


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(SpecError) as e:
        parse_spec("int8|int3")
    msg = str(e.value)
    assert "int3" in msg
    for name in BUILTIN + ["distill"]:
        assert name in msg


def test_unknown_parameter_lists_the_methods_parameters():
    with pytest.raises(SpecError) as e:
        parse_spec("pq:m=8,bits=4")
    msg = str(e.value)
    assert "bits" in msg
    for key in ("m", "ksub", "rotation", "loss", "eta", "rerank", "candidates", "table"):
        assert key in msg


@pytest.mark.parametrize("text, words", [
    ("pq:ksub=300", ["ksub", "300", "[1, 256]"]),
    ("pq:m=0", ["m=", "0", "[1, inf)"]),
    ("pq:m=2.5", ["m", "2.5", "integer"]),
    ("prune-rows:keep=0", ["keep", "0", "(0, 1]"]),
    ("prune-rows:keep=1.5", ["keep", "1.5", "(0, 1]"]),
    ("prune-rows:keep=abc", ["keep", "abc", "float"]),
    ("prune-rows:by=random", ["by", "random", "norm|popularity|budget"]),
    ("int8:axis=col", ["axis", "col", "row|dim|auto"]),
    ("int8:symmetric=maybe", ["symmetric", "maybe", "true|false"]),
    ("magnitude:sparsity=1", ["sparsity", "1", "[0, 1)"]),
    ("pq:eta=nan", ["eta", "nan"]),
    ("lowrank:mode=both", ["mode", "both", "joint|items|users"]),
])
def test_bad_values_name_parameter_value_and_range(text, words):
    with pytest.raises(SpecError) as e:
        parse_spec(text)
    for word in words:
        assert word in str(e.value)


@pytest.mark.parametrize("text, word", [
    ("int8||pq", "empty step"), ("int8|", "empty step"), ("int8:", "nothing after"),
    ("int8:axis", "key=value"), ("int8:axis=dim,axis=row", "twice"),
    ("prune-rows:by=budget", "budget_bytes"), ("prune-rows:budget_bytes=100", "by=budget"),
    ("prune-rows:by=budget,budget_bytes=100,keep=0.5", "keep"),
    ("pq:rerank=int8,table=users", "item table"), ("pq:candidates=10", "rerank"),
])
def test_malformed_specs(text, word):
    with pytest.raises(SpecError, match=word):
        parse_spec(text)


def test_spec_must_be_a_string():
    with pytest.raises(SpecError):
        parse_spec(None)


def value_strategy(p):
    """Valid values of a parameter."""
    if p.choices is not None:
        base = st.sampled_from(p.choices)
    elif p.kind is bool:
        base = st.booleans()
    elif p.kind is int:
        lo = int(p.low) + (1 if p.low_open else 0) if p.low is not None else -1000
        hi = int(p.high) - (1 if p.high_open else 0) if p.high is not None else lo + 10 ** 6
        base = st.integers(lo, hi)
    else:
        lo = p.low if p.low is not None else -1e6
        hi = p.high if p.high is not None else 1e6
        base = st.floats(lo, hi, exclude_min=p.low_open, exclude_max=p.high_open,
                         allow_nan=False)
    return st.one_of(st.none(), base) if p.optional else base


# the rules between parameters, as the method docstrings state them: a parameter set is refused
# exactly when one of its method's rules holds (values not given are at their default)
CROSS_RULES = {
    "prune-rows": [
        lambda p: p["by"] == "budget" and p["budget_bytes"] is None,
        lambda p: p["by"] != "budget" and p["budget_bytes"] is not None,
        lambda p: p["by"] != "budget" and p["order"] != "norm",
        lambda p: p["by"] in ("budget", "reach") and p["keep"] != 0.9,
        lambda p: p["by"] != "reach" and p["k"] != 20,
        lambda p: p["by"] == "reach" and p["table"] != "items",
    ],
    "magnitude": [
        lambda p: p["sparsity"] is not None and p["tau"] is not None,
        lambda p: p["tau"] is not None and p["scope"] == "row",
    ],
    "pq": [
        lambda p: p["nbits"] not in (4, 8),
        lambda p: p["ksub"] is not None and p["ksub"] > 2 ** p["nbits"],
        lambda p: p["rerank"] != "none" and p["table"] == "users",
        lambda p: p["rerank"] == "none" and p["candidates"] != 100,
    ],
}


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(METHODS)), st.data())
def test_canonical_spec_round_trips(name, data):
    cls = method_class(name)
    params = {}
    for key, p in cls.schema.items():
        if data.draw(st.booleans()):
            params[key] = data.draw(value_strategy(p))
    full = {key: params.get(key, p.default) for key, p in cls.schema.items()}
    step = cls(**params)                       # stored as given, never refused here
    assert step.get_params() == full
    refused = any(rule(full) for rule in CROSS_RULES.get(name, []))
    text = f"{name}:" + ",".join(f"{k}={format_value(v)}" for k, v in params.items())
    if refused:
        with pytest.raises(SpecError) as e:
            step.validated()
        assert "\n" not in str(e.value)
        with pytest.raises(SpecError):
            parse_spec(text.rstrip(":"))
        return
    canonical = format_spec([step])
    (again,) = parse_spec(canonical)
    assert again.get_params() == step.get_params()
    assert canonical_spec(canonical) == canonical
    (parsed,) = parse_spec(text.rstrip(":"))
    assert parsed.get_params() == full
    written = {item.split("=")[0] for item in canonical.partition(":")[2].split(",") if item}
    assert written == {key for key, value in full.items() if value != cls.schema[key].default}


def test_format_spec_of_a_chain():
    text = "prune-rows:keep=0.9,by=popularity|lowrank:rank=32|pq:m=8"
    assert canonical_spec(text) == "prune-rows:by=popularity|lowrank|pq:m=8"
    assert canonical_spec("pq:eta=4,m=8") == "pq:m=8"
    assert canonical_spec("int8:symmetric=TRUE") == "int8:symmetric=true"


def test_describe_lists_every_method_and_parameter():
    text = describe()
    for name in METHODS:
        assert name in text
    for name in BUILTIN:
        for key, p in method_class(name).schema.items():
            assert key in text and p.allowed() in text


def test_registry_imports_lazily_and_reports_a_missing_module(monkeypatch):
    monkeypatch.setitem(METHODS, "future", ("cfprune.compression.no_such_module", "Future"))
    with pytest.raises(SpecError, match="not available"):
        parse_spec("future:rank=3")
    assert "future" in describe() and "not available" in describe()
    assert "future" not in spec_module.available_methods()


def test_distill_is_registered():
    assert "distill" in METHODS
    try:
        cls = method_class("distill")
    except SpecError as e:
        assert "not available" in str(e)
    else:
        assert cls.name == "distill"


def test_param_allowed_text():
    assert Param(float, 0.5, "", low=0.0, high=1.0, low_open=True).allowed() == "float in (0, 1]"
    assert Param(int, 1, "", low=1).allowed() == "int in [1, inf)"
    assert Param(str, "a", "", choices=("a", "b"), optional=True).allowed() == "one of a|b or none"
