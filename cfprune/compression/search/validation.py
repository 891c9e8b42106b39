"""How the search judges a candidate on its validation part: the model the validation items are
truly held out of, and the one-sided lower bound a per-user target is met by."""

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


def lower_bound(result, base_result, target, z):
    """The candidate's ``target`` figure less ``z`` standard errors of the mean paired per-user
    change against the baseline (``result``/``base_result``: EvaluationResults on the same
    validation users). Coverage, not a per-user mean, is its value."""
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
