"""Splits checked against per-user plain-Python bookkeeping."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings, strategies as st

from cfprune.errors import DataError
from cfprune.interactions import Interactions
from cfprune.splits import random_split, strong_generalization_split, temporal_split


def random_log(n_users=30, n_items=40, density=0.3, seed=0, timestamps=True, tie_every=0):
    rng = np.random.default_rng(seed)
    dense = rng.random((n_users, n_items)) < density
    m = sp.csr_matrix(dense.astype(np.float32) * rng.integers(1, 6, dense.shape))
    m.eliminate_zeros()
    ts = None
    if timestamps:
        ts = rng.integers(0, 1000, m.nnz)
        if tie_every:
            ts = ts // tie_every
    return Interactions(m, m.data.copy(), ts)


def entries(log):
    """{(user, item): (rating, timestamp)} of a log, by plain iteration."""
    m = log.matrix.tocoo()
    ts = log.timestamps if log.timestamps is not None else np.zeros(log.nnz, np.int64)
    rows = np.repeat(np.arange(log.n_users), np.diff(log.matrix.indptr))
    return {(int(u), int(i)): (float(r), int(t)) for u, i, r, t in
            zip(rows, log.matrix.indices, log.ratings, ts)} if m.nnz else {}


def per_user(entry_dict):
    out = {}
    for (u, i) in entry_dict:
        out.setdefault(u, set()).add(i)
    return out


def half_up(x):
    return int(np.floor(x + 0.5))


def check_partition(log, parts):
    whole = entries(log)
    seen = {}
    for p in parts:
        assert p.shape == log.shape
        assert p.user_ids is log.user_ids and p.item_ids is log.item_ids
        np.testing.assert_array_equal(p.matrix.data, p.ratings)
        e = entries(p)
        assert not (set(e) & set(seen)), "parts overlap"
        seen.update(e)
    assert seen == whole, "union differs from the original"


# random ---------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(n_users=st.integers(1, 25), n_items=st.integers(1, 30), density=st.floats(0.0, 1.0),
       test_fraction=st.floats(0.0, 0.6), valid_fraction=st.sampled_from([0.0, 0.1, 0.3]),
       min_train=st.integers(1, 3), seed=st.integers(0, 10))
def test_random_split_partition_and_counts(n_users, n_items, density, test_fraction,
                                           valid_fraction, min_train, seed):
    log = random_log(n_users, n_items, density, seed)
    parts = random_split(log, test_fraction, valid_fraction, seed=seed, min_train=min_train)
    assert len(parts) == (3 if valid_fraction > 0 else 2)
    check_partition(log, parts)
    sizes = {u: len(items) for u, items in per_user(entries(log)).items()}
    held = [per_user(entries(p)) for p in parts[1:]]
    fractions = [test_fraction] if valid_fraction == 0 else [valid_fraction, test_fraction]
    for u, n in sizes.items():
        want = [half_up(f * n) for f in fractions]
        if n - sum(want) < min_train:
            want = [0] * len(want)
        assert [len(h.get(u, ())) for h in held] == want


def test_random_split_deterministic_and_seeded():
    log = random_log(seed=1)
    a = random_split(log, 0.25, seed=7)
    b = random_split(log, 0.25, seed=7)
    c = random_split(log, 0.25, seed=8)
    assert entries(a[1]) == entries(b[1])
    assert entries(a[1]) != entries(c[1])


def test_random_split_is_roughly_uniform():
    log = random_log(n_users=1, n_items=10, density=1.0)
    hits = np.zeros(10)
    for seed in range(400):
        hits[random_split(log, 0.2, seed=seed)[1].matrix.indices] += 1
    assert hits.sum() == 800
    assert hits.min() > 50 and hits.max() < 110  # expected 80 each


def test_random_split_keeps_small_users_in_train():
    m = sp.csr_matrix(np.array([[1, 0, 0, 0], [1, 1, 1, 1]], np.float32))
    train, test = random_split(Interactions(m), 0.5, min_train=1)
    assert train.matrix[0].nnz == 1 and test.matrix[0].nnz == 0
    assert test.matrix[1].nnz == 2


def test_bad_fractions():
    log = random_log()
    with pytest.raises(DataError, match="test_fraction"):
        random_split(log, 1.0)
    with pytest.raises(DataError, match="below 1"):
        random_split(log, 0.6, 0.5)


# temporal -------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, valid_k, tie_every", [(1, 0, 0), (2, 0, 1), (1, 2, 100), (3, 1, 7)])
def test_temporal_split_holds_the_latest(k, valid_k, tie_every):
    log = random_log(seed=3, tie_every=tie_every)
    parts = temporal_split(log, k=k, valid_k=valid_k)
    check_partition(log, parts)
    e = entries(log)
    by_user = {}
    for (u, i), (_, t) in e.items():
        by_user.setdefault(u, []).append((t, i))
    test = per_user(entries(parts[-1]))
    valid = per_user(entries(parts[1])) if valid_k else {}
    for u, events in by_user.items():
        events.sort()  # by time, ties by item index
        if len(events) <= k + valid_k:
            assert u not in test and u not in valid
            continue
        assert test[u] == {i for _, i in events[-k:]}
        if valid_k:
            assert valid[u] == {i for _, i in events[-k - valid_k:-k]}


def test_temporal_split_refuses_without_timestamps():
    log = random_log(timestamps=False)
    log.name = "ml-1m-no-timestamps"
    with pytest.raises(DataError, match="ml-1m-no-timestamps has no timestamps.*random_split"):
        temporal_split(log)


def test_temporal_split_huge_time_span():
    m = sp.csr_matrix(np.ones((2, 3), np.float32))
    ts = np.array([2 ** 62, -(2 ** 62), 0, 5, 5, 1], np.int64)
    train, test = temporal_split(Interactions(m, None, ts))
    assert entries(test).keys() == {(0, 0), (1, 1)}


# strong generalisation ------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{"n_heldout_users": 8}, {"heldout_fraction": 0.25}])
def test_strong_generalization_split(kwargs):
    log = random_log(n_users=32, seed=4)
    s = strong_generalization_split(log, test_fraction=0.2, seed=3, **kwargs)
    assert len(s.users) == 8 and len(set(s.users.tolist())) == 8
    assert np.all(np.diff(s.users) > 0)
    check_partition(log, [s.train, s.foldin, s.test])
    held = set(s.users.tolist())
    assert set(per_user(entries(s.train))) == set(per_user(entries(log))) - held
    assert set(per_user(entries(s.foldin))) <= held and set(per_user(entries(s.test))) <= held
    sizes = {u: len(v) for u, v in per_user(entries(log)).items()}
    test = per_user(entries(s.test))
    for u in held:
        want = half_up(0.2 * sizes[u]) if sizes[u] - half_up(0.2 * sizes[u]) >= 1 else 0
        assert len(test.get(u, ())) == want
    joined = s.train_with_foldin()
    check_partition(log, [joined, s.test])
    assert joined.user_ids is log.user_ids
    again = strong_generalization_split(log, test_fraction=0.2, seed=3, **kwargs)
    np.testing.assert_array_equal(again.users, s.users)
    assert entries(again.test) == entries(s.test)


def test_strong_generalization_arguments():
    log = random_log()
    with pytest.raises(DataError, match="exactly one"):
        strong_generalization_split(log)
    with pytest.raises(DataError, match="exactly one"):
        strong_generalization_split(log, n_heldout_users=3, heldout_fraction=0.1)
    with pytest.raises(DataError, match="held-out users"):
        strong_generalization_split(log, n_heldout_users=log.n_users)
