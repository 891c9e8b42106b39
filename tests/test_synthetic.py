"""The synthetic log generator: seeded, the counts asked for, one event per pair, skewed
popularity and activity, users concentrated on few topics, and a CSV that load_interactions
reads back to the same matrix."""

import csv
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from cfprune.datasets import load_interactions, synthetic_log, write_synthetic_log
from cfprune.errors import DataError

SIZE = dict(n_users=3000, n_items=2000, n_interactions=60_000, n_topics=40)


@pytest.fixture(scope="module")
def log():
    return synthetic_log(**SIZE, seed=3)


def topic_share(matrix, item_topic, n_topics, top=3):
    """Mean over users of the share of their events on their ``top`` most frequent topics."""
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    per_topic = sp.csr_matrix((np.ones(matrix.nnz), (rows, item_topic[matrix.indices])),
                              shape=(matrix.shape[0], n_topics)).toarray()
    return float((np.sort(per_topic, axis=1)[:, -top:].sum(1) / per_topic.sum(1)).mean())


def test_same_seed_same_log_other_seed_other_log(tmp_path, log):
    again = synthetic_log(**SIZE, seed=3)
    for a, b in ((log.matrix.indptr, again.matrix.indptr),
                 (log.matrix.indices, again.matrix.indices), (log.item_ids, again.item_ids)):
        np.testing.assert_array_equal(a, b)
    other = synthetic_log(**SIZE, seed=4)
    assert other.shape != log.shape or (other.matrix != log.matrix).nnz > 0
    digests = []
    for name in ("a.csv", "b.csv"):
        write_synthetic_log(tmp_path / name, **SIZE, ratings=True, timestamps=True, seed=3)
        digests.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    assert digests[0] == digests[1]


def test_shapes_and_counts(log):
    assert log.n_users == SIZE["n_users"] and log.n_items <= SIZE["n_items"]
    assert abs(log.nnz - SIZE["n_interactions"]) <= 0.05 * SIZE["n_interactions"]
    per_user = np.diff(log.matrix.indptr)
    assert per_user.min() >= 5  # min_user_events
    assert per_user.max() >= 5 * np.median(per_user)  # skewed activity
    assert log.name == "synthetic(users=3000,items=2000,seed=3)"
    assert log.load_info["format"] == "synthetic" and not log.has_ratings
    assert set(log.item_ids.tolist()) <= set(range(SIZE["n_items"]))


def test_one_event_per_pair(tmp_path):
    path = tmp_path / "log.csv"
    write_synthetic_log(path, **SIZE, seed=5)
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["user", "item"]
    pairs = [tuple(r) for r in rows[1:]]
    assert len(set(pairs)) == len(pairs)


def test_popularity_is_skewed(log):
    counts = np.sort(np.bincount(log.matrix.indices, minlength=log.n_items))[::-1]
    top = max(1, log.n_items // 100)
    assert counts[:top].sum() >= 0.15 * counts.sum()  # the top 1% of items: 15x a uniform share


def test_users_concentrate_on_few_topics(log):
    """Each user's top 3 topics hold most of their events; the same events with items shuffled
    across users (popularity kept) spread over many topics."""
    topics = log.load_info["item_topic"]
    assert topics.shape == (log.n_items,)
    share = topic_share(log.matrix, topics, SIZE["n_topics"])
    rng = np.random.default_rng(0)
    shuffled = sp.csr_matrix((log.matrix.data, rng.permutation(log.matrix.indices),
                              log.matrix.indptr), shape=log.shape)
    null = topic_share(shuffled, topics, SIZE["n_topics"])
    assert share >= 0.8 and share - null >= 0.25, (share, null)


def test_written_csv_loads_to_the_same_matrix(tmp_path):
    path = tmp_path / "rated.csv"
    written = write_synthetic_log(path, **SIZE, ratings=True, timestamps=True, seed=7)
    loaded = load_interactions(path)
    assert (loaded.matrix != written.matrix).nnz == 0
    np.testing.assert_array_equal(loaded.user_ids, written.user_ids)
    np.testing.assert_array_equal(loaded.item_ids, written.item_ids)
    np.testing.assert_array_equal(loaded.timestamps, written.timestamps)
    assert set(np.unique(loaded.ratings).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    implicit = write_synthetic_log(tmp_path / "implicit.csv", **SIZE, seed=7)
    back = load_interactions(tmp_path / "implicit.csv")
    assert (back.matrix != implicit.matrix).nnz == 0 and not back.has_ratings


def test_cli_generate_writes_the_csv(tmp_path):
    out = tmp_path / "cli.csv"
    result = subprocess.run([sys.executable, "-m", "cfprune.cli", "generate", "--users", "200",
                             "--items", "300", "--interactions", "4000", "--topics", "10",
                             "--seed", "2", "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "synthetic" in result.stdout
    expected = synthetic_log(200, 300, 4000, n_topics=10, seed=2)
    assert (load_interactions(out).matrix != expected.matrix).nnz == 0
    bad = subprocess.run([sys.executable, "-m", "cfprune.cli", "generate", "--users", "10",
                          "--items", "5", "--interactions", "100", "--out", str(out)],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "n_topics=300 is more than n_items=5" in bad.stderr


@pytest.mark.parametrize("kwargs, words", [
    (dict(n_users=0), "n_users=0"),
    (dict(n_interactions=10), "fewer than n_users x min_user_events"),
    (dict(topics_per_user=50), "topics_per_user=50"),
    (dict(zipf=0), "zipf=0"),
    (dict(explore=1.5), "explore=1.5"),
])
def test_bad_arguments(kwargs, words):
    with pytest.raises(DataError, match=words.replace("(", r"\(")):
        synthetic_log(**{**SIZE, **kwargs})


def test_als_beats_popularity_on_the_topic_structure():
    """recall@20 on held-out pairs (20% of each user's, NumPy brute force): ALS learns the
    topics, far above recommending the most popular unseen items."""
    from cfprune.models import train_als
    log = synthetic_log(2000, 1500, 40_000, n_topics=30, seed=11)
    m = log.matrix
    rng = np.random.default_rng(0)
    test = rng.random(m.nnz) < 0.2
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    train = sp.csr_matrix((np.ones(int((~test).sum()), np.float32),
                           (rows[~test], m.indices[~test])), shape=m.shape)
    held = sp.csr_matrix((np.ones(int(test.sum())), (rows[test], m.indices[test])),
                         shape=m.shape).toarray() > 0
    seen = train.toarray() > 0

    def recall(scores):
        scores = np.where(seen, -np.inf, scores)
        top = np.argsort(-scores, axis=1)[:, :20]
        hits = np.take_along_axis(held, top, axis=1).sum(1)
        users = held.sum(1) > 0
        return float((hits[users] / np.minimum(held.sum(1)[users], 20)).mean())

    model = train_als(train, factors=32, iterations=10, num_threads=1, show_progress=False)
    als = recall(model.user_factors @ model.item_factors.T)
    popularity = recall(np.broadcast_to(seen.sum(0).astype(float), seen.shape))
    assert als >= 1.5 * popularity, (als, popularity)  # measured: 0.50 vs 0.29
