"""fold-users: the users folded in at serving time, checked against the normal equations solved
by numpy.linalg.solve here, against implicit's recalculate_user, through save/load, pipelines
with reach pruning, add_items and the one-line errors."""

import numpy as np
import pytest
import scipy.sparse as sp

import cfprune
from cfprune.compression.fold import FoldUsers
from cfprune.compression.spec import parse_spec
from cfprune.errors import DataError, SpecError
from cfprune.models import FactorModel, train_als
from cfprune.tables import DenseTable, FoldedUsers, TablePlan

from .reference_kernels import assert_topk_matches

REG, ALPHA = 3.0, 4.0


@pytest.fixture(scope="module")
def data():
    """(train CSR [120 x 90] with 0/1 and a few 2s, ALS model of 12 factors)."""
    rng = np.random.default_rng(3)
    dense = (rng.random((120, 90)) < 0.12).astype(np.float32)
    dense[rng.random(dense.shape) < 0.01] = 2.0
    dense[5] = 0.0                               # a user with no history
    train = sp.csr_matrix(dense)
    model = train_als(train, factors=12, regularization=REG, alpha=ALPHA, iterations=6,
                      num_threads=1, show_progress=False)
    return train, model


def reference_fold_in(items, history, reg, alpha):
    """float64 [n, d]: each row's ALS user step by the normal equations and numpy.linalg.solve."""
    v = np.asarray(items, dtype=np.float64)
    out = np.zeros((history.shape[0], v.shape[1]))
    for u in range(history.shape[0]):
        row = history.getrow(u)
        if row.nnz == 0:
            continue
        vi, c = v[row.indices], alpha * row.data.astype(np.float64)
        a = v.T @ v + reg * np.eye(v.shape[1]) + vi.T @ np.diag(c - 1.0) @ vi
        out[u] = np.linalg.solve(a, vi.T @ c)
    return out


def check_against_reference(model, train, users, k=7):
    items = model.items.decode()
    queries = reference_fold_in(items, train[users], REG, ALPHA)
    exact = queries @ items.astype(np.float64).T
    exact[:, ~(model.items.valid_rows() if model.items.valid_rows() is not None else
               np.ones(model.n_items, bool))] = -np.inf
    ids, scores = model.recommend(users, train, k=k)
    seen = [set(train[u].indices.tolist()) for u in users]
    assert_topk_matches(ids, scores, exact, k, seen=seen, valid=model.items.valid_rows())


@pytest.mark.parametrize("spec", ["fold-users", "fold-users|int4:axis=dim",
                                  "int8:axis=dim|fold-users",
                                  "fold-users|prune-rows:by=reach,k=5|int4:axis=dim"])
def test_recommend_equals_brute_force_over_reference_fold_in(data, spec):
    train, model = data
    folded = cfprune.compress(model, spec, train)
    assert isinstance(folded.users, FoldedUsers) and folded.users.nbytes == 0
    assert folded.nbytes == folded.items.nbytes
    check_against_reference(folded, train, np.array([0, 5, 17, 64, 119, 3]))


def test_equals_implicit_recalculate_user(data):
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits
    train, model = data
    folded = cfprune.compress(model, "fold-users|int8:axis=dim", train)
    with threadpool_limits(1, "blas"):
        peer = AlternatingLeastSquares(factors=model.dim, regularization=REG, alpha=ALPHA,
                                       random_state=0, use_cg=False)
    peer.item_factors = folded.items.decode()
    peer.user_factors = np.zeros((model.n_users, model.dim), np.float32)
    users = np.array([1, 2, 40, 77])
    expected = peer.recalculate_user(users, train[users])
    got = folded.users.query_vectors(users, train[users], folded.items)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    ref_ids, ref_scores = peer.recommend(users, train[users], N=10, recalculate_user=True)
    ids, scores = folded.recommend(users, train[users], k=10)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-5)
    assert (ids == ref_ids).mean() > 0.95


def test_save_load_round_trip(data, tmp_path):
    train, model = data
    folded = cfprune.compress(model, "fold-users|prune-rows:by=reach,k=5|int4:axis=dim", train)
    folded.save(tmp_path / "m.npz")
    back = FactorModel.load(tmp_path / "m.npz")
    assert isinstance(back.users, FoldedUsers)
    assert back.users.params() == folded.users.params() and back.nbytes == folded.nbytes
    users = np.arange(30)
    for a, b in zip(back.recommend(users, train, k=5), folded.recommend(users, train, k=5)):
        np.testing.assert_array_equal(a, b)
    stored = np.load(tmp_path / "m.npz")
    assert not [k for k in stored.files if k.startswith("users/")]


def test_evaluate_equals_unfolded_model_with_reference_users(data):
    train, model = data
    folded = cfprune.compress(model, "fold-users|int4:axis=dim", train)
    users = reference_fold_in(folded.items.decode(), train, REG, ALPHA).astype(np.float32)
    shipped = FactorModel(users, folded.items)
    test = sp.csr_matrix((np.random.default_rng(1).random(train.shape) < 0.05)
                         .astype(np.float32))
    got = cfprune.evaluate(folded, train, test, ks=(10,), show_progress=False).metrics
    ref = cfprune.evaluate(shipped, train, test, ks=(10,), show_progress=False).metrics
    assert got["recall@10"] == pytest.approx(ref["recall@10"], abs=0.02)
    assert got["coverage@10"] == pytest.approx(ref["coverage@10"], abs=0.05)


def test_add_items_refreshes_the_gram(data):
    train, model = data
    folded = cfprune.compress(model, "fold-users|int8:axis=dim", train)
    before = folded.users.gram(folded.items)
    new = np.random.default_rng(2).standard_normal((4, model.dim)).astype(np.float32)
    grown = cfprune.add_items(folded, new)
    assert grown.n_items == model.n_items + 4
    items = grown.items.decode().astype(np.float64)
    np.testing.assert_allclose(grown.users.gram(grown.items),
                               items.T @ items + REG * np.eye(model.dim), rtol=1e-10)
    assert not np.allclose(grown.users.gram(grown.items), before)
    history = sp.hstack([train, sp.csr_matrix((train.shape[0], 4))]).tolil()
    history[9, model.n_items + 1] = 1.0
    history = history.tocsr()
    check_against_reference(grown, history, np.array([9, 10, 11]))


def test_the_gram_is_computed_once_per_item_table(data, monkeypatch):
    train, model = data
    fresh = model.replace(items=DenseTable(model.item_factors.copy()))
    folded = cfprune.compress(fresh, "fold-users", train)
    calls = []
    import cfprune.kernels.foldin as module
    real = module.item_gram
    monkeypatch.setattr(module, "item_gram", lambda *a: calls.append(1) or real(*a))
    folded.recommend(np.arange(10), train, k=3, batch_size=3)
    folded.recommend(np.arange(10), train, k=3)
    assert len(calls) == 1


def test_batched_solver_equals_reference_on_varied_lengths():
    from cfprune.kernels.foldin import item_gram, solve_users
    rng = np.random.default_rng(0)
    v = rng.standard_normal((400, 16)).astype(np.float32)
    counts = np.array([0, 1, 3, 4, 5, 17, 64, 65, 200, 399, 2, 2])
    rows = [np.sort(rng.choice(400, c, replace=False)) for c in counts]
    history = sp.csr_matrix((np.concatenate([rng.integers(1, 4, c) for c in counts])
                             .astype(np.float32),
                             np.concatenate(rows), np.concatenate([[0], np.cumsum(counts)])),
                            shape=(counts.size, 400))
    got = solve_users(item_gram([v[:150], v[150:]], 16, 0.5), v, history.indptr,
                      history.indices, 2.0 * history.data)
    np.testing.assert_allclose(got, reference_fold_in(v, history, 0.5, 2.0), rtol=2e-4,
                               atol=2e-5)


def test_plans_and_bytes():
    assert FoldedUsers.nbytes_for(6040, 64) == 0
    plan = FoldUsers().plan_table(DenseTable.plan(6040, 64), side="users")
    assert isinstance(plan, TablePlan) and plan.storage is FoldedUsers and plan.nbytes == 0
    items = DenseTable.plan(3500, 64)
    assert FoldUsers().plan_table(items) is items
    assert FoldedUsers(10, 64, 1.0, 1.0).serving_nbytes == 8 * 64 * 64


def one_line(excinfo):
    assert "\n" not in str(excinfo.value)


def test_errors_are_one_line(data):
    train, model = data
    folded = cfprune.compress(model, "fold-users", train)
    with pytest.raises(DataError, match="pass user_items") as e:
        folded.recommend([0], None, filter_seen=False)
    one_line(e)
    with pytest.raises(DataError, match="folded in from their interactions") as e:
        folded.users.decode([0])
    one_line(e)
    with pytest.raises(DataError, match="before fold-users") as e:
        cfprune.compress(folded, "lowrank:rank=4")
    one_line(e)
    with pytest.raises(SpecError, match="already folded") as e:
        cfprune.compress(folded, "fold-users")
    one_line(e)
    bpr = model.replace(info={"algorithm": "bpr"})
    with pytest.raises(SpecError, match="not als") as e:
        cfprune.compress(bpr, "fold-users")
    one_line(e)
    bare = model.replace(info={})
    with pytest.raises(SpecError, match="regularization") as e:
        cfprune.compress(bare, "fold-users")
    one_line(e)
    given = cfprune.compress(bare, "fold-users:regularization=3,alpha=4")
    assert given.users.params()["regularization"] == 3.0 and given.users.alpha == 4.0
    with pytest.raises(SpecError, match="alpha") as e:
        parse_spec("fold-users:alpha=0")
    one_line(e)


def test_one_compiled_signature(data):
    from cfprune.kernels.foldin import cholesky_solve
    train, model = data
    folded = cfprune.compress(model, "fold-users|int4:axis=dim", train)
    folded.recommend(np.arange(20), train.astype(np.float64), k=3)
    folded.users.query_vectors(np.arange(3), train[:3], folded.items)
    cfprune.models.fold_in_users(model.item_factors, train[:4], 1.0, 2.0)
    assert len(cholesky_solve.signatures) == 1


def test_as_implicit_recommends_as_the_model(data):
    train, model = data
    folded = cfprune.compress(model, "fold-users|int4:axis=dim", train)
    users = np.array([3, 8, 50])
    ids, scores = cfprune.as_implicit(folded).recommend(users, train[users], N=6)
    ref_ids, ref_scores = folded.recommend(users, train[users], k=6)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-6)
