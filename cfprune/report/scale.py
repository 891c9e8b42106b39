"""How the report keeps its time on logs of hundreds of thousands of users: seeded user samples
and successive halving of the tuning grid, by a rule keyed on the number of users.

The rule (:class:`ScaleRule`; report.json ``scale``, stated in report.md):

- up to ``sample_beyond_users`` users, nothing changes: every user is evaluated, every grid
  point is trained on every user and BPR keeps its thread rule (one thread up to
  :data:`~.baseline.BPR_SINGLE_THREAD_MAX_NNZ` interactions, for reproducible figures);
- beyond, the test figures (baselines and sweep rows) are means over a seeded sample of
  ``eval_users`` of the users with a test item, the validation figures (sweep rows, the target
  search's pick) over a seeded sample of as many users with a validation item (the target
  search draws its own seeded sample of as many and screens every candidate on an eighth of it
  first, :func:`cfprune.compression.search.search`), and the paired
  intervals, p-values and lower bounds are taken over those users: a bootstrap over a simple
  random sample of users is the interval of the mean over all users, so the sampling noise is in
  them. ``coverage@k`` is not a mean over users: it counts the items in the sampled users'
  lists, is lower than over every user, and is compared only within one sample (compressed
  against float32 on the same users). Throughput is timed on ``throughput_users`` users (a rate
  per user);
- beyond, the tuning grid runs by successive halving: every point is trained on the interactions
  of a seeded sample of users and scored on (at most ``eval_users`` of) their validation items,
  the best ``1/halving_eta`` of the points go on to a sample ``halving_eta`` times larger, and
  the last rung trains its points on every user; the first rung holds at least
  ``min_rung_users`` users (BPR leaves out a last rung of one point: it would decide nothing).
  Every rung carries the best point of each ALS factor count (the rest of its places go to the
  best other points), so that a larger factor count, which gains more from more users than a
  small one, is not dropped on a small sample before it is compared on every user (at 200k users
  the plain halving kept 32 factors only). BPR then trains on every thread.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

SAMPLE_SALTS = {"test": 1, "valid": 2, "throughput": 3, "tuning": 4}


@dataclass(frozen=True)
class ScaleRule:
    """The thresholds of the report's scale rule (see the module docstring)."""

    sample_beyond_users: int = 100_000
    eval_users: int = 25_000
    throughput_users: int = 10_000
    halving_eta: int = 3
    min_rung_users: int = 20_000
    carry_each_group: bool = True

    def applies(self, n_users):
        """Whether a log of ``n_users`` users is sampled."""
        return int(n_users) > self.sample_beyond_users

    def describe(self, n_users):
        """The rule as one sentence for report.md."""
        if not self.applies(n_users):
            return (f"Every user is evaluated and every grid point trained on every user (the "
                    f"report samples users only beyond {self.sample_beyond_users:,}).")
        return (f"With {n_users:,} users (more than {self.sample_beyond_users:,}), the test and "
                f"validation figures are means over seeded samples of {self.eval_users:,} users "
                f"with a test (validation) item, and every interval and p-value is over those "
                f"users, so it counts the sampling noise (coverage@k counts the items in the "
                f"sampled users' lists, so it is lower than over every user and is compared "
                f"only within one sample); throughput is timed on "
                f"{self.throughput_users:,} users; the tuning grid runs by successive halving "
                f"(each point trained on a seeded sample of users, the best 1/{self.halving_eta} "
                f"carried to a sample {self.halving_eta} times larger, every user last, and "
                f"the best point of each ALS factor count carried to the last rung; BPR, "
                f"whose tuned model is only compared, leaves out a last rung of one point) and "
                f"BPR trains on every thread.")

    def as_dict(self, n_users):
        return {**asdict(self), "sampled": self.applies(n_users), "n_users": int(n_users)}


DEFAULT_SCALE = ScaleRule()


def sample_rng(seed, purpose, *more):
    """The generator of one sample of the report (``purpose`` a key of :data:`SAMPLE_SALTS`,
    ``more`` further integers that tell samples of one purpose apart)."""
    return np.random.default_rng([int(seed), SAMPLE_SALTS[purpose], *map(int, more)])


def sampled_users(part, rule, seed, purpose):
    """int64 [m] ascending, or None: a seeded sample of ``rule.eval_users`` of the users with an
    item in ``part`` (Interactions or CSR) when ``rule`` applies to it, else None (every user).
    """
    matrix = getattr(part, "matrix", part)
    if not rule.applies(matrix.shape[0]):
        return None
    having = np.flatnonzero(np.diff(matrix.indptr) > 0).astype(np.int64)
    if having.size <= rule.eval_users:
        return having
    chosen = sample_rng(seed, purpose).choice(having.size, size=rule.eval_users, replace=False)
    return np.sort(having[chosen])


def throughput_users(n_users, rule, seed):
    """int64 [m] ascending, or None: a seeded sample of ``rule.throughput_users`` users whose
    recommendations are timed when ``rule`` applies, else None (every user is timed)."""
    if not rule.applies(n_users):
        return None
    if n_users <= rule.throughput_users:
        return np.arange(n_users, dtype=np.int64)
    chosen = sample_rng(seed, "throughput").choice(n_users, size=rule.throughput_users,
                                                   replace=False)
    return np.sort(chosen).astype(np.int64)


def halving_rungs(n_points, n_users, rule, single_last=True, n_groups=1):
    """list of (users trained on, points trained) per rung of the tuning, the last on every
    user: one rung of every point when ``rule`` does not apply. Rung ``r + 1`` keeps
    ``ceil(points / halving_eta)`` points on ``halving_eta`` times the users, as many rungs as
    both the points (down to one) and the users (the first rung at least ``min_rung_users``)
    allow. With ``n_groups`` groups among the points (ALS: its factor counts) and
    ``rule.carry_each_group``, a rung keeps at least ``n_groups`` points (one of each group, see
    :func:`carried_points`), never more than the rung before, and a first rung that would carry
    every point on is left out (the quick grid's two factor counts: both train on every user
    at once). ``single_last=False`` leaves out a
    last rung of one point, which decides nothing (BPR, whose tuned model is not used later; ALS
    keeps it: that model is the one the report's decisions are made with); a grid of one point
    then has no rung at all."""
    n_points, n_users = int(n_points), int(n_users)
    if not rule.applies(n_users):
        return [(n_users, n_points)]
    eta = int(rule.halving_eta)
    floor = int(n_groups) if rule.carry_each_group else 1
    counts = [n_points]
    while counts[-1] > 1 and n_users / eta ** len(counts) >= rule.min_rung_users:
        counts.append(math.ceil(counts[-1] / eta))
    for r in range(1, len(counts)):
        counts[r] = min(counts[r - 1], max(counts[r], floor))
    while len(counts) > 1 and counts[1] == counts[0]:
        counts.pop(0)                   # a rung that carries all its points decides nothing
    n_rungs = len(counts)
    rungs = [(n_users if r == n_rungs - 1 else int(math.ceil(n_users / eta ** (n_rungs - 1 - r))),
              counts[r]) for r in range(n_rungs)]
    if counts[-1] == 1 and not single_last:
        rungs.pop()
    return rungs


def carried_points(scores, groups, n_keep):
    """int list, ascending: the indices of the ``n_keep`` points a rung carries to the next,
    given their ``scores`` (higher is better; ties: the earlier point) and ``groups`` (a key per
    point, or None): the best point of each group first, then the best of the others up to
    ``n_keep`` (with more groups than ``n_keep``, the best ``n_keep`` groups' best points)."""
    ranked = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    chosen = []
    if groups is not None:
        seen = set()
        for i in ranked:
            if groups[i] not in seen:
                seen.add(groups[i])
                chosen.append(i)
    chosen = chosen[:n_keep]
    chosen += [i for i in ranked if i not in chosen][:n_keep - len(chosen)]
    return sorted(chosen)


def rung_order(n_users, seed):
    """int64 [n_users]: the seeded permutation whose prefixes are the rungs' user samples (each
    rung's users hold the previous rung's)."""
    return sample_rng(seed, "tuning").permutation(int(n_users)).astype(np.int64)
