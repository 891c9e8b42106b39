"""The target search at scale: on a generated log with more validation users than the sample,
the figures are over a seeded sample (checked by brute force over exactly those users), the
coverage bound is the bootstrap one (recomputed with sets), the pick is the first passing
candidate that holds over every validation user, a screened candidate is one whose 99% upper bound on the nested screening sample misses
a share (recomputed with scipy and sets), never a pass; the pick keeps its targets on a separate test split
(brute force); with ``side="both"`` the user table is compressed or folded in (ALS), every
byte figure is that of the whole model built; a small log gives the exhaustive search unchanged."""

import numpy as np
import pytest
from scipy import stats
from threadpoolctl import threadpool_limits

from cfprune.compression.search import search, serving_bytes
from cfprune.datasets import synthetic_log
from cfprune.errors import SpecError
from cfprune.facade import compress
from cfprune.models import train_als
from cfprune.splits import random_split
from tests.reference_metrics import topk_reference, user_metrics_reference
from tests.test_search import reference_coverage_bound

TARGET = "recall@10>=0.95,coverage@10>=0.85"
SAMPLE = 800


@pytest.fixture(scope="module")
def log():
    """A generated log (synthetic: topics, Zipf popularity), split 80/20 per user; ALS on the
    training part."""
    data = synthetic_log(2400, 400, 40000, n_topics=20, seed=3)
    train, test = random_split(data, test_fraction=0.2, seed=1)
    model = train_als(train, factors=16, regularization=1.0, iterations=8, num_threads=1, seed=0)
    return model, train, test


@pytest.fixture(scope="module")
def sampled(log):
    model, train, _ = log
    with threadpool_limits(limits=1):
        return search(model, train, TARGET, sample_users=SAMPLE, num_threads=1,
                      show_progress=False)


def per_user_recall(model, fit, valid, users, k):
    """(recall@k float64 [len(users)], top-k ids [len(users), k]) by brute force on the decoded
    tables, the items out of the catalogue never recommended."""
    seen = fit.toarray().copy()
    rows = model.items.valid_rows()
    if rows is not None:
        seen[:, ~rows] = 1
    ids, _ = topk_reference(user_vectors(model, fit), model.items.decode(), users, seen, k)
    recall = np.array([user_metrics_reference(ids[i], set(valid[u].indices.tolist()), k,
                                              model.n_items)["recall"]
                       for i, u in enumerate(users)])
    return recall, ids


def user_vectors(model, fit):
    """float64 [n_users, d]: the user table decoded, or for folded users (``fold-users``) the
    ALS user step solved with numpy for every user from ``fit`` (CSR) against the decoded items:
    ``(V^T V + reg I + V_u^T diag(c - 1) V_u) x = V_u^T c``, ``c = alpha * r``."""
    if model.users.storage != "folded":
        return model.users.decode()
    v = model.items.decode().astype(np.float64)
    gram = v.T @ v + model.users.regularization * np.eye(v.shape[1])
    out = np.zeros((fit.shape[0], v.shape[1]))
    for u in range(fit.shape[0]):
        row = fit[u]
        vu, c = v[row.indices], model.users.alpha * row.data.astype(np.float64)
        out[u] = np.linalg.solve(gram + vu.T @ ((c - 1.0)[:, None] * vu), vu.T @ c)
    return out


def coverage(ids, n_items):
    return len(set(ids[ids >= 0].tolist())) / n_items


def test_figures_are_over_a_seeded_sample_and_the_bound_counts_it(log, sampled):
    model, train, _ = log
    fit, valid = random_split(train, test_fraction=0.1, seed=0)
    everyone = np.flatnonzero(np.diff(valid.matrix.indptr) > 0)
    assert everyone.size > SAMPLE
    split = sampled.split
    assert split["n_valid_users_all"] == everyone.size
    assert split["n_valid_users"] == SAMPLE and split["n_screen_users"] == SAMPLE // 8
    sample = np.sort(np.random.default_rng(0).permutation(everyone)[:SAMPLE])
    held = train_als(fit, factors=16, regularization=1.0, iterations=8, num_threads=1, seed=0)
    base, base_ids = per_user_recall(held, fit.matrix, valid.matrix, sample, 10)
    assert sampled.baseline["recall@10"] == pytest.approx(base.mean(), abs=1e-9)
    assert sampled.baseline["coverage@10"] == pytest.approx(coverage(base_ids, model.n_items))
    pick = sampled.pick
    with threadpool_limits(limits=1):
        recall, ids = per_user_recall(compress(held, pick.spec, fit), fit.matrix, valid.matrix,
                                      sample, 10)
    z = stats.norm.ppf(0.95)
    assert pick.n_users == SAMPLE and not pick.screened
    assert pick.metrics["recall@10"] == pytest.approx(recall.mean(), abs=1e-9)
    assert pick.lower["recall@10"] == pytest.approx(recall.mean() - z * stats.sem(recall - base),
                                                    abs=1e-9)
    assert pick.lower["recall@10"] >= 0.95 * base.mean() - 1e-9
    assert pick.metrics["coverage@10"] == pytest.approx(coverage(ids, model.n_items))
    # coverage: its ratio less z bootstrap standard errors (recomputed with sets)
    bound = reference_coverage_bound(ids, base_ids, model.n_items, z)
    assert pick.lower["coverage@10"] == pytest.approx(bound, abs=1e-12)
    assert bound >= 0.85 * coverage(base_ids, model.n_items) - 1e-9


def test_the_pick_is_the_first_passing_candidate_whose_returned_model_keeps_coverage(
        log, sampled):
    """The sample's passing candidates, smallest first, built on the model given with all of
    train until one keeps coverage@10 over every user against the model given (brute-force
    lists, bound by sets): that one is the pick, those before it stopped passing."""
    model, train, test = log
    users = np.flatnonzero(np.diff(train.matrix.indptr) > 0)
    _, base_ids = per_user_recall(model, train.matrix, test.matrix, users, 10)
    base_cov = coverage(base_ids, model.n_items)
    z = stats.norm.ppf(0.95)
    asked = sorted([c for c in sampled.candidates if c.confirmed is not None],
                   key=lambda c: c.returned_bytes)
    assert asked and asked[-1] is sampled.pick and sampled.pick.passed
    assert all(not c.passed for c in asked[:-1])
    smaller_passing = [c for c in sampled.candidates if c.n_users == SAMPLE and c.passed and
                       "seed=" not in c.spec and
                       c.returned_bytes < sampled.pick.returned_bytes]
    assert not smaller_passing
    for c in asked:
        with threadpool_limits(limits=1):
            _, ids = per_user_recall(compress(model, c.spec, train), train.matrix, test.matrix,
                                     users, 10)
        assert c.confirmed["n_users"] == users.size
        assert c.confirmed["coverage"]["coverage@10"]["ratio"] == pytest.approx(
            coverage(ids, model.n_items) / base_cov)
        bound = reference_coverage_bound(ids, base_ids, model.n_items, z)
        assert c.confirmed["coverage"]["coverage@10"]["lower"] == pytest.approx(bound,
                                                                               abs=1e-12)
        assert c.confirmed["passed"] == (bound >= 0.85 * base_cov - 1e-9), c.spec
    assert "until one keeps the coverage share" in sampled.model.info["search"]["pass_rule"]


def test_screened_candidates_miss_their_upper_bound_and_never_pass(log, sampled):
    model, train, _ = log
    fit, valid = random_split(train, test_fraction=0.1, seed=0)
    everyone = np.flatnonzero(np.diff(valid.matrix.indptr) > 0)
    screen = np.sort(np.random.default_rng(0).permutation(everyone)[:SAMPLE // 8])
    held = train_als(fit, factors=16, regularization=1.0, iterations=8, num_threads=1, seed=0)
    base, base_ids = per_user_recall(held, fit.matrix, valid.matrix, screen, 10)
    base_cov = coverage(base_ids, model.n_items)
    screened = [c for c in sampled.candidates if c.screened]
    assert screened and len(screened) < len(sampled.candidates)
    z = stats.norm.ppf(0.99)
    by = set()
    for c in screened:
        assert not c.passed and c.n_users == screen.size
        with threadpool_limits(limits=1):
            recall, ids = per_user_recall(compress(held, c.spec, fit), fit.matrix,
                                          valid.matrix, screen, 10)
        if recall.mean() + z * stats.sem(recall - base) < 0.95 * base.mean():
            by.add("recall")
            continue
        # else coverage: its ratio plus z bootstrap standard errors (no extrapolation) misses
        upper = reference_coverage_bound(ids, base_ids, model.n_items, -z)
        assert upper < 0.85 * base_cov, c.spec
        by.add("coverage")
    assert by == {"recall", "coverage"}
    for c in sampled.candidates:
        assert c.n_users == (screen.size if c.screened else SAMPLE), c.spec


def test_the_sampled_pick_keeps_its_targets_on_a_separate_test_split(log, sampled):
    model, train, test = log
    users = np.flatnonzero(np.diff(test.matrix.indptr) > 0)
    base, base_ids = per_user_recall(model, train.matrix, test.matrix, users, 10)
    recall, ids = per_user_recall(sampled.model, train.matrix, test.matrix, users, 10)
    assert sampled.model.spec == sampled.pick.spec
    assert recall.mean() >= 0.95 * base.mean()
    assert coverage(ids, model.n_items) >= 0.85 * coverage(base_ids, model.n_items)
    assert serving_bytes(sampled.model) < serving_bytes(model)


def test_side_both_compresses_the_users_and_counts_the_whole_model(log):
    model, train, test = log
    with threadpool_limits(limits=1):
        found = search(model, train, TARGET, side="both", sample_users=SAMPLE, num_threads=1,
                       show_progress=False)
        items_only = search(model, train, TARGET, sample_users=SAMPLE, num_threads=1,
                            show_progress=False)
    whole = model.users.nbytes + model.items.nbytes
    assert found.baseline_bytes == found.baseline_model_bytes == whole
    # an ALS model: folding the users in from their history ships no user table, and wins
    assert found.pick.spec.endswith("|fold-users")
    assert found.pick.returned_bytes == serving_bytes(found.model, "both") == found.model_bytes
    assert found.model.users.nbytes == 0 and found.model.users.storage == "folded"
    assert any("table=users" in c.spec for c in found.candidates)
    for c in found.candidates:
        assert c.estimated_bytes == c.bytes, c.spec
    with threadpool_limits(limits=1):
        for c in [c for c in found.candidates if "table=users" in c.spec][:3]:
            built = compress(model, c.spec, train)
            assert c.returned_bytes == built.users.nbytes + serving_bytes(built), c.spec
    # the item-only search states the whole model it returns too, users left in float32
    assert items_only.model_bytes == items_only.model.users.nbytes + \
        serving_bytes(items_only.model) and items_only.model.users.nbytes == \
        model.users.nbytes
    assert found.model_bytes < items_only.model_bytes
    record = found.as_dict()
    assert record["side"] == "both" and record["whole_model"]["ratio"] == \
        pytest.approx(whole / found.model_bytes)
    # and the pick keeps the targets on the test split
    users = np.flatnonzero(np.diff(test.matrix.indptr) > 0)
    base, base_ids = per_user_recall(model, train.matrix, test.matrix, users, 10)
    recall, ids = per_user_recall(found.model, train.matrix, test.matrix, users, 10)
    assert recall.mean() >= 0.95 * base.mean()
    assert coverage(ids, model.n_items) >= 0.85 * coverage(base_ids, model.n_items)


def test_a_log_below_the_sample_size_is_searched_exhaustively(log):
    model, train, _ = log
    small = train.select(np.asarray(train.matrix.tocoo().row < 300))
    small_model = train_als(small, factors=8, regularization=1.0, iterations=5, num_threads=1,
                            seed=0)
    with threadpool_limits(limits=1):
        default = search(small_model, small, "recall@10>=0.9", num_threads=1,
                         show_progress=False)
        everyone = search(small_model, small, "recall@10>=0.9", sample_users=None,
                          num_threads=1, show_progress=False)
    assert default.split["n_screen_users"] is None and not any(c.screened
                                                               for c in default.candidates)
    assert [c.as_dict() | {"seconds_fit": 0, "seconds_evaluate": 0} for c in default.candidates] \
        == [c.as_dict() | {"seconds_fit": 0, "seconds_evaluate": 0} for c in everyone.candidates]
    assert default.pick.spec == everyone.pick.spec


def test_bad_side_and_sample_are_named(log):
    model, train, _ = log
    with pytest.raises(SpecError, match="side must be one of items, both"):
        search(model, train, TARGET, side="users")
    with pytest.raises(SpecError, match="sample_users must be at least 2"):
        search(model, train, TARGET, sample_users=1)
