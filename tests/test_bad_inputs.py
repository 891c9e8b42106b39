"""Bad input across loaders, models, model files, kernels, specs, evaluation and the CLI: each gets
its documented error type, a one-line message with the key words that name the problem, and
leaves no output file created or changed."""

import json
import zipfile
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import scipy.sparse as sp

from cfprune import cli
from cfprune.datasets import load_interactions, load_movielens
from cfprune.distributed import read_candidates, recommend_to_files
from cfprune.errors import (DataError, MissingDependencyError, ModelFileError, ShapeError,
                            SpecError)
from cfprune.evaluation import evaluate
from cfprune.facade import compress
from cfprune.interactions import Interactions
from cfprune.models import FactorModel, train_als
from cfprune.splits import random_split, temporal_split

RNG = np.random.default_rng(0)
USERS = RNG.normal(size=(30, 8)).astype(np.float32)
ITEMS = RNG.normal(size=(40, 8)).astype(np.float32)
SEEN = sp.random(30, 40, density=0.1, random_state=0, format="csr", dtype=np.float32)


@dataclass
class Case:
    name: str
    run: Callable  # run(tmp_path, monkeypatch) -> None, expected to raise
    error: type
    words: tuple
    output: str = "out.npz"  # a file the call must not create or change


def write(tmp, name, text):
    path = tmp / name
    path.write_text(text)
    return path


def model():
    return FactorModel(USERS, ITEMS)


def saved_model(tmp, name="model.npz"):
    path = tmp / name
    model().save(path)
    return path


def tamper(path, key, change):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays, key)
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in arrays.items():
            with zf.open(k + ".npy", "w") as f:
                np.lib.format.write_array(f, v, allow_pickle=False)
    return path


def bump(arrays, key):
    arrays[key] = arrays[key] + 1


def newer(arrays, key):
    meta = json.loads(arrays["meta"].tobytes())
    meta["version"] = 7
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)


def nan_at(a, rows):
    a = a.copy()
    a[rows, 0] = np.nan
    return a


def cli_run(args):
    """Run the CLI in-process; the CLI must answer a bad input with exit code 2."""
    def run(tmp, mp):
        code = cli.main([a.format(tmp=tmp) for a in args])
        if code == 2:
            raise SystemExit(2)
        raise AssertionError(f"exit code {code}, expected 2")
    return run


def corrupt(path, how):
    """Cut ``path`` in half ("cut") or invert 4 bytes in the middle of the data of its largest
    zip member ("flip"), so the zip structure is intact but the member's CRC fails."""
    data = bytearray(path.read_bytes())
    if how == "cut":
        data = data[:len(data) // 2]
    else:
        with zipfile.ZipFile(path) as z:
            member = max(z.infolist(), key=lambda m: m.compress_size)
        name_len, extra_len = np.frombuffer(bytes(data[member.header_offset + 26:
                                                       member.header_offset + 30]), "<u2")
        i = member.header_offset + 30 + name_len + extra_len + member.compress_size // 2
        data[i:i + 4] = bytes(b ^ 0xFF for b in data[i:i + 4])
    out = path.with_name(f"{path.stem}-{how}{path.suffix}")
    out.write_bytes(bytes(data))
    return out


def candidates(tmp, damage):
    """A candidate directory written by recommend_to_files, then damaged."""
    out = tmp / "cands"
    recommend_to_files(model(), np.arange(30), SEEN, k=3, out_dir=out)
    manifest = out / "manifest.json"
    if damage == "part":
        corrupt(out / "part-00000.npz", "cut").replace(out / "part-00000.npz")
    elif damage == "manifest":
        manifest.write_text(manifest.read_text()[:40])
    elif damage == "fields":
        manifest.write_text(json.dumps({"format": "cfprune-candidates", "version": 1, "k": 3}))
    else:
        (out / "part-00000.npz").unlink()
    return out


def ml100k_zip(tmp, lines):
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    with zipfile.ZipFile(home / "ml-100k.zip", "w") as z:
        z.writestr("ml-100k/u.data", "".join(lines))
    return home


CASES = [
    # ratings files and archives
    Case("malformed rating", lambda t, mp: load_interactions(
        write(t, "r.csv", "user,item,rating\n1,2,5\n1,3,five\n")), DataError,
        ("r.csv", "line 3", "five")),
    Case("wrong field count", lambda t, mp: load_interactions(
        write(t, "r.tsv", "1\t2\t5\n1\t3\t4\t9\t9\n"), sep="\t", header=False,
        columns="user,item,rating"), DataError, ("r.tsv", "line 2")),
    Case("empty ratings file", lambda t, mp: load_interactions(write(t, "e.csv", "")), DataError,
         ("e.csv", "empty")),
    Case("header only", lambda t, mp: load_interactions(write(t, "h.csv", "user,item,rating\n")),
         DataError, ("h.csv",)),
    Case("unknown column", lambda t, mp: load_interactions(
        write(t, "c.csv", "user,item,rating\n1,2,3\n"), columns="user,movie"), DataError,
        ("movie",)),
    Case("missing ratings file", lambda t, mp: load_interactions(t / "nope.csv"), DataError,
         ("nope.csv",)),
    Case("unknown dataset", lambda t, mp: load_movielens("ml-3m", download=False), DataError,
         ("ml-3m", "ml-100k")),
    Case("archive absent offline", lambda t, mp: (
        mp.setenv("CFPRUNE_DATA", str(t / "empty")),
        load_movielens("ml-100k", download=False)), DataError, ("ml-100k.zip", "empty")),
    Case("truncated archive", lambda t, mp: (
        mp.setenv("CFPRUNE_DATA", str(t / "home")),
        (t / "home").mkdir(),
        (t / "home" / "ml-100k.zip").write_bytes(b"PK\x03\x04 truncated"),
        load_movielens("ml-100k", download=False)), DataError, ("ml-100k.zip",)),
    Case("malformed line in archive", lambda t, mp: (
        mp.setenv("CFPRUNE_DATA", str(ml100k_zip(
            t, ["1\t2\t5\t881250949\n", "1\t3\tx\t881250949\n"]))),
        load_movielens("ml-100k", download=False)), DataError, ("u.data", "line 2")),
    Case("temporal split without timestamps", lambda t, mp: temporal_split(
        Interactions(SEEN)), DataError, ("timestamps",)),
    Case("split fraction out of range", lambda t, mp: random_split(
        Interactions(SEEN), test_fraction=1.5), DataError, ("1.5",)),
    Case("parquet without pyarrow", lambda t, mp: (
        mp.setitem(__import__("sys").modules, "pyarrow", None),
        load_interactions(write(t, "x.parquet", "not parquet"))), MissingDependencyError,
        ("pip install",)),
    # factor tables and models
    Case("NaN user factors", lambda t, mp: FactorModel(nan_at(USERS, [3, 7]), ITEMS), ShapeError,
         ("user", "NaN", "3, 7")),
    Case("Inf item factors", lambda t, mp: FactorModel(USERS, ITEMS * np.inf), ShapeError,
         ("item", "Inf")),
    Case("dimension mismatch", lambda t, mp: FactorModel(USERS, ITEMS[:, :5]), ShapeError,
         ("8 dimensions", "5")),
    Case("1-D factors", lambda t, mp: FactorModel(USERS[0], ITEMS), ShapeError, ("2-D",)),
    Case("integer factors", lambda t, mp: FactorModel(USERS.astype(int), ITEMS), ShapeError,
         ("floating",)),
    Case("negative training weights", lambda t, mp: train_als(-SEEN), DataError, ("non-negative",)),
    Case("empty training matrix", lambda t, mp: train_als(sp.csr_matrix((4, 4))), DataError,
         ("no interactions",)),
    # model files
    Case("tampered model file", lambda t, mp: FactorModel.load(
        tamper(saved_model(t), "items/data", bump)), ModelFileError, ("items/data", "sha256")),
    Case("newer format version", lambda t, mp: FactorModel.load(
        tamper(saved_model(t), "meta", newer)), ModelFileError, ("version 7", "upgrade")),
    Case("truncated model file", lambda t, mp: FactorModel.load(
        write(t, "cut.npz", saved_model(t).read_bytes()[:300].decode("latin-1"))),
        ModelFileError, ("cut.npz",)),
    Case("not a model file", lambda t, mp: FactorModel.load(write(t, "x.npz", "hello")),
         ModelFileError, ("x.npz", "not a readable")),
    Case("pickled object in file", lambda t, mp: (
        np.savez(t / "p.npz", meta=np.array([object()], dtype=object)),
        FactorModel.load(t / "p.npz")), ModelFileError, ("p.npz",)),
    Case("corrupt model file (bad CRC)", lambda t, mp: FactorModel.load(
        corrupt(saved_model(t), "flip")), ModelFileError, ("model-flip.npz", "corrupt", "CRC")),
    # every other file read: one line naming the file and what it should be
    Case("cli truncated --train", cli_run(["evaluate", "--user-factors", "{tmp}/U.npy",
                                           "--item-factors", "{tmp}/V.npy", "--train",
                                           "{tmp}/tr-cut.npz", "--test", "{tmp}/tr.npz"]),
         SystemExit, ("tr-cut.npz", "--train", "truncated")),
    Case("cli corrupt --test", cli_run(["evaluate", "--user-factors", "{tmp}/U.npy",
                                        "--item-factors", "{tmp}/V.npy", "--train",
                                        "{tmp}/tr.npz", "--test", "{tmp}/tr-flip.npz"]),
         SystemExit, ("tr-flip.npz", "--test", "corrupt")),
    Case("cli text file as --train", cli_run(["recommend", "--user-factors", "{tmp}/U.npy",
                                              "--item-factors", "{tmp}/V.npy", "--train",
                                              "{tmp}/U.txt", "--users", "0"]),
         SystemExit, ("U.txt", "zip header")),
    Case("cli truncated --train of compress", cli_run([
        "compress", "--user-factors", "{tmp}/U.npy", "--item-factors", "{tmp}/V.npy", "--method",
        "int8", "--train", "{tmp}/tr-cut.npz", "--out", "{tmp}/out.npz"]), SystemExit,
        ("tr-cut.npz", "truncated")),
    Case("cli truncated model", cli_run(["recommend", "{tmp}/m-cut.npz", "--users", "0",
                                              "--no-filter"]),
         SystemExit, ("m-cut.npz", "truncated")),
    Case("cli truncated baseline", cli_run(["evaluate", "--user-factors", "{tmp}/U.npy",
                                            "--item-factors", "{tmp}/V.npy", "--train",
                                            "{tmp}/tr.npz", "--test", "{tmp}/tr.npz",
                                            "--baseline", "{tmp}/m-cut.npz"]),
         SystemExit, ("m-cut.npz", "truncated")),
    Case("cli truncated .npy factors", cli_run(["import", "--user-factors", "{tmp}/U-cut.npy",
                                                "--item-factors", "{tmp}/V.npy", "--out",
                                                "{tmp}/out.npz"]), SystemExit,
         ("U-cut.npy", "factor file", "truncated")),
    Case("cli .npz given as .npy", cli_run(["import", "--user-factors", "{tmp}/tr.npz",
                                            "--item-factors", "{tmp}/V.npy", "--out",
                                            "{tmp}/out.npz"]), SystemExit,
         ("tr.npz", ".npy header")),
    Case("cli truncated implicit file", cli_run(["import", "--implicit-file", "{tmp}/imp-cut.npz",
                                                 "--out", "{tmp}/out.npz"]), SystemExit,
         ("imp-cut.npz", "implicit model file", "truncated")),
    Case("cli corrupt implicit file", cli_run(["import", "--implicit-file", "{tmp}/imp-flip.npz",
                                               "--out", "{tmp}/out.npz"]), SystemExit,
         ("imp-flip.npz", "implicit model file", "corrupt")),
    Case("truncated candidate part", lambda t, mp: read_candidates(candidates(t, "part")),
         DataError, ("part-00000.npz", "sha256", "truncated")),
    Case("truncated candidate manifest", lambda t, mp: read_candidates(
        candidates(t, "manifest")), DataError, ("manifest.json", "truncated or corrupt")),
    Case("manifest without parts", lambda t, mp: read_candidates(candidates(t, "fields")),
         DataError, ("manifest.json", "parts")),
    Case("missing candidate part", lambda t, mp: read_candidates(candidates(t, "missing")),
         DataError, ("part-00000.npz", "does not exist")),
    # retrieval
    Case("k zero", lambda t, mp: model().recommend([0], SEEN, k=0), ShapeError, ("k", "positive")),
    Case("k not an integer", lambda t, mp: model().recommend([0], SEEN, k=2.5), ShapeError,
         ("k", "2.5")),
    Case("user out of range", lambda t, mp: model().recommend([0, 30], SEEN), ShapeError,
         ("out of range", "30")),
    Case("user_items wrong columns", lambda t, mp: model().recommend([0], SEEN[:, :10]), ShapeError,
         ("10 columns", "40 items")),
    Case("user_items wrong rows", lambda t, mp: model().recommend([0, 1], SEEN[:5]), ShapeError,
         ("5 rows",)),
    Case("dense user_items", lambda t, mp: model().recommend([0], SEEN.toarray()), ShapeError,
         ("user_items", "scipy.sparse")),
    Case("filter without user_items", lambda t, mp: model().recommend([0], None), ShapeError,
         ("user_items",)),
    # compression specs
    Case("unknown method", lambda t, mp: compress(model(), "zip:level=9"), SpecError,
         ("zip", "prune-rows", "int8", "pq")),
    Case("unknown parameter", lambda t, mp: compress(model(), "pq:m=4,bits=4"), SpecError,
         ("bits", "ksub")),
    Case("parameter out of range", lambda t, mp: compress(model(), "pq:m=0"), SpecError, ("m",)),
    Case("bad choice", lambda t, mp: compress(model(), "int8:axis=diagonal"), SpecError,
         ("diagonal", "row", "dim")),
    Case("rank above dimension", lambda t, mp: compress(model(), "lowrank:rank=99"), SpecError,
         ("99",)),
    Case("popularity without interactions", lambda t, mp: compress(
        model(), "prune-rows:by=popularity"), (SpecError, DataError), ("interactions",)),
    # evaluation
    Case("train/test shapes differ", lambda t, mp: evaluate(model(), SEEN, SEEN[:, :20]),
         ShapeError, ("shape",)),
    Case("bad cut-off", lambda t, mp: evaluate(model(), SEEN, SEEN, ks=(0,)), DataError, ("ks",)),
    Case("tail share out of range", lambda t, mp: evaluate(model(), SEEN, SEEN, tail_share=1.5),
         DataError, ("tail_share",)),
    # command line: one line on stderr, exit code 2, nothing written
    Case("cli missing model", cli_run(["evaluate", "{tmp}/nope.npz", "--train", "{tmp}/a.npz",
                                       "--test", "{tmp}/b.npz"]), SystemExit, ("nope.npz",)),
    Case("cli model and factors", cli_run(["evaluate", "{tmp}/m.npz", "--user-factors",
                                           "{tmp}/U.npy"]), SystemExit, ("not both",)),
    Case("cli train without test", cli_run(["evaluate", "--user-factors", "{tmp}/U.npy",
                                            "--item-factors", "{tmp}/V.npy", "--train",
                                            "{tmp}/tr.npz"]), SystemExit, ("--test",),
         output="out.json"),
    Case("cli bad spec", cli_run(["compress", "--user-factors", "{tmp}/U.npy", "--item-factors",
                                  "{tmp}/V.npy", "--method", "pq:m=zero", "--out",
                                  "{tmp}/out.npz"]), SystemExit, ("m", "zero")),
    Case("cli import mismatched", cli_run(["import", "--user-factors", "{tmp}/U.npy",
                                           "--item-factors", "{tmp}/V5.npy", "--out",
                                           "{tmp}/out.npz"]), SystemExit, ("dimensions",)),
    Case("cli import NaN factors", cli_run(["import", "--user-factors", "{tmp}/Unan.npy",
                                            "--item-factors", "{tmp}/V.npy", "--out",
                                            "{tmp}/out.npz"]), SystemExit, ("NaN", "rows: 2")),
]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    np.save(tmp_path / "U.npy", USERS)
    np.save(tmp_path / "V.npy", ITEMS)
    np.save(tmp_path / "V5.npy", ITEMS[:, :5])
    np.save(tmp_path / "Unan.npy", nan_at(USERS, [2]))
    sp.save_npz(tmp_path / "tr.npz", SEEN)
    for name in ("tr.npz", "U.npy"):
        corrupt(tmp_path / name, "cut")
    corrupt(tmp_path / "tr.npz", "flip")
    (tmp_path / "U.txt").write_text("0 1\n")
    model().save(tmp_path / "m.npz")
    corrupt(tmp_path / "m.npz", "cut")
    np.savez(tmp_path / "imp.npz", user_factors=USERS, item_factors=ITEMS)
    corrupt(tmp_path / "imp.npz", "cut")
    corrupt(tmp_path / "imp.npz", "flip")
    monkeypatch.setenv("CFPRUNE_DATA", str(tmp_path / "empty-home"))
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("previous", [False, True], ids=["no-output", "existing-output"])
def test_bad_input(case, previous, workdir, capsys, monkeypatch):
    out = workdir / case.output
    if previous:
        out.write_bytes(b"the previous output")
    with pytest.raises(case.error) as info:
        case.run(workdir, monkeypatch)
    message = str(info.value) if case.error is not SystemExit else capsys.readouterr().err
    for word in case.words:
        assert word in message, f"{word!r} not in {message!r}"
    assert message.strip() and len(message.strip().splitlines()) == 1, message
    assert "Traceback" not in message
    if previous:
        assert out.read_bytes() == b"the previous output"
    else:
        assert not out.exists()
    assert not list(workdir.glob(".tmp-*"))


def test_debug_flag_shows_the_traceback(workdir):
    with pytest.raises(ModelFileError):
        cli.main(["--debug", "evaluate", str(workdir / "nope.npz"), "--train",
                  str(workdir / "tr.npz"), "--test", str(workdir / "tr.npz")])
