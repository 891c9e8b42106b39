"""Compression methods: decode against independent NumPy references (tests/reference_compress.py),
exact bytes of the saved file, pipelines and determinism."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import example, given, settings, strategies as st

from cfprune.compression import (Int2, Int4, Int8, LowRank, Magnitude, Pipeline,
                                 ProductQuantization, PruneRows)
from cfprune.compression.pq import assign_anisotropic, train_pq, update_codebooks_anisotropic
from cfprune.compression.spec import parse_spec
from cfprune.errors import DataError, SpecError
from cfprune.facade import compress
from cfprune.models.factors import FactorModel
from cfprune.tables import (DenseTable, Float16Table, Int2Table, Int4Table, Int8Table, PQTable,
                            PrunedTable, SparseTable)

from . import reference_compress as ref


def random_model(n_users=60, n_items=80, dim=12, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n_users, dim)).astype(np.float32)
    v = (rng.normal(size=(n_items, dim)) + shift).astype(np.float32)
    return FactorModel(u, v)


def random_interactions(n_users, n_items, seed=0, density=0.1):
    m = sp.random(n_users, n_items, density=density, random_state=seed, format="csr")
    m.data[:] = 1.0
    return m.astype(np.float32)


matrices = st.tuples(st.integers(1, 25), st.integers(1, 19), st.integers(0, 2 ** 31),
                     st.floats(-3, 3), st.booleans())


def make_matrix(n, d, seed, shift, with_constant_row):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, d)) * rng.uniform(0.01, 5) + shift).astype(np.float32)
    if with_constant_row:
        x[0] = np.float32(shift)
    return x


# scalar quantisation ------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(matrices, st.sampled_from(["row", "dim"]))
def test_int8_affine_error_within_half_step(shape, axis):
    x = make_matrix(*shape)
    model = FactorModel(np.ones((3, x.shape[1]), np.float32), x)
    table = Int8(axis=axis).fit(model).items
    assert isinstance(table, Int8Table) and table.codes.dtype == np.int8
    codes = table.codes.astype(np.int64)
    assert codes.min() >= -128 and codes.max() <= 127
    decoded = ref.affine_decode(codes, table.scale, table.offset, axis)
    np.testing.assert_allclose(table.decode(), decoded, rtol=1e-6, atol=1e-6)
    step = table.scale[:, None] if axis == "row" else table.scale[None, :]
    tol = 1e-6 * (1 + np.abs(x).max())
    assert np.all(np.abs(decoded - x) <= step / 2 + tol)
    # the range is used from the lowest code: every non-constant row/dim reaches -128 and 127
    along = 1 if axis == "row" else 0
    spread = x.max(axis=along) > x.min(axis=along)
    assert np.all(codes.min(axis=along)[spread] == -128)
    assert np.all(codes.max(axis=along)[spread] == 127)


def test_int8_negative_weights_are_not_clipped():
    x = np.array([[-2.0, -1.0, -0.5, 0.0, 0.5]], np.float32)
    table = Int8().fit(FactorModel(np.ones((1, 5), np.float32), x)).items
    step = float(table.scale[0])
    assert np.all(np.abs(table.decode() - x) <= step / 2 + 1e-7)
    assert table.codes[0, 0] == -128 and table.codes[0, -1] == 127


@settings(max_examples=30, deadline=None)
@given(matrices, st.sampled_from(["row", "dim"]))
def test_int8_symmetric(shape, axis):
    x = make_matrix(*shape)
    table = Int8(axis=axis, symmetric=True).fit(
        FactorModel(np.ones((2, x.shape[1]), np.float32), x)).items
    assert table.offset is None and "offset" not in table.arrays()
    codes = table.codes.astype(np.int64)
    assert codes.min() >= -127 and codes.max() <= 127
    decoded = ref.affine_decode(codes, table.scale, None, axis)
    step = table.scale[:, None] if axis == "row" else table.scale[None, :]
    assert np.all(np.abs(decoded - x) <= step / 2 + 1e-6 * (1 + np.abs(x).max()))


@settings(max_examples=40, deadline=None)
@given(matrices, st.sampled_from(["row", "dim"]))
def test_int4_error_within_half_step(shape, axis):
    x = make_matrix(*shape)
    table = Int4(axis=axis).fit(FactorModel(np.ones((2, x.shape[1]), np.float32), x)).items
    assert isinstance(table, Int4Table)
    assert table.codes.shape == (x.shape[0], (x.shape[1] + 1) // 2)
    levels = ref.unpack_nibbles(table.codes, x.shape[1])
    assert levels.min() >= 0 and levels.max() <= 15
    decoded = ref.affine_decode(levels, table.scale, table.offset, axis)
    np.testing.assert_allclose(table.decode(), decoded, rtol=1e-6, atol=1e-6)
    step = table.scale[:, None] if axis == "row" else table.scale[None, :]
    assert np.all(np.abs(decoded - x) <= step / 2 + 1e-6 * (1 + np.abs(x).max()))


def test_int4_has_no_symmetric_option():
    with pytest.raises(SpecError, match="symmetric"):
        Int4(symmetric=True)


def test_fp16_and_overflow():
    model = random_model()
    table = compress(model, "fp16").items
    assert isinstance(table, Float16Table)
    np.testing.assert_array_equal(table.decode(),
                                  model.items.decode().astype(np.float16).astype(np.float32))
    big = FactorModel(np.ones((2, 3), np.float32), np.full((4, 3), 1e6, np.float32))
    with pytest.raises(SpecError, match="float16"):
        compress(big, "fp16")


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_auto_axis_keeps_the_variant_with_more_overlap(method):
    rng = np.random.default_rng(3)
    # dimensions with very different ranges favour per-dimension scales
    v = (rng.normal(size=(120, 10)) * np.geomspace(0.01, 10, 10)).astype(np.float32)
    u = rng.normal(size=(40, 10)).astype(np.float32)
    model = FactorModel(u, v)
    out = compress(model, f"{method}:axis=auto,sample_users=40,topk=10")
    step = out.info["compression"][-1]["items"]
    overlaps = {}
    for axis in ("row", "dim"):
        variant = compress(model, f"{method}:axis={axis}").items.decode()
        overlaps[axis] = ref.topk_overlap(u, v, variant, 10)
        assert step["auto_overlap"][axis] == pytest.approx(overlaps[axis])
    best = "dim" if overlaps["dim"] >= overlaps["row"] else "row"
    assert step["axis"] == best == out.items.axis


# product quantisation -----------------------------------------------------------------------

@settings(max_examples=12, deadline=None)
@given(st.integers(3, 60), st.integers(2, 13), st.integers(1, 6), st.integers(0, 1000),
       st.sampled_from(["none", "opq"]))
def test_pq_decode_equals_centroid_lookup(n, d, m, seed, rotation):
    m = min(m, d)
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    table, info = train_pq(x, m, 256, rotation=rotation, iters=5, rounds=2, seed=seed)
    assert isinstance(table, PQTable) and table.codes.dtype == np.uint8
    assert table.ksub == min(256, n) == info["ksub_used"]
    assert np.diff(table.bounds).max() - np.diff(table.bounds).min() <= 1
    expected = ref.pq_lookup(table.codes, table.codebooks, table.bounds, table.rotation)
    np.testing.assert_allclose(table.decode(), expected, rtol=1e-5, atol=1e-5)
    if rotation == "opq":
        r = table.rotation.astype(np.float64)
        np.testing.assert_allclose(r.T @ r, np.eye(d), atol=1e-5)
    # each MSE code is the nearest centroid of the (rotated) row
    x_rot = x.astype(np.float64) if table.rotation is None else x @ table.rotation.astype(
        np.float64)
    d_got = ((x_rot - ref.pq_lookup(table.codes, table.codebooks, table.bounds)) ** 2).sum()
    best = ref.nearest_codes(x_rot, table.codebooks, table.bounds)
    d_best = ((x_rot - ref.pq_lookup(best, table.codebooks, table.bounds)) ** 2).sum()
    assert d_got <= d_best + 1e-4 * (1 + d_best)


def test_pq_fewer_rows_than_ksub_recorded_in_info():
    model = random_model(n_items=40, dim=8)
    out = compress(model, "pq:m=4")
    step = out.info["compression"][-1]["items"]
    assert step["ksub_used"] == 40 and out.items.ksub == 40


def test_pq_m_larger_than_dim_is_a_spec_error():
    with pytest.raises(SpecError, match="m=20"):
        compress(random_model(dim=8), "pq:m=20")


def test_opq_reduces_error_on_correlated_data():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(600, 16)) @ rng.normal(size=(16, 16))).astype(np.float32)
    plain, info_plain = train_pq(x, 4, 16, seed=0)
    opq, info_opq = train_pq(x, 4, 16, rotation="opq", rounds=6, seed=0)
    err = lambda t: ((t.decode().astype(np.float64) - x) ** 2).sum(1).mean()
    assert err(opq) < err(plain)
    assert err(opq) == pytest.approx(info_opq["mse"], rel=1e-4)


def test_anisotropic_assignment_is_a_coordinatewise_minimum():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 6)) + 1.0
    bounds = np.array([0, 2, 4, 6])
    codebooks = rng.normal(size=(8, 6)) + 1.0
    start = np.zeros((40, 3), np.uint8)
    eta = 5.0
    codes = assign_anisotropic(x, codebooks, bounds, start, eta, sweeps=6)
    for i in range(40):
        current = ref.anisotropic_loss_one(x[i], ref.pq_lookup(codes[i:i + 1], codebooks,
                                                               bounds)[0], eta)
        for s in range(3):
            for c in range(8):
                trial = codes[i:i + 1].copy()
                trial[0, s] = c
                alt = ref.anisotropic_loss_one(x[i], ref.pq_lookup(trial, codebooks, bounds)[0],
                                               eta)
                assert current <= alt + 1e-9


def test_anisotropic_codebook_update_solves_the_weighted_least_squares():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 4)) + 0.5
    bounds = np.array([0, 2, 4])
    codebooks = rng.normal(size=(3, 4)).astype(np.float32)
    codes = rng.integers(0, 3, size=(50, 2)).astype(np.uint8)
    eta = 3.0
    updated = update_codebooks_anisotropic(x, codebooks, bounds, codes, eta)
    total = lambda cb: sum(ref.anisotropic_loss_one(x[i], ref.pq_lookup(codes[i:i + 1], cb,
                                                                        bounds)[0], eta)
                           for i in range(50))
    base = total(updated)
    assert base <= total(codebooks) + 1e-9
    # the last sub-space was solved exactly given the first: no perturbation of one of its
    # centroids lowers the loss (the problem is convex in them)
    for k in range(3):
        for j in (2, 3):
            for delta in (1e-3, -1e-3):
                moved = updated.astype(np.float64).copy()
                moved[k, j] += delta
                assert base <= total(moved) + 1e-9


def test_anisotropic_pq_lowers_the_anisotropic_loss():
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(500, 12)) + 0.3).astype(np.float32)
    eta = 4.0
    plain, _ = train_pq(x, 4, 16, seed=0)
    aniso, info = train_pq(x, 4, 16, loss="anisotropic", eta=eta, seed=0)
    loss = lambda t: np.mean([ref.anisotropic_loss_one(x[i], t.decode()[i], eta)
                              for i in range(x.shape[0])])
    assert info["anisotropic_loss_after"] <= info["anisotropic_loss_before"]
    assert loss(aniso) < loss(plain)
    assert loss(aniso) == pytest.approx(info["anisotropic_loss_after"], rel=1e-4)


@pytest.mark.parametrize("rotation", ["none", "opq"])
def test_pq_subsampled_training_still_encodes_every_row(rotation):
    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    table, info = train_pq(x, 2, 256, train_rows=100, seed=0, loss="anisotropic", rounds=1,
                           rotation=rotation)
    assert info["train_rows"] == 100 and table.n_rows == 300
    assert info["ksub_used"] == table.ksub == 100
    # every row decodes to its centroids gathered per sub-space, rotated back (a loop over
    # rows and columns in tests/reference_compress.py, not the code's own decode)
    expected = ref.pq_lookup(table.codes, table.codebooks, table.bounds, table.rotation)
    np.testing.assert_allclose(table.decode(), expected, rtol=1e-5, atol=1e-5)
    # the 200 rows it did not train on are encoded too: the reconstruction beats the mean row
    assert ((expected - x) ** 2).sum(1).mean() < ((x - x.mean(0)) ** 2).sum(1).mean()


def test_pq_rerank_table_and_candidates():
    model = random_model(n_items=300, dim=8)
    out = compress(model, "pq:m=4,rerank=int8,candidates=50")
    assert isinstance(out.items, PQTable) and isinstance(out.rerank, Int8Table)
    assert out.candidates == 50 and out.rerank.shape == out.items.shape
    np.testing.assert_allclose(out.rerank.decode(), model.items.decode(),
                               atol=float(out.rerank.scale.max()))
    assert out.nbytes == out.users.nbytes + out.items.nbytes + out.rerank.nbytes
    with pytest.raises(SpecError, match="re-rank"):
        compress(out, "int8")


# low rank -----------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(st.integers(2, 30), st.integers(2, 30), st.integers(1, 10), st.integers(1, 10),
       st.integers(0, 1000))
@example(2, 2, 3, 3, 324)   # fewer rows than columns: a Gram matrix that rounding made definite
def test_joint_lowrank_is_the_best_rank_r_approximation(n_u, n_v, d, r, seed):
    r = min(r, d)
    model = random_model(n_u, n_v, d, seed)
    out = LowRank(rank=r).fit(model)
    u, v = model.users.decode(), model.items.decode()
    got = out.users.decode().astype(np.float64) @ out.items.decode().astype(np.float64).T
    best = ref.best_rank_approximation(u, v, r)
    scale = 1 + np.abs(best).max()
    np.testing.assert_allclose(got, best, atol=2e-5 * scale)
    assert out.users.dim == out.items.dim == min(r, n_u, n_v, d)


def test_joint_beats_per_table_svd_and_items_mode_matches_reference():
    model = random_model(50, 70, 16, seed=5)
    u, v = model.users.decode(), model.items.decode()
    full = u.astype(np.float64) @ v.astype(np.float64).T
    joint = compress(model, "lowrank:rank=6")
    items = compress(model, "lowrank:rank=6,mode=items")
    users = compress(model, "lowrank:rank=6,mode=users")
    scores = lambda m: m.users.decode().astype(np.float64) @ m.items.decode().astype(np.float64).T
    np.testing.assert_allclose(scores(items), ref.items_svd_scores(u, v, 6), atol=1e-4)
    np.testing.assert_allclose(scores(users), ref.items_svd_scores(v, u, 6).T, atol=1e-4)
    err = lambda m: np.linalg.norm(scores(m) - full)
    assert err(joint) < err(items) and err(joint) < err(users)
    assert joint.nbytes == 4 * 6 * (50 + 70)


def test_lowrank_rank_above_dim_is_a_spec_error():
    with pytest.raises(SpecError, match="rank=40"):
        compress(random_model(dim=12), "lowrank:rank=40")


# row pruning --------------------------------------------------------------------------------

def test_prune_rows_by_norm_keeps_the_top_norm_rows():
    model = random_model(n_items=101)
    out = compress(model, "prune-rows:keep=0.3")
    norms = np.linalg.norm(model.items.decode().astype(np.float64), axis=1)
    expected = ref.top_fraction(norms, 30)
    assert isinstance(out.items, PrunedTable)
    assert out.items.kept.tolist() == expected
    valid = out.items.valid_rows()
    assert valid.sum() == 30 and valid[expected].all()
    np.testing.assert_array_equal(out.items.decode(expected), model.items.decode(expected))
    assert out.info["catalogue_coverage"] == pytest.approx(30 / 101)
    assert out.info["compression"][-1]["items"]["catalogue_coverage"] == pytest.approx(30 / 101)


def test_prune_rows_by_popularity_with_ties_to_lower_id():
    model = random_model(n_users=30, n_items=40)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 30, 200)
    cols = rng.integers(0, 8, 200) * 5  # only every fifth item is popular; many ties at zero
    x = sp.csr_matrix((np.ones(200, np.float32), (rows, cols)), shape=(30, 40))
    x.data[:] = 1.0
    out = compress(model, "prune-rows:keep=0.5,by=popularity", x)
    counts = ref.column_counts(x)
    assert out.items.kept.tolist() == ref.top_fraction(counts, 20)
    info = out.info["compression"][-1]["items"]
    assert info["interactions_kept"] == pytest.approx(
        counts[out.items.kept].sum() / counts.sum())


def test_prune_rows_popularity_needs_interactions():
    with pytest.raises(DataError, match="interactions"):
        compress(random_model(), "prune-rows:by=popularity")
    with pytest.raises(DataError, match="items"):
        compress(random_model(n_items=80), "prune-rows:by=popularity",
                 random_interactions(60, 81))


def test_prune_users_fallback_is_the_mean_user():
    model = random_model(n_users=50)
    out = compress(model, "prune-rows:keep=0.4,table=users")
    u = model.users.decode().astype(np.float64)
    pruned = np.setdiff1d(np.arange(50), out.users.kept)
    np.testing.assert_allclose(out.users.decode(pruned), np.tile(u.mean(0), (len(pruned), 1)),
                               atol=1e-6)
    assert out.users.valid_rows() is None
    zero = compress(model, "prune-rows:keep=0.4,table=users,fallback=zero")
    assert np.all(zero.users.decode(pruned) == 0) and zero.users.valid_rows() is None


def test_prune_items_fallback_mean_keeps_the_catalogue():
    model = random_model()
    out = compress(model, "prune-rows:keep=0.5,fallback=mean")
    assert out.items.valid_rows() is None and out.info["catalogue_coverage"] == 1.0
    pruned = np.setdiff1d(np.arange(80), out.items.kept)
    np.testing.assert_allclose(out.items.decode(pruned)[0],
                               model.items.decode().astype(np.float64).mean(0), atol=1e-6)


def test_prune_rows_budget_is_the_largest_fitting_prefix():
    model = random_model(n_items=100, dim=8)
    budget = 1000
    out = compress(model, f"prune-rows:by=budget,budget_bytes={budget}")
    n = out.items.kept.shape[0]
    assert out.items.nbytes <= budget < out.items.nbytes + 4 + 4 * 8  # one more row would not fit
    norms = np.linalg.norm(model.items.decode().astype(np.float64), axis=1)
    assert out.items.kept.tolist() == ref.top_fraction(norms, n)
    with pytest.raises(SpecError, match="one row"):
        compress(model, "prune-rows:by=budget,budget_bytes=10")


def test_prune_rows_keeps_a_compressed_storage():
    model = random_model()
    int8 = compress(model, "int8")
    out = compress(int8, "prune-rows:keep=0.5")
    assert isinstance(out.items.inner, Int8Table)
    np.testing.assert_array_equal(out.items.decode(out.items.kept),
                                  int8.items.decode(out.items.kept))


# magnitude ----------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(st.integers(1, 30), st.integers(1, 20), st.floats(0, 0.95), st.integers(0, 10 ** 6),
       st.sampled_from(["global", "row"]))
def test_magnitude_sparsity_is_reached(n, d, s, seed, scope):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    model = FactorModel(np.ones((2, d), np.float32), x)
    table = Magnitude(sparsity=s, scope=scope).fit(model).items
    assert isinstance(table, SparseTable)
    y = table.decode()
    zeroed = (y == 0) & (x != 0)
    kept = y != 0
    np.testing.assert_array_equal(y[kept], x[kept])
    if scope == "global":
        assert zeroed.sum() == int(np.floor(s * (n * d) + 0.5))   # round(s x size), half up
        if zeroed.any() and kept.any():
            assert np.abs(x[zeroed]).max() <= np.abs(x[kept]).min()
    else:
        per_row = int(np.floor(s * d + 0.5))
        assert np.all(zeroed.sum(1) == per_row)
        for i in range(n):
            if zeroed[i].any() and kept[i].any():
                assert np.abs(x[i][zeroed[i]]).max() <= np.abs(x[i][kept[i]]).min()


def test_magnitude_tau_zeroes_every_small_weight_and_reports_bytes():
    model = random_model(dim=12)
    x = model.items.decode()
    out = compress(model, "magnitude:tau=0.5")
    y = out.items.decode()
    assert np.all(y[np.abs(x) <= 0.5] == 0)
    np.testing.assert_array_equal(y[np.abs(x) > 0.5], x[np.abs(x) > 0.5])
    info = out.info["compression"][-1]["items"]
    assert info["sparse_nbytes"] == out.items.nbytes
    assert info["smaller_than_dense"] == (out.items.nbytes < x.nbytes)
    light = compress(model, "magnitude:sparsity=0.1")
    assert light.info["compression"][-1]["items"]["smaller_than_dense"] is False
    assert "not smaller" in light.info["compression"][-1]["items"]["note"]


def test_magnitude_parameter_conflicts():
    with pytest.raises(SpecError, match="not both"):
        Magnitude(sparsity=0.5, tau=0.1).fit(random_model())
    with pytest.raises(SpecError, match="scope=row"):
        Magnitude(tau=0.1, scope="row").fit(random_model())


# bytes, pipelines, determinism --------------------------------------------------------------

SPECS = ["fp16", "int8", "int8:axis=dim,table=both", "int8:symmetric=true", "int4:axis=dim",
         "magnitude:sparsity=0.7", "lowrank:rank=5", "lowrank:rank=4,mode=items", "pq:m=4",
         "pq:m=3,rotation=opq,rounds=2", "pq:m=4,rerank=int8,candidates=20",
         "prune-rows:keep=0.5,table=both", "prune-rows:keep=0.6|int4|int8:table=users",
         "prune-rows:keep=0.8,by=popularity|lowrank:rank=6|pq:m=2,rerank=fp16"]


@pytest.mark.parametrize("spec", SPECS)
def test_nbytes_equals_the_bytes_of_the_saved_arrays(spec, tmp_path):
    model = random_model()
    out = compress(model, spec, random_interactions(60, 80))
    path = tmp_path / "model.npz"
    out.save(path)
    assert out.nbytes == ref.saved_table_bytes(path)
    back = FactorModel.load(path)
    assert back.spec == out.spec and back.nbytes == out.nbytes
    assert back.candidates == out.candidates
    np.testing.assert_array_equal(back.items.decode(), out.items.decode())


def test_pipeline_applies_later_steps_inside_the_row_pruning():
    model = random_model(n_users=40, n_items=90, dim=10, seed=7)
    x = random_interactions(40, 90, seed=3)
    out = compress(model, "prune-rows:keep=0.9,by=popularity|lowrank:rank=4|pq:m=2", x)
    kept = np.array(ref.top_fraction(ref.column_counts(x), 81))
    assert isinstance(out.items, PrunedTable) and isinstance(out.items.inner, PQTable)
    assert out.items.kept.tolist() == kept.tolist() and out.dim == 4
    assert out.spec == "prune-rows:by=popularity|lowrank:rank=4|pq:m=2"
    steps = out.info["compression"]
    assert [s["method"] for s in steps] == ["prune-rows", "lowrank", "pq"]
    assert steps[0]["items"]["kept"] == 81 and steps[2]["items"]["ksub_used"] == 81
    assert out.info["catalogue_coverage"] == pytest.approx(81 / 90)
    # the low rank step ran on the kept item rows only
    two = compress(model, "prune-rows:keep=0.9,by=popularity|lowrank:rank=4", x)
    u = model.users.decode()
    v = model.items.decode()[kept]
    got = two.users.decode().astype(np.float64) @ two.items.decode(kept).astype(np.float64).T
    np.testing.assert_allclose(got, ref.best_rank_approximation(u, v, 4), atol=1e-4)
    assert not two.items.valid_rows()[np.setdiff1d(np.arange(90), kept)].any()


def test_lowrank_maps_the_user_fallback():
    model = random_model(n_users=40, n_items=50, dim=8)
    out = compress(model, "prune-rows:keep=0.5,table=users|lowrank:rank=3")
    u = model.users.decode().astype(np.float64)
    kept = out.users.kept
    pruned = np.setdiff1d(np.arange(40), kept)
    # the mean user lies in the span of the kept users' rows, so it maps like them: its scores
    # are those of the mean user under the rank-3 truncation computed on the kept users
    best = ref.best_rank_approximation(u[kept], model.items.decode(), 3)
    mean_scores = out.users.decode(pruned[:1]).astype(np.float64) @ \
        out.items.decode().astype(np.float64).T
    weights = np.linalg.lstsq(u[kept].T, u.mean(0), rcond=None)[0]
    np.testing.assert_allclose(mean_scores[0], weights @ best, atol=1e-4)


def test_pipeline_object_and_spec_record():
    model = random_model()
    pipe = Pipeline([PruneRows(keep=0.5), Int8(axis="dim")])
    out = pipe.fit(model)
    assert pipe.model_ is out and out.spec == "prune-rows:keep=0.5|int8:axis=dim"
    again = compress(out, "int4:table=users")
    assert again.spec == "prune-rows:keep=0.5|int8:axis=dim|int4:table=users"
    assert len(again.info["compression"]) == 3
    assert compress(model, "").spec == "" and compress(model, "").nbytes == model.nbytes


@pytest.mark.parametrize("spec", ["pq:m=4,rotation=opq,loss=anisotropic,rounds=2",
                                  "int8:axis=auto,sample_users=20",
                                  "prune-rows:keep=0.7|magnitude:sparsity=0.5,table=both"])
def test_same_seed_gives_identical_arrays(spec):
    model = random_model(n_items=300, dim=8)
    a = compress(model, spec)
    b = compress(model, spec)
    for side, table in a.tables().items():
        other = b.tables()[side].arrays()
        for name, arr in table.arrays().items():
            np.testing.assert_array_equal(arr, other[name])


def test_fit_sets_learned_state_and_params():
    method = ProductQuantization(m=4, seed=3)
    assert method.get_params()["m"] == 4 and method.get_params()["seed"] == 3
    out = method.fit(random_model())
    assert method.model_ is out and method.info_["method"] == "pq"
    assert DenseTable is type(out.users)


# int2, 4-bit PQ, reach pruning ----------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(matrices, st.sampled_from(["row", "dim"]))
def test_int2_decodes_like_reference_and_beats_plain_range(shape, axis):
    x = make_matrix(*shape)
    model = FactorModel(np.ones((3, x.shape[1]), np.float32), x)
    table = Int2(axis=axis).fit(model).items
    assert isinstance(table, Int2Table) and table.codes.shape == (x.shape[0],
                                                                 (x.shape[1] + 3) // 4)
    levels = ref.unpack_crumbs(table.codes, x.shape[1])
    decoded = ref.affine_decode(levels, table.scale, table.offset, axis)
    np.testing.assert_allclose(table.decode(), decoded, rtol=1e-6, atol=1e-6)
    # each weight takes the nearest of its four levels
    per = (lambda v: v[:, None]) if axis == "row" else (lambda v: v[None, :])
    grid = per(table.offset)[..., None] + per(table.scale)[..., None] * np.arange(4)
    nearest = np.abs(x.astype(np.float64)[..., None] - grid).min(axis=-1)
    np.testing.assert_allclose(np.abs(x - decoded), nearest, atol=1e-5 * (1 + np.abs(x).max()))
    # no worse than four levels spread over the full min-max range
    reduce = 1 if axis == "row" else 0
    lo, hi = x.min(axis=reduce).astype(np.float64), x.max(axis=reduce).astype(np.float64)
    step = np.where(hi > lo, (hi - lo) / 3, 1.0)
    plain = np.clip(np.rint((x - per(lo)) / per(step)), 0, 3) * per(step) + per(lo)
    err = ((decoded - x) ** 2).sum(axis=reduce)
    slack = 1e-6 * (1 + np.abs(x).max()) ** 2
    assert np.all(err <= ((plain - x) ** 2).sum(axis=reduce) * (1 + 1e-4) + slack)
    assert table.nbytes == table.codes.nbytes + table.scale.nbytes + table.offset.nbytes


def test_pq_4bit_codes_are_packed_nearest_centroids():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 10)).astype(np.float32)
    model = FactorModel(np.ones((2, 10), np.float32), x)
    table = ProductQuantization(m=5, nbits=4).fit(model).items
    assert table.nbits == 4 and table.ksub == 16 and table.codes.shape == (120, 3)
    codes = ref.unpack_nibbles(table.codes, 5)
    np.testing.assert_array_equal(codes, ref.nearest_codes(x, table.codebooks, table.bounds))
    np.testing.assert_allclose(table.decode(), ref.pq_lookup(codes, table.codebooks,
                                                             table.bounds), atol=1e-6)
    assert table.nbytes == 120 * 3 + 16 * 10 * 4 + 6 * 4
    with pytest.raises(SpecError, match="ksub=32 needs more than nbits=4"):
        ProductQuantization(m=5, nbits=4, ksub=32).fit(model)


def test_pq_4bit_model_file_round_trip_and_retrieval(tmp_path):
    model = random_model(n_users=30, n_items=70, dim=9)
    small = compress(model, "prune-rows:keep=0.6,by=norm|pq:m=3,nbits=4,rotation=opq")
    small.save(tmp_path / "m.npz")
    back = FactorModel.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.items.decode(), small.items.decode())
    seen = random_interactions(30, 70, seed=5)
    ids, _ = back.recommend(np.arange(30), seen, k=5)
    exact = back.users.decode().astype(np.float64) @ back.items.decode().astype(np.float64).T
    exact[seen.toarray() > 0] = -np.inf
    exact[:, ~back.items.valid_rows()] = -np.inf
    got = np.take_along_axis(exact, ids.astype(np.int64), axis=1)
    np.testing.assert_allclose(got, -np.sort(-exact, axis=1)[:, :5], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", ["row", "dim"])
def test_int2_retrieval_matches_brute_force_over_many_tiles(axis):
    from cfprune.kernels.dense import ITEMS_PER_TILE
    n_items = 3 * ITEMS_PER_TILE + 5
    rng = np.random.default_rng(6)
    skew = np.exp(rng.normal(size=(n_items, 1)))          # skewed norms: early stop matters
    model = FactorModel(rng.normal(size=(25, 7)).astype(np.float32),
                        (rng.normal(size=(n_items, 7)) * skew).astype(np.float32))
    small = compress(model, f"int2:axis={axis}")
    seen = random_interactions(25, n_items, seed=7, density=0.02)
    ids, scores = small.recommend(np.arange(25), seen, k=9)
    exact = small.users.decode().astype(np.float64) @ small.items.decode().astype(np.float64).T
    exact[seen.toarray() > 0] = -np.inf
    want = -np.sort(-exact, axis=1)[:, :9]
    np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-4)
    got = np.take_along_axis(exact, ids.astype(np.int64), axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_reach_pruning_keeps_exactly_the_reached_items_and_every_list(k):
    model = random_model(n_users=40, n_items=90, dim=6, seed=k)
    seen = random_interactions(40, 90, seed=k, density=0.15)
    seen.data[seen.indptr[3]:seen.indptr[4]] = 0   # a user without training interactions
    seen.eliminate_zeros()
    out = PruneRows(by="reach", k=k).fit(model, seen)
    expected = ref.reach_items(model.user_factors, model.item_factors, seen.toarray() > 0, k)
    np.testing.assert_array_equal(out.items.kept, expected)
    users = np.flatnonzero(np.diff(seen.indptr) > 0)
    before, _ = model.recommend(users, seen, k=k)
    after, _ = out.recommend(users, seen, k=k)
    np.testing.assert_array_equal(before, after)


def test_reach_pruning_parameters_checked():
    with pytest.raises(SpecError, match="by=reach decides"):
        PruneRows(by="reach", keep=0.5).fit(random_model())
    with pytest.raises(SpecError, match="k applies to by=reach"):
        PruneRows(by="norm", k=5).fit(random_model())
    with pytest.raises(SpecError, match="prunes the item table"):
        parse_spec("prune-rows:by=reach,table=users")
    with pytest.raises(DataError, match="needs the training interactions"):
        compress(random_model(), "prune-rows:by=reach,k=5")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 40), st.integers(0, 45), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_topk_ids_equals_a_stable_full_sort(n, m, k, ties, seed):
    """The partitioned top-k of ``axis=auto``'s overlap equals NumPy's stable argsort, ties
    (small integer scores) to the lower id."""
    from cfprune.compression.scalar import topk_ids
    rng = np.random.default_rng(seed)
    scores = (rng.integers(0, 4, (n, m)) if ties else rng.normal(size=(n, m))).astype(np.float32)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :min(k, m)]
    np.testing.assert_array_equal(topk_ids(scores, k), expected)
