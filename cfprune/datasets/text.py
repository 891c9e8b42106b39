"""Reading a delimited text log of known :class:`~cfprune.datasets.sniff.Layout`.

The file is streamed through pandas' C parser in chunks (a multi-character separator rewritten
to one control character by :class:`~cfprune.datasets.sources.ParserInput`, so it parses just as
fast). Every bad row is reported with the file, its 1-based line number (the header counts as
line 1) and what is wrong with it, or skipped and counted with ``on_bad_lines="skip"``.

Line numbers come from counting, not from the parser's messages: a data row's line is its row
number plus the header plus the lines the parser dropped before it. The parser drops only lines
with too many fields; when the stream held more lines than the parser returned rows (or, with
``on_bad_lines="error"``, when the parser stops), one more pass with :mod:`csv` (quote-aware,
the same field splitting) finds those lines. Line numbers assume one record per line (no quoted
line breaks).
"""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd

from ..errors import DataError
from .sniff import WHITESPACE
from .sources import ENCODING, REPLACEMENT, ParserInput
from .values import MAX_EXAMPLES, BadRows, check_columns, check_id_type, join


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
    of that chunk run.
    """
    if on_bad_lines not in ("error", "skip"):
        raise DataError(f"on_bad_lines={on_bad_lines!r}; expected 'error' or 'skip'")
    check_id_type(id_type)
    multi = layout.sep != WHITESPACE and len(layout.sep) > 1
    raw, total = source.open()
    stream = ParserInput(raw, source.label, sep=layout.sep if multi else None, total=total,
                         desc=desc, progress=True)
    header_lines = 1 if layout.header else 0
    parts = {role: [] for role in layout.positions}
    mixed = {role: _MixedIds() for role in ("user", "item")}
    bad = BadRows()  # examples hold 0-based data rows until the dropped lines are known
    blank = 0
    n_rows = 0
    text_ids = {layout.positions[r]: str for r in ("user", "item")} if id_type == "str" else None
    try:
        reader = pd.read_csv(
            stream, sep=REPLACEMENT.decode() if multi else layout.sep, header=None,
            names=list(range(layout.n_fields)), skiprows=header_lines, skip_blank_lines=False,
            engine="c", on_bad_lines="skip" if on_bad_lines == "skip" else "error",
            chunksize=chunksize, encoding=ENCODING, encoding_errors="replace", dtype=text_ids)
        with reader:
            for chunk in reader:
                rows = np.arange(n_rows, n_rows + len(chunk))
                n_rows += len(chunk)
                is_blank = ~chunk.notna().to_numpy().any(axis=1)
                values, bad_mask, reasons, other = check_columns(
                    {role: chunk[j] for role, j in layout.positions.items()}, is_blank, id_type)
                blank += int(is_blank.sum())
                if bad_mask.any():
                    where = np.flatnonzero(bad_mask)
                    if on_bad_lines == "error":  # the parser dropped no line before: it stops
                        _raise_bad_line(source, layout, int(rows[where[0]]) + header_lines + 1,
                                        reasons[where[0]], hint)
                    bad.add(rows[where].tolist(), [reasons[j] for j in where])
                keep = ~(bad_mask | is_blank)
                for role, v in values.items():
                    parts[role].append(v[keep])
                for role, m in mixed.items():
                    m.add(other[role][keep], values[role][keep], rows[keep])
    except pd.errors.ParserError as exc:
        long_lines = _long_lines(source, layout, first_only=True)
        if not long_lines:
            raise DataError(f"{source.label}: cannot parse ({exc})") from exc
        line, reason = long_lines[0]
        _raise_bad_line(source, layout, line, reason, hint)
    except pd.errors.EmptyDataError:
        raise DataError(f"{source.label} is empty: no interactions to read") from None
    finally:
        stream.close()
    dropped = []
    if n_rows + header_lines < stream.n_lines:
        dropped = _long_lines(source, layout)
    lines_of = _RowLines(header_lines, [line for line, _ in dropped])
    bad = _rows_to_lines(bad, lines_of)
    for line, reason in dropped:
        bad.add([line], [reason])
    columns = {role: join(parts[role], role) for role in layout.positions}
    if id_type == "auto":
        settle_mixed_ids(columns, mixed, lines_of, source, on_bad_lines, bad)
    if len(columns["user"]) == 0:
        raise DataError(f"{source.label} holds no valid interactions "
                        f"({bad.count} bad lines skipped)")
    stats = {"n_rows": len(columns["user"]), "blank_lines": blank, "skipped_lines": bad.count,
             "skipped_examples": sorted(bad.examples)[:MAX_EXAMPLES]}
    return columns, stats


def _long_lines(source, layout, first_only=False):
    """``[(line, reason)]``: the lines after the header with more than ``layout.n_fields``
    fields (those the C parser drops or stops at), found with :mod:`csv` (or ``str.split`` for
    runs of blanks) in one pass; only the first with ``first_only``."""
    multi = layout.sep != WHITESPACE and len(layout.sep) > 1
    stream = source.text_lines(sep=layout.sep if multi else None)
    found = []
    try:
        if layout.sep == WHITESPACE:
            records = ((j, len(text.split())) for j, text in enumerate(stream, start=1))
        else:
            reader = csv.reader(stream, delimiter=REPLACEMENT.decode() if multi else layout.sep)
            records = ((reader.line_num, len(fields)) for fields in reader)
        for line, n in records:
            if n > layout.n_fields and line > (1 if layout.header else 0):
                found.append((line, f"{n} fields, expected {layout.n_fields}"))
                if first_only:
                    break
    finally:
        stream.close()
    return found


class _RowLines:
    """Maps 0-based data rows to 1-based file lines, given the header and the lines the parser
    dropped."""

    def __init__(self, header_lines, dropped):
        self.header_lines = header_lines
        self.dropped = np.sort(np.asarray(dropped, np.int64))

    def __call__(self, rows):
        rows = np.asarray(rows, np.int64)
        lines = rows + self.header_lines + 1
        # the n-th kept line is the smallest L with L - #dropped(<= L) == n
        for _ in range(len(self.dropped) + 1):
            shifted = rows + self.header_lines + 1 + np.searchsorted(self.dropped, lines,
                                                                     side="right")
            if np.array_equal(shifted, lines):
                break
            lines = shifted
        return lines


def _rows_to_lines(bad, lines_of):
    out = BadRows(bad.count)
    if bad.examples:
        rows, reasons = zip(*bad.examples)
        out.examples = list(zip(lines_of(rows).tolist(), reasons))
    return out


def _raise_bad_line(source, layout, line, reason, hint):
    """Raise a DataError quoting line ``line`` of the source and what is wrong with it."""
    content = source.line_texts([line]).get(line)
    if content is not None:
        n = len(layout.split(content)) if content.strip() else 0
        if n != layout.n_fields:
            reason = f"{n} fields, expected {layout.n_fields} (separator {layout.sep!r})"
    msg = f"{source.label}, line {line}: {reason or 'cannot parse'}: {content!r}"
    raise DataError(msg + (f"; {hint}" if hint else ""))


class _MixedIds:
    """Per id column of a text log read with ``id_type="auto"``: how many ids are integers, and
    the rows (a mask per chunk) and first data rows whose id is not."""

    def __init__(self):
        self.n_int = 0
        self.n_other = 0
        self.masks = []
        self.examples = []  # (data row, id)

    def add(self, other, ids, rows):
        self.masks.append(other)
        n_other = int(other.sum())
        self.n_int += other.size - n_other
        self.n_other += n_other
        room = 3 - len(self.examples)
        if n_other and room > 0:
            where = np.flatnonzero(other)[:room]
            self.examples.extend(zip(rows[where].tolist(), ids[where].tolist()))


def settle_mixed_ids(columns, mixed, lines_of, source, on_bad_lines, bad):
    """Settle the id type of each column of a text log read with ``id_type="auto"`` (in place).

    A column whose ids are all integers becomes int64; one where most ids are not integers
    stays text; a column of integer ids with a few other values (fewer than the integers) is an
    error naming those lines, or, with ``on_bad_lines="skip"``, those rows are dropped and
    counted as bad lines.
    """
    drop = np.zeros(len(columns["user"]), bool)
    for role, m in mixed.items():
        if m.n_other and m.n_other < m.n_int:
            example_lines = lines_of([row for row, _ in m.examples]).tolist()
            if on_bad_lines == "error":
                texts = source.line_texts(example_lines)
                shown = "; ".join(f"line {line}: {texts.get(line, '')!r}"
                                  for line in example_lines)
                raise DataError(
                    f"{source.label}: the {role} ids are integers except on {m.n_other} "
                    f"line{'s' if m.n_other > 1 else ''} ({shown}{'; ...' if m.n_other > 3 else ''}"
                    f"); fix or skip those lines (--skip-bad-lines, on_bad_lines='skip'), or "
                    f"read every id as text (--id-type str, id_type='str')")
            mask = np.concatenate(m.masks)
            drop |= mask
            bad.add(example_lines, [f"{role} id {v!r} is not an integer" for _, v in m.examples])
            bad.count += int(mask.sum()) - len(m.examples)
    if drop.any():
        for role in columns:
            columns[role] = columns[role][~drop]
    for role, m in mixed.items():
        col = columns[role]
        if col.dtype.kind in "OU" and (m.n_other == 0 or m.n_other < m.n_int):
            columns[role] = pd.to_numeric(pd.Series(col)).to_numpy(np.int64)
