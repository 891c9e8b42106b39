"""A table's arrays are read-only and its own: writes raise, a caller's array is copied rather
than frozen under them, and changing values means a new model whose top-k is right."""

import numpy as np
import pytest
import scipy.sparse as sp

from cfprune.models import FactorModel
from cfprune.tables import (DenseTable, Float16Table, Int4Table, Int8Table, PQTable, PrunedTable,
                            SparseTable, subspace_bounds)
from cfprune.tables.base import hold

from .reference_metrics import topk_reference

RNG = np.random.default_rng(11)
N, D = 40, 6


def inputs():
    """Fresh caller-owned arrays for every storage, by name."""
    return {
        "dense": {"data": RNG.normal(size=(N, D)).astype(np.float32)},
        "fp16": {"data": RNG.normal(size=(N, D)).astype(np.float16)},
        "int8": {"codes": RNG.integers(-128, 128, (N, D)).astype(np.int8),
                 "scale": RNG.random(N).astype(np.float32) + 0.1,
                 "offset": RNG.normal(size=N).astype(np.float32)},
        "int4": {"codes": Int4Table.pack(RNG.integers(0, 16, (N, D))),
                 "scale": RNG.random(D).astype(np.float32) + 0.1},
        "pq": {"codes": RNG.integers(0, 8, (N, 3)).astype(np.uint8),
               "codebooks": RNG.normal(size=(8, D)).astype(np.float32),
               "bounds": subspace_bounds(D, 3),
               "rotation": np.linalg.qr(RNG.normal(size=(D, D)))[0].astype(np.float32)},
        "sparse": {"indptr": np.arange(0, 2 * N + 1, 2, dtype=np.int64),
                   "indices": np.tile(np.array([0, 3], np.uint8), N),
                   "data": RNG.normal(size=2 * N).astype(np.float32)},
        "pruned": {"kept": np.arange(0, N, 2, dtype=np.int32),
                   "fallback": RNG.normal(size=D).astype(np.float32)},
    }


def build(storage, a):
    if storage == "dense":
        return DenseTable(a["data"])
    if storage == "fp16":
        return Float16Table(a["data"])
    if storage == "int8":
        return Int8Table(a["codes"], a["scale"], a["offset"], axis="row")
    if storage == "int4":
        return Int4Table(a["codes"], a["scale"], axis="dim", dim=D)
    if storage == "pq":
        return PQTable(a["codes"], a["codebooks"], a["bounds"], a["rotation"])
    if storage == "sparse":
        return SparseTable(a["indptr"], a["indices"], a["data"], dim=D)
    inner = DenseTable(RNG.normal(size=(N // 2, D)).astype(np.float32))
    return PrunedTable(inner, a["kept"], N, a["fallback"])


def leaf_arrays(table):
    out = dict(table.arrays())
    if isinstance(table, PrunedTable):
        out.update({f"inner/{k}": v for k, v in table.inner.arrays().items()})
    return out


@pytest.mark.parametrize("storage", ["dense", "fp16", "int8", "int4", "pq", "sparse", "pruned"])
def test_table_arrays_are_read_only_and_the_callers_stay_writeable(storage):
    given = inputs()[storage]
    table = build(storage, given)
    before = table.decode().copy()
    for name, array in leaf_arrays(table).items():
        assert not array.flags.writeable, name
        with pytest.raises(ValueError, match="read-only"):
            array[...] = 0
    for name, array in given.items():
        assert array.flags.writeable, name  # the caller's array is not frozen under them
        array[...] = 0  # ... and writing to it leaves the table as it was
    np.testing.assert_array_equal(table.decode(), before)


def test_writing_to_item_factors_raises():
    model = FactorModel(RNG.normal(size=(7, D)), RNG.normal(size=(N, D)))
    for view in (model.item_factors, model.user_factors, model.items.data):
        with pytest.raises(ValueError, match="read-only"):
            view[:3] *= 10


def test_recommend_follows_a_new_model_built_from_changed_factors():
    users = RNG.normal(size=(25, D)).astype(np.float32)
    items = RNG.normal(size=(300, D)).astype(np.float32)
    seen = sp.random(25, 300, density=0.05, format="csr", random_state=3, dtype=np.float32)
    model = FactorModel(users, items)
    everyone = np.arange(25)
    first = model.recommend(everyone, seen, k=10)  # computes and caches the scan order
    # the caller's own array changes: the model holds its own copy and stays right
    items[:50] *= 20
    ids, scores = model.recommend(everyone, seen, k=10)
    np.testing.assert_array_equal(ids, first[0])
    # a new model from changed factors: its top-k is the brute-force top-k of those factors
    changed = model.item_factors.copy()
    changed[::7] *= 25
    changed[5::11] *= -3
    new = FactorModel(model.user_factors, changed)
    ref_ids, ref_scores = topk_reference(users, changed, everyone, seen.toarray(), 10)
    ids, scores = new.recommend(everyone, seen, k=10)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


def test_a_loaded_model_is_read_only_without_copies(tmp_path):
    model = FactorModel(RNG.normal(size=(7, D)), RNG.normal(size=(N, D)))
    model.save(tmp_path / "m.npz")
    loaded = FactorModel.load(tmp_path / "m.npz")
    for table in (loaded.users, loaded.items):
        assert not table.data.flags.writeable
    # a new table over a read-only table's array shares it: nothing to copy
    again = DenseTable(loaded.items.data)
    assert np.shares_memory(again.data, loaded.items.data)


def test_hold_copies_what_someone_else_can_write():
    mine = np.arange(6.0)
    assert hold(mine) is mine and not mine.flags.writeable  # no source: fresh, frozen in place
    theirs = np.arange(6.0)
    held = hold(theirs, theirs)
    assert held is not theirs and theirs.flags.writeable
    # a read-only view of a writeable array is copied too: its owner can still write
    view = theirs[1:]
    view.flags.writeable = False
    held = hold(view, view)
    assert not np.shares_memory(held, theirs)
    theirs[:] = -1
    np.testing.assert_array_equal(held, np.arange(1.0, 6.0))
