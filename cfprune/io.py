"""The model file: one versioned ``.npz``, read without pickle, written atomically.

Layout: arrays under namespaced keys (``users/data``, ``items/codes``, ``items/inner/codes``,
``rerank/...``, ``ids/users``, ``ids/items``) and ``meta``, UTF-8 JSON in a uint8 array::

    {"format": "cfprune-model", "version": 1, "spec": "...", "info": {...},
     "tables": {side: {"storage": ..., "shape": [n, d], "params": {...},
                       "dtypes": {name: dtype}}},
     "sha256": {key: hex digest of the array's bytes}}

Version 2 adds the compression steps' fitted state (what ``model.add_items`` encodes new items
with): ``meta["fitted"]`` lists one record per step that changed the item table,
``{"method", "spec", "params", "dtypes": {name: dtype}}``, and the arrays of record ``i`` are
stored under ``fitted/<i>/<name>``. A version-1 file (no fitted state) still loads: its model's
``fitted`` is None.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile

import numpy as np

from .errors import ModelFileError

FORMAT = "cfprune-model"
VERSION = 2


def array_digest(a):
    """sha256 hex digest of an array's dtype, shape and bytes."""
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def atomic_write(path, write):
    """Call ``write(file_object)`` on a temporary file beside ``path``, flush and fsync it, then
    rename it over ``path``. On any failure the temporary file is removed and ``path`` is left as
    it was."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def jsonable(obj):
    """``obj`` with numpy scalars and arrays turned into JSON types and non-finite floats into
    None (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


def write_json(path, obj):
    """Write ``obj`` (see :func:`jsonable`) to ``path`` atomically as indented UTF-8 JSON."""
    text = (json.dumps(jsonable(obj), indent=2, ensure_ascii=False) + "\n").encode()
    atomic_write(path, lambda f: f.write(text))


def save_arrays(path, tables, *, ids=None, spec="", info=None, fitted=None):
    """Write tables (``{side: Table}``), optional id maps (``{"users": arr, "items": arr}``) and
    the fitted state ``fitted``: a list of ``(record dict, {name: array})``, or None."""
    arrays = {}
    meta_tables = {}
    for side, table in tables.items():
        table_arrays = table.arrays()
        meta_tables[side] = {
            "storage": table.storage, "shape": [int(table.n_rows), int(table.dim)],
            "params": table.params(),
            "dtypes": {k: v.dtype.str for k, v in table_arrays.items()},
        }
        arrays.update({f"{side}/{k}": np.ascontiguousarray(v) for k, v in table_arrays.items()})
    for side, a in (ids or {}).items():
        if a is not None:
            a = np.asarray(a)
            if a.dtype.kind not in "iuU":
                a = a.astype(str)
            arrays[f"ids/{side}"] = a
    meta_fitted = None
    if fitted is not None:
        meta_fitted = []
        for i, (record, step_arrays) in enumerate(fitted):
            meta_fitted.append({**jsonable(record),
                                "dtypes": {k: v.dtype.str for k, v in step_arrays.items()}})
            arrays.update({f"fitted/{i}/{k}": np.ascontiguousarray(v)
                           for k, v in step_arrays.items()})
    meta = {"format": FORMAT, "version": VERSION, "spec": spec, "info": jsonable(info or {}),
            "tables": meta_tables, "sha256": {k: array_digest(v) for k, v in arrays.items()}}
    if meta_fitted is not None:
        meta["fitted"] = meta_fitted
    arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: _write_npz(f, arrays))


def _write_npz(f, arrays):
    # np.savez stamps zip entries with the current time; write them with a fixed date so that
    # the same model gives a byte-identical file.
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as z:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with z.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arrays[key], allow_pickle=False)


def load_arrays(path, *, with_fitted=False):
    """Read and verify a model file. Returns (meta dict, {side: {name: array}}, ids dict), and
    with ``with_fitted`` a fourth item: the fitted state as a list of ``(record, {name: array})``
    (None for a version-1 file or a file written without it)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"model file {path} does not exist")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise ModelFileError(f"{path} is not a readable cfprune model file (.npz): it has no "
                                 f"zip header")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as e:
        if "allow_pickle" in str(e) or "pickled" in str(e):
            raise ModelFileError(f"{path} holds pickled object arrays, which cfprune never loads: "
                                 f"not a cfprune model file") from None
        raise ModelFileError(f"{path} is not a readable cfprune model file (.npz): {e}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ModelFileError(f"{path} is not a readable cfprune model file (.npz): {e}") from None
    if "meta" not in arrays:
        raise ModelFileError(f"{path} has no 'meta' entry: not a cfprune model file")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: the 'meta' entry is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: format is {meta.get('format') if isinstance(meta, dict) else meta!r}, "
                             f"expected {FORMAT!r}")
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ModelFileError(f"{path} was written by format version {version}; this cfprune reads "
                             f"versions up to {VERSION}: upgrade cfprune to read it")
    digests = meta.get("sha256", {})
    missing = sorted(set(digests) - set(arrays))
    extra = sorted(set(arrays) - set(digests))
    if missing or extra:
        raise ModelFileError(f"{path}: arrays missing {missing} or unlisted {extra}: the file was "
                             f"altered after it was written")
    for key, digest in digests.items():
        if array_digest(arrays[key]) != digest:
            raise ModelFileError(f"{path}: array {key!r} fails its sha256 check: the file is "
                                 f"corrupt or was tampered with")
    sides = {}
    for side, t in meta.get("tables", {}).items():
        side_arrays = {k[len(side) + 1:]: v for k, v in arrays.items() if k.startswith(side + "/")}
        for name, dtype in t.get("dtypes", {}).items():
            if name not in side_arrays or side_arrays[name].dtype.str != dtype:
                raise ModelFileError(f"{path}: {side}/{name} should have dtype {dtype}")
        sides[side] = side_arrays
    ids = {k[len("ids/"):]: v for k, v in arrays.items() if k.startswith("ids/")}
    if not with_fitted:
        return meta, sides, ids
    return meta, sides, ids, _fitted(path, meta, arrays)


def _fitted(path, meta, arrays):
    """The fitted-state records of a version-2 file with their arrays (None when absent)."""
    if meta.get("fitted") is None:
        return None
    out = []
    for i, record in enumerate(meta["fitted"]):
        step_arrays = {}
        for name, dtype in record.get("dtypes", {}).items():
            a = arrays.get(f"fitted/{i}/{name}")
            if a is None or a.dtype.str != dtype:
                raise ModelFileError(f"{path}: fitted/{i}/{name} should have dtype {dtype}")
            step_arrays[name] = a
        out.append(({k: v for k, v in record.items() if k != "dtypes"}, step_arrays))
    return out
