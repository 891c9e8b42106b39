"""Paired bootstrap intervals for the difference of two models' per-user metrics."""

from __future__ import annotations

import numpy as np

from .errors import DataError, ShapeError

RESAMPLE_CHUNK_ELEMENTS = 1 << 22


def paired_difference(per_user_model, per_user_base, n_resamples=1000, confidence=0.95, seed=0):
    """Mean difference ``model - base`` over users with a paired-bootstrap percentile interval.

    Users are resampled with replacement (the same users for both models); the interval is the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles (linear interpolation) of the
    resampled mean differences. Users where either value is NaN are left out.

    Parameters
    ----------
    per_user_model, per_user_base : float array [n_users], aligned by user
    n_resamples : int
    confidence : float in (0, 1)
    seed : int
        Seeds ``numpy.random.default_rng``; the same seed gives the same interval.

    Returns
    -------
    diff, low, high : float
    significant : bool
        True when the interval excludes 0.
    """
    a = np.asarray(per_user_model, dtype=np.float64)
    b = np.asarray(per_user_base, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ShapeError(f"per-user arrays have shapes {a.shape} and {b.shape}; expected two 1-D "
                         f"arrays aligned by user")
    if not 0.0 < confidence < 1.0:
        raise DataError(f"confidence={confidence}; expected a value in (0, 1)")
    if n_resamples < 1:
        raise DataError(f"n_resamples={n_resamples}; expected at least 1")
    d = a - b
    d = d[~np.isnan(d)]
    n = d.size
    if n == 0:
        nan = float("nan")
        return nan, nan, nan, False
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, RESAMPLE_CHUNK_ELEMENTS // n)
    for start in range(0, n_resamples, chunk):
        stop = min(start + chunk, n_resamples)
        index = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = d[index].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    diff = float(d.mean())
    return diff, float(low), float(high), bool(low > 0.0 or high < 0.0)


def paired_users(result, baseline_result):
    """(ia, ib) int arrays: positions in ``result.users`` and ``baseline_result.users`` of the
    users both evaluated, aligned (ascending user id)."""
    _, ia, ib = np.intersect1d(result.users, baseline_result.users, assume_unique=True,
                               return_indices=True)
    return ia, ib


def paired_standard_error(per_user_model, per_user_base):
    """(mean, standard error, n) of ``model - base`` over the ``n`` users where both are defined
    (NaN left out); mean NaN when n is 0, standard error 0.0 when n < 2."""
    d = np.asarray(per_user_model, np.float64) - np.asarray(per_user_base, np.float64)
    d = d[~np.isnan(d)]
    mean = float(d.mean()) if d.size else float("nan")
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
    return mean, se, int(d.size)


def compare(result, baseline_result, metric="recall@20", n_resamples=1000, confidence=0.95,
            seed=0):
    """One line per metric: ``"recall@20 0.2612 vs 0.2698: -0.0086 [-0.0101, -0.0071]"``.

    ``result`` and ``baseline_result`` are :class:`cfprune.evaluation.EvaluationResult`; the users
    both evaluated are paired, and the two means shown are over those users (and over the users
    where both values are defined). ``metric`` is a name or a list of names of per-user metrics.
    """
    names = [metric] if isinstance(metric, str) else list(metric)
    ia, ib = paired_users(result, baseline_result)
    lines = []
    for name in names:
        for r, which in ((result, "result"), (baseline_result, "baseline_result")):
            if name not in r.per_user:
                raise DataError(f"{which} has no per-user {name!r}; available: "
                                f"{sorted(r.per_user)}")
        a = result.per_user[name][ia]
        b = baseline_result.per_user[name][ib]
        both = ~(np.isnan(a) | np.isnan(b))
        diff, low, high, _ = paired_difference(a, b, n_resamples, confidence, seed)
        mean_a = float(a[both].mean()) if both.any() else float("nan")
        mean_b = float(b[both].mean()) if both.any() else float("nan")
        lines.append(f"{name} {mean_a:.4f} vs {mean_b:.4f}: {diff:+.4f} [{low:+.4f}, {high:+.4f}]")
    return "\n".join(lines)
