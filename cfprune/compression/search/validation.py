"""How the search judges a candidate on its validation part: the model the validation items are
truly held out of, the seeded sample of validation users it is judged on, the one-sided bounds a
per-user target is met (lower) or screened out (upper) by, and the bootstrap lower bound of a
catalogue metric (coverage: not a mean over users, so no paired standard error)."""

from __future__ import annotations

import numpy as np

from ...errors import DataError
from ...models.training import TRAINING_DEFAULTS
from ...uncertainty import paired_standard_error, paired_users


def held_out_model(model, fit, num_threads=None):
    """(model retrained on ``fit``, True) when ``model.info`` records how it was trained (ALS or
    BPR with every parameter of :data:`~cfprune.models.training.TRAINING_DEFAULTS` and the seed,
    as :func:`cfprune.train_als` / ``train_bpr`` record them), so that the validation items are
    truly held out; else (model, False) unchanged, and its validation figures include what it
    memorised of those items."""
    from ...models import train_als, train_bpr
    info = model.info
    algorithm = info.get("algorithm")
    if algorithm not in TRAINING_DEFAULTS:
        return model, False
    keys = (*TRAINING_DEFAULTS[algorithm], "seed")
    if any(k not in info for k in keys):
        return model, False
    params = {k: info[k] for k in keys}
    trainer = train_als if algorithm == "als" else train_bpr
    threads = 0 if num_threads is None else int(num_threads)
    if algorithm == "bpr":
        threads = 1       # BPR is reproducible on one thread only
    return trainer(fit, num_threads=threads, show_progress=False, **params), True


def sample_users(valid, n_users, size, screen_share, seed):
    """(users, screen_users, n_valid_users): the validation users a search evaluates.

    ``valid``: CSR [>= n_users, n_items] of the validation part; the validation users are the
    rows below ``n_users`` with at least one validation item (``n_valid_users`` of them). When
    ``size`` is None or at least that many, ``(None, None, n)``: every validation user, no
    screening. Else ``users`` int64 [size] is a uniform sample without replacement (the first
    ``size`` of a permutation seeded by ``seed``), ascending, and ``screen_users`` int64
    [max(1, size // screen_share)] the first of those in the same permutation (a nested
    sample), ascending."""
    counts = np.diff(valid.indptr)[:n_users]
    everyone = np.flatnonzero(counts > 0).astype(np.int64)
    if size is None or everyone.size <= size:
        return None, None, int(everyone.size)
    order = np.random.default_rng(seed).permutation(everyone)
    return (np.sort(order[:size]), np.sort(order[:max(1, size // screen_share)]),
            int(everyone.size))


COVERAGE_RESAMPLES = 200
ALWAYS_DRAWN = 48


def upper_bound(result, base_result, target, z):
    """The candidate's ``target`` figure plus ``z`` standard errors of the mean paired per-user
    change (see :func:`lower_bound`)."""
    return float(result.metrics[target.key]) + z * paired_se(result, base_result, target)


def lower_bound(result, base_result, target, z):
    """The candidate's ``target`` figure less ``z`` standard errors of the mean paired per-user
    change against the baseline (``result``/``base_result``: EvaluationResults on the same
    validation users). Over a sample of the validation users that standard error is the sampling
    error of the sample's mean change, so the bound holds for the mean over all of them at its
    confidence. Coverage (not a per-user mean) has :func:`coverage_lower_bound` instead."""
    return float(result.metrics[target.key]) - z * paired_se(result, base_result, target)


def paired_se(result, base_result, target):
    """Standard error of the mean paired per-user change of ``target`` (0 for coverage, which
    is not a per-user mean: see :func:`coverage_lower_bound`; overlap is paired with the
    baseline's 1)."""
    key = target.key
    if key not in result.per_user:
        return 0.0
    values = result.per_user[key]
    if target.metric == "overlap":
        return paired_standard_error(values, np.ones_like(values))[1]
    ia, ib = paired_users(result, base_result)
    return paired_standard_error(values[ia], base_result.per_user[key][ib])[1]


def coverage_lower_bound(result, base_result, k, z, n_population=None,
                         n_resamples=COVERAGE_RESAMPLES, seed=0, base_counts=None):
    """dict of the one-sided lower bound of ``coverage@k`` of ``result`` against ``base_result``
    (EvaluationResults of the same ``n`` users, both with their ranked lists), for
    ``n_population`` users (None: ``n``):

    ``lower`` (in coverage units: the baseline's coverage x (``ratio`` - ``z`` ``se``)),
    ``ratio`` (the estimate of the candidate's coverage over the baseline's at
    ``n_population`` users), ``sample_ratio`` (that ratio over the ``n`` users), ``slope`` (its
    change per doubling of the users, at most 0) and ``se``.

    Coverage is a catalogue figure (distinct items in the users' lists), not a mean over users,
    and its ratio depends on how many users are listed: more users reach more of the tail,
    which a compressed model (pruned rows, coarse codes) reaches less, so the ratio falls as the
    users grow (on a generated 50k-user log, ``prune-rows:by=reach|lowrank:rank=56|pq:m=28``
    keeps 93.9% of the coverage over 4,096 users, 88.5% over 32,768 and 87.5% over all 50,000).
    A sample of the users therefore overstates the ratio over all of them. When
    ``n_population > n`` the ratio is measured over the nested prefixes of ``n/8``, ``n/4``,
    ``n/2`` and ``n`` users of a seeded permutation, its least-squares slope in ``log2``
    (users) is taken (never above 0: a ratio is not extrapolated upwards) and the ratio is
    extrapolated to ``n_population`` users: ``ratio = sample_ratio + slope *
    log2(n_population / n)``. ``se`` is the standard deviation of that estimate over
    ``n_resamples`` paired bootstrap resamples of the ``n`` users (:func:`bootstrap_coverage`:
    the same users drawn for both models; the prefixes of each draw are the resamples of the
    smaller sizes). A candidate passes when ``z`` of those standard errors below ``ratio`` still
    reach the share (``z`` 0: no resampling). ``base_counts``: the baseline's
    :func:`bootstrap_coverage` at these ``k``, sizes, ``n_resamples`` and ``seed``, if
    computed."""
    if not np.array_equal(result.users, base_result.users):
        raise DataError("coverage bound: the candidate and the baseline were evaluated on "
                        "different users")
    ranked, base_ranked = result.ranked[:, :k], base_result.ranked[:, :k]
    n = ranked.shape[0]
    sizes = coverage_sizes(n, n_population)
    order = np.random.default_rng(seed).permutation(n)
    base = np.array([_distinct(base_ranked[order[:m]]) for m in sizes], dtype=np.float64)
    if base[-1] == 0:
        return {"lower": 0.0, "ratio": 1.0, "sample_ratio": 1.0, "slope": 0.0, "se": 0.0}
    ratios = np.array([_distinct(ranked[order[:m]]) for m in sizes]) / np.maximum(base, 1)
    reach = np.log2((n if n_population is None else n_population) / n)
    slope = _slope(ratios, sizes)
    ratio = float(ratios[-1] + slope * reach)
    se = 0.0
    if z and n_resamples > 1:
        if base_counts is None:
            base_counts = bootstrap_coverage(base_ranked, sizes, n_resamples, seed)
        resampled = bootstrap_coverage(ranked, sizes, n_resamples, seed) / \
            np.maximum(base_counts, 1)
        estimates = resampled[:, -1] + np.array([_slope(r, sizes) for r in resampled]) * reach
        se = float(estimates.std(ddof=1))
    return {"lower": float(base[-1] / result.n_items * (ratio - z * se)), "ratio": ratio,
            "sample_ratio": float(ratios[-1]), "slope": slope, "se": se}


def coverage_sizes(n, n_population=None):
    """The nested sample sizes the coverage ratio is measured at: ``[n]`` when the ``n`` users
    are the whole population, else ``n/8, n/4, n/2, n`` (each at least 2, distinct)."""
    if n_population is None or n_population <= n:
        return [n]
    return sorted({max(2, n // 8), max(2, n // 4), max(2, n // 2), n})


def _slope(ratios, sizes):
    """Least-squares slope of ``ratios`` over ``log2(sizes)``, at most 0 (0 for one size)."""
    if len(sizes) < 2:
        return 0.0
    x = np.log2(np.asarray(sizes, dtype=np.float64))
    x = x - x.mean()
    return min(0.0, float(np.dot(x, ratios) / np.dot(x, x)))


def bootstrap_coverage(ids, sizes, n_resamples, seed):
    """int64 [n_resamples, len(sizes)]: the number of distinct ids in the lists ``ids`` (int32
    [n, k], one row per user, -1 for none) of bootstrap resamples of the users. Resample ``b``
    draws the users ``rng.integers(0, n, n)`` (the ``b``-th draw of
    ``numpy.random.default_rng(seed)``); its column ``j`` counts the first ``sizes[j]`` of them
    (ascending sizes, the last at most ``n``). Two calls at one seed draw the same users: a
    paired bootstrap.

    An id is in a resample when any user listing it is drawn. An id that ``L`` of the ``n`` users
    list is missed by ``m`` draws with chance ``(1 - L/n)^m < exp(-L m / n)``, so an id listed by
    more than :data:`ALWAYS_DRAWN` ``n / sizes[0]`` users is counted in every column (the chance
    that it is not, below ``exp(-48)`` = 1e-21, is left out). The others' (user, id) pairs are
    sorted by id once, and each size of each resample is one gather of the drawn users and one
    ``logical_or.reduceat`` over the ids' runs."""
    n = ids.shape[0]
    rng = np.random.default_rng(seed)
    valid = ids >= 0
    flat = ids[valid]
    users = np.broadcast_to(np.arange(n)[:, None], ids.shape)[valid]
    listed = np.bincount(flat) if flat.size else np.zeros(0, dtype=np.int64)
    threshold = ALWAYS_DRAWN * n / max(1, sizes[0])
    rare = listed[flat] <= threshold
    always = int(np.count_nonzero(listed > threshold))
    flat, users = flat[rare], users[rare]
    order = np.argsort(flat, kind="stable")
    flat, users = flat[order], users[order]
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]]) if flat.size else None
    counts = np.full((n_resamples, len(sizes)), always, dtype=np.int64)
    drawn = np.zeros(n, dtype=np.bool_)
    for b in range(n_resamples):
        draw = rng.integers(0, n, n)
        if starts is None:
            continue
        drawn[:] = False
        done = 0
        for j, m in enumerate(sizes):
            drawn[draw[done:m]] = True
            done = m
            counts[b, j] += int(np.count_nonzero(np.logical_or.reduceat(drawn[users], starts)))
    return counts


def _distinct(ids):
    """Distinct valid ids (>= 0) in ``ids``."""
    return int(np.unique(ids[ids >= 0]).size)
