"""Files on disk: the model file, atomic writes, and reads that fail with one line.

Every file cfprune writes goes through :func:`atomic_write` (a temporary file renamed into
place, with the mode an ordinary ``open`` gives; a failed write is a one-line
:class:`~cfprune.errors.FileWriteError` and leaves the earlier file as it was). Every ``.npz``,
``.npy`` and JSON file it reads goes through :func:`read_npz`, :func:`read_npy`,
:func:`read_sparse` or :func:`read_json`: a missing, truncated or corrupt file is one line
naming it.

The model file is one versioned ``.npz``, read without pickle, written atomically.

Layout: arrays under namespaced keys (``users/data``, ``items/codes``, ``items/inner/codes``,
``rerank/...``, ``ids/users``, ``ids/items``) and ``meta``, UTF-8 JSON in a uint8 array::

    {"format": "cfprune-model", "version": 1, "spec": "...", "info": {...},
     "tables": {side: {"storage": ..., "shape": [n, d], "params": {...},
                       "dtypes": {name: dtype}}},
     "sha256": {key: hex digest of the array's bytes}}

Version 2 adds the compression steps' fitted state (what ``cfprune.add_items`` encodes new items
with): ``meta["fitted"]`` lists one record per step that changed the item table,
``{"method", "spec", "params", "dtypes": {name: dtype}}``, and the arrays of record ``i`` are
stored under ``fitted/<i>/<name>``. A version-1 file (no fitted state) still loads: its model's
``fitted`` is None.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import secrets
import stat
import struct
import zipfile
import zlib

import numpy as np

from .arrays import freeze
from .errors import DataError, FileWriteError, ModelFileError

FORMAT = "cfprune-model"
VERSION = 2


def array_digest(a):
    """sha256 hex digest of an array's dtype, shape and bytes."""
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


# writing ------------------------------------------------------------------------------------
_WRITE_HINTS = {
    errno.EFBIG: "the file size limit (ulimit -f) or the file system's largest file size was "
                 "reached",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EACCES: "no permission to write there",
    errno.EPERM: "no permission to write there",
    errno.EROFS: "the file system is read-only",
}


def describe_os_error(exc):
    """One line naming an OSError's errno and its meaning, e.g. ``"File too large (EFBIG)"``."""
    code = getattr(exc, "errno", None)
    if not code:
        return one_line(exc)
    return f"{os.strerror(code)} ({errno.errorcode.get(code, f'errno {code}')})"


def one_line(exc, limit=300):
    """An exception's text on one line, at most ``limit`` characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def write_error(path, exc, *, existed):
    """The FileWriteError for an OSError ``exc`` met while writing ``path``; ``existed`` says
    whether an earlier ``path`` was there (it is unchanged: writes are atomic)."""
    hint = _WRITE_HINTS.get(getattr(exc, "errno", None))
    state = (f"the earlier {os.path.basename(path)} is unchanged" if existed else
             "no partial file was left")
    error = FileWriteError(f"cannot write {path}: {describe_os_error(exc)}"
                           f"{': ' + hint if hint else ''}; {state}")
    error.errno, error.filename = getattr(exc, "errno", None), path
    return error


def ensure_dir(directory):
    """Create ``directory`` (and its parents) if missing; FileWriteError when it cannot be."""
    directory = os.fspath(directory)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        hint = _WRITE_HINTS.get(e.errno)
        error = FileWriteError(f"cannot create the directory {directory}: "
                               f"{describe_os_error(e)}{': ' + hint if hint else ''}")
        error.errno, error.filename = e.errno, directory
        raise error from None
    return directory


def _create_temp(directory, name, mode):
    """``(fd, path)`` of a new file in ``directory`` opened for writing with ``mode`` (the
    kernel applies the umask, as for any ``open``)."""
    for _ in range(100):
        tmp = os.path.join(directory, f".tmp-{secrets.token_hex(4)}-{name[:100]}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                           mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", directory)


def atomic_write(path, write):
    """Call ``write(file_object)`` on a temporary file beside ``path``, flush and fsync it, then
    rename it over ``path``.

    The file gets the permissions an ordinary ``open(path, "w")`` gives: those of the earlier
    ``path`` when it exists, else ``0o666`` less the umask. On any failure the temporary file
    is removed and ``path`` is left as it was; an OSError (disk full, file too large, no
    permission) becomes a one-line :class:`~cfprune.errors.FileWriteError` naming ``path`` and
    the errno.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    existed = os.path.exists(path)
    tmp = None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode) if existed else 0o666
        fd, tmp = _create_temp(directory, os.path.basename(path), mode)
        with os.fdopen(fd, "wb") as f:
            if existed:
                os.fchmod(f.fileno(), mode)  # the umask must not narrow an existing file's mode
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except FileWriteError:
        raise
    except OSError as e:
        raise write_error(path, e, existed=existed) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    # make the rename durable; a file system that cannot fsync a directory keeps the new file
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# reading ------------------------------------------------------------------------------------
# what a truncated or corrupt .npz / .npy raises from zipfile, zlib and numpy's format reader
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError,
                IndexError, struct.error)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_NPY_MAGIC = b"\x93NUMPY"


def check_readable(path, what, error, magic=None, kind=None):
    """Raise ``error`` (one line) unless ``path`` is an existing, readable file whose first
    bytes are one of ``magic`` (``kind`` names the expected format in the message)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise error(f"{what} {path} does not exist")
    if os.path.isdir(path):
        raise error(f"{what} {path} is a directory, not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        raise error(f"cannot read {what} {path}: {describe_os_error(e)}") from None
    if magic is not None and not head.startswith(magic):
        found = "it is empty" if not head else "it does not start with the " + \
            ("zip header" if magic == _ZIP_MAGIC else "numpy .npy header")
        raise error(f"{path} is not a readable {what} ({kind}): {found}")
    return path


def _read_failure(path, what, kind, error, exc):
    """The one-line ``error`` for an exception met while reading ``path``."""
    text = str(exc)
    if "allow_pickle" in text or "pickled" in text:
        return error(f"{path} holds pickled object arrays, which cfprune never loads: not a "
                     f"readable {what}")
    if isinstance(exc, zipfile.BadZipFile) and "not a zip file" in text:
        detail = "its zip directory is missing: the file is truncated"
    elif isinstance(exc, OSError) and exc.errno:
        detail = describe_os_error(exc)
    else:
        detail = f"truncated or corrupt: {one_line(exc)}"
    return error(f"{path} is not a readable {what} ({kind}): {detail}")


def read_npz(path, what, error=ModelFileError):
    """``{name: array}`` of every member of the ``.npz`` file ``path``, read in full without
    pickle; a missing, non-zip, truncated or corrupt file raises ``error`` (one line naming
    ``path`` and ``what`` it should be)."""
    path = check_readable(path, what, error, _ZIP_MAGIC, ".npz")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except _READ_ERRORS as e:
        raise _read_failure(path, what, ".npz", error, e) from None


def read_npy(path, what, error=DataError):
    """The array in the ``.npy`` file ``path``, read without pickle (see :func:`read_npz`)."""
    path = check_readable(path, what, error, (_NPY_MAGIC,), ".npy")
    try:
        return np.load(path, allow_pickle=False)
    except _READ_ERRORS as e:
        raise _read_failure(path, what, ".npy", error, e) from None


def read_sparse(path, what, error=DataError):
    """CSR matrix from a ``scipy.sparse.save_npz`` file (see :func:`read_npz`)."""
    import scipy.sparse as sp
    path = check_readable(path, what, error, _ZIP_MAGIC, "scipy.sparse .npz, save_npz")
    try:
        return sp.load_npz(path).tocsr()
    except _READ_ERRORS as e:
        raise _read_failure(path, what, "scipy.sparse .npz, save_npz", error, e) from None


def read_json(path, what, error=DataError):
    """The parsed JSON document in ``path`` (UTF-8); a missing, unreadable or malformed file
    raises ``error`` (one line)."""
    path = check_readable(path, what, error)
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise error(f"cannot read {what} {path}: {describe_os_error(e)}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise error(f"{path} is not a readable {what} (JSON): truncated or corrupt: "
                    f"{one_line(e)}") from None


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
    arrays = read_npz(path, "cfprune model file", ModelFileError)
    for a in arrays.values():
        # fresh arrays only this reader holds: read-only now, so the tables built from them
        # hold them as they are, without a copy (see cfprune.arrays.hold)
        freeze(a)
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
