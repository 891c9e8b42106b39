"""load_interactions on a user's own files: formats, guesses, bad lines, zip members."""

import bz2
import gzip
import lzma
import sys

import numpy as np
import pandas as pd
import pytest

from cfprune.datasets import load_interactions, load_ml1m_no_timestamps, sources
from cfprune.errors import DataError, MissingDependencyError
from tests.processes import run_cli
from tests.reference_data import (DATA_HOME, assert_matches_reference, format_lines,
                                  real_archive, synthetic_events, write_zip)


def write_text(path, lines, header=None):
    text = ((header + "\n") if header else "") + "\n".join(lines) + "\n"
    path.write_text(text)
    return path


def write_parquet(path, events, names=("userId", "movieId", "rating", "timestamp")):
    frame = pd.DataFrame(events, columns=list(names))
    frame.to_parquet(path, index=False)
    return path


# round trip ---------------------------------------------------------------------------------
@pytest.mark.parametrize("string_ids", [False, True])
def test_round_trip_all_formats(tmp_path, string_ids):
    events = synthetic_events(n_events=45, seed=5, string_ids=string_ids)
    paths = {
        "csv": write_text(tmp_path / "a.csv", format_lines(events, ","),
                          "userId,movieId,rating,timestamp"),
        "tsv": write_text(tmp_path / "a.tsv", format_lines(events, "\t")),
        "colons": write_text(tmp_path / "a.dat", format_lines(events, "::")),
        "parquet": write_parquet(tmp_path / "a.parquet", events),
    }
    loaded = {k: load_interactions(p) for k, p in paths.items()}
    for log in loaded.values():
        assert_matches_reference(log, events)
    ref = loaded["csv"]
    for log in loaded.values():
        assert (log.matrix != ref.matrix).nnz == 0
        np.testing.assert_array_equal(log.user_ids, ref.user_ids)
        np.testing.assert_array_equal(log.item_ids, ref.item_ids)
        np.testing.assert_array_equal(log.timestamps, ref.timestamps)
    assert loaded["csv"].load_info["header"] is True
    assert loaded["tsv"].load_info["header"] is False
    assert loaded["colons"].load_info["sep"] == "::"
    assert loaded["tsv"].load_info["sep"] == "\t"
    assert loaded["csv"].load_info["columns"] == {"user": "userId", "item": "movieId",
                                                  "rating": "rating", "timestamp": "timestamp"}
    assert set(loaded["tsv"].load_info["guessed"]) == {"sep", "header", "columns"}
    assert loaded["parquet"].load_info["format"] == "parquet"


def test_separator_split_across_reads(tmp_path, monkeypatch):
    """A '::' cut by the read boundary must still be one separator."""
    monkeypatch.setattr(sources, "READ_BYTES", 5)
    events = synthetic_events(n_events=30, seed=2)
    path = write_text(tmp_path / "r.dat", format_lines(events, ":::"[:2]))
    assert_matches_reference(load_interactions(path, sep="::"), events)
    path = write_text(tmp_path / "r3.dat", format_lines(events, "<=>"))
    assert_matches_reference(load_interactions(path, sep="<=>"), events)


def test_small_chunks_and_gzip(tmp_path):
    events = synthetic_events(n_events=40, seed=8)
    path = tmp_path / "r.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("user_id,item_id,rating,timestamp\n" + "\n".join(format_lines(events, ",")))
    assert_matches_reference(load_interactions(path, chunksize=3), events)


def test_whitespace_separated(tmp_path):
    events = synthetic_events(seed=4)
    path = write_text(tmp_path / "r.txt", [ln.replace(",", "   ") for ln in
                                            format_lines(events, ",")])
    log = load_interactions(path)
    assert_matches_reference(log, events)
    assert log.load_info["sep"] == " "


# columns ------------------------------------------------------------------------------------
def test_column_forms(tmp_path):
    events = synthetic_events(seed=6)
    # file order: timestamp, item, extra, user, rating
    lines = [f"{t};{i};x;{u};{r}" for u, i, r, t in events]
    path = write_text(tmp_path / "r.csv", lines, "when;what;extra;who;stars")
    forms = ["who,what,stars,when", ["who", "what", "stars", "when"], [3, 1, 4, 0],
             "3,1,4,0", {"user": "who", "item": 1, "rating": "stars", "timestamp": "when"}]
    for columns in forms:
        log = load_interactions(path, columns=columns)
        assert_matches_reference(log, events)
        assert log.load_info["columns"]["user"] == "who"
    with pytest.raises(DataError, match="cannot tell the user and item columns"):
        load_interactions(path)
    with pytest.raises(DataError, match="no column 'nobody'"):
        load_interactions(path, columns="nobody,what")


def test_headerless_role_names_and_two_columns(tmp_path):
    events = synthetic_events(seed=7)
    path = write_text(tmp_path / "r.tsv", format_lines(events, "\t", 3))
    log = load_interactions(path, columns="user,item,rating")
    assert_matches_reference(log, [e[:3] for e in events])
    swapped = load_interactions(path, columns="item,user")  # field 1 is the user
    assert set(swapped.user_ids.tolist()) == {e[1] for e in events}
    pairs = load_interactions(write_text(tmp_path / "p.csv", [f"{u},{i}" for u, i, *_ in events]))
    assert_matches_reference(pairs, [e[:2] for e in events])
    assert pairs.timestamps is None


def test_duplicates_rule(tmp_path):
    path = write_text(tmp_path / "d.csv", ["1,5,2,10", "1,5,3,20", "2,5,4,30"])
    assert load_interactions(path, duplicates="sum").matrix[0, 0] == 5
    assert load_interactions(path, duplicates="last").matrix[0, 0] == 3
    assert load_interactions(path, duplicates="max").timestamps[0] == 20


def test_implicit_options(tmp_path):
    path = write_text(tmp_path / "i.csv", ["1,5,2", "1,6,5", "2,5,4", "3,7,1"])
    assert load_interactions(path).matrix.sum() == 12
    every = load_interactions(path, implicit=True)
    assert every.nnz == 4 and np.all(every.matrix.data == 1)
    high = load_interactions(path, threshold=4)
    assert high.nnz == 2


# bad lines ----------------------------------------------------------------------------------
BAD = [("7,9,3,5,1", "5 fields, expected 4"), ("7,9,abc,5", "rating is not a number"),
       (",9,3,5", "missing user id"), ("7,9,3", "3 fields, expected 4")]


@pytest.mark.parametrize("bad, what", BAD)
@pytest.mark.parametrize("chunksize", [2, 1000])
def test_bad_line_reported_with_number(tmp_path, bad, what, chunksize):
    events = synthetic_events(n_events=12)
    lines = format_lines(events, ",")
    lines.insert(6, bad)  # line 8 of the file: the header is line 1
    path = write_text(tmp_path / "bad.csv", lines, "user,item,rating,timestamp")
    with pytest.raises(DataError) as err:
        load_interactions(path, chunksize=chunksize)
    msg = str(err.value)
    assert msg.startswith(f"{path}, line 8: ")
    assert what in msg and repr(bad) in msg


@pytest.mark.parametrize("chunksize", [3, 1000])
def test_skip_bad_lines_counts_them(tmp_path, chunksize):
    events = synthetic_events(n_events=20, seed=9)
    lines = format_lines(events, ",")
    for at, (bad, _) in zip((2, 7, 11, 15), BAD):
        lines.insert(at, bad)
    lines.insert(9, "")  # a blank line is not a bad line
    path = write_text(tmp_path / "bad.csv", lines, "user,item,rating,timestamp")
    log = load_interactions(path, on_bad_lines="skip", chunksize=chunksize)
    assert_matches_reference(log, events)
    info = log.load_info
    assert info["skipped_lines"] == 4
    assert info["blank_lines"] == 1
    expected_lines = [i + 2 for i, ln in enumerate(lines) if ln in {b for b, _ in BAD}]
    assert [line for line, _ in info["skipped_examples"]] == expected_lines


def test_empty_and_header_only_files(tmp_path):
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_interactions(empty)
    blank = tmp_path / "b.csv"
    blank.write_text("\n\n")
    with pytest.raises(DataError, match="empty"):
        load_interactions(blank)
    header = write_text(tmp_path / "h.csv", [], "userId,movieId,rating")
    with pytest.raises(DataError, match="header and no interactions"):
        load_interactions(header)
    with pytest.raises(DataError, match="does not exist"):
        load_interactions(tmp_path / "nope.csv")


# zip members and Parquet ----------------------------------------------------------------------
def test_zip_member(tmp_path):
    events = synthetic_events(seed=11)
    text = "\n".join(format_lines(events, "::", 3)) + "\n"
    path = write_zip(tmp_path / "a.zip", {"a/README": "x", "a/movies.dat": "1::T::G\n",
                                          "a/ratings.dat": text})
    picked = load_interactions(path)
    assert picked.load_info["member"] == "a/ratings.dat"
    assert_matches_reference(picked, [e[:3] for e in events])
    named = load_interactions(path, member="a/ratings.dat", sep="::", columns="user,item,rating")
    assert (named.matrix != picked.matrix).nnz == 0
    two = write_zip(tmp_path / "b.zip", {"x/ratings1.csv": "1,2\n", "x/ratings2.csv": "1,2\n"})
    with pytest.raises(DataError, match="name the one to read with member="):
        load_interactions(two)
    with pytest.raises(DataError, match="no member 'x/r.csv'"):
        load_interactions(two, member="x/r.csv")


def test_parquet_needs_pyarrow(tmp_path, monkeypatch):
    path = write_parquet(tmp_path / "a.parquet", synthetic_events())
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(MissingDependencyError, match=r"pip install cfprune\[parquet\]"):
        load_interactions(path)


def test_parquet_null_id(tmp_path):
    events = synthetic_events()
    frame = pd.DataFrame(events, columns=["user", "item", "rating", "timestamp"])
    frame["user"] = frame["user"].astype("Int64")
    frame.loc[3, "user"] = pd.NA
    path = tmp_path / "n.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(DataError, match="row 4: missing user id"):
        load_interactions(path)
    log = load_interactions(path, on_bad_lines="skip")
    assert log.load_info["skipped_lines"] == 1
    assert_matches_reference(log, events[:3] + events[4:])


# malformed ids ------------------------------------------------------------------------------
def integer_log_with_a_bad_id(tmp_path, n=300, bad_line=171):
    events = synthetic_events(n_users=20, n_items=25, n_events=n, seed=9)
    lines = format_lines(events, "\t", fields=3)
    lines[bad_line - 1] = "12\tnot-an-item\t3"
    return write_text(tmp_path / "ids.tsv", lines), events, lines


@pytest.mark.parametrize("chunksize", [1_000_000, 50])
def test_a_non_integer_id_among_integers_names_its_line(tmp_path, chunksize):
    path, events, _ = integer_log_with_a_bad_id(tmp_path)
    with pytest.raises(DataError) as info:
        load_interactions(path, chunksize=chunksize)
    message = str(info.value)
    assert "ids.tsv: the item ids are integers except on 1 line (line 171: " \
        "'12\\tnot-an-item\\t3')" in message
    assert "--id-type str" in message and "\n" not in message
    # skipped: the other 299 events, integer ids
    log = load_interactions(path, on_bad_lines="skip", chunksize=chunksize)
    assert log.item_ids.dtype == np.int64 and log.user_ids.dtype == np.int64
    assert log.load_info["skipped_lines"] == 1
    assert log.load_info["skipped_examples"] == [(171, "item id 'not-an-item' is not an integer")]
    kept = [e[:3] for j, e in enumerate(events) if j != 170]
    assert_matches_reference(log, kept)


def test_id_type_str_reads_every_id_as_text(tmp_path):
    path, events, lines = integer_log_with_a_bad_id(tmp_path)
    log = load_interactions(path, id_type="str")
    assert log.item_ids.dtype.kind == "U" and "not-an-item" in log.item_ids.tolist()
    as_text = [(f.split("\t")[0], f.split("\t")[1], float(f.split("\t")[2])) for f in lines]
    assert_matches_reference(log, as_text)
    with pytest.raises(DataError, match=r"line 171: item id is not an integer"):
        load_interactions(path, id_type="int")
    with pytest.raises(DataError, match="id_type"):
        load_interactions(path, id_type="float")


def test_text_ids_with_some_numbers_stay_text(tmp_path):
    events = [("u1", "i1", 5.0), ("u2", "77", 4.0), ("42", "i3", 3.0), ("u4", "i1", 1.0)]
    path = write_text(tmp_path / "t.csv", format_lines(events, ",", fields=3),
                      "user,item,rating")
    log = load_interactions(path)
    assert_matches_reference(log, events)


def test_cli_id_type_flag(tmp_path):
    from cfprune import cli
    path, _, _ = integer_log_with_a_bad_id(tmp_path)
    args = cli.build_parser().parse_args(["train", "--ratings", str(path), "--id-type", "str",
                                          "--threshold", "-1"])
    assert "not-an-item" in cli.load_data(args).item_ids.tolist()
    args = cli.build_parser().parse_args(["train", "--ratings", str(path)])
    with pytest.raises(DataError, match="line 171"):
        cli.load_data(args)


# rating-less files: implicit feedback --------------------------------------------------------
def test_a_file_without_ratings_is_implicit_feedback_in_the_cli(tmp_path):
    """``user,item`` lines with the CLI's default ``--threshold 4``: every event is a positive
    (said once on stderr), none is dropped by the threshold."""
    rng = np.random.default_rng(3)
    events = [(int(rng.integers(1, 60)), int(rng.integers(1, 40))) for _ in range(900)]
    path = write_text(tmp_path / "events.csv", [f"{u},{i}" for u, i in events], "user,item")
    np.save(tmp_path / "U.npy", rng.normal(size=(len({u for u, _ in events}), 4)).astype(
        np.float32))
    np.save(tmp_path / "V.npy", rng.normal(size=(len({i for _, i in events}), 4)).astype(
        np.float32))
    result = run_cli("evaluate", "--user-factors", tmp_path / "U.npy", "--item-factors",
                     tmp_path / "V.npy", "--ratings", path, "--save-split", tmp_path / "split",
                     "--k", "5")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("every event counts as a positive") == 1, result.stderr
    import scipy.sparse as sp
    train = sp.load_npz(tmp_path / "split" / "train.npz")
    test = sp.load_npz(tmp_path / "split" / "test.npz")
    assert train.nnz + test.nnz == len(set(events))  # every distinct pair kept
    assert int(result.stdout.split()[0]) > 0  # "N users evaluated"


def test_a_log_without_ratings_ignores_the_threshold(tmp_path):
    events = [(1, 10), (1, 11), (2, 10), (3, 12), (3, 12)]
    path = write_text(tmp_path / "e.tsv", [f"{u}\t{i}" for u, i in events])
    log = load_interactions(path, threshold=4.0)
    assert log.load_info["feedback"].startswith("implicit")
    assert log.nnz == 4 and not log.has_ratings
    assert np.array_equal(log.matrix.toarray(), [[1, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert load_interactions(path).implicit(4.0).nnz == 4
    # a rated log: the threshold applies, and one that drops every pair says so
    rated = write_text(tmp_path / "r.csv", ["1,10,2", "2,11,3"], "user,item,rating")
    assert load_interactions(rated).load_info["feedback"].startswith("explicit")
    with pytest.raises(DataError, match=r"every one of its 2 rated pairs is below the threshold "
                                        r"4 \(ratings run from 2 to 3\)"):
        load_interactions(rated, threshold=4.0)


def test_ml1m_no_timestamps_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("CFPRUNE_DATA", str(tmp_path))
    with pytest.raises(DataError, match=str(tmp_path / "ml-1m-no-timestamps.zip")):
        load_ml1m_no_timestamps()


@pytest.mark.realdata
def test_real_ml1m_no_timestamps(monkeypatch):
    path = real_archive("ml-1m-no-timestamps.zip")
    log = load_interactions(path, member="ml-1m-no-timestamps/ratings.dat", sep="::",
                            columns="user,item,rating")
    assert (log.nnz, log.n_users, log.n_items) == (1_000_209, 6_040, 3_706)
    assert log.timestamps is None
    values, counts = np.unique(log.ratings, return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist())) == \
        {1.0: 56_174, 2.0: 107_557, 3.0: 261_197, 4.0: 348_971, 5.0: 226_310}
    monkeypatch.setenv("CFPRUNE_DATA", str(DATA_HOME))
    guessed = load_ml1m_no_timestamps()
    assert (guessed.matrix != log.matrix).nnz == 0
    assert load_interactions(path).nnz == 1_000_209  # member, separator and columns guessed


# spreadsheet exports, compression, typed Parquet ----------------------------------------------
SPREADSHEET = [
    # Excel "CSV UTF-8": a byte-order mark and CRLF line ends
    ("csv", b"\xef\xbb\xbfuserId,movieId,rating\r\n1,31,2.5\r\n1,1029,3\r\n2,31,4\r\n"),
    ("tsv", b"\xef\xbb\xbfuserId\tmovieId\trating\r\n1\t31\t2.5\r\n1\t1029\t3\r\n2\t31\t4\r\n"),
    ("quoted", b'\xef\xbb\xbf"userId","movieId","rating"\r\n"1","31","2.5"\r\n"1","1029","3"\r\n'
               b'"2","31","4"\r\n'),
    ("no header", b"\xef\xbb\xbf1,31,2.5\r\n1,1029,3\r\n2,31,4\r\n"),
]


@pytest.mark.parametrize("kind, data", SPREADSHEET, ids=[k for k, _ in SPREADSHEET])
def test_byte_order_mark_and_crlf_load(tmp_path, kind, data):
    path = tmp_path / f"export.{'tsv' if kind == 'tsv' else 'csv'}"
    path.write_bytes(data)
    log = load_interactions(path)
    assert_matches_reference(log, [(1, 31, 2.5), (1, 1029, 3.0), (2, 31, 4.0)])
    assert log.user_ids.dtype == np.int64  # the mark is not part of the first id
    if kind != "no header":
        assert log.load_info["columns"] == {"user": "userId", "item": "movieId",
                                            "rating": "rating"}


def test_crlf_bad_line_numbers(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"\xef\xbb\xbfuser,item,rating\r\n1,2,3\r\n1,3,4,9\r\n2,2,x\r\n2,4,5\r\n")
    log = load_interactions(path, on_bad_lines="skip")
    assert log.load_info["skipped_examples"] == [(3, "4 fields, expected 3"),
                                                 (4, "rating is not a number")]
    with pytest.raises(DataError, match=r"bad.csv, line 3: 4 fields, expected 3"):
        load_interactions(path)


def test_quoted_separator_is_not_a_bad_line(tmp_path):
    """A quoted field holding the separator is one field, for the parser and for the pass that
    numbers the lines the parser drops."""
    lines = ['user,item,rating', '"a,b",1,5', '"c",2,4', 'd,3,4,extra', '"e,f",4,3']
    path = write_text(tmp_path / "q.csv", lines[1:], lines[0])
    log = load_interactions(path, on_bad_lines="skip")
    assert_matches_reference(log, [("a,b", 1, 5.0), ("c", 2, 4.0), ("e,f", 4, 3.0)])
    assert log.load_info["skipped_examples"] == [(4, "4 fields, expected 3")]


@pytest.mark.parametrize("suffix, opener", [(".gz", gzip.open), (".bz2", bz2.open),
                                            (".xz", lzma.open)])
def test_compression_by_suffix(tmp_path, suffix, opener):
    events = synthetic_events(n_events=30, seed=12)
    path = tmp_path / f"r.csv{suffix}"
    with opener(path, "wb") as fh:
        fh.write(("userId,movieId,rating,timestamp\n" +
                  "\n".join(format_lines(events, ",")) + "\n").encode())
    assert_matches_reference(load_interactions(path), events)
    assert path.read_bytes()[:2] != b"us"  # the file on disk is compressed


def test_parquet_typed_columns(tmp_path):
    """Ids keep their Parquet type: int64 exactly (beyond float64's 2**53), strings as written
    ("007" stays "007"); a column of another type is refused naming it."""
    big = 2 ** 60
    frame = pd.DataFrame({"user": pd.array([big + 1, big + 3, None, big + 1], "Int64"),
                          "item": ["007", "7", "x", "070"],
                          "rating": np.array([1.5, 2, 3, 4], np.float32)})
    path = tmp_path / "typed.parquet"
    frame.to_parquet(path, index=False)
    log = load_interactions(path, on_bad_lines="skip")
    assert log.user_ids.dtype == np.int64 and log.user_ids.tolist() == [big + 1, big + 3]
    assert log.item_ids.tolist() == ["007", "070", "7"]
    assert_matches_reference(log, [(big + 1, "007", 1.5), (big + 3, "7", 2.0),
                                   (big + 1, "070", 4.0)])
    assert log.load_info["skipped_examples"] == [(3, "missing user id")]
    flags = pd.DataFrame({"user": [1, 2], "item": [True, False]})
    flags.to_parquet(tmp_path / "flags.parquet", index=False)
    with pytest.raises(DataError, match=r"column 'item' \(item\) has Parquet type bool"):
        load_interactions(tmp_path / "flags.parquet")
