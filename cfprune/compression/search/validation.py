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


def coverage_lower_bound(ranked, base_ranked, n_items, z, n_resamples=COVERAGE_RESAMPLES,
                         seed=0, base_counts=None):
    """{"lower", "ratio", "se"}: the one-sided lower bound of the coverage of the lists
    ``ranked`` against ``base_ranked`` (int32 [n, k], the candidate's and the baseline's top-k
    ids of the same ``n`` users, -1 for none) over ``n_items``, in coverage units: the
    baseline's coverage x (``ratio`` - ``z`` ``se``).

    ``ratio`` is the candidate's coverage over the baseline's, and ``se`` the standard deviation
    of that ratio over ``n_resamples`` paired bootstrap resamples of the users (the same users
    drawn for both models: :func:`bootstrap_coverage` at the same ``seed``). Coverage is a
    catalogue figure (distinct items in the users' lists), not a mean over users, so it has no
    per-user standard error; the bootstrap measures how much it moves with the users drawn
    (``z`` 0: no resampling). ``base_counts``: the baseline's :func:`bootstrap_coverage` at
    these ``n_resamples`` and ``seed``, if computed.

    The ratio is that of these users only: it falls as the users grow (more users reach more of
    the tail, which pruned rows and coarse codes reach less: on a generated 200k-user log,
    ``prune-rows:by=reach|lowrank:rank=56|pq:m=28`` keeps 94.3% of the float model's
    coverage@20 over 32,768 users and 89.7% over all 200,000), so over a sample it overstates
    the ratio over everyone (see :meth:`TargetSearch.confirm
    <cfprune.compression.search.engine.TargetSearch.confirm>`)."""
    if ranked.shape[0] != base_ranked.shape[0]:
        raise DataError(f"coverage bound: {ranked.shape[0]} candidate lists against "
                        f"{base_ranked.shape[0]} baseline lists; both must be of the same users")
    base = _distinct(base_ranked)
    if base == 0:
        return {"lower": 0.0, "ratio": 1.0, "se": 0.0}
    covered = _distinct(ranked)
    se = 0.0
    if z and n_resamples > 1:
        if base_counts is None:
            base_counts = bootstrap_coverage(base_ranked, n_resamples, seed)
        resampled = bootstrap_coverage(ranked, n_resamples, seed) / np.maximum(base_counts, 1)
        se = float(resampled.std(ddof=1))
    return {"lower": float((covered - z * se * base) / n_items), "ratio": covered / base,
            "se": se}


def bootstrap_coverage(ids, n_resamples, seed):
    """int64 [n_resamples]: the number of distinct ids in the lists ``ids`` (int32 [n, k], one
    row per user, -1 for none) of bootstrap resamples of the users. Resample ``b`` is the users
    ``rng.integers(0, n, n)`` (the ``b``-th draw of ``numpy.random.default_rng(seed)``), so two
    calls at one seed draw the same users: a paired bootstrap.

    An id is in a resample when any user listing it is drawn. An id that ``L`` of the ``n`` users
    list is missed with chance ``(1 - L/n)^n < exp(-L)``, so an id listed by more than
    :data:`ALWAYS_DRAWN` users is counted in every resample (the chance that it is not, below
    ``exp(-48)`` = 1e-21, is left out). The others' (user, id) pairs are sorted by id once, and
    each resample is one gather of the drawn users and one ``logical_or.reduceat`` over the
    ids' runs."""
    n = ids.shape[0]
    rng = np.random.default_rng(seed)
    valid = ids >= 0
    flat = ids[valid]
    users = np.broadcast_to(np.arange(n)[:, None], ids.shape)[valid]
    listed = np.bincount(flat) if flat.size else np.zeros(0, dtype=np.int64)
    rare = listed[flat] <= ALWAYS_DRAWN
    flat, users = flat[rare], users[rare]
    order = np.argsort(flat, kind="stable")
    flat, users = flat[order], users[order]
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]]) if flat.size else None
    counts = np.full(n_resamples, int(np.count_nonzero(listed > ALWAYS_DRAWN)), dtype=np.int64)
    drawn = np.zeros(n, dtype=np.bool_)
    for b in range(n_resamples):
        draw = rng.integers(0, n, n)
        if starts is not None:
            drawn[:] = False
            drawn[draw] = True
            counts[b] += int(np.count_nonzero(np.logical_or.reduceat(drawn[users], starts)))
    return counts


def _distinct(ids):
    """Distinct valid ids (>= 0) in ``ids``."""
    return int(np.unique(ids[ids >= 0]).size)
