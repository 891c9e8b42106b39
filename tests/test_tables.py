"""Table storages: decode against independent NumPy reconstructions, exact bytes, rebuild."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cfprune.errors import ShapeError
from cfprune.tables import (DenseTable, Float16Table, Int4Table, Int8Table, PQTable, PrunedTable,
                            SparseTable, subspace_bounds, table_from_arrays)


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
    assert t2.nbytes == kept.astype(np.int32).nbytes + full[kept].nbytes + fb.nbytes
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
