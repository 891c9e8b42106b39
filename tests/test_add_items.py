"""cfprune.add_items: new items encoded with each step's fitted state, without refitting."""

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

import cfprune
from cfprune.compression.fitted import NoFittedState
from cfprune.errors import ShapeError
from cfprune.models import FactorModel
from cfprune.tables import Int8Table

from .reference_compress import nearest_codes, pq_lookup

SPECS = ["fp16", "int8", "int8:axis=dim", "int8:axis=dim,symmetric=true", "int4:axis=dim",
         "int4", "pq:m=4,ksub=64", "pq:m=4,ksub=64,rotation=opq,rounds=2",
         "pq:m=4,ksub=64,loss=anisotropic,rounds=1,train_rows=200", "lowrank:rank=8",
         "lowrank:rank=8,mode=items", "magnitude:sparsity=0.5", "magnitude:scope=row",
         "prune-rows:keep=0.6|int8:axis=dim", "lowrank:rank=8|pq:m=4,ksub=64,rerank=int8",
         "int8:table=users", "int2", "int2:axis=dim", "pq:m=4,nbits=4",
         "pq:m=3,nbits=4,rotation=opq,rounds=2", "prune-rows:keep=0.6|int2:axis=dim"]


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(5)
    return FactorModel(rng.normal(size=(40, 16)).astype(np.float32),
                       rng.normal(size=(500, 16)).astype(np.float32))


def table_bytes(table):
    return {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in table.arrays().items()}


def fitted_bytes(model):
    return [{k: v.tobytes() for k, v in step.arrays.items()} for step in model.fitted]


@pytest.mark.parametrize("spec", SPECS)
def test_fitted_arrays_byte_identical_and_rows_as_fitted(model, spec):
    """Adding the fitted items again gives them the codes the fit gave them, and nothing the
    fit learnt changes."""
    c = cfprune.compress(model, spec)
    before, state = table_bytes(c.items), fitted_bytes(c)
    vectors = model.items.decode()
    grown = cfprune.add_items(c, vectors)
    assert grown.n_items == 2 * model.n_items and grown.n_users == model.n_users
    assert table_bytes(c.items) == before and fitted_bytes(c) == state
    assert fitted_bytes(grown) == state
    after = table_bytes(grown.items)
    for name, (dtype, shape, data) in before.items():
        new_dtype, new_shape, new_data = after[name]
        assert new_dtype == dtype
        if new_shape == shape:                 # a fitted array: unchanged
            assert new_data == data, name
        elif name == "kept_bits":              # a row bitmap: the old rows' bits come first
            n = c.items.n_rows
            old_bits, new_bits = (np.unpackbits(np.frombuffer(b, np.uint8))[:n]
                                  for b in (data, new_data))
            np.testing.assert_array_equal(new_bits, old_bits)
        else:                                  # a per-row array: the old rows come first
            assert new_data[:len(data)] == data, name
    valid = c.items.valid_rows()
    rows = np.arange(model.n_items) if valid is None else np.flatnonzero(valid)
    np.testing.assert_allclose(grown.items.decode(rows + model.n_items), c.items.decode(rows),
                               rtol=1e-5, atol=1e-6)
    if c.rerank is not None:
        np.testing.assert_allclose(grown.rerank.decode(rows + model.n_items),
                                   c.rerank.decode(rows), rtol=1e-5, atol=1e-6)


def test_new_int8_rows_match_the_reference_encoding(model):
    """Unseen items: codes from the fitted per-dimension scale and offset, clipped."""
    rng = np.random.default_rng(9)
    c = cfprune.compress(model, "int8:axis=dim")
    new = (3 * rng.normal(size=(30, 16))).astype(np.float32)   # many values out of range
    t = cfprune.add_items(c, new).items
    scale, offset = c.items.scale.astype(np.float64), c.items.offset.astype(np.float64)
    ref = np.clip(np.rint((new.astype(np.float64) - offset) / scale), -128, 127)
    np.testing.assert_array_equal(t.codes[model.n_items:], ref.astype(np.int8))


@pytest.mark.parametrize("spec", ["pq:m=4,ksub=64", "pq:m=4,ksub=64,rotation=opq,rounds=2"])
def test_new_pq_rows_match_brute_force_nearest(model, spec):
    rng = np.random.default_rng(11)
    c = cfprune.compress(model, spec)
    new = rng.normal(size=(30, 16)).astype(np.float32)
    t = cfprune.add_items(c, new).items
    rot = c.items.rotation
    x_rot = new.astype(np.float64) if rot is None else new.astype(np.float64) @ rot
    ref = nearest_codes(x_rot, c.items.codebooks, c.items.bounds)
    np.testing.assert_array_equal(t.codes[model.n_items:], ref)
    np.testing.assert_allclose(t.decode(np.arange(500, 530)),
                               pq_lookup(ref, c.items.codebooks, c.items.bounds, rot), atol=1e-5)


def test_pruned_model_keeps_new_items(model):
    c = cfprune.compress(model, "prune-rows:keep=0.5|int8:axis=dim")
    grown = cfprune.add_items(c, model.items.decode()[:3])
    valid = grown.items.valid_rows()
    assert valid[-3:].all() and valid[:model.n_items].sum() == c.items.valid_rows().sum()
    ids, _ = grown.recommend(np.arange(5), None, k=grown.n_items, filter_seen=False)
    assert set(range(model.n_items, model.n_items + 3)) <= set(ids.ravel().tolist())


def test_save_load_keeps_fitted_state(model, tmp_path):
    c = cfprune.compress(model, "lowrank:rank=8|pq:m=4,ksub=64,rotation=opq,rounds=1")
    c.save(tmp_path / "m.npz")
    loaded = cfprune.load(tmp_path / "m.npz")
    assert fitted_bytes(loaded) == fitted_bytes(c)
    new = model.items.decode()[:20] * 1.5
    np.testing.assert_array_equal(cfprune.add_items(loaded, new).items.codes,
                                  cfprune.add_items(c, new).items.codes)
    assert not loaded.fitted[0].arrays["map"].flags.writeable


def write_by_hand(path, model, version, fitted=()):
    """A model file in the version-1 or version-2 schema, written here without cfprune.io:
    version 2 adds ``fitted`` records ``(method, spec, params, {name: array})`` as
    ``meta["fitted"]`` and ``fitted/<i>/<name>``."""
    arrays, tables = {}, {}
    for side, table in (("users", model.users), ("items", model.items)):
        a = table.arrays()
        tables[side] = {"storage": table.storage, "shape": list(table.shape),
                        "params": table.params(), "dtypes": {k: v.dtype.str for k, v in a.items()}}
        arrays.update({f"{side}/{k}": v for k, v in a.items()})
    records = []
    for i, (method, spec, params, step_arrays) in enumerate(fitted):
        records.append({"method": method, "spec": spec, "params": params,
                        "dtypes": {k: v.dtype.str for k, v in step_arrays.items()}})
        arrays.update({f"fitted/{i}/{k}": v for k, v in step_arrays.items()})

    def digest(a):
        h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    meta = {"format": "cfprune-model", "version": version, "spec": model.spec, "info": {},
            "tables": tables, "sha256": {k: digest(v) for k, v in arrays.items()}}
    if version >= 2:
        meta["fitted"] = records
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == sorted(f"{k}.npy" for k in arrays)


def test_version2_file_written_by_hand_loads_and_encodes(model, tmp_path):
    """The version-2 layout, written independently of cfprune.io: int8 with a per-dimension
    scale and offset given here, so a new item's codes are known without cfprune."""
    rng = np.random.default_rng(11)
    scale = rng.uniform(0.01, 0.02, 16).astype(np.float32)
    offset = rng.uniform(-0.1, 0.1, 16).astype(np.float32)
    codes = rng.integers(-127, 128, size=(model.n_items, 16)).astype(np.int8)
    items = Int8Table(codes, scale, offset, axis="dim", dim=16)
    step = ("int8", "int8:axis=dim", {"axis": "dim", "symmetric": False, "dim_in": 16},
            {"scale": scale, "offset": offset})
    write_by_hand(tmp_path / "v2.npz", FactorModel(model.users, items, spec="int8:axis=dim"), 2,
                  [step])
    loaded = cfprune.load(tmp_path / "v2.npz")
    assert [(f.method, f.spec, f.params) for f in loaded.fitted] == [step[:3]]
    new = rng.normal(size=(3, 16)).astype(np.float32) * 0.5
    grown = cfprune.add_items(loaded, new)
    levels = (new.astype(np.float64) - offset.astype(np.float64)) / scale.astype(np.float64)
    expected = np.clip(np.rint(levels), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(grown.items.codes[model.n_items:], expected)
    np.testing.assert_array_equal(grown.items.codes[:model.n_items], codes)


def test_save_writes_the_version2_layout(model, tmp_path):
    c = cfprune.compress(model, "lowrank:rank=8|int8:axis=dim")
    c.save(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "m.npz") as z:
        names = set(z.namelist())
        meta = json.loads(np.load(z.open("meta.npy")).tobytes())
    assert meta["version"] == 2
    assert [set(r) for r in meta["fitted"]] == [{"method", "spec", "params", "dtypes"}] * 2
    assert [r["method"] for r in meta["fitted"]] == ["lowrank", "int8"]
    for i, step in enumerate(c.fitted):
        assert meta["fitted"][i]["dtypes"] == {k: v.dtype.str for k, v in step.arrays.items()}
        assert {f"fitted/{i}/{k}.npy" for k in step.arrays} <= names


def test_version1_file_still_loads(model, tmp_path):
    c = cfprune.compress(model, "int8:axis=dim")
    write_by_hand(tmp_path / "old.npz", c, 1)
    old = cfprune.load(tmp_path / "old.npz")
    np.testing.assert_array_equal(old.items.codes, c.items.codes)
    assert old.fitted is None
    with pytest.raises(NoFittedState, match="version 1") as err:
        cfprune.add_items(old, model.items.decode()[:2])
    assert "\n" not in str(err.value)
    write_by_hand(tmp_path / "plain.npz", model, 1)
    plain = cfprune.load(tmp_path / "plain.npz")
    assert cfprune.add_items(plain, model.items.decode()[:2]).n_items == model.n_items + 2


def test_distill_says_it_cannot_encode(model):
    c = cfprune.compress(model, "distill:rank=4,iterations=1")
    with pytest.raises(NoFittedState, match="distillation cannot encode a new item without "
                                            "retraining"):
        cfprune.add_items(c, model.items.decode()[:2])


def test_bad_new_items(model):
    c = cfprune.compress(model, "lowrank:rank=8|int8:axis=dim")
    with pytest.raises(ShapeError, match="16"):
        cfprune.add_items(c, np.ones((2, 8), np.float32))
    with pytest.raises(ShapeError, match="NaN"):
        cfprune.add_items(c, np.full((2, 16), np.nan, np.float32))
    with pytest.raises(ShapeError, match="no item ids"):
        cfprune.add_items(c, np.ones((2, 16), np.float32), item_ids=[1, 2])
    named = c.replace(item_ids=np.arange(model.n_items) + 1000)
    with pytest.raises(ShapeError, match="pass item_ids"):
        cfprune.add_items(named, np.ones((2, 16), np.float32))
    with pytest.raises(ShapeError, match="repeat"):
        cfprune.add_items(named, np.ones((2, 16), np.float32), item_ids=[1000, 7])
    grown = cfprune.add_items(named, np.ones((2, 16), np.float32), item_ids=[7, 8])
    assert grown.item_ids[-2:].tolist() == [7, 8]
