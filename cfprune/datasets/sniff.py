"""The layout of a delimited text log, guessed from its first lines.

:func:`sniff_layout` finds what :func:`~cfprune.datasets.files.load_interactions` was not told:
the separator (the first of ``::``, tab, ``,``, ``;``, ``|`` found the same number of times on
most lines, else runs of blanks), whether line 1 is a header, and which fields hold the user,
the item, the rating and the timestamp (known header names, else fields 0..3 in that order).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from .sources import ENCODING, ParserInput

ROLES = ("user", "item", "rating", "timestamp")
#: The ``sep`` of a log whose fields are separated by runs of blanks.
WHITESPACE = r"\s+"

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
_SAMPLE_BYTES = 1 << 16
_SAMPLE_LINES = 20


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
        """The fields of one raw line (quote-aware for a one-character separator, as pandas)."""
        if self.sep == WHITESPACE:
            return line.split()
        if len(self.sep) == 1:
            return next(csv.reader([line], delimiter=self.sep), [])
        return line.split(self.sep)


def _read_sample(source):
    stream, _ = source.open()
    reader = io.BufferedReader(ParserInput(stream, source.label), buffer_size=_SAMPLE_BYTES)
    try:
        raw = reader.read(_SAMPLE_BYTES)
    finally:
        reader.close()
    text = raw.decode(ENCODING, errors="replace")
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
        if steady([len(Layout(sep, False, 0, {}).split(ln)) - 1 for ln in lines]):
            return sep
    if steady([len(ln.split()) - 1 for ln in lines]):
        return WHITESPACE
    raise DataError(f"{label}: cannot tell the separator from the first lines "
                    f"({lines[0]!r}); pass sep=")


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _normalise_name(name):
    """A header name without blanks, ``_``, ``-`` or quotes, lower-cased."""
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


def parse_columns(columns):
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


def resolve_columns(spec, names, label):
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


def guess_roles(names, header, n_fields, label):
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
        sep = WHITESPACE
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
    spec = parse_columns(columns)
    if spec is None:
        positions = guess_roles(names, header, n_fields, source.label)
        guessed.append("columns")
    else:
        positions = resolve_columns(spec, names, source.label)
    return Layout(sep, header, n_fields, positions, names), guessed
