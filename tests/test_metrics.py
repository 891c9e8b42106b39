"""Metric kernels, evaluate() and the paired bootstrap against independent references."""

import math
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from cfprune.evaluation import EvaluationResult, evaluate, implicit_metrics, tail_items
from cfprune.errors import DataError, ShapeError
from cfprune.kernels import metrics as mk
from cfprune.uncertainty import compare, paired_difference

from .reference_data import real_archive
from .reference_metrics import (auc_reference, coverage_reference, paired_bootstrap_reference,
                                tail_mask_reference, topk_reference, user_metrics_reference)

KERNEL_ROWS = {"hits": mk.HITS, "recall": mk.RECALL, "truncated_recall": mk.TRUNCATED_RECALL,
               "precision": mk.PRECISION, "ndcg": mk.NDCG, "map": mk.AVERAGE_PRECISION,
               "hit_rate": mk.HIT_RATE, "mrr": mk.RECIPROCAL_RANK, "auc": mk.AUC,
               "tail_hits": mk.TAIL_HITS, "tail_recall": mk.TAIL_RECALL, "overlap": mk.OVERLAP}
SETTINGS = settings(max_examples=60, deadline=None)


def random_ranked(rng, n_rows, width, n_items):
    """int32 [n_rows, width]: distinct ids per row, a random number of them, then -1 padding."""
    out = np.full((n_rows, width), -1, dtype=np.int32)
    for r in range(n_rows):
        n_valid = rng.integers(0, min(width, n_items) + 1)
        out[r, :n_valid] = rng.permutation(n_items)[:n_valid]
    return out


def random_csr(rng, n_rows, n_items, density):
    dense = rng.random((n_rows, n_items)) < density
    dense[rng.random(n_rows) < 0.2] = False  # some empty rows
    return sp.csr_matrix(dense.astype(np.float32))


def assert_close(actual, expected, what):
    if math.isnan(expected):
        assert math.isnan(actual), f"{what}: {actual} != NaN"
    else:
        assert actual == pytest.approx(expected, rel=1e-12, abs=1e-12), f"{what}"


# ---------------------------------------------------------------------------------------------
# kernels vs the brute-force reference

@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_items=st.integers(1, 25), n_test=st.integers(1, 6),
       n_batch=st.integers(0, 8), width=st.integers(0, 30), width_b=st.integers(0, 30),
       ks=st.lists(st.integers(1, 35), min_size=1, max_size=4, unique=True),
       density=st.floats(0.0, 1.0))
def test_ranking_metrics_kernel_matches_reference(seed, n_items, n_test, n_batch, width, width_b,
                                                  ks, density):
    rng = np.random.default_rng(seed)
    test = random_csr(rng, n_test, n_items, density)
    users = rng.integers(0, n_test, n_batch).astype(np.int32)
    ranked = random_ranked(rng, n_batch, width, n_items)
    baseline = random_ranked(rng, n_batch, width_b, n_items)
    tail = rng.random(n_items) < 0.5
    ks_arr = np.array(sorted(ks), dtype=np.int64)
    values, n_rel, n_tail = mk.ranking_metrics(
        ranked, users, test.indptr.astype(np.int64), test.indices.astype(np.int32), ks_arr,
        n_items, tail, baseline)
    assert values.shape == (mk.N_METRICS, len(ks), n_batch)
    for b, u in enumerate(users):
        relevant = set(test.indices[test.indptr[u]:test.indptr[u + 1]].tolist())
        assert n_rel[b] == len(relevant)
        assert n_tail[b] == sum(tail[i] for i in relevant)
        for j, k in enumerate(ks_arr.tolist()):
            ref = user_metrics_reference(ranked[b], relevant, k, n_items, tail,
                                         baseline[b] if width_b else None)
            if not width_b:
                ref["overlap"] = math.nan
            for name, row in KERNEL_ROWS.items():
                assert_close(values[row, j, b], ref[name], f"{name}@{k} user {u}")


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_items=st.integers(1, 30), n_rows=st.integers(0, 10),
       width=st.integers(0, 40), k=st.integers(1, 45))
def test_first_positions_give_coverage(seed, n_items, n_rows, width, k):
    rng = np.random.default_rng(seed)
    ranked = random_ranked(rng, n_rows, width, n_items)
    first = np.full(n_items, 10**6, dtype=np.int64)
    half = n_rows // 2  # two calls accumulate like two batches
    mk.mark_first_positions(np.ascontiguousarray(ranked[:half]), first)
    mk.mark_first_positions(np.ascontiguousarray(ranked[half:]), first)
    assert np.count_nonzero(first < k) / n_items == pytest.approx(
        coverage_reference(ranked, k, n_items))


def test_auc_reference_agrees_with_implicit_formula_on_a_hand_case():
    # 6 items, positives {a, b, c}; top-4 = [hit, miss, hit, miss]: the 2 ranked misses sit below
    # 1 and 2 ranked hits; ranked hits beat the 1 unranked negative; the unranked positive ties it.
    flags = [True, False, True, False]
    expected = (1 + 2 + 2 * 1 + 0.5 * 1 * 1) / (3 * 3)
    assert auc_reference(flags, 3, 6) == pytest.approx(expected)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n_items=st.integers(1, 20),
       share=st.sampled_from([0.0, 0.3, 0.5, 0.8, 0.95, 1.0]))
def test_tail_items_match_reference(seed, n_items, share):
    rng = np.random.default_rng(seed)
    train = (rng.random((7, n_items)) < rng.random()).astype(np.float32)
    counts = np.count_nonzero(train, axis=0)
    np.testing.assert_array_equal(tail_items(counts, share), tail_mask_reference(train, share))


# ---------------------------------------------------------------------------------------------
# evaluate() end to end

class ReferenceModel:
    """A factor model whose recommend is the NumPy reference (independent of cfprune retrieval)."""

    def __init__(self, user_factors, item_factors):
        self.user_factors = user_factors
        self.item_factors = item_factors
        self.n_users, self.n_items = user_factors.shape[0], item_factors.shape[0]

    def recommend(self, users, user_items, k=10, filter_seen=True, **_):
        assert user_items.shape[0] == len(users)
        seen = user_items.toarray() if filter_seen else np.zeros((len(users), self.n_items))
        full = np.zeros((self.n_users, self.n_items))
        full[users] = seen
        return topk_reference(self.user_factors, self.item_factors, users, full, k)


def random_problem(rng, n_users, n_items, dim):
    """Integer-valued factors (exact float32 scores, many ties) and a disjoint train/test."""
    users = rng.integers(-2, 3, (n_users, dim)).astype(np.float32)
    items = rng.integers(-2, 3, (n_items, dim)).astype(np.float32)
    log = rng.random((n_users, n_items)) < rng.uniform(0.05, 0.6)
    to_test = rng.random((n_users, n_items)) < 0.3
    train = sp.csr_matrix((log & ~to_test).astype(np.float32))
    test = sp.csr_matrix((log & to_test).astype(np.float32))
    return users, items, train, test


def reference_evaluation(model, train, test, ks, tail_share, baseline=None):
    """Flat metrics and per-user arrays straight from the references."""
    train_dense, test_dense = train.toarray(), test.toarray()
    n_users, n_items = test.shape
    users = [u for u in range(min(n_users, model.n_users)) if test_dense[u].any()]
    K = max(ks)
    ranked, _ = topk_reference(model.user_factors, model.item_factors, users, train_dense, K)
    base = None
    if baseline is not None:
        base, _ = topk_reference(baseline.user_factors, baseline.item_factors, users,
                                 train_dense, K)
    tail = tail_mask_reference(train_dense, tail_share)
    out, per_user = {}, {}
    for k in ks:
        rows = [user_metrics_reference(ranked[r], set(np.flatnonzero(test_dense[u]).tolist()), k,
                                       n_items, tail, None if base is None else base[r])
                for r, u in enumerate(users)]
        names = ["recall", "truncated_recall", "precision", "ndcg", "map", "hit_rate", "mrr",
                 "auc", "tail_recall"] + (["overlap"] if base is not None else [])
        for name in names:
            vals = np.array([row[name] for row in rows], dtype=float)
            per_user[f"{name}@{k}"] = vals
            defined = vals[~np.isnan(vals)]
            out[f"{name}@{k}"] = defined.mean() if defined.size else math.nan
        hits = sum(row["hits"] for row in rows)
        n_rel = [int(test_dense[u].sum()) for u in users]
        out[f"pooled_precision@{k}"] = hits / sum(min(k, r) for r in n_rel) if users else math.nan
        out[f"pooled_recall@{k}"] = hits / sum(n_rel) if users else math.nan
        out[f"coverage@{k}"] = coverage_reference(ranked, k, n_items)
    return np.array(users, dtype=np.int64), out, per_user


def check_against_reference(result, model, train, test, ks, tail_share, baseline=None):
    users, ref, ref_per_user = reference_evaluation(model, train, test, ks, tail_share, baseline)
    np.testing.assert_array_equal(result.users, users)
    assert result.n_users == len(users)
    assert set(result.metrics) == set(ref)
    for name, value in ref.items():
        assert_close(result.metrics[name], value, name)
    for name, vals in ref_per_user.items():
        np.testing.assert_allclose(result.per_user[name], vals, rtol=1e-12, atol=1e-12,
                                   err_msg=name)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_users=st.integers(1, 12), n_items=st.integers(1, 15),
       dim=st.integers(1, 4), ks=st.lists(st.integers(1, 20), min_size=1, max_size=3, unique=True),
       batch_size=st.integers(1, 5), with_baseline=st.booleans(),
       tail_share=st.sampled_from([0.5, 0.8]))
def test_evaluate_matches_reference_with_reference_model(seed, n_users, n_items, dim, ks,
                                                         batch_size, with_baseline, tail_share):
    rng = np.random.default_rng(seed)
    users, items, train, test = random_problem(rng, n_users, n_items, dim)
    model = ReferenceModel(users, items)
    baseline = None
    if with_baseline:
        baseline = ReferenceModel(rng.integers(-2, 3, users.shape).astype(np.float32),
                                  rng.integers(-2, 3, items.shape).astype(np.float32))
    result = evaluate(model, train, test, ks=ks, batch_size=batch_size, baseline=baseline,
                      tail_share=tail_share, show_progress=False)
    check_against_reference(result, model, train, test, sorted(ks), tail_share, baseline)


def factor_model_or_skip():
    pytest.importorskip("cfprune.retrieval", reason="cfprune.retrieval (FactorModel.recommend) "
                                                    "is not written yet")
    from cfprune.models.factors import FactorModel
    return FactorModel


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_users=st.integers(1, 12), n_items=st.integers(1, 15),
       dim=st.integers(1, 4), ks=st.lists(st.integers(1, 20), min_size=1, max_size=3, unique=True),
       batch_size=st.integers(1, 5), with_baseline=st.booleans())
def test_evaluate_matches_reference_with_factor_model(seed, n_users, n_items, dim, ks,
                                                      batch_size, with_baseline):
    FactorModel = factor_model_or_skip()
    rng = np.random.default_rng(seed)
    users, items, train, test = random_problem(rng, n_users, n_items, dim)
    baseline = None
    if with_baseline:
        baseline = FactorModel(rng.integers(-2, 3, users.shape).astype(np.float32),
                               rng.integers(-2, 3, items.shape).astype(np.float32))
    result = evaluate(FactorModel(users, items), train, test, ks=ks, batch_size=batch_size,
                      baseline=baseline, num_threads=2, show_progress=False)
    ref_base = None if baseline is None else ReferenceModel(baseline.user_factors,
                                                            baseline.item_factors)
    check_against_reference(result, ReferenceModel(users, items), train, test, sorted(ks), 0.8,
                            ref_base)


def test_evaluate_accepts_interactions_and_subsets_users():
    from cfprune.interactions import Interactions
    rng = np.random.default_rng(3)
    users, items, train, test = random_problem(rng, 9, 11, 3)
    model = ReferenceModel(users, items)
    full = evaluate(model, Interactions(train), Interactions(test), ks=5, show_progress=False)
    assert isinstance(full, EvaluationResult) and full.ks == (5,)
    some = full.users[::2]
    sub = evaluate(model, train, test, ks=5, users=np.r_[some, some], show_progress=False)
    np.testing.assert_array_equal(sub.users, some)
    np.testing.assert_array_equal(sub.per_user["recall@5"], full.per_user["recall@5"][::2])
    assert full["recall@5"] == full.metrics["recall@5"]
    flat = full.as_dict()
    assert flat["ks"] == [5] and flat["tail_share"] == 0.8 and flat["n_users"] == full.n_users


def test_stored_baseline_lists_give_the_same_overlap():
    rng = np.random.default_rng(5)
    users, items, train, test = random_problem(rng, 12, 14, 3)
    model = ReferenceModel(users, items)
    base_model = ReferenceModel(rng.integers(-2, 3, users.shape).astype(np.float32), items)
    base = evaluate(base_model, train, test, ks=(3, 8), keep_ranked=True, show_progress=False)
    assert base.ranked.shape == (base.n_users, 8)
    ref_ids, _ = topk_reference(base_model.user_factors, items, base.users, train.toarray(), 8)
    np.testing.assert_array_equal(base.ranked, ref_ids)
    direct = evaluate(model, train, test, ks=(2, 5), baseline=base_model, show_progress=False)
    stored = evaluate(model, train, test, ks=(2, 5), baseline=base, batch_size=4,
                      show_progress=False)
    for k in (2, 5):
        np.testing.assert_array_equal(stored.per_user[f"overlap@{k}"],
                                      direct.per_user[f"overlap@{k}"])
    partial = evaluate(base_model, train, test, ks=8, keep_ranked=True,
                       users=base.users[1:], show_progress=False)
    missing = evaluate(model, train, test, ks=5, baseline=partial, show_progress=False)
    assert np.isnan(missing.per_user["overlap@5"][0])
    np.testing.assert_array_equal(missing.per_user["overlap@5"][1:],
                                  direct.per_user["overlap@5"][1:])
    with pytest.raises(ShapeError, match="at least 10"):
        evaluate(model, train, test, ks=10, baseline=base, show_progress=False)
    with pytest.raises(DataError, match="keep_ranked=True"):
        evaluate(model, train, test, ks=5, baseline=direct, show_progress=False)


def test_evaluate_rejects_bad_input():
    rng = np.random.default_rng(0)
    users, items, train, test = random_problem(rng, 5, 6, 2)
    model = ReferenceModel(users, items)
    with pytest.raises(ShapeError, match="train has shape"):
        evaluate(model, train[:, :5], test, show_progress=False)
    with pytest.raises(DataError, match="cut-offs"):
        evaluate(model, train, test, ks=(0, 5), show_progress=False)
    with pytest.raises(ShapeError, match="scores 4 items"):
        evaluate(ReferenceModel(users, items[:4]), train, test, show_progress=False)
    with pytest.raises(ShapeError, match="Interactions or a scipy.sparse"):
        evaluate(model, train.toarray(), test, show_progress=False)


def test_evaluate_skips_users_beyond_the_model():
    rng = np.random.default_rng(1)
    users, items, train, test = random_problem(rng, 10, 8, 2)
    test = sp.csr_matrix(np.ones((10, 8), np.float32) - train.toarray())
    result = evaluate(ReferenceModel(users[:6], items), train, test, ks=3, show_progress=False)
    assert result.users.max() < 6


# ---------------------------------------------------------------------------------------------
# paired bootstrap

@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(20, 400),
       confidence=st.sampled_from([0.9, 0.95]))
def test_paired_difference_matches_scipy_bootstrap(seed, n, confidence):
    rng = np.random.default_rng(seed)
    base = rng.random(n)
    model = np.clip(base + rng.normal(0.02, 0.1, n), 0, 1)
    n_resamples = 2000
    diff, low, high, significant = paired_difference(model, base, n_resamples, confidence, seed)
    ref_low, ref_high = paired_bootstrap_reference(model, base, n_resamples, confidence, seed + 1)
    d = model - base
    assert diff == pytest.approx(d.mean(), abs=1e-12)
    # Monte-Carlo sd of a bootstrap percentile endpoint with 2000 resamples is about 0.06
    # standard errors; two independent runs differ by < 0.35 standard errors almost surely
    standard_error = d.std(ddof=1) / math.sqrt(n)
    assert abs(low - ref_low) < 0.35 * standard_error
    assert abs(high - ref_high) < 0.35 * standard_error
    assert low <= diff <= high
    assert significant == (low > 0 or high < 0)


def test_paired_difference_is_seeded_chunked_and_drops_nan(monkeypatch):
    rng = np.random.default_rng(0)
    a, b = rng.random(300), rng.random(300)
    first = paired_difference(a, b, 500, seed=7)
    assert first == paired_difference(a, b, 500, seed=7)
    assert first != paired_difference(a, b, 500, seed=8)
    import cfprune.uncertainty as unc
    monkeypatch.setattr(unc, "RESAMPLE_CHUNK_ELEMENTS", 300 * 7)  # 7 resamples per chunk
    assert unc.paired_difference(a, b, 500, seed=7) == first
    a_nan = np.r_[a, np.nan, 0.5]
    b_nan = np.r_[b, 0.1, np.nan]
    assert paired_difference(a_nan, b_nan, 500, seed=7) == first
    with pytest.raises(ShapeError):
        paired_difference(a, b[:-1])


def test_compare_aligns_users_and_formats():
    def result(users, values):
        users = np.asarray(users, np.int64)
        return EvaluationResult(metrics={}, per_user={"recall@20": np.asarray(values, float)},
                                users=users, ks=(20,), n_users=users.size, n_items=10,
                                tail_share=0.8)
    rng = np.random.default_rng(0)
    values_a = rng.random(50)
    values_b = rng.random(50)
    a = result(np.arange(50), values_a)
    b = result(np.arange(10, 60), values_b)  # users 10..49 in common
    line = compare(a, b, "recall@20")
    diff, low, high, _ = paired_difference(values_a[10:], values_b[:40])
    assert line == (f"recall@20 {values_a[10:].mean():.4f} vs {values_b[:40].mean():.4f}: "
                    f"{diff:+.4f} [{low:+.4f}, {high:+.4f}]")
    assert len(compare(a, b, ["recall@20", "recall@20"]).splitlines()) == 2
    with pytest.raises(DataError, match="no per-user 'ndcg@5'"):
        compare(a, b, "ndcg@5")


# ---------------------------------------------------------------------------------------------
# agreement with implicit.evaluation.ranking_metrics_at_k on real data

def movielens_matrix(name):
    """A binary users x items CSR of every rating in a MovieLens archive of the data home."""
    import pandas as pd
    path = real_archive(f"{name}.zip")
    with zipfile.ZipFile(path) as archive:
        if name == "ml-100k":
            with archive.open("ml-100k/u.data") as f:
                frame = pd.read_csv(f, sep="\t", names=["user", "item", "rating", "time"])
        else:
            with archive.open("ml-latest-small/ratings.csv") as f:
                frame = pd.read_csv(f).rename(columns={"userId": "user", "movieId": "item"})
    users = frame["user"].astype("category").cat.codes.to_numpy()
    items = frame["item"].astype("category").cat.codes.to_numpy()
    return sp.csr_matrix((np.ones(len(frame), np.float32), (users, items)))


@pytest.fixture(scope="module", params=[("ml-100k", "als"), ("ml-100k", "bpr"),
                                        ("ml-latest-small", "als"), ("ml-latest-small", "bpr")],
                ids=lambda p: "-".join(p))
def implicit_case(request):
    """(implicit.evaluation, trained implicit CPU model, train CSR, test CSR, its figures by k)."""
    from threadpoolctl import threadpool_limits
    implicit_evaluation = pytest.importorskip("implicit.evaluation")
    name, algorithm = request.param
    matrix = movielens_matrix(name)
    train, test = implicit_evaluation.train_test_split(matrix, 0.8, random_state=0)
    train, test = train.tocsr(), test.tocsr()
    with threadpool_limits(1, "blas"):
        if algorithm == "als":
            from implicit.cpu.als import AlternatingLeastSquares
            model = AlternatingLeastSquares(factors=32, iterations=8, regularization=0.05,
                                            random_state=0, num_threads=2)
        else:
            from implicit.cpu.bpr import BayesianPersonalizedRanking
            # one thread: implicit's BPR is Hogwild on more, its factors then differ between
            # runs, and now and then two items' scores tie within float32 rounding, which the
            # two rankings may order either way (seen once in three full runs of the suite)
            model = BayesianPersonalizedRanking(factors=32, iterations=30, random_state=0,
                                                num_threads=1)
        model.fit(train, show_progress=False)
    expected = {k: implicit_evaluation.ranking_metrics_at_k(model, train, test, K=k,
                                                            show_progress=False)
                for k in IMPLICIT_KS}
    return model, train, test, expected


IMPLICIT_KS = (10, 20)


class ImplicitRecommender:
    """Adapts an implicit model's own recommend to the cfprune contract (same ranked ids)."""

    def __init__(self, model):
        self.model = model
        self.n_users, self.n_items = model.user_factors.shape[0], model.item_factors.shape[0]

    def recommend(self, users, user_items, k=10, filter_seen=True, **_):
        return self.model.recommend(users, user_items, N=k,
                                    filter_already_liked_items=filter_seen)


def assert_implicit_figures(result, expected):
    for k in IMPLICIT_KS:
        got = implicit_metrics(result, k)
        for key in ("precision", "map", "ndcg", "auc"):
            assert got[key] == pytest.approx(expected[k][key], abs=1e-6), (key, k)


def test_metric_definitions_agree_with_implicit(implicit_case):
    """implicit's own ranked lists fed through evaluate() give implicit's four figures."""
    model, train, test, expected = implicit_case
    result = evaluate(ImplicitRecommender(model), train, test, ks=IMPLICIT_KS,
                      show_progress=False)
    assert_implicit_figures(result, expected)


def test_factor_model_evaluation_agrees_with_implicit(implicit_case):
    """End to end: cfprune's FactorModel on the implicit model's factors and train matrix."""
    FactorModel = factor_model_or_skip()
    model, train, test, expected = implicit_case
    factors = FactorModel(model.user_factors, model.item_factors)
    result = evaluate(factors, train, test, ks=IMPLICIT_KS, num_threads=2, show_progress=False)
    assert_implicit_figures(result, expected)


def test_paired_standard_error_and_p_value_equal_scipy():
    """The paired standard error (search targets) and the normal-approximation p-value (report,
    Holm) against scipy.stats.sem and the normal survival function, NaN users left out."""
    from scipy import stats

    from cfprune.report.sweep import paired_p_value
    from cfprune.uncertainty import paired_standard_error
    rng = np.random.default_rng(5)
    a, b = rng.random(300), rng.random(300) * 0.9
    a[[3, 40]] = np.nan
    d = (a - b)[~np.isnan(a - b)]
    mean, se, n = paired_standard_error(a, b)
    assert n == 298 and mean == pytest.approx(d.mean()) and se == pytest.approx(stats.sem(d))
    assert paired_p_value(a, b) == pytest.approx(2 * stats.norm.sf(abs(d.mean()) / stats.sem(d)))
    assert paired_p_value(b, b) == 1.0 and paired_p_value(a[:1], b[:1]) == 1.0
