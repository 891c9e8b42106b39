"""The data home, where dataset archives live, and a checked, atomic download into it.

The data home is ``$CFPRUNE_DATA`` when set, else ``~/cfprune_data``. Archives are kept as
downloaded (zip files) and read in place; nothing is extracted.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import DataError
from ..io import atomic_write, describe_os_error

ENV_VAR = "CFPRUNE_DATA"
DEFAULT_HOME = "~/cfprune_data"
_CHUNK = 1 << 20
_TIMEOUT = 60


def data_home():
    """The directory holding dataset archives: ``$CFPRUNE_DATA``, else ``~/cfprune_data``.

    Returned as a :class:`~pathlib.Path`; it is not created here (see :func:`download`).
    """
    return Path(os.environ.get(ENV_VAR) or DEFAULT_HOME).expanduser()


def archive_path(filename):
    """Where the archive ``filename`` lives in the data home."""
    return data_home() / filename


def sha256_of(path):
    """Hex sha256 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url, dest, sha256=None):
    """Download ``url`` to ``dest``, verify its sha256, then move it into place atomically.

    The bytes go to a temporary file in ``dest``'s directory (:func:`cfprune.io.atomic_write`),
    are hashed while they arrive, flushed and fsynced, and only a file whose digest equals
    ``sha256`` is renamed to ``dest``. ``sha256=None`` skips the digest check (the caller then
    checks the contents). Progress is shown with a tqdm bar on a terminal.

    Raises
    ------
    DataError
        When the download fails (offline, HTTP error) or the digest differs; the message names
        the URL and the exact path where the file can be put by hand.
    FileWriteError
        When the file cannot be written (disk full, file too large, no permission); no partial
        file is left.
    """
    dest = Path(dest)
    manual = (f"download {url} yourself and put it at {dest} (set ${ENV_VAR} to use another "
              f"directory)")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data directory {dest.parent} "
                        f"({describe_os_error(exc)}); {manual}") from None

    def fetch(out):
        digest = hashlib.sha256()
        try:
            response = urllib.request.urlopen(url, timeout=_TIMEOUT)
        except urllib.error.HTTPError as exc:
            raise DataError(f"cannot download {url}: HTTP {exc.code} {exc.reason}; "
                            f"{manual}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DataError(f"cannot download {url} ({getattr(exc, 'reason', exc)}); "
                            f"{manual}") from None
        with response:
            total = response.headers.get("Content-Length")
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                      desc=dest.name, disable=None) as bar:
                while True:
                    try:
                        block = response.read(_CHUNK)
                    except (OSError, ValueError, http.client.HTTPException) as exc:
                        raise DataError(f"cannot download {url} (the connection failed: "
                                        f"{exc}); {manual}") from None
                    if not block:
                        break
                    out.write(block)  # an OSError here is a write failure: FileWriteError
                    digest.update(block)
                    bar.update(len(block))
        got = digest.hexdigest()
        if sha256 is not None and got != sha256.lower():
            raise DataError(f"the file downloaded from {url} has sha256 {got}, expected "
                            f"{sha256}; it was discarded. Retry, or {manual}")

    atomic_write(dest, fetch)
    return dest
