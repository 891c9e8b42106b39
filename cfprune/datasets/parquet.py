"""Reading an interaction log from a Parquet file, column types from its schema.

Ids keep their Parquet type (integers stay int64, exactly, nulls and all; strings stay text,
``"007"`` as written), ratings are any numeric column, timestamps a timestamp, date or numeric
column. A column of another type is refused in one line naming it; a row with a missing or
malformed value is a bad row, reported or skipped as in a text log. Needs pyarrow
(``pip install cfprune[parquet]``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError, MissingDependencyError
from .sniff import guess_roles, parse_columns, resolve_columns
from .values import BadRows, check_columns, join


def read_parquet(path, columns, chunksize, on_bad_lines, id_type="auto"):
    """Per-role arrays of the Parquet file ``path`` and what was read.

    Returns ``(values, info)`` as :func:`~cfprune.datasets.text.read_log` does (``info`` adds
    ``format``, ``columns`` and ``guessed``); bad rows are numbered from 1 in file order.
    ``id_type="auto"`` keeps each id column's own type; ``"int"`` and ``"str"`` convert.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError(f"reading {path} needs pyarrow: pip install "
                                     f"cfprune[parquet]") from None
    try:
        pfile = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid / OSError family
        raise DataError(f"{path} is not a readable Parquet file ({exc})") from exc
    schema = pfile.schema_arrow
    names = list(schema.names)
    spec = parse_columns(columns)
    guessed = []
    if spec is None:
        positions = guess_roles(names, True, len(names), str(path))
        guessed.append("columns")
    else:
        positions = resolve_columns(spec, names, str(path))
    role_of = {names[j]: role for role, j in positions.items()}
    for name, role in role_of.items():
        _check_type(path, name, role, schema.field(name).type, pa)

    def nullable_ints(arrow_type):  # exact int64 ids with nulls, not float64
        return pd.Int64Dtype() if pa.types.is_integer(arrow_type) else None

    parts = {role: [] for role in positions}
    bad = BadRows()
    n_rows = 0
    for batch in pfile.iter_batches(batch_size=chunksize, columns=list(role_of)):
        frame = batch.to_pandas(types_mapper=nullable_ints, date_as_object=False)
        chunk = {role_of[name]: frame[name] for name in frame.columns}
        is_blank = ~frame.notna().to_numpy().any(axis=1)
        values, bad_mask, reasons, _ = check_columns(chunk, is_blank,
                                                     "typed" if id_type == "auto" else id_type)
        bad_mask |= is_blank
        reasons[is_blank] = "every field is missing"
        if bad_mask.any():
            where = np.flatnonzero(bad_mask)
            if on_bad_lines == "error":
                j = int(where[0])
                raise DataError(f"{path}, row {n_rows + j + 1}: {reasons[j]}: "
                                f"{frame.iloc[j].to_dict()}")
            bad.add((where + n_rows + 1).tolist(), [reasons[j] for j in where])
        n_rows += len(frame)
        for role, v in values.items():
            parts[role].append(v[~bad_mask])
    out = {role: join(parts[role], role) for role in positions}
    if len(out["user"]) == 0:
        raise DataError(f"{path} holds no valid interactions ({bad.count} bad rows skipped)")
    info = {"format": "parquet", "columns": {r: names[j] for r, j in positions.items()},
            "guessed": guessed, "n_rows": len(out["user"]), "skipped_lines": bad.count,
            "skipped_examples": bad.examples}
    return out, info


def _check_type(path, name, role, arrow_type, pa):
    """A DataError naming the column when its Parquet type cannot hold ``role``."""
    t = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    text = pa.types.is_string(t) or pa.types.is_large_string(t)
    numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    if role in ("user", "item"):
        ok = text or pa.types.is_integer(t) or pa.types.is_floating(t)
        want = "integers or strings"
    elif role == "rating":
        ok = numeric or text
        want = "numbers"
    else:
        ok = numeric or text or pa.types.is_timestamp(t) or pa.types.is_date(t)
        want = "times or numbers"
    if not ok:
        raise DataError(f"{path}: column {name!r} ({role}) has Parquet type {arrow_type}; "
                        f"expected {want}")
