"""Test helpers for the data layer: synthetic logs, MovieLens-shaped archives and a plain-Python
reference of the users x items matrix, written independently of cfprune's loaders."""

import zipfile

import numpy as np
import pytest

from cfprune.datasets.home import data_home

#: Where the real archives are found: the data home the CLI reads (``$CFPRUNE_DATA``, else
#: ``~/cfprune_data``; see :func:`cfprune.datasets.home.data_home`), as the test run started,
#: so that a test's own ``monkeypatch.setenv("CFPRUNE_DATA", ...)`` never moves it.
DATA_HOME = data_home()


def real_archive(name):
    """Path of the real archive ``name`` (e.g. ``"ml-100k.zip"``) in :data:`DATA_HOME`; skips
    the calling test, naming the directory looked in, when it is not there. Every real-data
    test finds its data through this one function."""
    path = DATA_HOME / name
    if not path.is_file():
        pytest.skip(f"{name} is not in the data home {DATA_HOME} ($CFPRUNE_DATA, else "
                    f"~/cfprune_data: where `cfprune datasets` looks)")
    return path


def synthetic_events(n_users=7, n_items=9, n_events=40, seed=0, string_ids=False):
    """A list of unique (user, item, rating, timestamp) events with raw ids."""
    rng = np.random.default_rng(seed)
    pairs = set()
    while len(pairs) < n_events:
        pairs.add((int(rng.integers(1, n_users + 1)) * 10, int(rng.integers(1, n_items + 1)) * 3))
    events = []
    for u, i in sorted(pairs, key=lambda p: rng.random()):
        rating = float(rng.integers(1, 11)) / 2
        ts = int(rng.integers(900_000_000, 1_000_000_000))
        if string_ids:
            u, i = f"u{u}", f"item-{i}"
        events.append((u, i, rating, ts))
    return events


def reference_matrix(events):
    """Dense float32 matrix (rows: sorted unique users, columns: sorted unique items) of the
    summed ratings, with the sorted id lists and a {(user, item): latest timestamp} dict."""
    users = sorted({e[0] for e in events})
    items = sorted({e[1] for e in events})
    urow = {u: j for j, u in enumerate(users)}
    icol = {i: j for j, i in enumerate(items)}
    dense = np.zeros((len(users), len(items)), np.float32)
    times = {}
    for e in events:
        dense[urow[e[0]], icol[e[1]]] += e[2] if len(e) > 2 else 1.0
        if len(e) > 3:
            times[(e[0], e[1])] = max(times.get((e[0], e[1]), e[3]), e[3])
    return dense, users, items, times


def format_lines(events, sep, fields=4):
    """The events as text lines joined by ``sep`` (first ``fields`` fields)."""
    out = []
    for e in events:
        vals = [str(e[0]), str(e[1])]
        if fields > 2:
            r = e[2]
            vals.append(str(int(r)) if float(r).is_integer() else str(r))
        if fields > 3:
            vals.append(str(e[3]))
        out.append(sep.join(vals))
    return out


def write_zip(path, members, compression=zipfile.ZIP_DEFLATED):
    """Write a zip archive with ``members``: {name: text}."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def assert_matches_reference(interactions, events):
    """Check an Interactions against the reference built from ``events``."""
    dense, users, items, times = reference_matrix(events)
    assert list(interactions.user_ids.tolist()) == users
    assert list(interactions.item_ids.tolist()) == items
    np.testing.assert_array_equal(interactions.matrix.toarray(), dense)
    m = interactions.matrix
    assert m.has_sorted_indices
    np.testing.assert_array_equal(interactions.ratings, m.data)
    if times:
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        got = {(users[r], items[c]): int(t) for r, c, t in zip(rows, m.indices,
                                                                 interactions.timestamps)}
        assert got == times
