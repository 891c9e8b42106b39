"""The model file: round trip, exact bytes, refusal of corrupt / tampered / newer files,
atomic writes that leave the previous file intact, byte-identical saves; every write site:
a failed write (EFBIG, ENOSPC, EACCES) is one line and leaves no trace; written files get the
mode an ordinary open() gives."""

import contextlib
import errno
import io as pyio
import json
import os
import stat
import zipfile

import numpy as np
import pytest
import scipy.sparse as sp

from cfprune import io
from cfprune.errors import FileWriteError, ModelFileError
from cfprune.models import FactorModel
from cfprune.tables import Int8Table, PQTable, PrunedTable, SparseTable, subspace_bounds

from .processes import run_cli


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
    (lambda m: m.pop("items/kept_bits" if "items/kept_bits" in m else "items/kept"), "missing"),
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


# failed writes: one line naming the file and the errno, the earlier file intact, no temp file
class FailingFile:
    """A file object whose writes raise OSError(code) once more than ``budget`` bytes went in."""

    def __init__(self, f, code, budget):
        self.f, self.code, self.budget = f, code, budget

    def write(self, data):
        self.budget -= len(data)
        if self.budget < 0:
            raise OSError(self.code, os.strerror(self.code))
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def fail_writes(monkeypatch, code, budget=64):
    """Every file atomic_write opens fails with ``code`` after ``budget`` bytes; EACCES fails
    when the temporary file is created, as in a directory without write permission (chmod
    does not stop root, who runs the tests)."""
    if code in (errno.EACCES, errno.EROFS):
        def refuse(directory, name, mode):
            raise PermissionError(code, os.strerror(code), os.path.join(directory, name))
        monkeypatch.setattr(io, "_create_temp", refuse)
        return
    real = os.fdopen
    monkeypatch.setattr(io.os, "fdopen", lambda fd, *a, **kw: FailingFile(real(fd, *a, **kw),
                                                                         code, budget))


def small_model():
    rng = np.random.default_rng(1)
    return FactorModel(rng.normal(size=(50, 4)).astype(np.float32),
                       rng.normal(size=(30, 4)).astype(np.float32))


def save_split_site(path):
    from cfprune import cli
    from cfprune.interactions import Interactions
    m = sp.random(5, 6, density=0.5, format="csr", random_state=0, dtype=np.float32)
    cli.save_split(os.path.dirname(path), Interactions(m), Interactions(m))


def candidate_part_site(path):
    from cfprune.distributed import recommend_to_files
    recommend_to_files(small_model(), np.arange(50), None, k=3, out_dir=os.path.dirname(path),
                       filter_seen=False)


def download_site(path):
    from cfprune.datasets import home

    class Response(pyio.BytesIO):
        headers = {"Content-Length": "4096"}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(home.urllib.request, "urlopen", lambda url, timeout=None: Response(
            bytes(4096)))
        home.download("https://example.invalid/x.zip", path, None)


WRITE_SITES = {
    # name: (file name under tmp, the call that writes it)
    "model save": ("m.npz", lambda p: small_model().save(p)),
    "json": ("out.json", lambda p: io.write_json(p, {"a": list(range(100))})),
    "split files": ("split/train.npz", save_split_site),
    "candidate part": ("parts/part-00000.npz", candidate_part_site),
    "download": ("home/x.zip", download_site),
}


@pytest.mark.parametrize("code", [errno.EFBIG, errno.ENOSPC, errno.EACCES],
                         ids=["EFBIG", "ENOSPC", "EACCES"])
@pytest.mark.parametrize("site", sorted(WRITE_SITES))
@pytest.mark.parametrize("previous", [False, True], ids=["new", "existing"])
def test_a_failed_write_is_one_line_and_keeps_the_earlier_file(site, code, previous, tmp_path,
                                                              monkeypatch):
    name, call = WRITE_SITES[site]
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if previous:
        path.write_bytes(b"the earlier file")
    fail_writes(monkeypatch, code)
    with pytest.raises(FileWriteError) as info:
        call(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path.name) in message and os.strerror(code) in message
    assert f"({errno.errorcode[code]})" in message
    assert isinstance(info.value, OSError) and info.value.errno == code
    assert ("is unchanged" if previous else "no partial file") in message
    if previous:
        assert path.read_bytes() == b"the earlier file"
    else:
        assert not path.exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


def test_a_directory_that_cannot_be_created_is_one_line(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    monkeypatch.setattr(io.os, "makedirs", refuse)
    with pytest.raises(FileWriteError, match=r"cannot create the directory .*new: Permission "
                                             r"denied \(EACCES\)"):
        candidate_part_site(tmp_path / "new" / "part-00000.npz")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory anyway; "
                                              "the EACCES case above covers root")
def test_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(FileWriteError, match=r"Permission denied \(EACCES\)"):
            small_model().save(ro / "m.npz")
    finally:
        ro.chmod(0o755)


def test_file_size_limit_in_a_real_process(tmp_path):
    """``ulimit -f 1`` (1 KiB): the kernel refuses the write with EFBIG (Python ignores
    SIGXFSZ, so the process is not killed); the earlier model file survives."""
    model = small_model()
    np.save(tmp_path / "U.npy", model.user_factors)
    np.save(tmp_path / "V.npy", model.item_factors)
    earlier = tmp_path / "m.npz"
    FactorModel(model.user_factors[:2], model.item_factors[:2]).save(earlier)
    before = earlier.read_bytes()
    result = run_cli("import", "--user-factors", tmp_path / "U.npy", "--item-factors",
                     tmp_path / "V.npy", "--out", earlier, shell_prefix="ulimit -f 1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"cfprune import: error: cannot write {earlier}: File too "
                                    f"large (EFBIG)")
    assert earlier.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["U.npy", "V.npy", "m.npz"]


# file modes: what an ordinary open() gives ---------------------------------------------------
@contextlib.contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_get_the_mode_of_an_ordinary_open(mask, tmp_path):
    with umask(mask):
        small_model().save(tmp_path / "m.npz")
        io.write_json(tmp_path / "x.json", {"a": 1})
        candidate_part_site(tmp_path / "parts" / "part-00000.npz")
        with open(tmp_path / "plain", "w") as f:  # the reference
            f.write("x")
    expected = 0o666 & ~mask
    assert mode(tmp_path / "plain") == expected
    for path in (tmp_path / "m.npz", tmp_path / "x.json", tmp_path / "parts" / "part-00000.npz",
                 tmp_path / "parts" / "manifest.json"):
        assert mode(path) == expected, path
    # in a new process with that umask (the CLI), and an existing file keeps its own mode
    np.save(tmp_path / "U.npy", np.ones((3, 2), np.float32))
    (tmp_path / "kept.npz").write_bytes(b"old")
    os.chmod(tmp_path / "kept.npz", 0o640)
    for out in ("cli.npz", "kept.npz"):
        result = run_cli("import", "--user-factors", tmp_path / "U.npy", "--item-factors",
                         tmp_path / "U.npy", "--out", tmp_path / out, umask=mask)
        assert result.returncode == 0, result.stderr
    assert mode(tmp_path / "cli.npz") == expected
    assert mode(tmp_path / "kept.npz") == 0o640


def test_report_files_get_the_mode_of_an_ordinary_open_and_fail_in_one_line(tmp_path,
                                                                            monkeypatch):
    from cfprune.report import Grid, run_report
    from cfprune.report.plots import write_plots
    from cfprune.report.render import write_markdown

    from .test_report import synthetic_log
    grid = Grid(factors=(4,), regularization=(1.0,), bpr_learning_rate=(0.01,),
                bpr_iterations=(5,))
    with umask(0o022):
        report = run_report(synthetic_log(80, 60, per_user=10), tmp_path,
                            methods=["int8:table=both"], grid=grid, n_resamples=20, repeats=1,
                            num_threads=1, log=lambda text: None)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.suffix for p in written} == {".md", ".json", ".png"}
    assert {p.name: mode(p) for p in written} == {p.name: 0o644 for p in written}
    # the report's files when the disk is full: one line each, the earlier files unchanged
    before = {p: p.read_bytes() for p in written}
    fail_writes(monkeypatch, errno.ENOSPC, budget=16)
    for name, write in (("report.md", lambda: write_markdown(tmp_path / "report.md", report)),
                        ("report.json", lambda: io.write_json(tmp_path / "report.json", report)),
                        ("tradeoff.png", lambda: write_plots(report, tmp_path))):
        with pytest.raises(FileWriteError, match=f"cannot write .*{name}: No space left on "
                                                 f"device \\(ENOSPC\\).*is unchanged"):
            write()
    assert {p: p.read_bytes() for p in written} == before
    assert not [p for p in tmp_path.rglob(".tmp-*")]
