"""A seeded generator of **synthetic** implicit-feedback logs, for scale tests.

The logs are made up: no real user is behind them, and figures measured on them are figures on
synthetic data, never on a real dataset. They have the structure that makes collaborative
filtering work and that real logs show:

- **topics**: the items fall into ``n_topics`` clusters of (nearly) equal size;
- **Zipf popularity** within each topic (the item of rank ``r`` has weight ``r**-zipf``) and
  across topics (topic ``t`` has weight ``t**-zipf``), so a few items take a large share of the
  events;
- **users drawn to a few topics**: each user draws ``topics_per_user`` topics by topic
  popularity (a topic drawn twice counts once) with Dirichlet(1) mixture weights; a share
  ``explore`` of a user's events goes to items drawn from the global popularity instead;
- **skewed activity**: the number of distinct items per user is ``min_user_events`` plus a
  log-normal share (``activity_sigma``) of the rest of ``n_interactions``.

Users are generated in fixed blocks of users with vectorised NumPy (no Python loop per event),
from one ``numpy.random.Generator`` seeded with ``seed``: the same arguments give the same log,
byte for byte. Repeated (user, item) draws are merged and the shortfall drawn again (a few
rounds), so each pair appears once; a user whose topics hold too few items ends a little short,
and the total is within a few percent of ``n_interactions``.

Run ``python -m cfprune.datasets.synthetic --users N --items M --interactions K --seed S --out
log.csv`` to write one as a CSV file.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import DataError
from ..interactions import Interactions
from ..io import atomic_write

#: Users generated per block (fixed, so that the log does not depend on memory or machine).
BLOCK_USERS = 1 << 15
#: Rounds of drawing again the events lost to repeated (user, item) draws.
REFILL_ROUNDS = 8
#: The star distribution of ``ratings=True`` (1..5 stars), roughly that of MovieLens.
STAR_SHARES = (0.06, 0.11, 0.27, 0.35, 0.21)
_TIME_START = 1_500_000_000  # Unix seconds of the first synthetic event
_TIME_SPAN = 365 * 24 * 3600
_CSV_ROWS = 1 << 18


def synthetic_log(n_users, n_items, n_interactions, *, n_topics=300, topics_per_user=3,
                  zipf=1.1, explore=0.1, activity_sigma=1.0, min_user_events=5,
                  ratings=False, timestamps=False, seed=0):
    """A synthetic implicit-feedback log (see the module docstring for its structure).

    Parameters
    ----------
    n_users, n_items : int
        Users (raw ids ``0 .. n_users-1``, every one with at least ``min_user_events`` items
        when the catalogue allows) and catalogue size (raw ids ``0 .. n_items-1`` in a random
        order unrelated to topic or popularity; items never drawn are not columns).
    n_interactions : int
        Target number of distinct (user, item) pairs; the result is within a few percent.
    n_topics, topics_per_user : int
        Item clusters, and how many of them each user is drawn to.
    zipf : float
        Exponent of the Zipf popularity within and across topics (> 0).
    explore : float in [0, 1]
        Share of each user's events drawn from the global popularity rather than the user's
        topics.
    activity_sigma : float
        Sigma of the log-normal spread of the number of items per user (0: all equal).
    min_user_events : int
        Fewest items per user.
    ratings, timestamps : bool
        Add a star rating per pair (1..5, :data:`STAR_SHARES`) and a Unix time per pair.
    seed : int

    Returns
    -------
    Interactions
        ``matrix`` float32 ``(n_users, n_items drawn)`` of 1.0 (or the stars with
        ``ratings=True``), ``has_ratings`` as ``ratings``; ``name``
        ``"synthetic(users=..,items=..,seed=..)"``; ``load_info`` says ``format: "synthetic"``
        and holds the parameters and ``item_topic`` (int32 ``[n_items drawn]``, the topic of
        each column).
    """
    _check(n_users, n_items, n_interactions, n_topics, topics_per_user, zipf, explore,
           activity_sigma, min_user_events)
    rng = np.random.default_rng(seed)
    topic_weight = _zipf_weights(n_topics, zipf)
    item_topic, cdf, raw_item = _catalogue(rng, n_items, n_topics, zipf)
    demand = _activity(rng, n_users, n_items, n_interactions, activity_sigma, min_user_events)
    counts = np.zeros(n_users, np.int64)
    items_parts = []
    for start in range(0, n_users, BLOCK_USERS):
        stop = min(start + BLOCK_USERS, n_users)
        users, items = _block(rng, demand[start:stop], topic_weight, topics_per_user, cdf,
                              raw_item, n_items, explore)
        counts[start:stop] = np.bincount(users, minlength=stop - start)
        items_parts.append(items)
    raw = np.concatenate(items_parts) if items_parts else np.zeros(0, np.int32)
    del items_parts
    drawn = np.zeros(n_items, bool)
    drawn[raw] = True
    item_ids = np.flatnonzero(drawn)
    column = np.cumsum(drawn, dtype=np.int32) - 1  # raw id -> column, monotone
    indices = column[raw]
    del raw
    indptr = np.zeros(n_users + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    nnz = int(indptr[-1])
    stars = None
    if ratings:
        stars = (rng.choice(5, size=nnz, p=STAR_SHARES) + 1).astype(np.float32)
    times = rng.integers(_TIME_START, _TIME_START + _TIME_SPAN, nnz) if timestamps else None
    data = stars if stars is not None else np.ones(nnz, np.float32)
    matrix = sp.csr_matrix((data, indices, indptr), shape=(n_users, len(item_ids)))
    matrix.has_sorted_indices = True  # each user's items were sorted by raw id
    log = Interactions(matrix, stars, times, user_ids=np.arange(n_users, dtype=np.int64),
                       item_ids=item_ids, has_ratings=ratings,
                       name=f"synthetic(users={n_users},items={n_items},seed={seed})")
    topic_of_raw = np.empty(n_items, np.int32)
    topic_of_raw[raw_item] = item_topic
    log.load_info = {
        "format": "synthetic", "path": None, "n_rows": nnz, "item_topic": topic_of_raw[item_ids],
        "params": {"n_users": n_users, "n_items": n_items, "n_interactions": n_interactions,
                   "n_topics": n_topics, "topics_per_user": topics_per_user, "zipf": zipf,
                   "explore": explore, "activity_sigma": activity_sigma,
                   "min_user_events": min_user_events, "seed": seed},
        "feedback": "synthetic implicit feedback" + (" with synthetic star ratings" if ratings
                                                     else ""),
    }
    return log


def write_synthetic_log(path, n_users, n_items, n_interactions, **options):
    """Write :func:`synthetic_log` (same arguments) as a CSV file
    ``user,item[,rating][,timestamp]`` with a header line, one pair per line sorted by user then
    item, atomically (a temporary file renamed into place, see :func:`cfprune.io.atomic_write`).

    Returns the :class:`Interactions` written. The file is a synthetic log: name it so.
    """
    log = synthetic_log(n_users, n_items, n_interactions, **options)
    m = log.matrix
    columns = ["user", "item"] + (["rating"] if log.has_ratings else []) + (
        ["timestamp"] if log.timestamps is not None else [])
    row_of_entry = np.repeat(np.arange(log.n_users, dtype=np.int64), np.diff(m.indptr))

    def write(out):
        out.write((",".join(columns) + "\n").encode())
        for start in range(0, m.nnz, _CSV_ROWS):
            stop = min(start + _CSV_ROWS, m.nnz)
            fields = [row_of_entry[start:stop].astype(str),
                      log.item_ids[m.indices[start:stop]].astype(str)]
            if log.has_ratings:
                fields.append(log.ratings[start:stop].astype(np.int64).astype(str))
            if log.timestamps is not None:
                fields.append(log.timestamps[start:stop].astype(str))
            lines = fields[0]
            for f in fields[1:]:
                lines = np.char.add(np.char.add(lines, ","), f)
            out.write(("\n".join(lines.tolist()) + "\n").encode())

    atomic_write(path, write)
    return log


# generation ---------------------------------------------------------------------------------
def _check(n_users, n_items, n_interactions, n_topics, topics_per_user, zipf, explore,
           activity_sigma, min_user_events):
    for name, v in (("n_users", n_users), ("n_items", n_items),
                    ("n_interactions", n_interactions), ("n_topics", n_topics),
                    ("topics_per_user", topics_per_user)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise DataError(f"{name}={v!r}; expected a positive integer")
    if n_topics > n_items:
        raise DataError(f"n_topics={n_topics} is more than n_items={n_items}; every topic needs "
                        f"an item")
    if topics_per_user > n_topics:
        raise DataError(f"topics_per_user={topics_per_user} is more than n_topics={n_topics}")
    if not zipf > 0:
        raise DataError(f"zipf={zipf!r}; expected a positive exponent")
    if not 0 <= explore <= 1:
        raise DataError(f"explore={explore!r}; expected a share in [0, 1]")
    if not activity_sigma >= 0:
        raise DataError(f"activity_sigma={activity_sigma!r}; expected >= 0")
    if isinstance(min_user_events, bool) or not isinstance(min_user_events, (int, np.integer)) \
            or min_user_events < 1:
        raise DataError(f"min_user_events={min_user_events!r}; expected a positive integer")
    if n_interactions < n_users * min_user_events:
        raise DataError(f"n_interactions={n_interactions} is fewer than n_users x "
                        f"min_user_events = {n_users * min_user_events}")


def _zipf_weights(n, exponent):
    """float64 [n]: weights ``rank**-exponent`` of ranks 1..n, summing to 1."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -float(exponent)
    return w / w.sum()


def _catalogue(rng, n_items, n_topics, zipf):
    """The items in topic order: the topic of each (int32 [n_items]), the sampling table ``cdf``
    (float64 [n_items]: topic + the within-topic cumulative Zipf weight, so that
    ``searchsorted(cdf, t + u)`` with ``u`` uniform in [0, 1) draws an item of topic ``t``)
    and the raw id of each (int32, a random permutation)."""
    topic = (np.arange(n_items) % n_topics).astype(np.int32)
    topic.sort(kind="stable")
    starts = np.searchsorted(topic, np.arange(n_topics))
    rank = np.arange(n_items) - starts[topic] + 1
    weight = rank ** -float(zipf)
    cum = np.cumsum(weight)
    before = np.r_[0.0, cum][starts]  # cumulative weight before each topic
    total = np.r_[cum[starts[1:] - 1], cum[-1]] - before
    cdf = topic + (cum - before[topic]) / total[topic]
    cdf[np.r_[starts[1:] - 1, n_items - 1]] = np.arange(1, n_topics + 1)  # exact topic ends
    raw_item = rng.permutation(n_items).astype(np.int32)
    return topic, cdf, raw_item


def _activity(rng, n_users, n_items, n_interactions, sigma, minimum):
    """int64 [n_users]: distinct items wanted per user, summing to about ``n_interactions``."""
    spread = rng.lognormal(0.0, sigma, n_users) if sigma > 0 else np.ones(n_users)
    extra = spread / spread.sum() * (n_interactions - n_users * minimum)
    demand = minimum + np.floor(extra + rng.random(n_users)).astype(np.int64)
    return np.minimum(demand, max(n_items // 2, min(minimum, n_items)))


def _block(rng, demand, topic_weight, topics_per_user, cdf, raw_item, n_items, explore):
    """The distinct (user, raw item) pairs of one block of users, sorted by user then raw item:
    ``(users, items)``, block-local user index int32 and raw item id int32."""
    n = len(demand)
    n_topics = len(topic_weight)
    # each user's topics, drawn by topic popularity (a topic drawn twice counts once, with
    # the two mixture weights added)
    topic_cdf = np.cumsum(topic_weight)
    topics = np.minimum(np.searchsorted(topic_cdf, rng.random((n, topics_per_user)),
                                        side="right"), n_topics - 1)
    mixture = np.cumsum(rng.dirichlet(np.ones(topics_per_user), size=n), axis=1)
    keys = np.zeros(0, np.int64)
    want = demand.copy()
    for _ in range(REFILL_ROUNDS):
        if not want.any():
            break
        user = np.repeat(np.arange(n, dtype=np.int64), want)
        slot = (rng.random(len(user))[:, None] > mixture[user, :-1]).sum(axis=1)
        topic = topics[user, slot]
        wander = rng.random(len(user)) < explore
        topic[wander] = np.minimum(np.searchsorted(topic_cdf, rng.random(int(wander.sum())),
                                                   side="right"), n_topics - 1)
        item = np.searchsorted(cdf, topic + rng.random(len(user)), side="right")
        item = raw_item[np.minimum(item, n_items - 1)]
        keys = np.concatenate([keys, user * n_items + item])
        keys.sort()
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]]
        want = demand - np.bincount(keys // n_items, minlength=n)
    return (keys // n_items).astype(np.int32), (keys % n_items).astype(np.int32)
