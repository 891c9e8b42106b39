"""Train / validation / test splits of an interaction log.

Every split selects entries of one :class:`~cfprune.interactions.Interactions` with
:meth:`~cfprune.interactions.Interactions.select`, so all parts keep the full users x items
shape and share the id maps. The work is vectorised over all entries (a random key or a
timestamp per entry, one ``argsort`` by user then key), so ML-25M splits in seconds; the random
ones are seeded with ``numpy.random.Generator(PCG64(seed))`` and deterministic.

- :func:`random_split`: a random fraction of each user's interactions is held out.
- :func:`temporal_split`: each user's last ``k`` interactions in time are held out.
- :func:`strong_generalization_split`: whole users are held out and their interactions split
  into fold-in and test parts (Liang et al. 2018, "Variational Autoencoders for Collaborative
  Filtering").
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from .errors import DataError
from .interactions import Interactions


class StrongSplit(NamedTuple):
    """A strong-generalisation split.

    train : Interactions of the training users (rows of held-out users empty), full shape.
    users : int64 [n_heldout], sorted indices of the held-out users.
    foldin : Interactions, the part of the held-out users' history a model may see.
    test : Interactions, the part to predict. Both have the full shape; rows of the training
        users are empty.
    """

    train: object
    users: np.ndarray
    foldin: object
    test: object

    def train_with_foldin(self):
        """Interactions holding ``train`` and ``foldin`` together (everything but ``test``):
        what a model that folds users in by training on them sees."""
        return _union(self.train, self.foldin)


def _union(a, b):
    """The entries of two disjoint selections of one log, as one log of the same shape."""
    rows = np.concatenate([a.entry_users(), b.entry_users()]).astype(np.int64)
    cols = np.concatenate([a.matrix.indices, b.matrix.indices]).astype(np.int64)
    order = np.lexsort((cols, rows))
    data = np.concatenate([a.matrix.data, b.matrix.data])[order]
    ratings = np.concatenate([a.ratings, b.ratings])[order]
    ts = None
    if a.timestamps is not None and b.timestamps is not None:
        ts = np.concatenate([a.timestamps, b.timestamps])[order]
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=a.n_users))]
    matrix = sp.csr_matrix((data, cols[order], indptr), shape=a.shape)
    return Interactions(matrix, ratings, ts, user_ids=a.user_ids, item_ids=a.item_ids,
                        name=a.name)


def _check_fraction(value, what):
    if not 0.0 <= value < 1.0:
        raise DataError(f"{what}={value}; expected a fraction in [0, 1)")


def _holdout_counts(sizes, fraction):
    """Per-user count held out: ``fraction * size`` rounded half up."""
    return np.floor(fraction * sizes + 0.5).astype(np.int64)


def _rank_within_users(indptr, user_of_entry, order):
    """Rank (0-based) of each entry within its user, given ``order``: the entries sorted by
    user, then by the within-user key."""
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64) - indptr[user_of_entry[order]]
    return rank


def _shuffled_order(user_of_entry, rng):
    """The entries sorted by user, in uniformly random order within each user."""
    return np.argsort(user_of_entry + rng.random(len(user_of_entry)))


def _time_order(user_of_entry, timestamps, n_users):
    """The entries sorted by user, then time; ties keep CSR order, i.e. item index."""
    if len(timestamps) == 0:
        return np.zeros(0, np.int64)
    first = int(timestamps.min())
    span = int(timestamps.max()) - first + 1
    if n_users * span < 2 ** 62:
        key = user_of_entry.astype(np.int64) * span + (timestamps - first)
        return np.argsort(key, kind="stable")
    return np.lexsort((np.arange(len(timestamps)), timestamps, user_of_entry))


def _random_parts(interactions, fractions, rng, min_train, users_mask=None):
    """Part label per entry: 0 = train, j = the j-th held-out fraction.

    For each user the entries are shuffled; the first ``round(f1 * n)`` go to part 1, the next
    ``round(f2 * n)`` to part 2, and so on. A user whose train part would fall below
    ``min_train`` keeps everything in part 0. Users outside ``users_mask`` keep part 0.
    """
    indptr = interactions.matrix.indptr.astype(np.int64)
    sizes = np.diff(indptr)
    user = interactions.entry_users()
    rank = _rank_within_users(indptr, user, _shuffled_order(user, rng))
    counts = np.stack([_holdout_counts(sizes, f) for f in fractions])
    bounds = np.cumsum(counts, axis=0)
    too_few = sizes - bounds[-1] < min_train
    if users_mask is not None:
        too_few |= ~users_mask
    bounds[:, too_few] = 0
    part = np.zeros(interactions.nnz, np.int8)
    entry_bounds = bounds[:, user]
    for j in range(len(fractions) - 1, -1, -1):
        part[rank < entry_bounds[j]] = j + 1
    return part


def random_split(interactions, test_fraction=0.2, valid_fraction=0.0, seed=0, min_train=1):
    """Hold out a random fraction of every user's interactions.

    Each user with ``n`` interactions gives ``round(test_fraction * n)`` to test and
    ``round(valid_fraction * n)`` to validation (rounded half up), chosen uniformly at random;
    a user who would keep fewer than ``min_train`` in train keeps all of them in train.

    Returns ``(train, test)``, or ``(train, valid, test)`` when ``valid_fraction > 0``; each
    an Interactions with the original shape and id maps.
    """
    _check_fraction(test_fraction, "test_fraction")
    _check_fraction(valid_fraction, "valid_fraction")
    if test_fraction + valid_fraction >= 1.0:
        raise DataError(f"test_fraction + valid_fraction = {test_fraction + valid_fraction}; "
                        f"must be below 1 to leave a train part")
    rng = np.random.Generator(np.random.PCG64(seed))
    fractions = (test_fraction, valid_fraction) if valid_fraction > 0 else (test_fraction,)
    part = _random_parts(interactions, fractions, rng, min_train)
    train, test = interactions.select(part == 0), interactions.select(part == 1)
    if valid_fraction > 0:
        return train, interactions.select(part == 2), test
    return train, test


def temporal_split(interactions, k=1, valid_k=0):
    """Leave the last ``k`` interactions of each user (by timestamp) out for test.

    Ties in time are broken by item index (the higher index counts as later). With
    ``valid_k > 0`` the ``valid_k`` interactions before the test ones form a validation part.
    Users with at most ``k + valid_k`` interactions keep all of them in train.

    Returns ``(train, test)`` or ``(train, valid, test)``.

    Raises DataError when the log has no timestamps.
    """
    if interactions.timestamps is None:
        raise DataError(f"{interactions.name or 'this log'} has no timestamps, so it cannot be "
                        f"split by time; use random_split (or strong_generalization_split) "
                        f"instead")
    if k < 1 or valid_k < 0:
        raise DataError(f"k={k}, valid_k={valid_k}; expected k >= 1 and valid_k >= 0")
    indptr = interactions.matrix.indptr.astype(np.int64)
    sizes = np.diff(indptr)
    user = interactions.entry_users()
    order = _time_order(user, interactions.timestamps, interactions.n_users)
    rank = _rank_within_users(indptr, user, order)
    from_end = sizes[user] - 1 - rank
    enough = sizes[user] > k + valid_k
    test = enough & (from_end < k)
    valid = enough & (from_end >= k) & (from_end < k + valid_k)
    train = ~(test | valid)
    if valid_k > 0:
        return (interactions.select(train), interactions.select(valid),
                interactions.select(test))
    return interactions.select(train), interactions.select(test)


def strong_generalization_split(interactions, n_heldout_users=None, heldout_fraction=None,
                                test_fraction=0.2, seed=0):
    """Hold out whole users, as in Liang et al. 2018 (VAE-CF).

    ``n_heldout_users`` (or ``heldout_fraction`` of the users with at least one interaction)
    users are drawn at random; the others form ``train``. Each held-out user's interactions
    are split at random into ``foldin`` and ``test`` (``round(test_fraction * n)`` to test,
    at least one kept for fold-in; a user with a single interaction keeps it in fold-in).

    Returns a :class:`StrongSplit` ``(train, users, foldin, test)``.
    """
    if (n_heldout_users is None) == (heldout_fraction is None):
        raise DataError("give exactly one of n_heldout_users and heldout_fraction")
    _check_fraction(test_fraction, "test_fraction")
    active = np.flatnonzero(np.diff(interactions.matrix.indptr) > 0)
    if heldout_fraction is not None:
        _check_fraction(heldout_fraction, "heldout_fraction")
        n_heldout_users = int(np.floor(heldout_fraction * len(active) + 0.5))
    n_heldout_users = int(n_heldout_users)
    if not 0 < n_heldout_users < len(active):
        raise DataError(f"{n_heldout_users} held-out users requested; expected between 1 and "
                        f"{len(active) - 1} ({len(active)} users have interactions)")
    rng = np.random.Generator(np.random.PCG64(seed))
    users = np.sort(rng.choice(active, size=n_heldout_users, replace=False)).astype(np.int64)
    heldout = np.zeros(interactions.n_users, bool)
    heldout[users] = True
    entry_heldout = heldout[interactions.entry_users()]
    part = _random_parts(interactions, (test_fraction,), rng, 1, users_mask=heldout)
    train = interactions.select(~entry_heldout)
    foldin = interactions.select(entry_heldout & (part == 0))
    test = interactions.select(entry_heldout & (part == 1))
    return StrongSplit(train, users, foldin, test)
