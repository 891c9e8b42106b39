"""Per-role column values of a parsed chunk, and what is wrong with each bad row.

Shared by the text reader (:mod:`.text`) and the Parquet reader (:mod:`.parquet`): ids become
int64 or text, ratings float32, timestamps int64 (Unix seconds), and a row with a missing or
malformed value gets a one-line reason (``"missing user id"``, ``"rating is not a number"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..errors import DataError

#: How many bad rows a loader's ``skipped_examples`` shows.
MAX_EXAMPLES = 10


@dataclass
class BadRows:
    """Bad rows found so far: a count and the first few ``(line or row, reason)`` examples."""

    count: int = 0
    examples: list = field(default_factory=list)

    def add(self, where, reasons):
        self.count += len(where)
        room = MAX_EXAMPLES - len(self.examples)
        self.examples.extend(zip(where[:room], reasons[:room]))


ID_TYPES = ("auto", "int", "str")


def check_id_type(id_type):
    """A DataError unless ``id_type`` is one of :data:`ID_TYPES`."""
    if id_type not in ID_TYPES:
        raise DataError(f"id_type={id_type!r}; expected one of {ID_TYPES}")


def _ids(col, id_type):
    """``(ids, missing, bad, other)`` for one id column of a chunk.

    ``bad``: rows that are bad lines (a non-integer id with ``id_type="int"``); ``other``: rows
    whose id is not an integer, with ``id_type="auto"`` (settled once the whole file is read,
    by :func:`cfprune.datasets.text.settle_mixed_ids`). ``id_type="typed"`` (Parquet) keeps
    the column's own type.
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


def check_columns(columns, is_blank, id_type):
    """Check the per-role columns of one chunk.

    columns : role -> pandas Series (``user`` and ``item`` always, ``rating`` and
        ``timestamp`` when present), one entry per row
    is_blank : bool [n], rows with every field missing (neither kept nor bad)
    id_type : ``"auto"``, ``"int"``, ``"str"`` or ``"typed"`` (see :func:`_ids`)

    Returns ``(values, bad, reasons, other)``: role -> array [n] (ids int64, float64 or
    object; rating float32; timestamp int64), the bad-row mask, a reason per row (``""`` when
    good) and, per id role, the rows whose id is not an integer (``id_type="auto"``).
    """
    n = len(is_blank)
    reasons = np.full(n, "", object)
    bad = np.zeros(n, bool)
    values = {}
    other = {}

    def flag(mask, reason):
        new = mask & ~bad & ~is_blank
        reasons[new] = reason
        bad[:] |= new

    for role in ("user", "item"):
        ids, missing, not_int, other[role] = _ids(columns[role], id_type)
        flag(missing, f"missing {role} id")
        flag(not_int, f"{role} id is not an integer")
        values[role] = ids
    if "rating" in columns:
        v, not_num = _numeric(columns["rating"])
        flag(not_num, "rating is not a number")
        flag(np.isnan(v), "missing rating")
        flag(np.isinf(v), "rating is not finite")
        values["rating"] = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    if "timestamp" in columns:
        v, not_num = _numeric(columns["timestamp"])
        flag(not_num, "timestamp is not a number")
        flag(np.isnan(v), "missing timestamp")
        values["timestamp"] = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64)
    return values, bad, reasons, other


def join(parts, role):
    """One array per role from the chunks' arrays: text ids when any chunk's are text."""
    if not parts:
        dtype = np.float32 if role == "rating" else np.int64
        return np.zeros(0, dtype)
    if role in ("user", "item") and any(p.dtype == object for p in parts):
        parts = [p if p.dtype == object else p.astype(str).astype(object) for p in parts]
        return np.concatenate(parts).astype(str)
    if role in ("user", "item") and any(p.dtype.kind == "f" for p in parts):
        parts = [p.astype(np.float64) for p in parts]
    return np.concatenate(parts)
