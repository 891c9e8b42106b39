"""Parameter names follow implicit's (iterations, learning_rate, regularization, num_threads,
seed); the old names keep working for one release with a FutureWarning."""

import inspect

import pytest

from cfprune.compression import describe, parse_spec
from cfprune.compression.distill import Distill
from cfprune.compression.pq import ProductQuantization
from cfprune.errors import SpecError
from cfprune.models import train_als, train_bpr

IMPLICIT_NAMES = {"iterations", "learning_rate", "regularization", "num_threads", "seed"}


@pytest.mark.parametrize("old, new, value", [("epochs", "iterations", 3),
                                             ("lr", "learning_rate", 0.01),
                                             ("reg", "regularization", 0.001),
                                             ("threads", "num_threads", 2)])
def test_distill_old_names_warn_and_map(old, new, value):
    with pytest.warns(FutureWarning, match=f"{old} is deprecated, use {new}"):
        step = parse_spec(f"distill:rank=4,{old}={value}")[0]
    assert getattr(step, new) == value
    assert step.spec_string() == f"distill:rank=4,{new}={value}"


def test_pq_iters_is_iterations():
    with pytest.warns(FutureWarning, match="iters is deprecated, use iterations"):
        step = ProductQuantization(iters=7)
    assert step.iterations == 7 and step.spec_string() == "pq:iterations=7"
    with pytest.raises(SpecError, match="same parameter"), pytest.warns(FutureWarning):
        ProductQuantization(iters=7, iterations=8)


def test_names_match_implicit_everywhere():
    for params in (Distill.schema, ProductQuantization.schema,
                   inspect.signature(train_als).parameters,
                   inspect.signature(train_bpr).parameters):
        for bad in ("epochs", "lr", "reg", "threads", "iters", "random_state"):
            assert bad not in params
    assert IMPLICIT_NAMES <= set(Distill.schema)
    assert "epochs" not in describe().split()
