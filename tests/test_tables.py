"""Table storages: decode against independent NumPy reconstructions, exact bytes, rebuild."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cfprune.errors import ShapeError
from cfprune.tables import (DenseTable, Float16Table, Int2Table, Int4Table, Int8Table, PQTable,
                            PrunedTable, SparseTable, subspace_bounds, table_from_arrays)


def roundtrip(table):
    return table_from_arrays(table.storage, table.arrays(), table.params())


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 17), st.sampled_from(["row", "dim"]),
       st.booleans(), st.integers(0, 2 ** 32 - 1))
def test_int8_and_int4_decode(n, d, axis, symmetric, seed):
    rng = np.random.default_rng(seed)
    scale = rng.random(n if axis == "row" else d).astype(np.float32) + 0.1
    offset = None if symmetric else rng.normal(size=scale.shape).astype(np.float32)
    codes = rng.integers(-128, 128, (n, d)).astype(np.int8)
    t8 = Int8Table(codes, scale, offset, axis=axis)
    ref = np.empty((n, d), np.float64)
    for i in range(n):
        for j in range(d):
            s = scale[i] if axis == "row" else scale[j]
            o = 0.0 if offset is None else (offset[i] if axis == "row" else offset[j])
            ref[i, j] = s * int(codes[i, j]) + o
    assert np.allclose(t8.decode(), ref, rtol=1e-6, atol=1e-5)
    assert t8.nbytes == codes.nbytes + scale.nbytes + (0 if offset is None else offset.nbytes)
    assert np.array_equal(roundtrip(t8).decode(), t8.decode())

    levels = rng.integers(0, 16, (n, d))
    t4 = Int4Table(Int4Table.pack(levels), scale, offset, axis=axis, dim=d)
    assert t4.codes.shape == (n, (d + 1) // 2)
    ref4 = np.array([[(scale[i] if axis == "row" else scale[j]) * levels[i, j]
                      + (0.0 if offset is None else (offset[i] if axis == "row" else offset[j]))
                      for j in range(d)] for i in range(n)]).reshape(n, d)
    assert np.allclose(t4.decode(), ref4, rtol=1e-6, atol=1e-5)
    assert np.array_equal(roundtrip(t4).decode(), t4.decode())
    rows = rng.integers(0, n, 5)
    assert np.array_equal(t4.decode(rows), t4.decode()[rows])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 20), st.data())
def test_pq_decode_is_centroid_lookup(n, d, data):
    m = data.draw(st.integers(1, d))
    ksub = data.draw(st.integers(1, 256))
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))
    bounds = subspace_bounds(d, m)
    assert np.diff(bounds).max() - np.diff(bounds).min() <= 1
    codes = rng.integers(0, ksub, (n, m)).astype(np.uint8)
    books = rng.normal(size=(ksub, d)).astype(np.float32)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    rot = q.astype(np.float32)
    table = PQTable(codes, books, bounds, rot)
    ref = np.zeros((n, d))
    for i in range(n):
        for s in range(m):
            for c in range(bounds[s], bounds[s + 1]):
                ref[i, c] = books[codes[i, s], c]
    assert np.allclose(table.decode(), ref @ rot.T, atol=1e-5)
    assert np.allclose(table.decode_rotated(), ref)
    assert table.nbytes == codes.nbytes + books.nbytes + bounds.nbytes + rot.nbytes
    assert np.array_equal(roundtrip(table).decode(), table.decode())


def test_pq_rejects_inconsistent_arrays():
    with pytest.raises(ShapeError, match="bounds"):
        PQTable(np.zeros((2, 2), np.uint8), np.zeros((4, 6), np.float32), [0, 3, 5])
    with pytest.raises(ShapeError, match="centroids"):
        PQTable(np.full((2, 1), 9, np.uint8), np.zeros((4, 6), np.float32), [0, 6])
    with pytest.raises(ShapeError, match="m=7"):
        subspace_bounds(6, 7)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 30), st.sampled_from([3, 200, 300]), st.floats(0, 1),
       st.integers(0, 2 ** 32 - 1))
def test_sparse_decode_and_honest_bytes(n, d, density, seed):
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, d)).astype(np.float32) * (rng.random((n, d)) < density)
    t = SparseTable.from_dense(dense)
    assert np.array_equal(t.decode(), dense)
    nnz = int((dense != 0).sum())
    index_bytes = 1 if d <= 256 else 2
    assert t.nbytes == 8 * (n + 1) + nnz * (4 + index_bytes)
    assert np.array_equal(roundtrip(t).decode(), dense)


def test_half_empty_float32_csr_is_not_smaller_than_dense():
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(100, 300)).astype(np.float32)
    dense[:, ::2] = 0
    assert SparseTable.from_dense(dense).nbytes >= 0.75 * DenseTable(dense).nbytes


def test_pruned_rows_fallback_and_validity():
    rng = np.random.default_rng(0)
    full = rng.normal(size=(10, 4)).astype(np.float32)
    kept = np.array([1, 4, 7])
    t = PrunedTable(DenseTable(full[kept]), kept, 10)
    dec = t.decode()
    assert np.array_equal(dec[kept], full[kept])
    assert not dec[np.setdiff1d(np.arange(10), kept)].any()
    assert t.valid_rows().tolist() == [i in kept for i in range(10)]
    fb = full.mean(0)
    t2 = PrunedTable(DenseTable(full[kept]), kept, 10, fb)
    assert t2.valid_rows() is None
    assert np.allclose(t2.decode([0, 4]), np.stack([fb, full[4]]))
    assert t2.nbytes == 2 + full[kept].nbytes + fb.nbytes  # a 2-byte bitmap of 10 rows
    again = roundtrip(t2)
    assert np.array_equal(again.decode(), t2.decode())
    with pytest.raises(ShapeError, match="sorted unique"):
        PrunedTable(DenseTable(full[:2]), [4, 1], 10)


def test_dense_refuses_nan_and_names_rows():
    bad = np.ones((5, 3), np.float32)
    bad[2, 1] = np.nan
    bad[4, 0] = np.inf
    with pytest.raises(ShapeError, match="2 rows: 2, 4"):
        DenseTable(bad)
    with pytest.raises(ShapeError, match="2-D"):
        DenseTable(np.ones(3))
    with pytest.raises(ShapeError, match="floating"):
        DenseTable(np.ones((2, 2), int))


def test_fp16_decode():
    x = np.random.default_rng(0).normal(size=(7, 5))
    t = Float16Table(x)
    assert t.nbytes == 7 * 5 * 2
    assert np.allclose(t.decode(), x, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("n_rows, n_kept, form", [
    (10, 5, "kept_bits"), (1000, 200, "kept_bits"), (1000, 60, "kept"), (65536, 5, "kept"),
    (65537, 5, "kept"), (70000, 9000, "kept_bits")])
def test_pruned_kept_rows_are_stored_as_the_smaller_of_ids_and_bitmap(n_rows, n_kept, form):
    rng = np.random.default_rng(1)
    kept = np.sort(rng.choice(n_rows, n_kept, replace=False))
    kept[-1] = n_rows - 1
    rows = rng.normal(size=(n_kept, 3)).astype(np.float32)
    t = PrunedTable(DenseTable(rows), kept.astype(np.int64), n_rows)
    id_bytes = (2 if n_rows <= 65536 else 4) * n_kept
    assert list(t.arrays()) == [form, "inner/data"]
    assert t.nbytes == min(id_bytes, -(-n_rows // 8)) + rows.nbytes
    dtype = np.uint16 if n_rows <= 65536 else np.int32
    assert t.kept.dtype == dtype and t.kept.tolist() == kept.tolist()
    assert not t.kept.flags.writeable
    full = np.zeros((n_rows, 3), np.float32)     # brute force: scatter the kept rows
    full[kept] = rows
    probe = np.concatenate([kept[:50], [0, n_rows // 2]])
    np.testing.assert_array_equal(t.decode(probe), full[probe])
    assert t.valid_rows().tolist() == np.isin(np.arange(n_rows), kept).tolist()
    again = roundtrip(t)
    assert again.kept.tolist() == kept.tolist() and again.nbytes == t.nbytes
    with pytest.raises(ShapeError, match=r"in \[0, "):
        PrunedTable(DenseTable(rows), np.append(kept[:-1], n_rows), n_rows)
    with pytest.raises(ShapeError, match="integer row ids"):
        PrunedTable(DenseTable(rows), kept.astype(np.float64), n_rows)


def test_pruned_bitmap_of_the_wrong_size_or_with_padding_set_is_refused():
    rows = np.ones((2, 3), np.float32)
    with pytest.raises(ShapeError, match="expected uint8 \\(2,\\)"):
        table_from_arrays("pruned", {"kept_bits": np.zeros(3, np.uint8), "inner/data": rows},
                          {"n_rows": 10, "inner_storage": "dense"})
    with pytest.raises(ShapeError, match="past the last row"):
        table_from_arrays("pruned", {"kept_bits": np.array([0b11000000, 1], np.uint8),
                                     "inner/data": rows},
                          {"n_rows": 10, "inner_storage": "dense"})


def test_pruned_model_file_with_int32_ids_loads_and_retrieves(tmp_path):
    """A file written before the ids were narrowed (int32 ``kept``) loads, and top-k from the
    table (now a bitmap) is the brute-force top-k of its decoded rows."""
    import scipy.sparse as sp

    from cfprune.models import FactorModel

    from .reference_metrics import topk_reference

    class Int32Ids(PrunedTable):         # what the table wrote before: int32 kept ids
        def arrays(self):
            out = {"kept": self.kept.astype(np.int32)}
            out.update({k: v for k, v in super().arrays().items() if not k.startswith("kept")})
            return out

    rng = np.random.default_rng(2)
    users = rng.normal(size=(30, 4)).astype(np.float32)
    kept = np.sort(rng.choice(200, 60, replace=False))
    rows = rng.normal(size=(60, 4)).astype(np.float32)
    FactorModel(DenseTable(users), Int32Ids(DenseTable(rows), kept, 200)).save(tmp_path / "m.npz")
    loaded = FactorModel.load(tmp_path / "m.npz")
    assert loaded.items.kept.dtype == np.uint16 and loaded.items.kept.tolist() == kept.tolist()
    assert loaded.items.nbytes == 200 // 8 + rows.nbytes      # now a bitmap of 200 rows
    full = np.zeros((200, 4), np.float32)
    full[kept] = rows
    seen = sp.random(30, 200, density=0.05, format="csr", random_state=4, dtype=np.float32)
    seen_dense = seen.toarray()
    seen_dense[:, np.setdiff1d(np.arange(200), kept)] = 1     # pruned items are never offered
    ids, scores = loaded.recommend(np.arange(30), seen, k=10)
    ref_ids, ref_scores = topk_reference(users, full, np.arange(30), seen_dense, 10)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_appending_past_65536_rows_widens_the_kept_ids():
    from cfprune.compression.fitted import append_rows
    rng = np.random.default_rng(3)
    rows, new = rng.normal(size=(3, 2)).astype(np.float32), np.ones((4, 2), np.float32)
    t = PrunedTable(DenseTable(rows), [0, 7, 65533], 65534)
    assert t.kept.dtype == np.uint16
    grown = append_rows(t, DenseTable(new))
    assert grown.kept.dtype == np.int32 and grown.n_rows == 65538
    assert grown.kept.tolist() == [0, 7, 65533, 65534, 65535, 65536, 65537]
    np.testing.assert_array_equal(grown.decode([7, 65537, 1]), np.stack([rows[1], new[3],
                                                                           np.zeros(2)]))


# the Table protocol: exact bytes before building, take and append -----------------------------

def _orthogonal(rng, d):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q.astype(np.float32)


def build_table(storage, n, d, draw, rng):
    """(a Table of ``storage`` with n x d random rows, the keyword params of its nbytes_for)."""
    if storage in ("dense", "fp16"):
        cls = DenseTable if storage == "dense" else Float16Table
        return cls(rng.normal(size=(n, d)).astype(np.float32)), {}
    if storage in ("int8", "int4", "int2"):
        axis, symmetric = draw(st.sampled_from(["row", "dim"])), draw(st.booleans())
        scale = rng.random(n if axis == "row" else d).astype(np.float32) + 0.1
        offset = None if symmetric else rng.normal(size=scale.shape).astype(np.float32)
        if storage == "int8":
            codes = rng.integers(-128, 128, (n, d)).astype(np.int8)
            table = Int8Table(codes, scale, offset, axis=axis)
        else:
            cls = Int4Table if storage == "int4" else Int2Table
            levels = rng.integers(0, 2 ** cls.bits, (n, d))
            table = cls(cls.pack(levels), scale, offset, axis=axis, dim=d)
        return table, {"axis": axis, "symmetric": symmetric}
    if storage == "pq":
        m, nbits = draw(st.integers(1, d)), draw(st.sampled_from([4, 8]))
        ksub, rotated = draw(st.integers(1, 2 ** nbits)), draw(st.booleans())
        codes = rng.integers(0, ksub, (n, m)).astype(np.uint8)
        table = PQTable(PQTable.pack4(codes) if nbits == 4 else codes,
                        rng.normal(size=(ksub, d)).astype(np.float32), subspace_bounds(d, m),
                        _orthogonal(rng, d) if rotated else None, nbits=nbits)
        return table, {"m": m, "nbits": nbits, "ksub": ksub, "rotation": rotated}
    if storage == "sparse":
        x = rng.normal(size=(n, d)) * (rng.random((n, d)) < draw(st.floats(0, 1)))
        table = SparseTable.from_dense(x)
        return table, {"nnz": table.data.shape[0]}
    inner_storage = draw(st.sampled_from(["dense", "int8", "pq"]))
    kept = np.flatnonzero(rng.random(n) < draw(st.floats(0, 1)))
    inner, inner_params = build_table(inner_storage, kept.size, d, draw, rng)
    fallback = rng.normal(size=d).astype(np.float32) if draw(st.booleans()) else None
    table = PrunedTable(inner, kept, n, fallback)
    return table, {"inner": type(inner).plan(kept.size, d, **inner_params),
                   "fallback": fallback is not None}


ALL_STORAGES = ["dense", "fp16", "int8", "int4", "int2", "pq", "sparse", "pruned"]


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(ALL_STORAGES), st.integers(1, 40), st.sampled_from([1, 2, 3, 7, 16, 300]),
       st.integers(0, 2 ** 32 - 1), st.data())
def test_nbytes_for_take_and_append(storage, n, d, seed, data):
    """``nbytes_for`` equals the built table's bytes; ``take`` and ``append`` equal NumPy's
    indexing and concatenation of ``decode()``, sharing the fitted arrays."""
    rng = np.random.default_rng(seed)
    table, params = build_table(storage, n, d, data.draw, rng)
    assert type(table).plan(n, d, **params).nbytes == table.nbytes
    assert table.nbytes == sum(a.nbytes for a in table.arrays().values())
    full = table.decode()
    rows = rng.integers(0, n, data.draw(st.integers(0, 2 * n)))
    taken = table.take(rows)
    assert type(taken) is type(table) and taken.shape == (rows.size, d)
    # (a rotated PQ table decodes through a GEMM, whose rounding may depend on the row count)
    np.testing.assert_allclose(taken.decode(), full[rows], rtol=1e-6, atol=1e-6)
    fitted = set(table.stored.arrays()) - set(table.stored.row_arrays())
    for name in fitted:
        assert taken.stored.arrays()[name] is table.stored.arrays()[name]
    grown = table.append(taken)
    assert type(grown) is type(table) and grown.shape == (n + rows.size, d)
    np.testing.assert_allclose(grown.decode(), np.concatenate([full, full[rows]]), rtol=1e-6,
                               atol=1e-6)
    for name in fitted:
        assert grown.stored.arrays()[name] is table.stored.arrays()[name]


def test_append_names_what_differs():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, (5, 2)).astype(np.uint8)
    a = PQTable(codes, rng.normal(size=(4, 4)).astype(np.float32), subspace_bounds(4, 2))
    b = PQTable(codes, rng.normal(size=(4, 4)).astype(np.float32), subspace_bounds(4, 2))
    with pytest.raises(ShapeError, match="their 'codebooks' differs"):
        a.append(b)
    scale = np.ones(4, np.float32)
    dim_scaled = Int8Table(codes.astype(np.int8).repeat(2, axis=1), scale, axis="dim")
    with pytest.raises(ShapeError, match="their 'scale' differs"):
        dim_scaled.append(Int8Table(dim_scaled.codes, 2 * scale, axis="dim"))
    with pytest.raises(ShapeError, match="axis='row' to a 'int8' table with axis='dim'"):
        dim_scaled.append(Int8Table(dim_scaled.codes, np.ones(5, np.float32), axis="row"))
    with pytest.raises(ShapeError, match="cannot append 'fp16' rows to a 'dense' table"):
        DenseTable(np.ones((2, 4))).append(Float16Table(np.ones((2, 4))))
    pruned = PrunedTable(DenseTable(np.ones((1, 4))), [0], 3, np.zeros(4, np.float32))
    with pytest.raises(ShapeError, match="fallback differs"):
        pruned.append(PrunedTable(DenseTable(np.ones((1, 4))), [0], 3, None))
