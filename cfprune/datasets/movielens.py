"""The MovieLens archives of GroupLens: a registry and a loader that reads them in place.

``load_movielens(name)`` finds ``<data home>/<archive>`` (downloading it when allowed), parses
the ratings file straight from the zip with pandas' C parser and checks it by its contents:
the zip CRC of the ratings member (checked as the member is read to its end) and the official
numbers of ratings, users and items. A local archive is not checked by its container's sha256,
so a repacked zip with the same contents is accepted; a downloaded one is (see ``home.py``).

Data licence: GroupLens, research use, non-commercial, no redistribution; cite F. Maxwell Harper
and Joseph A. Konstan. 2015. The MovieLens Datasets: History and Context. ACM TiiS 5, 4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..errors import DataError
from ..interactions import Interactions
from . import home
from .files import load_interactions
from .kcore import select_feedback
from .sniff import Layout
from .sources import Source
from .text import read_log

#: The threshold ``implicit=True`` uses: ratings of 4 stars and up are positives.
DEFAULT_THRESHOLD = 4.0

_BASE_URL = "https://files.grouplens.org/datasets/movielens/"
_FIELDS = ("user", "item", "rating", "timestamp")

#: How the derived ML-1M archive without timestamps is read (see ``datasets/README.md``).
ML1M_NO_TIMESTAMPS = {
    "archive": "ml-1m-no-timestamps.zip",
    "member": "ml-1m-no-timestamps/ratings.dat",
    "sep": "::",
    "columns": "user,item,rating",
}


@dataclass(frozen=True)
class MovieLensSpec:
    """One MovieLens archive.

    archive : file name in the data home; url : where GroupLens serves it
    member : path of the ratings file inside the zip
    parser : ``"tab"`` (``user<TAB>item<TAB>rating<TAB>timestamp``), ``"colons"``
        (``UserID::MovieID::Rating::Timestamp``) or ``"csv"`` (``userId,movieId,rating,timestamp``
        with a header line)
    sha256 : digest of the archive GroupLens serves (None when unknown: a download is then
        checked only by its contents); size : its length in bytes
    n_ratings, n_users, n_items : the official counts, checked on every load
    """

    name: str
    archive: str
    url: str
    member: str
    parser: str
    sha256: str | None
    size: int
    n_ratings: int
    n_users: int
    n_items: int

    def layout(self):
        """The :class:`~cfprune.datasets.sniff.Layout` of the ratings member."""
        sep, header = {"tab": ("\t", False), "colons": ("::", False), "csv": (",", True)}[
            self.parser]
        return Layout(sep, header, 4, {f: j for j, f in enumerate(_FIELDS)}, list(_FIELDS))


def _spec(name, member, parser, sha256, size, n_ratings, n_users, n_items):
    return MovieLensSpec(name, f"{name}.zip", f"{_BASE_URL}{name}.zip", member, parser, sha256,
                         size, n_ratings, n_users, n_items)


# sha256 of ml-100k, ml-1m, ml-20m, ml-25m and ml-latest-small: tensorflow_datasets
# url_checksums/movielens.txt; ml-10m: a published record giving this sha256 together with the
# md5 GroupLens serves in ml-10m.zip.md5 (ce571fd55effeba0271552578f2648bd) and the size.
DATASETS = {spec.name: spec for spec in (
    _spec("ml-100k", "ml-100k/u.data", "tab",
          "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", 4_924_029,
          100_000, 943, 1_682),
    _spec("ml-1m", "ml-1m/ratings.dat", "colons",
          "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", 5_917_549,
          1_000_209, 6_040, 3_706),
    _spec("ml-10m", "ml-10M100K/ratings.dat", "colons",
          "813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862", 65_566_137,
          10_000_054, 69_878, 10_677),
    _spec("ml-20m", "ml-20m/ratings.csv", "csv",
          "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3", 198_702_078,
          20_000_263, 138_493, 26_744),
    _spec("ml-25m", "ml-25m/ratings.csv", "csv",
          "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa", 261_978_986,
          25_000_095, 162_541, 59_047),
    _spec("ml-latest-small", "ml-latest-small/ratings.csv", "csv",
          "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436", 978_202,
          100_836, 610, 9_724),
)}


class DatasetRow(NamedTuple):
    """One line of :func:`list_datasets`; fields are also readable by name (``row["path"]``)."""

    name: str
    path: str
    present: bool
    n_ratings: int

    def __getitem__(self, key):
        if isinstance(key, str):
            return getattr(self, key)
        return tuple.__getitem__(self, key)


def list_datasets():
    """The registered archives: name, path in the data home, whether it is there, ratings."""
    rows = []
    for spec in DATASETS.values():
        path = home.archive_path(spec.archive)
        rows.append(DatasetRow(spec.name, str(path), path.is_file(), spec.n_ratings))
    return rows


def get_spec(name):
    """The :class:`MovieLensSpec` of ``name``; a DataError lists the known names otherwise."""
    if name in DATASETS:
        return DATASETS[name]
    if name == "ml-1m-no-timestamps":
        raise DataError("ml-1m-no-timestamps is a derived archive, not a MovieLens release: read "
                        "it with cfprune.datasets.load_ml1m_no_timestamps()")
    raise DataError(f"unknown dataset {name!r}; the MovieLens datasets are "
                    f"{', '.join(DATASETS)}")


def ensure_archive(spec, download=True):
    """The path of ``spec``'s archive in the data home, downloading it when absent."""
    path = home.archive_path(spec.archive)
    if path.is_file():
        return path
    if not download:
        raise DataError(f"{spec.archive} is not in the data home {path.parent}: download "
                        f"{spec.url} and put it at {path} (or allow download=True; set "
                        f"${home.ENV_VAR} to use another directory)")
    return home.download(spec.url, path, spec.sha256)


def load_movielens(name, *, implicit=False, threshold=None, min_user_interactions=0,
                   min_item_interactions=0, download=True):
    """Load a MovieLens dataset as :class:`~cfprune.interactions.Interactions`.

    Parameters
    ----------
    name : str
        One of ``DATASETS``: ml-100k, ml-1m, ml-10m, ml-20m, ml-25m, ml-latest-small.
    implicit : bool
        False (default) keeps every rating as an explicit value: the matrix holds the ratings
        and ``timestamps`` the times. True binarises: ratings ``>= threshold`` become 1.0 and
        the others are dropped.
    threshold : float, optional
        The implicit-feedback threshold; giving it implies ``implicit=True``. Default 4.0 when
        ``implicit=True``.
    min_user_interactions, min_item_interactions : int
        Drop users and items with fewer interactions, repeatedly (a k-core), after the
        threshold. Explicit ratings stay ratings.
    download : bool
        Download the archive from GroupLens when it is not in the data home (sha256 checked).

    Raises
    ------
    DataError
        Archive missing and not downloadable (the message names the file, the URL and where to
        put it); truncated or corrupt archive; a malformed line (file, line number, content);
        counts different from the official ones.
    """
    spec = get_spec(name)
    path = ensure_archive(spec, download)
    hint = (f"{path.name} is not the official {spec.name} archive or is damaged; get it from "
            f"{spec.url}")
    if spec.name == "ml-1m":
        hint += (". The official ratings.dat has 4 fields, UserID::MovieID::Rating::Timestamp; "
                 f"the derived {ML1M_NO_TIMESTAMPS['archive']} (3 fields) is read with "
                 f"load_ml1m_no_timestamps()")
    source = Source(path, spec.member)
    values, _ = read_log(source, spec.layout(), on_bad_lines="error", id_type="int",
                         desc=spec.name, hint=hint)
    log = Interactions.from_log(values["user"], values["item"], values["rating"],
                                values["timestamp"], name=spec.name)
    found = (len(values["user"]), log.nnz, log.n_users, log.n_items)
    expected = (spec.n_ratings, spec.n_ratings, spec.n_users, spec.n_items)
    if found != expected:
        raise DataError(f"{source.label} holds {found[0]:,} ratings ({found[1]:,} distinct "
                        f"user-item pairs) of {found[2]:,} users on {found[3]:,} items; the "
                        f"official {spec.name} has {spec.n_ratings:,} ratings of "
                        f"{spec.n_users:,} users on {spec.n_items:,} items. {hint}")
    if threshold is None and implicit:
        threshold = DEFAULT_THRESHOLD
    return select_feedback(log, implicit, threshold, min_user_interactions, min_item_interactions)


def load_ml1m_no_timestamps(*, implicit=False, threshold=None, min_user_interactions=0,
                            min_item_interactions=0):
    """MovieLens 1M without timestamps, from ``ml-1m-no-timestamps.zip`` in the data home.

    A derived archive, not the official ``ml-1m.zip``: 1,000,209 ratings of 6,040 users on
    3,706 movies, fine for random and strong-generalisation splits, not for temporal ones.
    See ``datasets/README.md``.
    """
    path = home.data_home() / ML1M_NO_TIMESTAMPS["archive"]
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
