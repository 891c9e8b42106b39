"""How the search judges a candidate on its validation part: the model the validation items are
truly held out of, the seeded sample of validation users it is judged on, and the one-sided
bounds a per-user target is met (lower) or screened out (upper) by."""

from __future__ import annotations

import numpy as np

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


def upper_bound(result, base_result, target, z):
    """The candidate's ``target`` figure plus ``z`` standard errors of the mean paired per-user
    change (see :func:`lower_bound`)."""
    return float(result.metrics[target.key]) + z * paired_se(result, base_result, target)


def lower_bound(result, base_result, target, z):
    """The candidate's ``target`` figure less ``z`` standard errors of the mean paired per-user
    change against the baseline (``result``/``base_result``: EvaluationResults on the same
    validation users). Over a sample of the validation users that standard error is the sampling
    error of the sample's mean change, so the bound holds for the mean over all of them at its
    confidence. Coverage, not a per-user mean, is its value."""
    return float(result.metrics[target.key]) - z * paired_se(result, base_result, target)


def paired_se(result, base_result, target):
    """Standard error of the mean paired per-user change of ``target`` (0 for coverage, which
    is not a per-user mean; overlap is paired with the baseline's 1)."""
    key = target.key
    if key not in result.per_user:
        return 0.0
    values = result.per_user[key]
    if target.metric == "overlap":
        return paired_standard_error(values, np.ones_like(values))[1]
    ia, ib = paired_users(result, base_result)
    return paired_standard_error(values[ia], base_result.per_user[key][ib])[1]
