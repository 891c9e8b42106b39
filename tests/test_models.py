"""Training wrappers, imports and fold-in against `implicit` itself."""

import numpy as np
import pytest
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from cfprune.errors import DataError, ModelFileError, ShapeError
from cfprune.interactions import Interactions
from cfprune.models import (FactorModel, fold_in_users, from_implicit, load_implicit_file,
                            load_npy_pair, train_als, train_bpr)


@pytest.fixture(scope="module")
def matrix():
    m = sp.random(120, 80, density=0.08, random_state=3, format="csr", dtype=np.float32)
    m.data[:] = 1.0
    return m


def test_train_als_matches_implicit_with_same_seed(matrix):
    ours = train_als(matrix, factors=8, regularization=0.1, alpha=2.0, iterations=3,
                     num_threads=1, seed=5)
    ref = AlternatingLeastSquares(factors=8, regularization=0.1, alpha=2.0, iterations=3,
                                  num_threads=1, random_state=5)
    ref.fit(matrix, show_progress=False)
    assert ours.user_factors.dtype == np.float32 and ours.users.data.flags.c_contiguous
    assert np.allclose(ours.user_factors, ref.user_factors, atol=1e-5)
    assert np.allclose(ours.item_factors, ref.item_factors, atol=1e-5)
    assert ours.info["algorithm"] == "als"


def test_train_bpr_keeps_ids_and_is_deterministic_single_threaded(matrix):
    inter = Interactions(matrix, user_ids=np.arange(120) + 1000)
    a = train_bpr(inter, factors=6, iterations=5, num_threads=1, seed=2)
    b = train_bpr(inter, factors=6, iterations=5, num_threads=1, seed=2)
    assert np.array_equal(a.user_factors, b.user_factors)
    assert a.user_ids[0] == 1000
    assert a.dim == 7  # implicit's BPR appends the item-bias column


def test_training_refuses_bad_matrices():
    with pytest.raises(DataError, match="no interactions"):
        train_als(sp.csr_matrix((3, 3), dtype=np.float32))
    with pytest.raises(DataError, match="non-negative"):
        train_als(sp.csr_matrix(-np.eye(3, dtype=np.float32)))
    with pytest.raises(ShapeError, match="Interactions or a scipy.sparse"):
        train_als(np.eye(3))


def test_fold_in_equals_implicit_recalculate_user(matrix):
    ref = AlternatingLeastSquares(factors=8, regularization=0.3, alpha=4.0, iterations=4,
                                  num_threads=1, random_state=0, use_cg=False)
    ref.fit(matrix, show_progress=False)
    users = np.arange(10)
    expected = ref.recalculate_user(users, matrix[users])
    got = fold_in_users(ref.item_factors, matrix[users], regularization=0.3, alpha=4.0)
    assert np.allclose(got, expected, atol=1e-4)


def test_imports_from_implicit_object_file_and_npy(matrix, tmp_path):
    ref = AlternatingLeastSquares(factors=4, iterations=2, random_state=0)
    ref.fit(matrix, show_progress=False)
    m1 = from_implicit(ref)
    assert np.array_equal(m1.user_factors, ref.user_factors)
    ref.save(tmp_path / "implicit_model.npz")
    m2 = load_implicit_file(tmp_path / "implicit_model.npz")
    assert np.array_equal(m2.item_factors, ref.item_factors)
    assert m2.info["factors"] == 4
    np.save(tmp_path / "U.npy", ref.user_factors)
    np.save(tmp_path / "V.npy", ref.item_factors)
    m3 = load_npy_pair(tmp_path / "U.npy", tmp_path / "V.npy")
    assert np.array_equal(m3.item_factors, ref.item_factors)


def test_import_errors_name_the_problem(tmp_path):
    np.save(tmp_path / "U.npy", np.ones((3, 4), np.float32))
    np.save(tmp_path / "V.npy", np.ones((5, 3), np.float32))
    with pytest.raises(ShapeError, match="4 dimensions but item factors have 3"):
        load_npy_pair(tmp_path / "U.npy", tmp_path / "V.npy")
    with pytest.raises(DataError, match="does not exist"):
        load_npy_pair(tmp_path / "U.npy", tmp_path / "missing.npy")
    np.savez(tmp_path / "other.npz", x=np.ones(3))
    with pytest.raises(ModelFileError, match="user_factors"):
        load_implicit_file(tmp_path / "other.npz")


def test_factor_model_checks():
    with pytest.raises(ShapeError, match="rerank"):
        FactorModel(np.ones((2, 3)), np.ones((4, 3)), rerank=np.ones((5, 3)))
    with pytest.raises(ShapeError, match="item_ids"):
        FactorModel(np.ones((2, 3)), np.ones((4, 3)), item_ids=[1, 2])
    bad = np.ones((4, 3))
    bad[1, 1] = np.nan
    with pytest.raises(ShapeError, match="item factors.*rows: 1"):
        FactorModel(np.ones((2, 3)), bad)


def test_cli_import_keeps_id_maps(tmp_path):
    from cfprune import cli
    np.save(tmp_path / "U.npy", np.ones((3, 2), np.float32))
    np.save(tmp_path / "V.npy", np.ones((4, 2), np.float32))
    (tmp_path / "users.txt").write_text("u1\nu2\nu3\n")
    np.save(tmp_path / "items.npy", np.array([10, 20, 30, 40]))
    assert cli.main(["import", "--user-factors", str(tmp_path / "U.npy"), "--item-factors",
                     str(tmp_path / "V.npy"), "--user-ids", str(tmp_path / "users.txt"),
                     "--item-ids", str(tmp_path / "items.npy"),
                     "--out", str(tmp_path / "m.npz")]) == 0
    model = FactorModel.load(tmp_path / "m.npz")
    assert model.user_ids.tolist() == ["u1", "u2", "u3"]
    assert model.item_ids.tolist() == [10, 20, 30, 40]
