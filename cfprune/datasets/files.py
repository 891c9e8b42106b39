"""Interaction logs from a user's own files: CSV, TSV, any separator, Parquet, or a zip member.

:func:`load_interactions` reads a log of ``user, item[, rating[, timestamp]]`` events into an
:class:`~cfprune.interactions.Interactions`. Whatever is not given (separator, header, which
column holds what) is guessed from the first lines, and the guess is reported in the returned
object's ``load_info`` dict and through :mod:`logging`.

Text files are streamed through pandas' C parser in chunks; a multi-character separator such
as ``::`` is rewritten to a single control character on the fly, so it is parsed just as fast.
Every bad row is reported with the file, its 1-based line number (the header counts as line 1)
and what is wrong with it, or skipped and counted with ``on_bad_lines="skip"``.

The same reader parses the MovieLens archives (:mod:`cfprune.datasets.movielens`), with a fixed
layout instead of a guessed one.
"""

from __future__ import annotations

import bz2
import gzip
import io
import logging
import lzma
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..errors import DataError, MissingDependencyError
from ..interactions import Interactions
from .home import data_home

logger = logging.getLogger(__name__)

ROLES = ("user", "item", "rating", "timestamp")

#: How the derived ML-1M archive without timestamps is read (see ``datasets/README.md``).
ML1M_NO_TIMESTAMPS = {
    "archive": "ml-1m-no-timestamps.zip",
    "member": "ml-1m-no-timestamps/ratings.dat",
    "sep": "::",
    "columns": "user,item,rating",
}

# lower-cased header names, with "_", "-" and spaces removed, that reveal a column's role
_ROLE_NAMES = {
    "user": ("userid", "user", "uid", "users", "customerid", "customer", "visitorid", "readerid"),
    "item": ("itemid", "item", "iid", "items", "movieid", "movie", "productid", "product",
             "bookid", "isbn", "trackid", "artistid", "songid", "asin"),
    "rating": ("rating", "ratings", "score", "value", "weight", "preference", "count", "plays",
               "playcount", "bookrating"),
    "timestamp": ("timestamp", "time", "ts", "datetime", "date", "unixtime", "unixtimestamp"),
}
_SEPARATOR_GUESSES = ("::", "\t", ",", ";", "|")
_WHITESPACE = r"\s+"
_REPLACEMENT = b"\x1f"  # ASCII unit separator: stands in for a multi-character separator
_SAMPLE_BYTES = 1 << 16
_SAMPLE_LINES = 20
_READ_BYTES = 1 << 20
_MAX_EXAMPLES = 10
_ZIP_SKIP = re.compile(r"(^|/)(readme|license|licence|provenance|movies|users|tags|links|"
                       r"genome|u\.item|u\.user|u\.genre|u\.occupation|u\.info)", re.I)


# sources ------------------------------------------------------------------------------------
@dataclass
class Source:
    """Where the bytes of a log come from: a plain (possibly compressed) file or a zip member."""

    path: Path
    member: str | None = None

    @property
    def label(self):
        """How messages name the source: ``path`` or ``path:member``."""
        return f"{self.path}:{self.member}" if self.member else str(self.path)

    def open(self):
        """A binary stream of the raw bytes (decompressed), and its length if known."""
        path = self.path
        if self.member is not None:
            zf = _open_zip(path)
            try:
                info = zf.getinfo(self.member)
            except KeyError:
                names = [n for n in zf.namelist() if not n.endswith("/")]
                zf.close()
                raise DataError(f"{path} has no member {self.member!r}; it holds "
                                f"{', '.join(names[:20])}") from None
            try:
                raw = zf.open(info)
            except (zipfile.BadZipFile, zlib.error, OSError, NotImplementedError) as exc:
                zf.close()
                raise DataError(f"{path} is corrupt: cannot open {self.member} ({exc})") from exc
            return _Closing(raw, zf), info.file_size
        suffix = path.suffix.lower()
        opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix)
        try:
            if opener is not None:
                return opener(path, "rb"), None
            return open(path, "rb"), path.stat().st_size
        except FileNotFoundError:
            raise DataError(f"{path} does not exist") from None
        except OSError as exc:
            raise DataError(f"cannot open {path}: {exc}") from exc


def _open_zip(path):
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable zip archive (truncated or corrupt: {exc}); "
                        f"download it again") from exc


class _Closing(io.RawIOBase):
    """A zip member stream that also closes its archive."""

    def __init__(self, raw, archive):
        super().__init__()
        self._raw, self._archive = raw, archive

    def readable(self):
        return True

    def readinto(self, b):
        data = self._raw.read(len(b))
        b[:len(data)] = data
        return len(data)

    def close(self):
        if not self.closed:
            self._raw.close()
            self._archive.close()
        super().close()


class _ParserInput(io.RawIOBase):
    """The byte stream pandas parses.

    Rewrites a multi-character separator to ``\\x1f`` (holding back a trailing partial
    separator until the next read), advances a progress bar (``progress=True``: shown on a
    terminal), and turns the errors of a
    truncated or corrupt source (zip CRC mismatch, early end of a compressed stream) into a
    :class:`DataError` naming the file.
    """

    def __init__(self, raw, label, sep=None, total=None, desc=None, progress=False):
        super().__init__()
        self._raw, self._label = raw, label
        self._sep = sep.encode() if sep else None
        self._carry = b""
        self._out = b""
        self._pos = 0
        self._eof = False
        self._bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc,
                         disable=None if progress else True, leave=False)

    def readable(self):
        return True

    def readinto(self, b):
        while self._pos >= len(self._out) and not self._eof:
            self._fill()
        n = min(len(b), len(self._out) - self._pos)
        b[:n] = self._out[self._pos:self._pos + n]
        self._pos += n
        return n

    def _fill(self):
        try:
            chunk = self._raw.read(_READ_BYTES)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise DataError(f"{self._label} is truncated or corrupt ({exc}); replace the "
                            f"file with a good copy") from exc
        self._bar.update(len(chunk))
        self._pos = 0
        if not chunk:
            self._eof = True
            self._out, self._carry = self._carry, b""
            return
        if self._sep is None:
            self._out = chunk
            return
        if _REPLACEMENT in chunk:
            raise DataError(f"{self._label} contains the control character \\x1f, which cfprune "
                            f"uses to parse the separator {self._sep.decode()!r}; remove it or "
                            f"convert the file to a single-character separator")
        data = (self._carry + chunk).replace(self._sep, _REPLACEMENT)
        hold = 0
        for k in range(len(self._sep) - 1, 0, -1):
            if data.endswith(self._sep[:k]):
                hold = k
                break
        self._out, self._carry = (data[:-hold], data[-hold:]) if hold else (data, b"")

    def close(self):
        if not self.closed:
            self._bar.close()
            self._raw.close()
        super().close()


# layout -------------------------------------------------------------------------------------
@dataclass
class Layout:
    """How a delimited text log is laid out.

    sep : the separator (``"::"``, ``"\\t"``, ``","``, ... or ``r"\\s+"`` for runs of blanks)
    header : whether line 1 holds column names
    n_fields : fields per line; a line with more or fewer is a bad line
    positions : role -> 0-based field position (``user`` and ``item`` always present)
    names : the field names (from the header, else ``user, item, rating, timestamp, field4..``)
    """

    sep: str
    header: bool
    n_fields: int
    positions: dict
    names: list = field(default_factory=list)

    def split(self, line):
        """The fields of one raw line."""
        return line.split() if self.sep == _WHITESPACE else line.split(self.sep)


def _read_sample(source):
    stream, _ = source.open()
    reader = io.BufferedReader(_ParserInput(stream, source.label), buffer_size=_SAMPLE_BYTES)
    try:
        raw = reader.read(_SAMPLE_BYTES)
    finally:
        reader.close()
    text = raw.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if len(raw) == _SAMPLE_BYTES and lines and not text.endswith(("\n", "\r")):
        lines = lines[:-1]  # the sample cut the last line
    return [ln for ln in lines if ln.strip()][:_SAMPLE_LINES]


def _guess_sep(lines, label):
    """The first candidate separator found the same number of times (at least once) on most
    sample lines; runs of blanks as the last resort."""
    def steady(counts):
        values, freq = np.unique(counts, return_counts=True)
        best = int(np.argmax(freq))
        return values[best] >= 1 and freq[best] >= 0.75 * len(counts)

    for sep in _SEPARATOR_GUESSES:
        if steady([ln.count(sep) for ln in lines]):
            return sep
    if steady([len(ln.split()) - 1 for ln in lines]):
        return _WHITESPACE
    raise DataError(f"{label}: cannot tell the separator from the first lines "
                    f"({lines[0]!r}); pass sep=")


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _normalise_name(name):
    return re.sub(r"[\s_\-\"']", "", str(name)).lower()


def _guess_header(fields, second):
    """A header is a first line that names a known column, or whose id or rating fields are
    text while the second line's are numbers."""
    if any(_normalise_name(f) in names for f in fields for names in _ROLE_NAMES.values()):
        return True
    if second is None:
        return False
    for j in range(min(3, len(fields), len(second))):
        if not _is_number(fields[j].strip()) and _is_number(second[j].strip()):
            return True
    return False


def _parse_columns(columns):
    """Normalise ``columns`` to a dict role -> name or int position."""
    if columns is None:
        return None
    if isinstance(columns, dict):
        unknown = set(columns) - set(ROLES)
        if unknown or "user" not in columns or "item" not in columns:
            raise DataError(f"columns={columns!r}: keys must be among {ROLES} and include "
                            f"'user' and 'item'")
        spec = {r: columns[r] for r in ROLES if columns.get(r) is not None}
    else:
        if isinstance(columns, str):
            columns = [c.strip() for c in columns.split(",")]
        columns = list(columns)
        if not 2 <= len(columns) <= 4:
            raise DataError(f"columns={columns!r}: give 2 to 4 columns, in the order "
                            f"user, item[, rating[, timestamp]]")
        spec = dict(zip(ROLES, columns))
    out = {}
    for role, col in spec.items():
        if isinstance(col, str) and col.strip().isdigit():
            col = int(col)
        out[role] = col
    return out


def _resolve(spec, names, label):
    positions = {}
    lowered = {}
    for j, n in enumerate(names):
        lowered.setdefault(_normalise_name(n), j)
    for role, col in spec.items():
        if isinstance(col, (int, np.integer)) and not isinstance(col, bool):
            if not 0 <= col < len(names):
                raise DataError(f"{label}: column {col} for {role} is out of range; the file "
                                f"has {len(names)} fields")
            positions[role] = int(col)
        elif col in names:
            positions[role] = names.index(col)
        elif _normalise_name(col) in lowered:
            positions[role] = lowered[_normalise_name(col)]
        else:
            raise DataError(f"{label}: no column {col!r} for {role}; the columns are {names}")
    if len(set(positions.values())) != len(positions):
        raise DataError(f"{label}: two roles share one column: {positions}")
    return positions


def _guess_roles(names, header, n_fields, label):
    if not header:
        return {role: j for j, role in enumerate(ROLES[:n_fields])}
    positions = {}
    taken = set()
    for role in ROLES:
        for j, n in enumerate(names):
            if j not in taken and _normalise_name(n) in _ROLE_NAMES[role]:
                positions[role] = j
                taken.add(j)
                break
    if "user" not in positions or "item" not in positions:
        raise DataError(f"{label}: cannot tell the user and item columns from the header "
                        f"{names}; pass columns= (names or 0-based positions, in the order "
                        f"user, item[, rating[, timestamp]])")
    return positions


def sniff_layout(source, sep=None, columns=None, header=None):
    """Guess the layout of a delimited text log from its first lines.

    Returns the :class:`Layout` and the list of what was guessed (``"sep"``, ``"header"``,
    ``"columns"``).
    """
    lines = _read_sample(source)
    if not lines:
        raise DataError(f"{source.label} is empty: no interactions to read")
    guessed = []
    if sep is None:
        sep = _guess_sep(lines, source.label)
        guessed.append("sep")
    if sep == " ":
        sep = _WHITESPACE
    probe = Layout(sep, False, 0, {})
    first = probe.split(lines[0])
    second = probe.split(lines[1]) if len(lines) > 1 else None
    if header is None:
        header = _guess_header(first, second)
        guessed.append("header")
    header = bool(header)
    data_fields = second if header else first
    if data_fields is None:
        raise DataError(f"{source.label} holds a header and no interactions")
    n_fields = len(data_fields)
    if n_fields < 2:
        raise DataError(f"{source.label}, line {2 if header else 1}: one field "
                        f"({lines[1 if header else 0]!r}) with separator {sep!r}; a log needs "
                        f"at least user and item")
    if header:
        names = [f.strip().strip('"') for f in first]
    else:
        names = list(ROLES[:n_fields]) + [f"field{j}" for j in range(len(ROLES), n_fields)]
    spec = _parse_columns(columns)
    if spec is None:
        positions = _guess_roles(names, header, n_fields, source.label)
        guessed.append("columns")
    else:
        positions = _resolve(spec, names, source.label)
    return Layout(sep, header, n_fields, positions, names), guessed


# reading ------------------------------------------------------------------------------------
@dataclass
class _Bad:
    """Bad rows found so far: a count and the first few (line, reason) examples."""

    count: int = 0
    examples: list = field(default_factory=list)

    def add(self, lines, reasons):
        self.count += len(lines)
        room = _MAX_EXAMPLES - len(self.examples)
        self.examples.extend(zip(lines[:room], reasons[:room]))


def read_log(source, layout, *, on_bad_lines="error", chunksize=1_000_000, id_type="auto",
             desc=None, hint=""):
    """Parse a delimited text log into per-role arrays.

    Returns ``(columns, stats)``: ``columns`` maps each role of ``layout.positions`` to a 1-D
    array (ids: int64 when every id is an integer, else str; ``rating`` float32;
    ``timestamp`` int64), ``stats`` holds ``n_rows``, ``blank_lines``, ``skipped_lines`` and
    ``skipped_examples`` (up to 10 ``(line, reason)`` pairs).

    id_type : {"auto", "int", "str"}
        ``"int"``: every id must be an integer (a line with another id is a bad line);
        ``"str"``: every id is read as text; ``"auto"``: int64 ids when every id is an
        integer, text ids when most are not, and a DataError naming the lines (file, line
        number, content) when a column of integer ids holds a few other values (skipped and
        counted with ``on_bad_lines="skip"``).
    hint : appended to the message of a bad line.

    With ``on_bad_lines="error"`` the first bad line is reported, except that a line with too
    many fields is found by the parser as soon as its chunk is read, before the other checks
    of that chunk run. Line numbers assume one record per line (no quoted line breaks).
    """
    if on_bad_lines not in ("error", "skip"):
        raise DataError(f"on_bad_lines={on_bad_lines!r}; expected 'error' or 'skip'")
    check_id_type(id_type)
    multi = layout.sep != _WHITESPACE and len(layout.sep) > 1
    raw, total = source.open()
    stream = _ParserInput(raw, source.label, sep=layout.sep if multi else None, total=total,
                          desc=desc, progress=True)
    pandas_sep = "\x1f" if multi else layout.sep
    header_lines = 1 if layout.header else 0
    parts = {role: [] for role in layout.positions}
    mixed = {role: _MixedIds() for role in ("user", "item")}
    bad = _Bad()
    blank = 0
    skipped_by_parser = []
    n_rows = 0
    text_ids = {layout.positions[r]: str for r in ("user", "item")} if id_type == "str" else None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            reader = pd.read_csv(
                stream, sep=pandas_sep, header=None, names=list(range(layout.n_fields)),
                skiprows=header_lines, skip_blank_lines=False, engine="c",
                on_bad_lines="warn" if on_bad_lines == "skip" else "error",
                chunksize=chunksize, encoding="utf-8", encoding_errors="replace",
                dtype=text_ids)
            with reader:
                for chunk in reader:
                    skipped_by_parser.extend(_parser_skips(caught))
                    caught.clear()
                    rows = np.arange(n_rows, n_rows + len(chunk))
                    n_rows += len(chunk)
                    values, bad_mask, reasons, is_blank, other = _check_chunk(chunk, layout,
                                                                              id_type)
                    blank += int(is_blank.sum())
                    if bad_mask.any():
                        where = np.flatnonzero(bad_mask)
                        lines = _row_lines(rows[where], header_lines, skipped_by_parser)
                        if on_bad_lines == "error":
                            _raise_bad_line(source, layout, int(lines[0]), reasons[where[0]],
                                            hint)
                        bad.add(lines.tolist(), [reasons[j] for j in where])
                    keep = ~(bad_mask | is_blank)
                    for role, v in values.items():
                        parts[role].append(v[keep])
                    for role, m in mixed.items():
                        m.add(other[role][keep], values[role][keep], lambda j: _row_lines(
                            rows[keep][j], header_lines, skipped_by_parser))
            skipped_by_parser.extend(_parser_skips(caught))
    except pd.errors.ParserError as exc:
        line = _line_from_parser_error(exc)
        if line is None:
            raise DataError(f"{source.label}: cannot parse ({exc})") from exc
        _raise_bad_line(source, layout, line, None, hint)
    except pd.errors.EmptyDataError:
        raise DataError(f"{source.label} is empty: no interactions to read") from None
    finally:
        stream.close()
    for line, reason in skipped_by_parser:
        bad.add([line], [reason])
    columns = {role: _join(parts[role], role) for role in layout.positions}
    if id_type == "auto":
        _settle_mixed_ids(columns, mixed, source, on_bad_lines, bad)
    if len(columns["user"]) == 0:
        raise DataError(f"{source.label} holds no valid interactions "
                        f"({bad.count} bad lines skipped)")
    stats = {"n_rows": len(columns["user"]), "blank_lines": blank, "skipped_lines": bad.count,
             "skipped_examples": sorted(bad.examples)[:_MAX_EXAMPLES]}
    return columns, stats


def _parser_skips(caught):
    out = []
    for w in caught:
        for m in re.finditer(r"Skipping line (\d+): (.*)", str(w.message)):
            out.append((int(m.group(1)), m.group(2).strip()))
    return out


def _row_lines(rows, header_lines, skipped_by_parser):
    """1-based file line of data rows, given the lines the parser dropped before them."""
    lines = rows + header_lines + 1
    if skipped_by_parser:
        dropped = np.sort(np.array([ln for ln, _ in skipped_by_parser], np.int64))
        # the n-th kept line is the smallest L with L - #dropped(<= L) == n
        for _ in range(len(dropped) + 1):
            shifted = rows + header_lines + 1 + np.searchsorted(dropped, lines, side="right")
            if np.array_equal(shifted, lines):
                break
            lines = shifted
    return lines


def _line_from_parser_error(exc):
    m = re.search(r"line (\d+)", str(exc))
    return int(m.group(1)) if m else None


def _numeric(col):
    """float64 values of a column and a mask of the entries that were present but not numbers."""
    if pd.api.types.is_datetime64_any_dtype(col.dtype):
        since_epoch = pd.to_datetime(col, utc=True) - pd.Timestamp(0, tz="UTC")
        seconds = since_epoch // pd.Timedelta(1, "s")
        return seconds.to_numpy(np.float64, na_value=np.nan), np.zeros(len(col), bool)
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        return col.to_numpy(np.float64, na_value=np.nan), np.zeros(len(col), bool)
    num = pd.to_numeric(col.astype("string").str.strip(), errors="coerce")
    values = num.to_numpy(np.float64, na_value=np.nan)
    return values, np.isnan(values) & col.notna().to_numpy()


ID_TYPES = ("auto", "int", "str")


def check_id_type(id_type):
    if id_type not in ID_TYPES:
        raise DataError(f"id_type={id_type!r}; expected one of {ID_TYPES}")


def _ids(col, id_type):
    """``(ids, missing, bad, other)`` for one id column of a chunk.

    ``bad``: rows that are bad lines (a non-integer id with ``id_type="int"``); ``other``: rows
    whose id is not an integer, with ``id_type="auto"`` (settled once the whole file is read,
    by :func:`_settle_mixed_ids`). ``id_type="typed"`` (Parquet) keeps the column's own type.
    """
    none = np.zeros(len(col), bool)
    missing = col.isna().to_numpy()
    if id_type != "str" and pd.api.types.is_integer_dtype(col.dtype):
        return col.to_numpy(np.int64, na_value=0), missing, none, none
    if id_type != "str" and pd.api.types.is_float_dtype(col.dtype):
        v = col.to_numpy(np.float64, na_value=np.nan)
        fractional = ~missing & (v != np.floor(v))
        ints = np.where(missing | fractional, 0, v).astype(np.int64)
        if id_type == "int":
            return ints, missing, fractional, none
        if id_type == "auto":
            if not fractional.any():
                return ints, missing, none, none
            return col.astype("string").to_numpy(object, na_value=""), missing, none, fractional
        return (v if fractional.any() else ints), missing, none, none
    text = col.astype("string").str.strip()
    missing = missing | (text.fillna("") == "").to_numpy(bool)
    if id_type in ("int", "auto"):
        v, not_num = _numeric(text)
        other = ~missing & (not_num | (~np.isnan(v) & (v != np.floor(v))))
        if id_type == "int":
            return np.where(np.isnan(v) | other, 0, v).astype(np.int64), missing, other, none
        return text.to_numpy(object, na_value=""), missing, none, other
    return text.to_numpy(object, na_value=""), missing, none, none


class _MixedIds:
    """Per id column of a text log read with ``id_type="auto"``: how many ids are integers, and
    the rows (a mask per chunk) and first lines whose id is not."""

    def __init__(self):
        self.n_int = 0
        self.n_other = 0
        self.masks = []
        self.examples = []  # (line, id)

    def add(self, other, ids, lines_of):
        self.masks.append(other)
        n_other = int(other.sum())
        self.n_int += other.size - n_other
        self.n_other += n_other
        room = 3 - len(self.examples)
        if n_other and room > 0:
            where = np.flatnonzero(other)[:room]
            self.examples.extend(zip(lines_of(where).tolist(), ids[where].tolist()))


def _settle_mixed_ids(columns, mixed, source, on_bad_lines, bad):
    """Settle the id type of each column of a text log read with ``id_type="auto"`` (in place).

    A column whose ids are all integers becomes int64; one where most ids are not integers
    stays text; a column of integer ids with a few other values (fewer than the integers) is an
    error naming those lines, or, with ``on_bad_lines="skip"``, those rows are dropped and
    counted as bad lines.
    """
    drop = np.zeros(len(columns["user"]), bool)
    for role, m in mixed.items():
        if m.n_other and m.n_other < m.n_int:
            if on_bad_lines == "error":
                lines = _line_texts(source, [line for line, _ in m.examples])
                shown = "; ".join(f"line {line}: {lines.get(line, '')!r}"
                                  for line, _ in m.examples)
                raise DataError(
                    f"{source.label}: the {role} ids are integers except on {m.n_other} "
                    f"line{'s' if m.n_other > 1 else ''} ({shown}{'; ...' if m.n_other > 3 else ''}"
                    f"); fix or skip those lines (--skip-bad-lines, on_bad_lines='skip'), or "
                    f"read every id as text (--id-type str, id_type='str')")
            mask = np.concatenate(m.masks)
            drop |= mask
            bad.add([line for line, _ in m.examples], [f"{role} id {v!r} is not an integer"
                                                       for _, v in m.examples])
            bad.count += int(mask.sum()) - len(m.examples)
    if drop.any():
        for role in columns:
            columns[role] = columns[role][~drop]
    for role, m in mixed.items():
        col = columns[role]
        if col.dtype.kind in "OU" and (m.n_other == 0 or m.n_other < m.n_int):
            columns[role] = pd.to_numeric(pd.Series(col)).to_numpy(np.int64)


def _check_chunk(chunk, layout, id_type):
    """Per-role values of one chunk, the bad-row mask, a reason per row, the blank rows and,
    per id role, the rows whose id is not an integer (``id_type="auto"``, see :func:`_ids`)."""

    n = len(chunk)
    present = chunk.notna().to_numpy()
    is_blank = ~present.any(axis=1)
    reasons = np.full(n, "", object)
    bad = np.zeros(n, bool)
    values = {}
    other = {}

    def flag(mask, reason):
        new = mask & ~bad & ~is_blank
        reasons[new] = reason
        bad[:] |= new

    for role in ("user", "item"):
        ids, missing, not_int, other[role] = _ids(chunk[layout.positions[role]], id_type)
        flag(missing, f"missing {role} id")
        flag(not_int, f"{role} id is not an integer")
        values[role] = ids
    if "rating" in layout.positions:
        v, not_num = _numeric(chunk[layout.positions["rating"]])
        flag(not_num, "rating is not a number")
        flag(np.isnan(v), "missing rating")
        flag(np.isinf(v), "rating is not finite")
        values["rating"] = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    if "timestamp" in layout.positions:
        v, not_num = _numeric(chunk[layout.positions["timestamp"]])
        flag(not_num, "timestamp is not a number")
        flag(np.isnan(v), "missing timestamp")
        values["timestamp"] = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64)
    return values, bad, reasons, is_blank, other


def _join(parts, role):
    if not parts:
        dtype = np.float32 if role == "rating" else np.int64
        return np.zeros(0, dtype)
    if role in ("user", "item") and any(p.dtype == object for p in parts):
        parts = [p if p.dtype == object else p.astype(str).astype(object) for p in parts]
        return np.concatenate(parts).astype(str)
    if role in ("user", "item") and any(p.dtype.kind == "f" for p in parts):
        parts = [p.astype(np.float64) for p in parts]
    return np.concatenate(parts)


def _raise_bad_line(source, layout, line, reason, hint):
    """Raise a DataError quoting line ``line`` of the source and what is wrong with it."""
    content = _line_text(source, line)
    if content is not None:
        n = len(layout.split(content)) if content.strip() else 0
        if n != layout.n_fields:
            reason = f"{n} fields, expected {layout.n_fields} (separator {layout.sep!r})"
    msg = f"{source.label}, line {line}: {reason or 'cannot parse'}: {content!r}"
    raise DataError(msg + (f"; {hint}" if hint else ""))


def _line_text(source, line):
    return _line_texts(source, [line]).get(line)


def _line_texts(source, lines):
    """{line: text} of the 1-based ``lines`` of the source, read in one pass."""
    wanted, found = set(lines), {}
    if not wanted:
        return found
    raw, _ = source.open()
    stream = io.TextIOWrapper(io.BufferedReader(_ParserInput(raw, source.label)),
                              encoding="utf-8", errors="replace", newline=None)
    try:
        for j, text in enumerate(stream, start=1):
            if j in wanted:
                found[j] = text.rstrip("\r\n")
                if len(found) == len(wanted):
                    break
    finally:
        stream.close()
    return found


# Parquet ------------------------------------------------------------------------------------
def _read_parquet(path, columns, chunksize, on_bad_lines, id_type="auto"):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError(f"reading {path} needs pyarrow: pip install "
                                     f"cfprune[parquet]") from None
    try:
        pfile = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid / OSError family
        raise DataError(f"{path} is not a readable Parquet file ({exc})") from exc
    names = list(pfile.schema_arrow.names)
    spec = _parse_columns(columns)
    guessed = []
    if spec is None:
        positions = _guess_roles(names, True, len(names), str(path))
        guessed.append("columns")
    else:
        positions = _resolve(spec, names, str(path))
    parts = {role: [] for role in positions}
    bad = _Bad()
    n_rows = 0
    for batch in pfile.iter_batches(batch_size=chunksize,
                                    columns=[names[j] for j in positions.values()]):
        frame = batch.to_pandas()
        frame.columns = list(positions.values())
        chunk_layout = Layout(",", False, len(names), positions, names)
        # Parquet columns carry their own type: "auto" keeps it
        values, bad_mask, reasons, is_blank, _ = _check_chunk(
            frame.reindex(columns=range(len(names))), chunk_layout,
            "typed" if id_type == "auto" else id_type)
        bad_mask |= is_blank
        reasons[is_blank] = "every field is missing"
        if bad_mask.any():
            where = np.flatnonzero(bad_mask)
            if on_bad_lines == "error":
                j = int(where[0])
                row = {names[c]: v for c, v in frame.iloc[j].items()}
                raise DataError(f"{path}, row {n_rows + j + 1}: {reasons[j]}: {row}")
            bad.add((where + n_rows + 1).tolist(), [reasons[j] for j in where])
        n_rows += len(frame)
        for role, v in values.items():
            parts[role].append(v[~bad_mask])
    out = {role: _join(parts[role], role) for role in positions}
    if len(out["user"]) == 0:
        raise DataError(f"{path} holds no valid interactions ({bad.count} bad rows skipped)")
    info = {"format": "parquet", "columns": {r: names[j] for r, j in positions.items()},
            "guessed": guessed, "n_rows": len(out["user"]), "skipped_lines": bad.count,
            "skipped_examples": bad.examples}
    return out, info


def _is_parquet(path):
    if path.suffix.lower() in (".parquet", ".pq"):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError:
        return False


def _pick_member(path):
    zf = _open_zip(path)
    with zf:
        files = [n for n in zf.namelist() if not n.endswith("/")]
    ratings = [n for n in files if re.search(r"(^|/)(ratings?[^/]*|u\.data)$", n, re.I)]
    if len(ratings) == 1:
        return ratings[0]
    candidates = [n for n in files if not _ZIP_SKIP.search(n)]
    if len(candidates) == 1:
        return candidates[0]
    raise DataError(f"{path} holds several files ({', '.join(files[:20])}); name the one to "
                    f"read with member=")


# public -------------------------------------------------------------------------------------
def finish(interactions, implicit, threshold, min_user_interactions, min_item_interactions):
    """Apply the implicit conversion and the k-core filter the loaders share.

    Explicit (``implicit=False`` and ``threshold=None``): ratings stay the matrix values and
    ``min_*`` drop users and items (a k-core) without binarising. Otherwise
    :meth:`Interactions.implicit` with ``threshold`` (None keeps every event).
    """
    if implicit or threshold is not None:
        return interactions.implicit(threshold, min_user_interactions, min_item_interactions)
    if not (min_user_interactions or min_item_interactions):
        return interactions
    core = interactions.implicit(None, min_user_interactions, min_item_interactions)
    users = np.searchsorted(interactions.user_ids, core.user_ids)
    items = np.searchsorted(interactions.item_ids, core.item_ids)
    return interactions.restrict(users, items)


def load_interactions(path, sep=None, columns=None, header=None, *, member=None,
                      implicit=False, threshold=None, min_user_interactions=0,
                      min_item_interactions=0, duplicates="sum", on_bad_lines="error",
                      chunksize=1_000_000, name=None, id_type="auto"):
    """Read an interaction log from a file of your own.

    Parameters
    ----------
    path : str or Path
        A delimited text file (optionally ``.gz``/``.bz2``/``.xz``), a ``.zip`` archive (see
        ``member``) or a Parquet file (needs pyarrow: ``pip install cfprune[parquet]``).
    sep : str, optional
        Field separator, one or more characters (``","``, ``"\\t"``, ``"::"``; ``" "`` means
        runs of blanks). Guessed from the first lines when left out.
    columns : sequence, comma string or dict, optional
        Which fields hold user, item[, rating[, timestamp]], in that order, each by header name
        or 0-based position: ``"userId,movieId,rating"``, ``[0, 1, 2]``, or
        ``{"user": "uid", "item": 3}``. In a file without a header the fields are named
        ``user, item, rating, timestamp`` in order, so ``"user,item,rating"`` means fields
        0, 1, 2. Guessed when left out: common header names (userId, user_id, movieId, item_id,
        rating, timestamp, ...), else fields 0..3 in that order.
    header : bool, optional
        Whether line 1 names the columns. Guessed when left out: yes if it holds a known column
        name, or text where the next line holds numbers.
    member : str, optional
        The file to read inside a zip archive; by default its one ratings-like file.
    implicit, threshold : bool, float or None
        Explicit ratings by default. ``threshold=t`` keeps events rated ``>= t`` as 1.0;
        ``implicit=True`` alone keeps every event as 1.0. A file without a rating column is
        implicit feedback: every event counts as a positive and ``threshold`` is not applied
        (``load_info["feedback"]`` says so).
    min_user_interactions, min_item_interactions : int
        k-core filter, applied after the threshold.
    duplicates : {"sum", "last", "max"}
        How repeated (user, item) events combine (see :meth:`Interactions.from_log`).
    on_bad_lines : {"error", "skip"}
        Raise a DataError naming the file, the 1-based line number (the header is line 1) and
        what is wrong, or skip bad lines and count them in ``load_info["skipped_lines"]``.
    chunksize : int
        Rows parsed per chunk (memory bound while streaming).
    name : str, optional
        The returned log's name (default: the file name).
    id_type : {"auto", "int", "str"}
        How user and item ids are read. ``"auto"``: int64 when every id of a column is an
        integer, text when most are not; a column of integers with a few other values (a
        malformed line such as ``12<TAB>not-an-item<TAB>3``) is a DataError naming those lines
        (file, line number, content), or they are skipped and counted with
        ``on_bad_lines="skip"``. ``"int"``: every id must be an integer. ``"str"``: every id is
        text, as written (``"007"`` stays ``"007"``).

    Returns
    -------
    Interactions
        With an extra attribute ``load_info`` (dict): ``path``, ``member``, ``format``, ``sep``,
        ``header``, ``columns`` (role -> column name), ``guessed`` (which settings were
        guessed), ``n_rows``, ``skipped_lines``, ``skipped_examples``, ``blank_lines``,
        ``feedback`` (explicit ratings, or implicit feedback when there is no rating column).
        Raw ids are int64 when every id is an integer, else str.
    """
    check_id_type(id_type)
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty: no interactions to read")
    if zipfile.is_zipfile(path) or member is not None:
        member = member if member is not None else _pick_member(path)
        source = Source(path, member)
    else:
        source = Source(path)
    if source.member is None and _is_parquet(path):
        values, info = _read_parquet(path, columns, chunksize, on_bad_lines, id_type)
        info.update(path=str(path), member=None, sep=None, header=None)
    else:
        layout, guessed = sniff_layout(source, sep, columns, header)
        values, stats = read_log(source, layout, on_bad_lines=on_bad_lines, chunksize=chunksize,
                                 id_type=id_type,
                                 desc=path.name)
        info = {"path": str(path), "member": source.member, "format": "text",
                "sep": " " if layout.sep == _WHITESPACE else layout.sep,
                "header": layout.header,
                "columns": {r: layout.names[j] for r, j in layout.positions.items()},
                "guessed": guessed, **stats}
    if info["guessed"]:
        logger.info("%s: guessed %s -> sep=%r header=%r columns=%r", source.label,
                    ", ".join(info["guessed"]), info["sep"], info["header"], info["columns"])
    if info["skipped_lines"]:
        logger.warning("%s: skipped %d bad lines, e.g. %s", source.label, info["skipped_lines"],
                       info["skipped_examples"][:3])
    if "rating" in values:
        info["feedback"] = "explicit: a rating per event"
    else:
        info["feedback"] = ("implicit: no rating column, so every event counts as a positive "
                            "and no rating threshold is applied")
        logger.info("%s: %s", source.label, info["feedback"])
    log = Interactions.from_log(values["user"], values["item"], values.get("rating"),
                                values.get("timestamp"), duplicates=duplicates,
                                name=name or (source.member or path.name))
    out = finish(log, implicit, threshold, min_user_interactions, min_item_interactions)
    out.load_info = info
    return out


def load_ml1m_no_timestamps(*, implicit=False, threshold=None, min_user_interactions=0,
                            min_item_interactions=0):
    """MovieLens 1M without timestamps, from ``ml-1m-no-timestamps.zip`` in the data home.

    A derived archive, not the official ``ml-1m.zip``: 1,000,209 ratings of 6,040 users on
    3,706 movies, fine for random and strong-generalisation splits, not for temporal ones.
    See ``datasets/README.md``.
    """
    path = data_home() / ML1M_NO_TIMESTAMPS["archive"]
    if not path.is_file():
        raise DataError(f"{ML1M_NO_TIMESTAMPS['archive']} is not in the data home: put it at "
                        f"{path} (set $CFPRUNE_DATA to use another directory); it is not "
                        f"downloadable from GroupLens, see datasets/README.md")
    return load_interactions(path, member=ML1M_NO_TIMESTAMPS["member"],
                             sep=ML1M_NO_TIMESTAMPS["sep"],
                             columns=ML1M_NO_TIMESTAMPS["columns"], header=False,
                             implicit=implicit, threshold=threshold,
                             min_user_interactions=min_user_interactions,
                             min_item_interactions=min_item_interactions,
                             name="ml-1m-no-timestamps")
