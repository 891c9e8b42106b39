"""The MovieLens registry, loader and data home: synthetic archives in the official layouts,
and the real archives of the data home (found as the CLI finds them) when present."""

import dataclasses
import hashlib
import io
import re
import subprocess
import sys
import urllib.error
import zipfile

import numpy as np
import pytest

from cfprune.datasets import DATASETS, data_home, list_datasets, load_movielens
from cfprune.datasets import home
from cfprune.errors import DataError
from tests.processes import ROOT, process_env, run_cli
from tests.reference_data import (DATA_HOME, assert_matches_reference, format_lines,
                                  real_archive, synthetic_events, write_zip)


@pytest.fixture
def datahome(tmp_path, monkeypatch):
    monkeypatch.setenv("CFPRUNE_DATA", str(tmp_path))
    return tmp_path


def register_small(monkeypatch, name, events):
    """Make the registry expect the counts of ``events`` for ``name``."""
    spec = dataclasses.replace(DATASETS[name], n_ratings=len(events),
                               n_users=len({e[0] for e in events}),
                               n_items=len({e[1] for e in events}))
    monkeypatch.setitem(DATASETS, name, spec)
    return spec


def write_official(datahome, name, events, fields=4, extra_lines=()):
    """Write ``events`` as ``name``'s archive in its official layout."""
    spec = DATASETS[name]
    sep, header = {"tab": ("\t", ""), "colons": ("::", ""),
                   "csv": (",", "userId,movieId,rating,timestamp\n")}[spec.parser]
    lines = format_lines(events, sep, fields) + list(extra_lines)
    text = header + "\n".join(lines) + "\n"
    top = spec.member.split("/")[0]
    return write_zip(datahome / spec.archive, {f"{top}/": "", spec.member: text,
                                               f"{top}/README": "readme\n"})


# the registry -------------------------------------------------------------------------------
def test_registry_names_and_urls():
    assert set(DATASETS) == {"ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-latest-small"}
    for name, spec in DATASETS.items():
        assert spec.archive == f"{name}.zip"
        assert spec.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
    assert DATASETS["ml-latest-small"].sha256 == \
        "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436"
    assert DATASETS["ml-1m"].member == "ml-1m/ratings.dat"
    assert DATASETS["ml-10m"].member == "ml-10M100K/ratings.dat"
    # published counts (GroupLens READMEs)
    assert (DATASETS["ml-1m"].n_ratings, DATASETS["ml-1m"].n_users,
            DATASETS["ml-1m"].n_items) == (1_000_209, 6_040, 3_706)


def test_no_timestamps_archive_is_not_ml_1m(datahome):
    assert "ml-1m-no-timestamps" not in DATASETS
    (datahome / "ml-1m-no-timestamps.zip").write_bytes(b"")
    present = {row.name: row.present for row in list_datasets()}
    assert present["ml-1m"] is False
    with pytest.raises(DataError, match="load_ml1m_no_timestamps"):
        load_movielens("ml-1m-no-timestamps", download=False)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DataError, match="ml-100k.*ml-25m"):
        load_movielens("ml-7m", download=False)


# data home ----------------------------------------------------------------------------------
def test_data_home_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv("CFPRUNE_DATA", str(tmp_path))
    assert data_home() == tmp_path
    assert home.archive_path("x.zip") == tmp_path / "x.zip"
    monkeypatch.delenv("CFPRUNE_DATA")
    assert str(data_home()).endswith("cfprune_data")
    assert "~" not in str(data_home())


def test_list_datasets(datahome, monkeypatch):
    events = synthetic_events()
    write_official(datahome, "ml-100k", events)
    rows = list_datasets()
    assert [r.name for r in rows] == list(DATASETS)
    row = {r.name: r for r in rows}["ml-100k"]
    assert row.present and row.path == str(datahome / "ml-100k.zip")
    assert row["present"] is True and row["n_ratings"] == row[3] == 100_000
    name, path, present, n_ratings = row
    assert (name, present) == ("ml-100k", True)
    assert row.n_ratings == 100_000
    assert not {r.name: r for r in rows}["ml-25m"].present


# loading synthetic archives in each official layout ----------------------------------------
@pytest.mark.parametrize("name", ["ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m",
                                  "ml-latest-small"])
def test_official_layouts_load(datahome, monkeypatch, name):
    events = synthetic_events(seed=len(name))
    register_small(monkeypatch, name, events)
    write_official(datahome, name, events)
    log = load_movielens(name, download=False)
    assert_matches_reference(log, events)
    assert log.name == name
    assert log.user_ids.dtype.kind == "i" and log.item_ids.dtype.kind == "i"


def test_implicit_threshold_and_core(datahome, monkeypatch):
    events = synthetic_events(n_events=50, seed=3)
    register_small(monkeypatch, "ml-100k", events)
    write_official(datahome, "ml-100k", events)
    explicit = load_movielens("ml-100k", download=False)
    assert sorted(explicit.matrix.data.tolist()) == sorted(e[2] for e in events)
    positives = [e for e in events if e[2] >= 4.0]
    for kwargs in ({"implicit": True}, {"threshold": 4.0}, {"implicit": True, "threshold": 4}):
        implicit = load_movielens("ml-100k", download=False, **kwargs)
        assert implicit.nnz == len(positives)
        assert np.all(implicit.matrix.data == 1.0)
    low = load_movielens("ml-100k", download=False, threshold=2.0)
    assert low.nnz == sum(e[2] >= 2.0 for e in events)
    # explicit k-core: every kept user and item has >= 6 ratings, ratings unchanged
    core = load_movielens("ml-100k", download=False, min_user_interactions=6,
                          min_item_interactions=6)
    assert np.all(np.diff(core.matrix.indptr) >= 6)
    assert np.all(np.bincount(core.matrix.indices, minlength=core.n_items) >= 6)
    rating = {(e[0], e[1]): e[2] for e in events}
    rows = np.repeat(np.arange(core.n_users), np.diff(core.matrix.indptr))
    for r, c, v in zip(rows, core.matrix.indices, core.matrix.data):
        assert rating[(core.user_ids[r], core.item_ids[c])] == v


# refusals -----------------------------------------------------------------------------------
def test_ml1m_refuses_three_field_ratings(datahome, monkeypatch):
    events = synthetic_events()
    register_small(monkeypatch, "ml-1m", events)
    write_official(datahome, "ml-1m", events, fields=3)
    with pytest.raises(DataError) as err:
        load_movielens("ml-1m", download=False)
    msg = str(err.value)
    assert "ml-1m.zip:ml-1m/ratings.dat, line 1" in msg
    assert "3 fields, expected 4" in msg
    assert "load_ml1m_no_timestamps" in msg


def test_renamed_no_timestamps_archive_refused(datahome, monkeypatch):
    events = synthetic_events()
    register_small(monkeypatch, "ml-1m", events)
    write_zip(datahome / "ml-1m.zip", {"ml-1m-no-timestamps/ratings.dat":
                                       "\n".join(format_lines(events, "::", 3)) + "\n"})
    with pytest.raises(DataError, match="has no member 'ml-1m/ratings.dat'"):
        load_movielens("ml-1m", download=False)


@pytest.mark.parametrize("bad, line_no, what", [
    ("5\t6\tx\t900000000", 4, "rating is not a number"),
    ("5\t6\t3\t900000000\t7", 4, "5 fields, expected 4"),
    ("5\t\t3\t900000000", 4, "missing item id"),
    ("u5\t6\t3\t900000000", 4, "user id is not an integer"),
    ("5\t6\t3", 4, "3 fields, expected 4"),
])
def test_malformed_line_named(datahome, monkeypatch, bad, line_no, what):
    events = synthetic_events()
    register_small(monkeypatch, "ml-100k", events)
    spec = DATASETS["ml-100k"]
    lines = format_lines(events, "\t")
    lines.insert(line_no - 1, bad)
    write_zip(datahome / spec.archive, {spec.member: "\n".join(lines) + "\n"})
    with pytest.raises(DataError) as err:
        load_movielens("ml-100k", download=False)
    msg = str(err.value)
    assert f"ml-100k.zip:ml-100k/u.data, line {line_no}: " in msg
    assert what in msg
    assert repr(bad) in msg


def test_wrong_counts_refused(datahome, monkeypatch):
    events = synthetic_events()
    register_small(monkeypatch, "ml-latest-small", events[:-1])
    write_official(datahome, "ml-latest-small", events)
    with pytest.raises(DataError, match=f"holds {len(events)} ratings.*official ml-latest-small"):
        load_movielens("ml-latest-small", download=False)


def test_truncated_zip_refused(datahome, monkeypatch):
    events = synthetic_events(n_events=60)
    register_small(monkeypatch, "ml-100k", events)
    path = write_official(datahome, "ml-100k", events)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=re.escape(str(path))):
        load_movielens("ml-100k", download=False)


def test_corrupt_member_refused_by_crc(datahome, monkeypatch):
    events = synthetic_events(n_events=60)
    register_small(monkeypatch, "ml-100k", events)
    spec = DATASETS["ml-100k"]
    text = "\n".join(format_lines(events, "\t")) + "\n"
    path = write_zip(datahome / spec.archive, {spec.member: text}, zipfile.ZIP_STORED)
    data = bytearray(path.read_bytes())
    at = data.index(text.encode()) + len(text) // 2
    data[at] = ord("7") if data[at] != ord("7") else ord("8")  # a digit: still parses
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="ml-100k.zip.*truncated or corrupt"):
        load_movielens("ml-100k", download=False)


def test_missing_archive_without_download(datahome):
    with pytest.raises(DataError) as err:
        load_movielens("ml-1m", download=False)
    msg = str(err.value)
    assert "ml-1m.zip" in msg
    assert "https://files.grouplens.org/datasets/movielens/ml-1m.zip" in msg
    assert str(datahome) in msg


# downloads (urllib monkeypatched: never the network) ---------------------------------------
class FakeResponse(io.BytesIO):
    def __init__(self, payload):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def fake_urlopen(payload, calls):
    def urlopen(url, timeout=None):
        calls.append(url)
        return FakeResponse(payload)
    return urlopen


def test_download_checked_and_loaded(datahome, monkeypatch, tmp_path_factory):
    events = synthetic_events()
    spec = register_small(monkeypatch, "ml-100k", events)
    staging = tmp_path_factory.mktemp("staging")
    payload = write_official(staging, "ml-100k", events).read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    monkeypatch.setitem(DATASETS, "ml-100k", dataclasses.replace(spec, sha256=digest))
    calls = []
    monkeypatch.setattr(home.urllib.request, "urlopen", fake_urlopen(payload, calls))
    log = load_movielens("ml-100k")
    assert calls == [spec.url]
    assert (datahome / "ml-100k.zip").read_bytes() == payload
    assert_matches_reference(log, events)
    load_movielens("ml-100k")  # now local: no second download
    assert len(calls) == 1
    assert sorted(p.name for p in datahome.iterdir()) == ["ml-100k.zip"]


def test_download_wrong_checksum_discarded(datahome, monkeypatch):
    calls = []
    monkeypatch.setattr(home.urllib.request, "urlopen", fake_urlopen(b"not a zip", calls))
    with pytest.raises(DataError) as err:
        load_movielens("ml-100k")
    msg = str(err.value)
    assert "sha256" in msg and DATASETS["ml-100k"].sha256 in msg
    assert DATASETS["ml-100k"].url in msg and str(datahome / "ml-100k.zip") in msg
    assert list(datahome.iterdir()) == []  # neither the archive nor a partial file


@pytest.mark.parametrize("error", [urllib.error.URLError("offline"),
                                   urllib.error.HTTPError("u", 404, "Not Found", {}, None)])
def test_download_failure_says_where_to_put_the_file(datahome, monkeypatch, error):
    def urlopen(url, timeout=None):
        raise error
    monkeypatch.setattr(home.urllib.request, "urlopen", urlopen)
    with pytest.raises(DataError) as err:
        load_movielens("ml-25m")
    msg = str(err.value)
    assert DATASETS["ml-25m"].url in msg
    assert str(datahome / "ml-25m.zip") in msg
    assert list(datahome.iterdir()) == []


def test_download_without_digest(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(home.urllib.request, "urlopen", fake_urlopen(b"abc", calls))
    dest = home.download("https://example.invalid/f.bin", tmp_path / "sub" / "f.bin", None)
    assert dest.read_bytes() == b"abc"


# real archives --------------------------------------------------------------------------------
@pytest.fixture
def shared_home(monkeypatch):
    """The loaders read the data home the CLI reads (the one the test run started with)."""
    monkeypatch.setenv("CFPRUNE_DATA", str(DATA_HOME))


@pytest.mark.realdata
def test_real_ml_100k(shared_home):
    real_archive("ml-100k.zip")
    log = load_movielens("ml-100k", download=False)
    assert (log.nnz, log.n_users, log.n_items) == (100_000, 943, 1_682)
    values, counts = np.unique(log.ratings, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist())) == \
        {1.0: 6_110, 2.0: 11_370, 3.0: 27_145, 4.0: 34_174, 5.0: 21_201}
    assert log.timestamps is not None and log.timestamps.min() > 8e8
    implicit = load_movielens("ml-100k", implicit=True, download=False)
    assert implicit.nnz == 34_174 + 21_201


@pytest.mark.realdata
def test_real_ml_latest_small(shared_home):
    path = real_archive("ml-latest-small.zip")
    assert home.sha256_of(path) == DATASETS["ml-latest-small"].sha256  # the original archive
    log = load_movielens("ml-latest-small", download=False)
    assert (log.nnz, log.n_users, log.n_items) == (100_836, 610, 9_724)
    assert set(np.unique(log.ratings).tolist()) == {x / 2 for x in range(1, 11)}


@pytest.mark.parametrize("where", ["home", "env"])
def test_tests_find_real_data_where_the_cli_does(tmp_path, where):
    """The real-data tests look for archives with the CLI's own rule: $CFPRUNE_DATA, else
    ~/cfprune_data (here HOME is a temporary directory)."""
    env = process_env(HOME=tmp_path / "home")
    env.pop("CFPRUNE_DATA", None)
    folder = tmp_path / "home" / "cfprune_data"
    if where == "env":
        folder = tmp_path / "elsewhere"
        env["CFPRUNE_DATA"] = str(folder)
    folder.mkdir(parents=True)
    write_zip(folder / "ml-100k.zip", {"ml-100k/u.data": "1\t2\t5\t881250949\n"})
    listing = run_cli("datasets", env=env)
    assert listing.returncode == 0, listing.stderr
    assert f"data home: {folder}\n" in listing.stdout
    assert re.search(r"ml-100k\s+present\s", listing.stdout)
    probe = subprocess.run(
        [sys.executable, "-c", "from tests.reference_data import DATA_HOME, real_archive; "
                               "print(DATA_HOME); print(real_archive('ml-100k.zip'))"],
        capture_output=True, text=True, env=env, cwd=ROOT)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.splitlines() == [str(folder), str(folder / "ml-100k.zip")]
