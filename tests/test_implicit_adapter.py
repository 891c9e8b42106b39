"""as_implicit: a cfprune model behind implicit's recommender interface, checked against
implicit's own evaluation loop, implicit's own ALS fold-in and brute-force NumPy."""

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.evaluation import ranking_metrics_at_k
from implicit.recommender_base import RecommenderBase

import cfprune
from cfprune.errors import CfpruneError, ShapeError
from cfprune.evaluation import evaluate, implicit_metrics


@pytest.fixture(scope="module")
def data():
    """(train CSR, test CSR, ALS FactorModel) on a small random implicit-feedback matrix."""
    rng = np.random.default_rng(0)
    m = sp.random(300, 400, density=0.05, random_state=1, format="coo")
    keep = rng.random(m.nnz) < 0.8
    ones = np.ones(m.nnz, np.float32)
    train = sp.csr_matrix((ones[keep], (m.row[keep], m.col[keep])), shape=m.shape)
    test = sp.csr_matrix((ones[~keep], (m.row[~keep], m.col[~keep])), shape=m.shape)
    model = cfprune.train_als(train, factors=16, iterations=5, regularization=0.1,
                              show_progress=False)
    return train, test, model


@pytest.fixture(scope="module", params=["int8:axis=dim", "pq:m=4", "pq:m=4,rotation=opq,rounds=2"])
def compressed(request, data):
    return cfprune.compress(data[2], request.param)


def reference_top(scores, n):
    """Brute force: (ids, scores) best first, ties to the lower id, -inf entries as id -1."""
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    top = np.take_along_axis(scores, ids, axis=1)
    ids = np.where(np.isfinite(top), ids, -1)
    return ids, top


def test_ranking_metrics_at_k_equals_cfprune(data, compressed):
    train, test, _ = data
    wrapped = cfprune.as_implicit(compressed)
    assert isinstance(wrapped, RecommenderBase)
    got = ranking_metrics_at_k(wrapped, train, test, K=20, show_progress=False)
    ours = implicit_metrics(evaluate(compressed, train, test, ks=(20,), show_progress=False), 20)
    for key in ("precision", "map", "ndcg", "auc"):
        assert got[key] == pytest.approx(ours[key], abs=1e-6), key


def test_recommend_shapes_and_brute_force(data, compressed):
    train, _, _ = data
    w = cfprune.as_implicit(compressed)
    scores = compressed.users.decode() @ compressed.items.decode().T
    ids, sc = w.recommend(7, train[7], N=10)
    assert ids.shape == (10,) and sc.shape == (10,) and ids.dtype == np.int32
    users = np.array([3, 5, 11])
    ids2, sc2 = w.recommend(users, train[users], N=10, filter_items=[0, 1, 2])
    assert ids2.shape == (3, 10)
    ref = scores[users].copy()
    ref[train[users].toarray() > 0] = -np.inf
    ref[:, :3] = -np.inf
    ref_ids, ref_sc = reference_top(ref, 10)
    np.testing.assert_allclose(sc2, ref_sc, rtol=1e-5, atol=1e-6)
    assert (ids2 == ref_ids).mean() > 0.95  # near-ties may swap under float rounding
    subset = [9, 4, 100, 250, 399, 17]
    ids3, sc3 = w.recommend(users, train[users], N=10, items=subset)
    sub = np.sort(subset)
    ref = scores[users][:, sub].copy()
    ref[train[users][:, sub].toarray() > 0] = -np.inf
    r_ids, r_sc = reference_top(ref, 6)
    assert ids3.shape == (3, 6)
    np.testing.assert_array_equal(ids3, np.where(r_ids >= 0, sub[np.maximum(r_ids, 0)], -1))
    np.testing.assert_allclose(sc3, r_sc, rtol=1e-5, atol=1e-6)


def test_recalculate_user_equals_implicit_fold_in(data, compressed):
    """implicit's own ALS, given the compressed model's decoded tables, folds users in the same."""
    from threadpoolctl import threadpool_limits
    from implicit.cpu.als import AlternatingLeastSquares
    train, _, model = data
    with threadpool_limits(1, "blas"):
        peer = AlternatingLeastSquares(factors=model.dim,
                                       regularization=model.info["regularization"],
                                       alpha=model.info["alpha"], random_state=0)
    peer.user_factors = compressed.users.decode()
    peer.item_factors = compressed.items.decode()
    users = np.array([1, 2, 40])
    got_ids, got_sc = cfprune.as_implicit(compressed).recommend(users, train[users], N=10,
                                                                recalculate_user=True)
    ref_ids, ref_sc = peer.recommend(users, train[users], N=10, recalculate_user=True)
    np.testing.assert_allclose(got_sc, ref_sc, rtol=1e-4, atol=1e-5)
    assert (got_ids == ref_ids).mean() > 0.95


def test_similar_items_cosine(compressed):
    w = cfprune.as_implicit(compressed)
    x = compressed.items.decode().astype(np.float64)
    norms = np.linalg.norm(x, axis=1)
    cos = (x[[5, 8]] @ x.T) / (norms[[5, 8], None] * norms[None, :])
    ids, sc = w.similar_items([5, 8], N=5)
    ref_ids, ref_sc = reference_top(cos, 5)
    np.testing.assert_allclose(sc, ref_sc, rtol=1e-5)
    assert ids[:, 0].tolist() == [5, 8]
    one_ids, _ = w.similar_items(5, N=5)
    assert one_ids.shape == (5,)


def test_bad_calls(data, compressed):
    train, _, _ = data
    w = cfprune.as_implicit(compressed)
    with pytest.raises(ShapeError, match="one row per requested user"):
        w.recommend(np.array([1, 2]), train, N=5)
    with pytest.raises(ShapeError, match="not both"):
        w.recommend(1, train[1], items=[1, 2], filter_items=[3])
    with pytest.raises(CfpruneError, match="fitted already"):
        w.fit(train)
    bare = compressed.replace(info={})
    with pytest.raises(CfpruneError, match="regularization"):
        cfprune.as_implicit(bare).recommend(1, train[1], recalculate_user=True)
