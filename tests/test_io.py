"""The model file: round trip, exact bytes, refusal of corrupt / tampered / newer files,
atomic writes that leave the previous file intact, byte-identical saves."""

import json
import os
import zipfile

import numpy as np
import pytest

from cfprune import io
from cfprune.errors import ModelFileError
from cfprune.models import FactorModel
from cfprune.tables import Int8Table, PQTable, PrunedTable, SparseTable, subspace_bounds


@pytest.fixture
def model():
    rng = np.random.default_rng(0)
    users = rng.normal(size=(20, 6)).astype(np.float32)
    codes = rng.integers(-128, 128, (4, 6)).astype(np.int8)
    pruned = PrunedTable(Int8Table(codes, np.ones(4), np.zeros(4)), [0, 3, 9, 14], 15)
    pq = PQTable(rng.integers(0, 8, (15, 3)).astype(np.uint8),
                 rng.normal(size=(8, 6)).astype(np.float32), subspace_bounds(6, 3))
    return FactorModel(users, pruned, rerank=pq, user_ids=np.arange(20) * 7,
                       item_ids=np.array([f"m{i}" for i in range(15)]), spec="test", info={"a": 1})


def npz_members(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_round_trip_and_exact_bytes(model, tmp_path):
    path = tmp_path / "m.npz"
    model.save(path)
    back = FactorModel.load(path)
    for side in ("users", "items", "rerank"):
        assert np.array_equal(getattr(back, side).decode(), getattr(model, side).decode())
    assert back.user_ids.tolist() == model.user_ids.tolist()
    assert back.item_ids.tolist() == model.item_ids.tolist()
    assert back.spec == "test" and back.info == {"a": 1}
    members = npz_members(path)
    table_bytes = sum(v.nbytes for k, v in members.items()
                      if k.split("/")[0] in ("users", "items", "rerank"))
    assert table_bytes == model.nbytes == back.nbytes


def test_same_model_gives_byte_identical_files(model, tmp_path):
    model.save(tmp_path / "a.npz")
    model.save(tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def rewrite(path, change):
    members = npz_members(path)
    change(members)
    with zipfile.ZipFile(path, "w") as z:
        for k, v in members.items():
            with z.open(k + ".npy", "w") as f:
                np.lib.format.write_array(f, v, allow_pickle=False)


def set_meta(members, **updates):
    meta = json.loads(members["meta"].tobytes())
    meta.update(updates)
    members["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)


@pytest.mark.parametrize("change, words", [
    (lambda m: m.__setitem__("users/data", m["users/data"] + 1), "sha256"),
    (lambda m: set_meta(m, version=99), "version 99"),
    (lambda m: set_meta(m, format="other"), "format"),
    (lambda m: m.pop("items/kept"), "missing"),
    (lambda m: m.__setitem__("extra", np.zeros(3)), "unlisted"),
    (lambda m: m.__setitem__("meta", np.frombuffer(b"{not json", np.uint8)), "JSON"),
    (lambda m: m.pop("meta"), "no 'meta'"),
])
def test_tampered_files_are_refused(model, tmp_path, change, words):
    path = tmp_path / "m.npz"
    model.save(path)
    rewrite(path, change)
    with pytest.raises(ModelFileError, match=words):
        FactorModel.load(path)


def test_truncated_and_missing_files(model, tmp_path):
    path = tmp_path / "m.npz"
    model.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="not a readable"):
        FactorModel.load(path)
    with pytest.raises(ModelFileError, match="does not exist"):
        FactorModel.load(tmp_path / "nope.npz")


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, meta=np.array([{"format": "cfprune-model"}], dtype=object))
    with pytest.raises(ModelFileError):
        FactorModel.load(path)


def test_failed_save_leaves_previous_file_intact(model, tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()
    real = np.lib.format.write_array
    calls = {"n": 0}

    def dies_halfway(f, array, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real(f, array, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", dies_halfway)
    other = model.replace(spec="other")
    with pytest.raises(OSError, match="No space"):
        other.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert FactorModel.load(path).spec == "test"
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


def test_sparse_table_saves(tmp_path):
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(9, 4)).astype(np.float32) * (rng.random((9, 4)) < 0.5)
    m = FactorModel(rng.normal(size=(3, 4)), SparseTable.from_dense(dense))
    m.save(tmp_path / "s.npz")
    assert np.array_equal(FactorModel.load(tmp_path / "s.npz").item_factors, dense)


def test_digest_covers_dtype_and_shape():
    a = np.arange(6, dtype=np.int32)
    assert io.array_digest(a) != io.array_digest(a.reshape(2, 3))
    assert io.array_digest(a) != io.array_digest(a.view(np.float32))
