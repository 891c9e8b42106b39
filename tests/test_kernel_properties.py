"""Property test: for random shapes, dtypes, NaNs, empty inputs and every storage, retrieval either
returns the brute-force answer over the decoded tables or raises the documented error."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings, strategies as st

from cfprune.errors import ShapeError, SpecError
from cfprune.facade import compress
from cfprune.models import FactorModel
from tests.reference_kernels import assert_topk_matches

SPECS = ["", "fp16", "int8", "int8:axis=dim", "int4", "pq:m=2", "magnitude:sparsity=0.5",
         "prune-rows:keep=0.5", "prune-rows:keep=0.5,table=users", "lowrank:rank=1",
         "pq:m=2,rerank=int8,candidates=5"]


@st.composite
def problems(draw):
    n_users = draw(st.integers(1, 12))
    n_items = draw(st.integers(1, 40))
    dim = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int32]))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    integer_valued = draw(st.booleans())  # many exact ties
    users = rng.normal(size=(n_users, dim))
    items = rng.normal(size=(n_items, dim))
    if integer_valued:
        users, items = np.round(users * 2), np.round(items * 2)
    if dtype is np.int32:
        users, items = np.round(users), np.round(items)
    nan_side = None if dtype is np.int32 else draw(st.sampled_from([None, "users", "items"]))
    if nan_side == "users":
        users[rng.integers(n_users), rng.integers(dim)] = np.nan
    elif nan_side == "items":
        items[rng.integers(n_items), rng.integers(dim)] = np.inf
    density = draw(st.sampled_from([0.0, 0.3, 1.0]))
    seen = sp.random(n_users, n_items, density=density, random_state=seed % 2 ** 31,
                     format="csr", dtype=np.float32)
    query = rng.integers(0, n_users, draw(st.integers(0, 6)))
    return dict(users=users.astype(dtype), items=items.astype(dtype), seen=seen, query=query,
                k=draw(st.integers(1, 50)), spec=draw(st.sampled_from(SPECS)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_retrieval_is_correct_or_refuses(p):
    users, items = p["users"], p["items"]
    bad_dtype = users.dtype.kind != "f"
    bad_values = not (np.isfinite(users).all() and np.isfinite(items).all())
    try:
        model = FactorModel(users, items)
    except ShapeError as e:
        assert bad_dtype or bad_values, e
        assert ("floating" in str(e)) if bad_dtype else ("NaN or Inf" in str(e))
        return
    assert not (bad_dtype or bad_values), "bad factors were accepted"
    try:
        model = compress(model, p["spec"], p["seen"]) if p["spec"] else model
    except SpecError as e:
        # e.g. more sub-spaces or rank than the model has dimensions
        assert any(w in str(e) for w in ("dim", "exceeds", "cannot")), e
        return
    n_users, query = p["seen"].shape[0], p["query"]
    reading = "auto"
    if query.size == n_users and not np.array_equal(query, np.arange(n_users)):
        # one row per query and one per model user alike, users out of order: asked, not guessed
        with pytest.raises(ShapeError, match="user_items_rows"):
            model.recommend(query, p["seen"], k=p["k"])
        reading = "requested"
    ids, scores = model.recommend(query, p["seen"], k=p["k"], user_items_rows=reading)
    assert ids.shape == scores.shape == (p["query"].size, p["k"])
    exact = model.users.decode(p["query"]).astype(np.float64) @ \
        model.items.decode().astype(np.float64).T
    if model.rerank is not None:
        exact = model.users.decode(p["query"]).astype(np.float64) @ \
            model.rerank.decode().astype(np.float64).T
    # implicit's convention wins when there is one user_items row per query
    implicit_rows = p["seen"].shape[0] == p["query"].size
    seen_rows = [set(p["seen"][i if implicit_rows else u].indices.tolist())
                 for i, u in enumerate(p["query"])]
    if model.rerank is None:
        assert_topk_matches(ids, scores, exact, p["k"], seen_rows, model.items.valid_rows())
    else:
        # two-stage: every returned id is eligible, scored exactly, sorted, and no duplicate
        for row, srow, seen in zip(ids, scores, seen_rows):
            got = row[row >= 0]
            assert len(set(got.tolist())) == got.size and not set(got.tolist()) & seen
            assert np.all(np.diff(srow[row >= 0]) <= 1e-6)
    assert not np.isnan(scores).any()
