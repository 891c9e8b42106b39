"""Interaction logs from a user's own files: CSV, TSV, any separator, Parquet, or a zip member.

:func:`load_interactions` reads a log of ``user, item[, rating[, timestamp]]`` events into an
:class:`~cfprune.interactions.Interactions`. Whatever is not given (separator, header, which
column holds what) is guessed from the first lines (:mod:`.sniff`), and the guess is reported in
the returned object's ``load_info`` dict and through :mod:`logging`. The bytes come from
:mod:`.sources`, text is parsed by :mod:`.text`, Parquet by :mod:`.parquet`.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

from ..errors import DataError
from ..interactions import Interactions
from .kcore import select_feedback
from .parquet import read_parquet
from .sniff import WHITESPACE, sniff_layout
from .sources import Source, is_parquet, pick_member
from .text import read_log
from .values import check_id_type

logger = logging.getLogger(__name__)


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
        member = member if member is not None else pick_member(path)
        source = Source(path, member)
    else:
        source = Source(path)
    if source.member is None and is_parquet(path):
        values, info = read_parquet(path, columns, chunksize, on_bad_lines, id_type)
        info.update(path=str(path), member=None, sep=None, header=None)
    else:
        layout, guessed = sniff_layout(source, sep, columns, header)
        values, stats = read_log(source, layout, on_bad_lines=on_bad_lines, chunksize=chunksize,
                                 id_type=id_type,
                                 desc=path.name)
        info = {"path": str(path), "member": source.member, "format": "text",
                "sep": " " if layout.sep == WHITESPACE else layout.sep,
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
    out = select_feedback(log, implicit, threshold, min_user_interactions, min_item_interactions)
    out.load_info = info
    return out
