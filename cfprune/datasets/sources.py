"""Where the bytes of a log come from, and the byte stream the parsers read.

A :class:`Source` is a plain file (``.gz``/``.bz2``/``.xz`` decompressed by suffix) or a zip
member. :class:`ParserInput` is the stream pandas parses: it rewrites a multi-character separator
to one control character, counts line ends, shows progress on a terminal, and turns the errors
of a truncated or corrupt source into a one-line :class:`~cfprune.errors.DataError` naming it.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import DataError

#: The encoding every text log is read with: UTF-8, a leading byte-order mark dropped.
ENCODING = "utf-8-sig"
#: ASCII unit separator: stands in for a multi-character separator.
REPLACEMENT = b"\x1f"
#: Bytes read from the source at a time.
READ_BYTES = 1 << 20
_DECOMPRESSORS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_ZIP_SKIP = re.compile(r"(^|/)(readme|license|licence|provenance|movies|users|tags|links|"
                       r"genome|u\.item|u\.user|u\.genre|u\.occupation|u\.info)", re.I)


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
            zf = open_zip(path)
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
            return _ClosingMember(raw, zf), info.file_size
        decompress = _DECOMPRESSORS.get(path.suffix.lower())
        try:
            if decompress is not None:
                return decompress(path, "rb"), None
            return open(path, "rb"), path.stat().st_size
        except FileNotFoundError:
            raise DataError(f"{path} does not exist") from None
        except OSError as exc:
            raise DataError(f"cannot open {path}: {exc}") from exc

    def text_lines(self, sep=None):
        """The source as a text stream (universal newlines kept for :mod:`csv`), decoded with
        :data:`ENCODING` (bad bytes replaced), a multi-character ``sep`` rewritten to
        ``\\x1f``. Close it when done."""
        raw, _ = self.open()
        return io.TextIOWrapper(io.BufferedReader(ParserInput(raw, self.label, sep=sep)),
                                encoding=ENCODING, errors="replace", newline="")

    def line_texts(self, lines):
        """{line: text} of the 1-based physical ``lines`` (line ends removed), in one pass."""
        wanted, found = set(lines), {}
        if not wanted:
            return found
        stream = self.text_lines()
        try:
            for j, text in enumerate(stream, start=1):
                if j in wanted:
                    found[j] = text.rstrip("\r\n")
                    if len(found) == len(wanted):
                        break
        finally:
            stream.close()
        return found


def open_zip(path):
    """A :class:`zipfile.ZipFile`; a DataError naming ``path`` when it is missing or unreadable."""
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"{path} is not a readable zip archive (truncated or corrupt: {exc}); "
                        f"download it again") from exc


def pick_member(path):
    """The one ratings-like file of a zip archive; a DataError listing them when unclear."""
    zf = open_zip(path)
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


def is_parquet(path):
    """Whether ``path`` is a Parquet file: by suffix, else by its ``PAR1`` magic bytes."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError:
        return False


class _ClosingMember(io.RawIOBase):
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


class ParserInput(io.RawIOBase):
    """The byte stream pandas parses.

    Rewrites a multi-character separator ``sep`` to ``\\x1f`` (holding back a trailing partial
    separator until the next read), counts the lines passed on (:attr:`n_lines`), advances a
    progress bar (``progress=True``: shown on a terminal), and turns the errors of a truncated
    or corrupt source (zip CRC mismatch, early end of a compressed stream) into a
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
        self._newlines = 0
        self._last = b"\n"
        self._bar = tqdm(total=total, unit="B", unit_scale=True, desc=desc,
                         disable=None if progress else True, leave=False)

    @property
    def n_lines(self):
        """Lines passed on so far (a last line without a line end counts)."""
        return self._newlines + (self._last != b"\n")

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
            chunk = self._raw.read(READ_BYTES)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise DataError(f"{self._label} is truncated or corrupt ({exc}); replace the "
                            f"file with a good copy") from exc
        self._bar.update(len(chunk))
        self._pos = 0
        if not chunk:
            self._eof = True
            self._out, self._carry = self._carry, b""
        elif self._sep is None:
            self._out = chunk
        else:
            if REPLACEMENT in chunk:
                raise DataError(f"{self._label} contains the control character \\x1f, which "
                                f"cfprune uses to parse the separator {self._sep.decode()!r}; "
                                f"remove it or convert the file to a single-character "
                                f"separator")
            data = (self._carry + chunk).replace(self._sep, REPLACEMENT)
            hold = 0
            for k in range(len(self._sep) - 1, 0, -1):
                if data.endswith(self._sep[:k]):
                    hold = k
                    break
            self._out, self._carry = (data[:-hold], data[-hold:]) if hold else (data, b"")
        if self._out:
            self._newlines += self._out.count(b"\n")
            self._last = self._out[-1:]

    def close(self):
        if not self.closed:
            self._bar.close()
            self._raw.close()
        super().close()
