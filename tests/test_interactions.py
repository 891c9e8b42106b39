"""Interactions against plain-Python references: dedupe rules, entry selection, k-core."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from cfprune.errors import DataError, ShapeError
from cfprune.interactions import Interactions


def reference_dedupe(users, items, ratings, rule):
    out = {}
    for u, i, r in zip(users, items, ratings):
        if (u, i) not in out:
            out[(u, i)] = r
        elif rule == "sum":
            out[(u, i)] += r
        elif rule == "max":
            out[(u, i)] = max(out[(u, i)], r)
        else:
            out[(u, i)] = r
    return out


logs = st.integers(1, 60).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 7), min_size=n, max_size=n),
    st.lists(st.sampled_from(["a", "b", "c", "d", "zz"]), min_size=n, max_size=n),
    st.lists(st.integers(1, 5), min_size=n, max_size=n)))


@settings(max_examples=60, deadline=None)
@given(logs, st.sampled_from(["sum", "last", "max"]))
def test_from_log_matches_reference(log, rule):
    users, items, ratings = log
    inter = Interactions.from_log(np.array(users) * 10, np.array(items, dtype=object),
                                  np.array(ratings, float), duplicates=rule)
    expected = reference_dedupe(users, items, ratings, rule)
    got = {}
    coo = inter.matrix.tocoo()
    for u, i, v in zip(coo.row, coo.col, coo.data):
        got[(int(inter.user_ids[u]) // 10, str(inter.item_ids[i]))] = v
    assert got == pytest.approx(expected)
    # ratings stay aligned with the stored pairs
    assert np.allclose(inter.ratings, inter.matrix.data)
    assert list(inter.user_ids) == sorted(set(u * 10 for u in users))
    assert inter.user_index[inter.user_ids[-1]] == inter.n_users - 1


def test_from_log_rejects_bad_input():
    with pytest.raises(ShapeError, match="one length"):
        Interactions.from_log([1, 2], [1])
    with pytest.raises(DataError, match="finite"):
        Interactions.from_log([1, 2], [1, 2], [1.0, np.nan])
    with pytest.raises(DataError, match="duplicates"):
        Interactions.from_log([1], [1], duplicates="mean")


def test_timestamps_take_latest_and_align():
    inter = Interactions.from_log([1, 1, 2], [5, 5, 6], [3, 4, 5], [10, 30, 20],
                                  duplicates="last")
    assert inter.timestamps.tolist() == [30, 20]
    assert inter.ratings.tolist() == [4, 5]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(0, 4), st.integers(0, 4))
def test_implicit_kcore_matches_reference(seed, min_user, min_item):
    rng = np.random.default_rng(seed)
    dense = (rng.random((15, 12)) < 0.3) * rng.integers(1, 6, (15, 12))
    inter = Interactions(sp.csr_matrix(dense.astype(np.float32)))
    out = inter.implicit(3.0, min_user, min_item)
    # reference: iterate the filters on a dense 0/1 matrix with explicit masks
    keep = (dense >= 3).astype(int)
    rows, cols = np.arange(15), np.arange(12)
    while min_user or min_item:
        ru = keep.sum(1) >= max(min_user, 1)
        ci = keep.sum(0) >= max(min_item, 1)
        if ru.all() and ci.all():
            break
        keep, rows, cols = keep[ru][:, ci], rows[ru], cols[ci]
    assert out.matrix.toarray().tolist() == keep.tolist()
    assert out.user_ids.tolist() == rows.tolist()
    assert out.item_ids.tolist() == cols.tolist()
    ratings = sp.csr_matrix((out.ratings, out.matrix.indices, out.matrix.indptr),
                            shape=out.shape).toarray()
    assert np.array_equal(ratings, dense[np.ix_(rows, cols)] * keep)


def test_select_keeps_shape_and_alignment():
    rng = np.random.default_rng(1)
    inter = Interactions.from_log(rng.integers(0, 20, 300), rng.integers(0, 30, 300),
                                  rng.integers(1, 6, 300), rng.integers(0, 1000, 300))
    mask = rng.random(inter.nnz) < 0.5
    sub = inter.select(mask)
    assert sub.shape == inter.shape
    coo = inter.matrix.tocoo()
    ref = sp.csr_matrix((inter.ratings[mask], (coo.row[mask], coo.col[mask])), shape=inter.shape)
    assert (sub.matrix != sp.csr_matrix((np.ones(mask.sum(), np.float32),
                                         (coo.row[mask], coo.col[mask])),
                                        shape=inter.shape).multiply(sub.matrix)).nnz == 0
    assert np.array_equal(sub.ratings, ref.tocsr().data)
    assert np.array_equal(sub.timestamps, inter.timestamps[mask])
    assert np.array_equal(sub.entry_users(), coo.row[mask])


def test_as_csr_without_rebuild_returns_a_canonical_matrix_itself_and_fixes_the_others():
    from cfprune.interactions import as_csr
    canonical = sp.csr_matrix(np.array([[0, 1, 2], [3, 0, 0]], np.float32))
    assert as_csr(canonical, "m", rebuild=False) is canonical
    assert as_csr(canonical, "m") is not canonical
    # duplicates and unsorted indices, float64: a canonical float32 matrix, the input untouched
    messy = sp.csr_matrix((np.array([1.0, 2.0, 5.0]), np.array([2, 0, 2]), np.array([0, 3, 3])),
                          shape=(2, 3))
    fixed = as_csr(messy, "m", rebuild=False)
    assert fixed is not messy and fixed.dtype == np.float32 and fixed.has_canonical_format
    np.testing.assert_array_equal(fixed.toarray(), [[2, 0, 6], [0, 0, 0]])
    assert messy.nnz == 3
    assert as_csr(canonical.tocoo(), "m", rebuild=False).format == "csr"
