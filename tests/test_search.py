"""Target search: the pick meets its targets on the validation part (checked with brute-force
metrics), every candidate's pass or fail is the paired one-sided bound recomputed by brute force
and scipy, the pick is the smallest passing candidate, its bytes are known before fitting (on a
real search on ml-100k too); budget mode; errors; the CLI writes the model and the
candidates."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats
from threadpoolctl import threadpool_limits

from cfprune import cli
from cfprune.compression.search import (TargetNotMet, parse_targets, search, serving_bytes)
from cfprune.datasets import load_movielens
from cfprune.errors import DataError, SpecError
from cfprune.facade import compress
from cfprune.interactions import Interactions
from cfprune.models import FactorModel, train_als
from cfprune.splits import random_split
from tests.reference_data import real_archive
from tests.reference_metrics import topk_reference, user_metrics_reference


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    taste = rng.normal(size=(150, 4))
    kind = rng.normal(size=(4, 120)) + np.linspace(2, -2, 120)[None, :]   # popular head
    dense = (taste @ kind + rng.normal(size=(150, 120)) > 2.2).astype(np.float32)
    train = sp.csr_matrix(dense)
    model = train_als(Interactions(train), factors=16, regularization=1.0, iterations=10,
                      num_threads=1, seed=0)
    return model, train


def reference_figures(model, fit, valid, k):
    """Mean recall@k over validation users and coverage@k, by brute force on decoded tables."""
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    u, v = model.users.decode(), model.items.decode()
    v = v.copy()
    valid_rows = model.items.valid_rows()
    seen = fit.toarray().copy()
    ids, _ = topk_reference(u, v, users, seen, k)
    if valid_rows is not None:         # items out of the catalogue are never recommended
        seen[:, ~valid_rows] = 1
        ids, _ = topk_reference(u, v, users, seen, k)
    recalls = [user_metrics_reference(ids[i], set(valid[u_].indices.tolist()), k,
                                      model.n_items)["recall"] for i, u_ in enumerate(users)]
    coverage = len(set(ids[ids >= 0].tolist())) / model.n_items
    return float(np.mean(recalls)), coverage


def reference_coverage_bound(ids, base_ids, n_items, z, n_resamples=200, seed=0):
    """The coverage bound of the search recomputed with Python sets: the ratio of distinct ids
    (``ids``/``base_ids`` int [n, k] of the same users) less ``z`` standard deviations of that
    ratio over bootstrap resamples (``default_rng(seed).integers(0, n, n)`` each), in coverage
    units of the baseline's coverage."""
    n = len(ids)

    def distinct(rows):
        return len(set(rows[rows >= 0].ravel().tolist()))

    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, n, n) for _ in range(n_resamples)]
    se = np.std([distinct(ids[d]) / distinct(base_ids[d]) for d in draws], ddof=1)
    return (distinct(ids) - z * se * distinct(base_ids)) / n_items


def reference_per_user_recall(model, fit, valid, k):
    """(recall@k per validation user float64 [n_users], coverage@k, top-k ids [n_users, k]) by
    brute force."""
    users = np.flatnonzero(np.diff(valid.indptr) > 0)
    u, v = model.users.decode(), model.items.decode()
    seen = fit.toarray().copy()
    valid_rows = model.items.valid_rows()
    if valid_rows is not None:         # items out of the catalogue are never recommended
        seen[:, ~valid_rows] = 1
    ids, _ = topk_reference(u, v, users, seen, k)
    recalls = np.array([user_metrics_reference(ids[i], set(valid[u_].indices.tolist()), k,
                                               model.n_items)["recall"]
                        for i, u_ in enumerate(users)])
    return recalls, len(set(ids[ids >= 0].tolist())) / model.n_items, ids


@pytest.fixture(scope="module")
def result(setup):
    model, train = setup
    return search(model, train, "recall@10>=0.95,coverage@10>=0.8", num_threads=1,
                  show_progress=False)


def test_pick_meets_targets_on_validation_by_brute_force(setup, result):
    model, train = setup
    fit, valid = random_split(Interactions(train), test_fraction=0.1, seed=0)
    # the model records its training, so the search retrains it without the validation part
    assert result.split["retrained_on_fit"]
    held = train_als(fit, factors=16, regularization=1.0, iterations=10, num_threads=1, seed=0)
    base_recall, base_cov = reference_figures(held, fit.matrix, valid.matrix, 10)
    picked = compress(held, result.pick.spec, fit)
    recall, cov = reference_figures(picked, fit.matrix, valid.matrix, 10)
    assert result.baseline["recall@10"] == pytest.approx(base_recall, abs=1e-9)
    assert result.pick.metrics["recall@10"] == pytest.approx(recall, abs=1e-9)
    assert result.pick.metrics["coverage@10"] == pytest.approx(cov, abs=1e-9)
    # recall passes by its one-sided lower bound, coverage (not a per-user mean) by its
    # bootstrap one (every validation user evaluated: no extrapolation)
    assert result.pick.lower["recall@10"] <= recall
    assert result.pick.lower["recall@10"] >= 0.95 * base_recall - 1e-9
    _, _, base_ids = reference_per_user_recall(held, fit.matrix, valid.matrix, 10)
    _, _, ids = reference_per_user_recall(picked, fit.matrix, valid.matrix, 10)
    bound = reference_coverage_bound(ids, base_ids, model.n_items, stats.norm.ppf(0.95))
    assert result.pick.lower["coverage@10"] == pytest.approx(bound, abs=1e-12)
    assert cov > bound >= 0.8 * base_cov - 1e-9
    assert result.pick.confirmed is None       # every validation user was evaluated
    # what is returned is the validated spec applied to the model given, with all of train
    again = compress(model, result.pick.spec, train)
    np.testing.assert_array_equal(result.model.items.decode(), again.items.decode())
    np.testing.assert_array_equal(result.model.users.decode(), again.users.decode())


def test_pick_is_smallest_passing_and_bytes_known_before_fitting(setup, result):
    model, _ = setup
    # the objective is the bytes of the model returned, known exactly before it is built
    assert result.pick.returned_bytes == serving_bytes(result.model) < serving_bytes(model)
    passing = [c for c in result.candidates if c.passed]
    assert result.pick.returned_bytes == min(c.returned_bytes for c in passing)
    for c in result.candidates:
        assert c.estimated_bytes == c.bytes, c.spec
    assert result.model.spec == result.pick.spec
    assert "search" in result.model.info
    json.dumps(result.as_dict())


def test_pass_rule_is_the_paired_one_sided_95_bound_recomputed(setup, result):
    """Every candidate rebuilt and ranked by brute force: recall@10 passes when the mean less
    z(0.95) standard errors of the paired per-user change (scipy.stats) reaches 0.95 of the
    baseline's mean, coverage@10 when its ratio less z bootstrap standard errors (recomputed
    with sets) reaches 0.8; a PQ tail passes only when its reseeded twin passes too."""
    model, train = setup
    fit, valid = random_split(Interactions(train), test_fraction=0.1, seed=0)
    held = train_als(fit, factors=16, regularization=1.0, iterations=10, num_threads=1, seed=0)
    base, base_cov, base_ids = reference_per_user_recall(held, fit.matrix, valid.matrix, 10)
    z = stats.norm.ppf(0.95)
    own, bounded = {}, 0
    for c in result.candidates:
        recall, cov, ids = reference_per_user_recall(compress(held, c.spec, fit), fit.matrix,
                                                     valid.matrix, 10)
        lower = recall.mean() - z * stats.sem(recall - base)
        own[c.spec] = (lower >= 0.95 * base.mean() - 1e-9) and (cov >= 0.8 * base_cov - 1e-9)
        if own[c.spec]:
            bound = reference_coverage_bound(ids, base_ids, model.n_items, z)
            assert c.lower["coverage@10"] == pytest.approx(bound, abs=1e-12), c.spec
            own[c.spec] = bound >= 0.8 * base_cov - 1e-9
            bounded += 1
        else:
            assert c.lower["coverage@10"] is None, c.spec
    assert bounded
    assert any(own.values()) and not all(own.values())
    for c in result.candidates:
        if "pq:" in c.spec and own[c.spec] and "seed=" not in c.spec:
            again, = [d for d in result.candidates
                      if "seed=1" in d.spec and d.spec.replace(",seed=1", "") == c.spec]
            assert c.reseeded == ([1] if own[again.spec] else []), c.spec
            assert c.passed == own[again.spec], c.spec
        else:
            assert c.passed == own[c.spec] and (c.reseeded is None or "seed=" in c.spec), c.spec


@pytest.fixture(scope="module")
def ml100k():
    """A real search on ml-100k (ALS with 32 factors): the model, its training part and the
    result. BLAS and OpenMP on one thread: k-means and the QR factorisations are small."""
    real_archive("ml-100k.zip")
    data = load_movielens("ml-100k").implicit(4.0)
    train, _ = random_split(data, test_fraction=0.2, seed=0)
    model = train_als(train, factors=32, iterations=5, num_threads=1, seed=0)
    with threadpool_limits(limits=1):
        found = search(model, train, "recall@20>=0.95,coverage@20>=0.8", num_threads=1,
                       show_progress=False)
    return model, train, found


def test_byte_estimates_equal_the_built_tables_on_ml100k(ml100k):
    """The byte model (the steps' plans) against the tables the search built: every candidate,
    and the model returned; reach candidates also against the spec built on the model given."""
    model, train, found = ml100k
    assert len(found.candidates) > 50 and found.n_skipped > 0
    specs = {c.spec.split("|")[-1].split(":")[0] for c in found.candidates}
    assert {"int8", "int4", "int2", "pq"} <= specs
    assert any(c.spec.startswith("prune-rows:keep") for c in found.candidates)
    for c in found.candidates:
        assert c.estimated_bytes == c.bytes, c.spec
    reach = [c for c in found.candidates if "by=reach" in c.spec]
    assert reach
    with threadpool_limits(limits=1):
        for c in reach[:3] + [found.pick]:
            assert c.returned_bytes == serving_bytes(compress(model, c.spec, train)), c.spec
    assert found.pick.returned_bytes == serving_bytes(found.model)


def test_model_without_training_record_is_validated_as_given(setup):
    model, train = setup
    bare = FactorModel(model.user_factors, model.item_factors)
    res = search(bare, train, "recall@10>=0.9", num_threads=1, show_progress=False,
                 confidence=None)
    assert not res.split["retrained_on_fit"]
    fit, valid = random_split(Interactions(train), test_fraction=0.1, seed=0)
    recall, _ = reference_figures(res.model, fit.matrix, valid.matrix, 10)
    assert res.pick.metrics["recall@10"] == pytest.approx(recall, abs=1e-9)
    assert res.pick.lower == res.pick.metrics      # confidence=None compares the means


def test_budget_maximises_first_metric(setup, result):
    model, train = setup
    budget = int(result.pick.returned_bytes * 1.5)
    res = search(model, train, "recall@10", budget_bytes=budget, num_threads=1,
                 show_progress=False)
    assert res.pick.returned_bytes <= budget
    fitting = [c for c in res.candidates if c.returned_bytes <= budget]
    assert res.pick.metrics["recall@10"] == max(c.metrics["recall@10"] for c in fitting)
    small = compress(model, interactions=train, target="recall@10", budget_bytes=budget,
                     num_threads=1,
                     show_progress=False)
    assert serving_bytes(small) == res.pick.returned_bytes


def test_returned_bytes_are_those_of_the_spec_on_the_model_given(setup):
    """Reach pruning of the retrained model on ``fit`` keeps other rows than that of the model
    given on all of train: the objective is the latter, checked by building it."""
    model, train = setup
    res = search(model, train, "recall@3>=0.99,coverage@3>=0.99", num_threads=1,
                 show_progress=False)
    reach = [c for c in res.candidates if "by=reach" in c.spec]
    assert reach and any(c.returned_bytes != c.bytes for c in reach)
    for c in reach:
        assert c.returned_bytes == serving_bytes(compress(model, c.spec, train)), c.spec
    assert res.pick.returned_bytes == min(c.returned_bytes for c in res.candidates if c.passed)


def test_unreachable_target_and_bad_inputs(setup):
    model, train = setup
    with pytest.raises(TargetNotMet) as info:
        search(model, train, "recall@10>=1.5", num_threads=1, show_progress=False)
    assert info.value.result.candidates and info.value.result.pick is None
    with pytest.raises(SpecError, match="not metric@k>=share"):
        parse_targets("recall@20>0.97")
    with pytest.raises(SpecError, match="metrics: recall"):
        parse_targets("recal@20>=0.97")
    with pytest.raises(SpecError, match="needs a share"):
        search(model, train, "recall@10")
    with pytest.raises(DataError, match="needs the training interactions"):
        search(model, None, "recall@10>=0.9")
    with pytest.raises(SpecError, match="either a spec or a target"):
        compress(model, "int8", train, target="recall@10>=0.9")
    assert [str(t) for t in parse_targets("ndcg@5>=0.9, tail_recall@20>=0.5")] == \
        ["ndcg@5>=0.9", "tail_recall@20>=0.5"]


def test_cli_target_writes_model_and_candidates(setup, tmp_path):
    model, train = setup
    model.save(tmp_path / "m.npz")
    sp.save_npz(tmp_path / "train.npz", train)
    out = tmp_path / "small.npz"
    assert cli.main(["compress", str(tmp_path / "m.npz"), "--train", str(tmp_path / "train.npz"),
                     "--target", "recall@10>=0.95,coverage@10>=0.8", "--out", str(out)]) == 0
    record = json.loads((tmp_path / "small.search.json").read_text())
    small = FactorModel.load(out)
    assert record["pick"]["spec"] == small.spec and record["pick"]["bytes"] == serving_bytes(small)
    assert len(record["candidates"]) == record["n_candidates"] > 0
    assert cli.main(["compress", str(tmp_path / "m.npz"), "--train", str(tmp_path / "train.npz"),
                     "--target", "recall@10>=1.5", "--out", str(tmp_path / "x.npz")]) == 2
    assert not (tmp_path / "x.npz").exists() and (tmp_path / "x.search.json").exists()
