"""recommend(): dispatch over every storage, conventions, validation, two-stage, peers."""

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st
from threadpoolctl import threadpool_limits

from cfprune.errors import ShapeError
from cfprune.kernels.dense import ITEMS_PER_TILE
from cfprune.kernels.metrics import metrics_users
from cfprune.kernels.fastscan import HAS_SHUFFLE, fastscan_worker, shuffle_worker
from cfprune.kernels.scan import scan_lookups_worker, scan_values_worker
from cfprune.kernels.tiled import FLAT_ITEMS, FLAT_MIN_ROWS, scan_worker
from cfprune.models.factors import FactorModel
from cfprune.retrieval import recommend
from cfprune.tables import (DenseTable, Float16Table, Int4Table, Int8Table, PQTable, PrunedTable,
                            SparseTable, Table)
from tests.reference_kernels import assert_topk_matches, topk_reference

SETTINGS = settings(max_examples=20, deadline=None)
STORAGES = ["dense", "fp16", "int8-row", "int8-dim", "int4-row", "int4-dim", "pq", "pq-rot",
            "pq4", "sparse", "pruned", "pruned-fallback", "pruned-int8"]


def make_table(storage, factors, rng):
    """A Table of ``storage`` built from float factors [n, d] with the lead's constructors."""
    n, d = factors.shape
    if storage == "dense":
        return DenseTable(factors)
    if storage == "fp16":
        return Float16Table(factors.astype(np.float16))
    if storage.startswith("int8"):
        per_row = storage.endswith("row")
        peak = np.abs(factors).max(axis=1 if per_row else 0) + 1e-3
        scale = (peak / 127).astype(np.float32)
        codes = np.rint(factors / (scale[:, None] if per_row else scale)).astype(np.int8)
        offset = (rng.standard_normal(scale.shape) * 0.01).astype(np.float32)
        return Int8Table(codes, scale, offset, axis="row" if per_row else "dim")
    if storage.startswith("int4"):
        per_row = storage.endswith("row")
        levels = rng.integers(0, 16, size=(n, d))
        m = n if per_row else d
        return Int4Table(Int4Table.pack(levels), rng.random(m).astype(np.float32) + 0.1,
                         rng.standard_normal(m).astype(np.float32) * 0.1,
                         axis="row" if per_row else "dim", dim=d)
    if storage.startswith("pq"):
        m = min(2, d)
        bounds = np.linspace(0, d, m + 1).round().astype(np.int32)
        codebooks = rng.standard_normal((8, d)).astype(np.float32)
        codes = rng.integers(0, 8, size=(n, m)).astype(np.uint8)
        rotation = None
        if storage == "pq-rot":
            rotation = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)
        if storage == "pq4":
            return PQTable(PQTable.pack4(codes), codebooks, bounds, nbits=4)
        return PQTable(codes, codebooks, bounds, rotation)
    if storage == "sparse":
        sparse = factors.copy()
        sparse[rng.random(sparse.shape) < 0.5] = 0
        return SparseTable.from_dense(sparse)
    if storage.startswith("pruned"):
        kept = np.flatnonzero(rng.random(n) < 0.7).astype(np.int32)
        inner_storage = "int8-row" if storage == "pruned-int8" else "dense"
        inner = make_table(inner_storage, factors[kept], rng)
        fallback = factors.mean(axis=0) if storage == "pruned-fallback" else None
        return PrunedTable(inner, kept, n, fallback)
    raise AssertionError(storage)


def random_seen(rng, n_rows, n_items):
    """CSR [n_rows, n_items]: random rows, one empty and one full when there is room."""
    dense = rng.random((n_rows, n_items)) < rng.random()
    dense[0] = False
    if n_rows > 1:
        dense[1] = True
    return sp.csr_matrix(dense.astype(np.float32))


def seen_sets(csr):
    return [set(csr.indices[csr.indptr[i]:csr.indptr[i + 1]].tolist())
            for i in range(csr.shape[0])]


@SETTINGS
@given(st.sampled_from(STORAGES), st.integers(1, 30), st.integers(1, 200), st.integers(1, 10),
       st.integers(1, 60), st.integers(0, 2 ** 32 - 1))
def test_every_storage_matches_brute_force(storage, n_users, n_items, dim, k, seed):
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((n_users, dim)).astype(np.float32)
    items = make_table(storage, rng.standard_normal((n_items, dim)).astype(np.float32), rng)
    model = FactorModel(users, items)
    seen = random_seen(rng, n_users, n_items)
    ids, scores = model.recommend(np.arange(n_users), seen, k=k, batch_size=7)
    exact = users.astype(np.float64) @ items.decode().astype(np.float64).T
    assert_topk_matches(ids, scores, exact, k, seen_sets(seen), items.valid_rows(), rtol=1e-4)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["dense", "fp16", "int8-row", "int4-dim", "sparse", "pruned",
                        "pruned-fallback"]),
       st.integers(1, 150), st.integers(ITEMS_PER_TILE + 1, 4 * ITEMS_PER_TILE),
       st.integers(2, 16), st.integers(1, 5), st.integers(0, 2 ** 32 - 1))
def test_early_stop_over_skewed_norms_matches_brute_force(storage, n_users, n_items, dim, k,
                                                          seed):
    """Item norms falling as a power of the rank (as in ALS factors) let users stop early in the
    norm-ordered scan; the result is still the brute force over the decoded table."""
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((n_users, dim)).astype(np.float32)
    factors = rng.standard_normal((n_items, dim)) / (rng.permutation(n_items) + 1.0)[:, None]
    items = make_table(storage, factors.astype(np.float32), rng)
    seen = random_seen(rng, n_users, n_items)
    ids, scores = FactorModel(users, items).recommend(np.arange(n_users), seen, k=k)
    exact = users.astype(np.float64) @ items.decode().astype(np.float64).T
    assert_topk_matches(ids, scores, exact, k, seen_sets(seen), items.valid_rows(), rtol=1e-5)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from(["dense", "fp16", "int8-dim", "int4-row", "pq", "pq-rot", "sparse",
                        "pruned-fallback"]),
       st.integers(5, 90), st.integers(FLAT_MIN_ROWS + ITEMS_PER_TILE,
                                        FLAT_MIN_ROWS + FLAT_ITEMS + ITEMS_PER_TILE),
       st.integers(2, 16), st.integers(1, 12), st.integers(0, 2 ** 32 - 1))
def test_flat_norms_take_the_flat_route_and_match_brute_force(storage, n_users, n_items, dim,
                                                              k, seed):
    """Rows of unit norm (a cosine model) give the bound nothing to prune: after the first item
    tile the scorer takes the flat route, and the result is still the brute force over the
    decoded table."""
    rng = np.random.default_rng(seed)
    users = rng.standard_normal((n_users, dim)).astype(np.float32)
    factors = rng.standard_normal((n_items, dim))
    factors /= np.linalg.norm(factors, axis=1, keepdims=True)
    items = make_table(storage, factors.astype(np.float32), rng)
    seen = random_seen(rng, n_users, n_items)
    ids, scores = FactorModel(users, items).recommend(np.arange(n_users), seen, k=k)
    exact = users.astype(np.float64) @ items.decode().astype(np.float64).T
    assert_topk_matches(ids, scores, exact, k, seen_sets(seen), items.valid_rows(), rtol=1e-5)


def test_the_route_follows_the_norms(monkeypatch):
    """The users' stop levels after the first tile choose the route: flat norms the flat route,
    norms falling as a power of the rank the fine tiles with early stop; a flat table with fewer
    than FLAT_MIN_ROWS rows after the first tile keeps the fine tiles."""
    import cfprune.kernels.tiled as tiled
    predicted, flat_calls = [], []
    scanned_fraction, flat_range = tiled.scanned_fraction, tiled._flat_range

    def spy(*args):
        predicted.append(scanned_fraction(*args))
        return predicted[-1]

    def flat_spy(*args):
        flat_calls.append(args[5].shape[0])     # the order's rows
        return flat_range(*args)
    monkeypatch.setattr(tiled, "scanned_fraction", spy)
    monkeypatch.setattr(tiled, "_flat_range", flat_spy)
    rng = np.random.default_rng(0)
    users = rng.standard_normal((40, 8)).astype(np.float32)
    factors = rng.standard_normal((ITEMS_PER_TILE + FLAT_MIN_ROWS, 8)).astype(np.float32)
    flat = factors / np.linalg.norm(factors, axis=1, keepdims=True)
    skewed = factors / (rng.permutation(factors.shape[0]) + 1.0)[:, None].astype(np.float32)
    for items in (flat, skewed, flat[:-1]):
        FactorModel(users, items).recommend(np.arange(40), None, k=5, filter_seen=False)
    assert predicted[0] > tiled.FLAT_FRACTION >= predicted[1]
    assert predicted[2] > tiled.FLAT_FRACTION and flat_calls == [flat.shape[0]]


@SETTINGS
@given(st.integers(2, 30), st.integers(1, 80), st.integers(1, 8), st.integers(0, 2 ** 32 - 1))
def test_implicit_convention_equals_full_matrix(n_users, n_items, k, seed):
    rng = np.random.default_rng(seed)
    model = FactorModel(rng.standard_normal((n_users, 4)).astype(np.float32),
                        rng.standard_normal((n_items, 4)).astype(np.float32))
    full = random_seen(rng, n_users, n_items)
    chosen = rng.choice(n_users, size=int(rng.integers(1, n_users)), replace=False)
    by_user = recommend(model, chosen, full, k=k)
    per_entry = recommend(model, chosen, full[chosen], k=k)
    np.testing.assert_array_equal(by_user[0], per_entry[0])
    np.testing.assert_array_equal(by_user[1], per_entry[1])


def test_dense_path_ids_equal_argsort_reference_exactly():
    rng = np.random.default_rng(3)
    users = rng.integers(-3, 4, size=(50, 6)).astype(np.float32)
    items = rng.integers(-3, 4, size=(300, 6)).astype(np.float32)
    seen = random_seen(rng, 50, 300)
    ids, scores = recommend(FactorModel(users, items), np.arange(50), seen, k=25)
    ref_ids, ref_scores = topk_reference(users.astype(np.float64) @ items.T, 25, seen_sets(seen))
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores.astype(np.float32))


def test_k_beyond_catalogue_and_user_who_has_seen_everything():
    rng = np.random.default_rng(0)
    model = FactorModel(rng.standard_normal((3, 4)).astype(np.float32),
                        rng.standard_normal((5, 4)).astype(np.float32))
    seen = sp.csr_matrix(np.array([[0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]],
                                  dtype=np.float32))
    ids, scores = model.recommend([0, 1, 2], seen, k=8)
    assert ids.shape == (3, 8) and ids.dtype == np.int32 and scores.dtype == np.float32
    assert (ids[0, :5] >= 0).all() and (ids[0, 5:] == -1).all()
    assert (ids[1] == -1).all() and np.isneginf(scores[1]).all()
    assert (ids[2, :4] >= 1).all() and (ids[2, 4:] == -1).all()
    unfiltered, _ = model.recommend([1], None, k=5, filter_seen=False)
    assert sorted(unfiltered[0].tolist()) == [0, 1, 2, 3, 4]


def test_unsorted_csr_and_empty_user_list():
    rng = np.random.default_rng(1)
    model = FactorModel(rng.standard_normal((4, 3)).astype(np.float32),
                        rng.standard_normal((9, 3)).astype(np.float32))
    seen = sp.csr_matrix((np.ones(3, np.float32), np.array([5, 1, 3]), np.array([0, 3, 3, 3, 3])),
                         shape=(4, 9))
    assert not seen.has_sorted_indices
    ids, _ = model.recommend(np.arange(4), seen, k=9)
    assert not {1, 3, 5} & set(ids[0].tolist()) and (ids[0, 6:] == -1).all()
    ids, scores = model.recommend(np.array([], dtype=np.int64), seen, k=3)
    assert ids.shape == (0, 3) and scores.shape == (0, 3)


class NaNUsers(Table):
    """A user table whose row 2 decodes to NaN (no storage admits NaN, so a stand-in)."""

    storage = "test-nan"

    def __init__(self, n, d):
        self.data = np.ones((n, d), np.float32)
        self.data[2, 1] = np.nan

    n_rows = property(lambda self: self.data.shape[0])
    dim = property(lambda self: self.data.shape[1])

    def decode(self, rows=None):
        return self.data if rows is None else self.data[rows]

    def arrays(self):
        return {"data": self.data}


def test_validation_errors():
    rng = np.random.default_rng(2)
    model = FactorModel(rng.standard_normal((4, 3)).astype(np.float32),
                        rng.standard_normal((6, 3)).astype(np.float32))
    seen = sp.csr_matrix((4, 6), dtype=np.float32)
    for bad_k in (0, -1, 2.5, True):
        with pytest.raises(ShapeError, match="k must be a positive integer"):
            model.recommend([0], seen, k=bad_k)
    with pytest.raises(ShapeError, match="out of range"):
        model.recommend([0, 4], seen)
    with pytest.raises(ShapeError, match="rows"):
        model.recommend([0, 1], sp.csr_matrix((3, 6), dtype=np.float32))
    with pytest.raises(ShapeError, match="columns"):
        model.recommend([0], sp.csr_matrix((4, 5), dtype=np.float32))
    with pytest.raises(ShapeError, match="scipy.sparse"):
        model.recommend([0], np.zeros((4, 6)))
    nan_model = FactorModel(NaNUsers(4, 3), rng.standard_normal((6, 3)).astype(np.float32))
    with pytest.raises(ShapeError, match=r"NaN or Inf in 1 rows: \[2\]"):
        nan_model.recommend([0, 2, 3], seen)


def test_two_stage_with_rerank_table():
    """Enough candidates: two-stage equals exact retrieval on the re-rank table; fewer: the
    result lies inside stage one's candidates and is ordered by the re-rank scores."""
    rng = np.random.default_rng(4)
    users = rng.standard_normal((40, 8)).astype(np.float32)
    exact_items = rng.standard_normal((120, 8)).astype(np.float32)
    coarse = make_table("pq", exact_items, rng)
    seen = random_seen(rng, 40, 120)
    for rerank in (DenseTable(exact_items), make_table("int8-row", exact_items, rng)):
        model = FactorModel(users, coarse, rerank=rerank)
        scores_rerank = users.astype(np.float64) @ rerank.decode().astype(np.float64).T
        ids, scores = model.recommend(np.arange(40), seen, k=10, candidates=200)
        assert_topk_matches(ids, scores, scores_rerank, 10, seen_sets(seen))
        stage_one, _ = FactorModel(users, coarse).recommend(np.arange(40), seen, k=30)
        ids, scores = model.recommend(np.arange(40), seen, k=10, candidates=30)
        for i in range(40):
            got = ids[i][ids[i] >= 0]
            assert set(got.tolist()) <= set(stage_one[i].tolist())
            np.testing.assert_allclose(scores[i, :got.size], scores_rerank[i, got], atol=1e-4)
    model = FactorModel(users, make_table("fp16", exact_items, rng))
    ids, scores = model.recommend(np.arange(40), seen, k=10, candidates=15)
    decoded = users.astype(np.float64) @ model.items.decode().T
    np.testing.assert_allclose(scores[ids >= 0], np.take_along_axis(decoded, ids, 1)[ids >= 0],
                               atol=1e-4)


def test_one_signature_per_kernel_across_k_users_storages_and_threads():
    """After calls with different k, user counts, batch sizes, thread counts (0: every core),
    storages and read-only tables, every kernel keeps exactly one compiled signature; Numba's
    own thread count is left alone."""
    from cfprune import evaluate
    from cfprune.facade import compress
    rng = np.random.default_rng(5)
    model = FactorModel(rng.standard_normal((30, 5)).astype(np.float32),
                        rng.standard_normal((70, 5)).astype(np.float32))
    seen = random_seen(rng, 30, 70)
    threads = numba.get_num_threads()
    frozen = model.items.data.copy()
    frozen.flags.writeable = False
    models = [model, FactorModel(model.users, frozen)] + [
        compress(model, spec) for spec in ("fp16", "int8", "int4", "magnitude:sparsity=0.5",
                                           "pq:m=2", "pq:m=2,rotation=opq",
                                           "pq:m=3,nbits=4")]
    for m in models:
        for k in (1, 5, 12):
            for num_threads in (None, 0, 1, 3):
                m.recommend(np.arange(0, 30, 2), seen, k=k, num_threads=num_threads,
                            batch_size=4)
                m.recommend(np.arange(30), seen, k=k, num_threads=num_threads)
        evaluate(m, seen, random_seen(rng, 30, 70), ks=(1, 3), num_threads=2)
    fastscan = shuffle_worker if HAS_SHUFFLE else fastscan_worker
    for kernel in (scan_worker, scan_lookups_worker, scan_values_worker, fastscan,
                   metrics_users):
        assert len(kernel.signatures) == 1, kernel
    assert numba.get_num_threads() == threads


def test_num_threads_validation():
    rng = np.random.default_rng(1)
    model = FactorModel(rng.standard_normal((4, 3)).astype(np.float32),
                        rng.standard_normal((9, 3)).astype(np.float32))
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ShapeError, match="num_threads"):
            model.recommend([0], None, filter_seen=False, num_threads=bad)


def test_in_place_change_of_item_rows_is_never_answered_from_stale_state():
    """The cached scan order follows the table's contents, not only its identity."""
    rng = np.random.default_rng(2)
    items = rng.standard_normal((3 * ITEMS_PER_TILE, 4)).astype(np.float32)
    model = FactorModel(rng.standard_normal((5, 4)).astype(np.float32), items)
    users = np.arange(5)
    model.recommend(users, None, k=3, filter_seen=False)
    try:
        model.items.data.flags.writeable = True
    except ValueError:
        pytest.skip("the table's arrays cannot be written: no in-place change possible")
    model.items.data[7] = 1e3 * model.users.decode(np.array([0]))[0]
    ids, _ = model.recommend(users, None, k=3, filter_seen=False)
    ref_ids, _ = topk_reference(model.users.decode().astype(np.float64) @
                                model.items.decode().T.astype(np.float64), 3, [set()] * 5)
    np.testing.assert_array_equal(ids, ref_ids)
    assert ids[0, 0] == 7


def test_dense_path_agrees_with_implicit_recommend():
    implicit = pytest.importorskip("implicit")
    from implicit.cpu.als import AlternatingLeastSquares
    rng = np.random.default_rng(6)
    interactions = sp.random(60, 90, density=0.1, format="csr", random_state=7, dtype=np.float32)
    interactions.data[:] = 1.0
    with threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(factors=8, iterations=3, random_state=0, num_threads=1)
        als.fit(interactions, show_progress=False)
    model = FactorModel(np.asarray(als.user_factors), np.asarray(als.item_factors))
    users = rng.choice(60, size=20, replace=False)
    ours, our_scores = model.recommend(users, interactions[users], k=10)
    theirs, their_scores = als.recommend(users, interactions[users], N=10,
                                         filter_already_liked_items=True)
    np.testing.assert_allclose(our_scores, their_scores, rtol=1e-4, atol=1e-5)
    for i in range(len(users)):
        row = our_scores[i]
        distinct = np.ones(10, bool)
        distinct[1:] &= np.abs(np.diff(row)) > 1e-5
        distinct[:-1] &= np.abs(np.diff(row)) > 1e-5
        np.testing.assert_array_equal(ours[i][distinct], theirs[i][distinct])
    assert implicit.__version__


@pytest.mark.parametrize("spec", ["", "pq:m=2", "prune-rows:keep=0.5"])
def test_serving_nbytes_counts_the_early_stop_state(spec):
    """``serving_nbytes`` = ``nbytes`` + the scan order and norm bound retrieval keeps (8 bytes
    per scanned row), measured on the arrays retrieval actually holds."""
    from cfprune import retrieval
    from cfprune.facade import compress
    rng = np.random.default_rng(3)
    model = FactorModel(rng.standard_normal((6, 4)).astype(np.float32),
                        rng.standard_normal((50, 4)).astype(np.float32))
    model = compress(model, spec, random_seen(rng, 6, 50)) if spec else model
    model.recommend(np.arange(6), None, k=3, filter_seen=False)
    table = model.items
    scanned = table.inner if table.storage == "pruned" else table
    order, remaining = retrieval._SCAN_ORDERS[scanned][2]
    assert table.serving_nbytes - table.nbytes == order.nbytes + remaining.nbytes
    assert table.serving_nbytes - table.nbytes == 8 * scanned.n_rows


def test_cold_cache_notice_is_one_line_once_per_process(monkeypatch, capsys):
    from cfprune import retrieval
    rng = np.random.default_rng(4)
    model = FactorModel(rng.standard_normal((3, 4)).astype(np.float32),
                        rng.standard_normal((20, 4)).astype(np.float32))
    model.recommend([0], None, k=2, filter_seen=False)
    assert not retrieval.is_cold(scan_worker)  # compiled or loaded above, and cached on disk
    monkeypatch.setattr(retrieval, "_ANNOUNCED", [])
    monkeypatch.setattr(retrieval, "is_cold", lambda dispatcher: True)
    capsys.readouterr()
    for _ in range(2):
        model.recommend([0, 1], None, k=2, filter_seen=False)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "compiling the Numba kernels once" in err


def test_user_items_of_every_user_with_the_users_permuted_is_asked_not_misread():
    """One row per model user and a permutation of all users: either reading could be meant, so
    recommend asks which (issue 14) instead of silently picking one; each reading then equals
    brute force."""
    rng = np.random.default_rng(3)
    model = FactorModel(rng.standard_normal((5, 4)).astype(np.float32),
                        rng.standard_normal((9, 4)).astype(np.float32))
    seen = sp.random(5, 9, density=0.3, format="csr", random_state=4, dtype=np.float32)
    perm = np.array([4, 2, 0, 1, 3])
    with pytest.raises(ShapeError, match="user_items_rows='requested'"):
        model.recommend(perm, seen, k=3)
    scores = model.users.decode() @ model.items.decode().T
    scores[seen.toarray() > 0] = -np.inf
    reference = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    by_model, _ = model.recommend(perm, seen, k=3, user_items_rows="model")
    np.testing.assert_array_equal(by_model, reference[perm])
    by_request, _ = model.recommend(perm, seen[perm], k=3, user_items_rows="requested")
    np.testing.assert_array_equal(by_request, reference[perm])
    in_order, _ = model.recommend(np.arange(5), seen, k=3)
    np.testing.assert_array_equal(in_order, reference)
    with pytest.raises(ShapeError, match="expects 2"):
        model.recommend([0, 1], seen, k=3, user_items_rows="requested")


def test_blas_is_single_threaded_inside_a_call_and_restored_after():
    from threadpoolctl import threadpool_info
    from cfprune.retrieval import single_threaded_blas

    def blas_threads():
        return sorted({lib["num_threads"] for lib in threadpool_info()
                       if lib["user_api"] == "blas"})
    with threadpool_limits(2, "blas"):
        with single_threaded_blas():
            assert blas_threads() == [1]
        assert blas_threads() == [2]
        with pytest.raises(RuntimeError):
            with single_threaded_blas():
                raise RuntimeError("inside")
        assert blas_threads() == [2]
