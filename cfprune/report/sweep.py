"""Run a grid of compression specs against one float32 baseline: compress, evaluate, time.

Every row of a sweep is one spec applied to the baseline model. Its metrics come from
:func:`cfprune.evaluation.evaluate` on the same test users as the baseline (the baseline's ranked
lists are scored once and lent to every row for ``overlap@k``), its change against the baseline
from a paired bootstrap over those users (:func:`cfprune.uncertainty.paired_difference`) with the
p-value of a paired test (the mean change over its standard error, normal approximation: the
report's test sets hold hundreds to thousands of users), and its throughput from
:func:`measure_throughput` with the same thread count as the baseline, every timed round kept so
that the report can tell a difference from timing noise.

With ``validation``, the same spec is also applied to the ALS model trained without the
validation part and its figures on that part (``valid_metrics``) are what the report's decisions
are made on; the test figures then only report them.

With a Dask ``client`` (:func:`evaluate_on`), every evaluation runs its user blocks on the
cluster (:func:`cfprune.distributed.evaluate_distributed`: the same blocks and figures as in
process); the compressions and the throughput timings stay in this process (a rate is of the
machine that serves).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..compression import parse_spec
from ..errors import CfpruneError
from ..evaluation import evaluate
from ..facade import compress
from ..progress import Progress
from ..uncertainty import paired_difference, paired_standard_error, paired_users

DELTA_METRICS = ("recall@20", "ndcg@20")
VALID_KS = (20,)
VALID_METRICS = ("recall@20", "ndcg@20", "coverage@20", "tail_recall@20")
THROUGHPUT_K = 10


def default_sweep(dim, quick=False):
    """The default list of specs for a baseline of ``dim`` factors.

    Every method at one to three budgets, limited by ``dim`` (PQ needs ``m <= dim``, low rank and
    distillation a rank below ``dim``); the per-table quantisers and magnitude pruning compress
    both tables (``table=both``) so the bytes they save show in the whole model; row pruning
    removes items only. ``quick`` keeps one budget of a few methods (a smoke run).
    """
    dim = int(dim)

    def ranks(*divisors):
        return [dim // d for d in divisors if 2 <= dim // d < dim]

    if quick:
        specs = ["fp16:table=both", "int8:axis=auto,table=both",
                 "prune-rows:keep=0.5,by=popularity"]
        specs += [f"lowrank:rank={r}" for r in ranks(4)]
        specs += [f"pq:m={m},table=both" for m in (8,) if m <= dim]
        return specs
    specs = []
    for by in ("norm", "popularity"):
        specs += [f"prune-rows:keep={keep},by={by}" for keep in (0.75, 0.5)]
    specs += [f"magnitude:sparsity={s},table=both" for s in (0.5, 0.8)]
    specs += [f"lowrank:rank={r}" for r in ranks(2, 4, 8)]
    specs += [f"lowrank:rank={r},mode=items" for r in ranks(2)]
    specs += ["fp16:table=both", "int8:axis=auto,table=both", "int4:table=both"]
    specs += [f"pq:m={m},table=both" for m in (4, 8, 16) if m <= dim]
    if 8 <= dim:
        specs += ["pq:m=8,rotation=opq,table=both", "pq:m=8,loss=anisotropic,table=both"]
    specs += [f"distill:rank={r}" for r in ranks(4)]
    specs += [f"lowrank:rank={r}|int8:table=both" for r in ranks(2)]
    if 8 <= dim:
        specs += ["prune-rows:keep=0.5,by=popularity|pq:m=8",
                  "pq:m=8,rerank=int8,candidates=100"]
    return specs


def check_specs(specs):
    """The specs, each parsed once so that a typo stops the report before any work (SpecError
    naming the method, parameter and allowed values)."""
    specs = [str(s) for s in specs]
    for spec in specs:
        parse_spec(spec)
    return specs


def measure_throughput(model, user_items, *, k=THROUGHPUT_K, num_threads=None, repeats=3,
                       min_seconds=0.1, users=None):
    """Users per second of ``model.recommend`` for ``users`` (default every user), top-``k``
    with seen filtering.

    One warm-up pass, then ``repeats`` timed rounds; a round repeats the pass until it has run
    ``min_seconds``. Returns ``(best rate, [rate of every round])``.

    Parameters
    ----------
    model : FactorModel
    user_items : scipy CSR [n_users, n_items], the training interactions (filtered)
    users : int64 [m] or None, the users timed (the report samples them at scale)
    """
    if users is None:
        users, seen = np.arange(model.n_users, dtype=np.int64), user_items
    else:
        users = np.asarray(users, dtype=np.int64)
        seen = user_items[users]
    model.recommend(users, seen, k=k, filter_seen=True, num_threads=num_threads)
    rates = []
    for _ in range(max(int(repeats), 1)):
        passes = 0
        start = time.perf_counter()
        while True:
            model.recommend(users, seen, k=k, filter_seen=True, num_threads=num_threads)
            passes += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        rates.append(passes * users.size / elapsed)
    return max(rates), rates


def metric_subset(metrics, ks):
    """The figures a report keeps of an evaluation: every ``name@k`` for ``k`` in ``ks``."""
    suffixes = tuple(f"@{k}" for k in ks)
    return {name: float(v) for name, v in metrics.items() if name.endswith(suffixes)}


def paired_deltas(result, base_result, *, names=DELTA_METRICS, n_resamples=1000,
                  confidence=0.95, seed=0):
    """``{metric: {"diff", "low", "high", "significant"}}``: the paired bootstrap interval of
    ``result - base_result`` per metric over the users both evaluated."""
    ia, ib = paired_users(result, base_result)
    out = {}
    for name in names:
        diff, low, high, significant = paired_difference(
            result.per_user[name][ia], base_result.per_user[name][ib], n_resamples=n_resamples,
            confidence=confidence, seed=seed)
        out[name] = {"diff": diff, "low": low, "high": high, "significant": bool(significant),
                     "p_value": paired_p_value(result.per_user[name][ia],
                                               base_result.per_user[name][ib])}
    return out


def paired_p_value(a, b):
    """Two-sided p-value of ``mean(a - b) = 0`` over the users where both are defined: the mean
    over its standard error against the normal distribution (1.0 when every difference is 0)."""
    mean, se, n = paired_standard_error(a, b)
    if n < 2:
        return 1.0
    if se == 0:
        return 1.0 if mean == 0 else 0.0
    return math.erfc(abs(mean) / se / math.sqrt(2.0))


def evaluate_baseline(model, train, test, *, ks, num_threads=None, repeats=3, users=None,
                      timed_users=None, client=None):
    """(EvaluationResult with ranked lists kept, dict of its report figures) of a baseline on
    ``users`` (None: every test user) with its throughput over ``timed_users`` (None: all);
    evaluated in process or on ``client``'s cluster (:func:`evaluate_on`)."""
    start = time.perf_counter()
    result = evaluate_on(client, model, train, test, ks=ks, num_threads=num_threads,
                         keep_ranked=True, users=users)
    seconds_evaluate = time.perf_counter() - start
    rate, rates = measure_throughput(model, _csr(train), num_threads=num_threads,
                                     repeats=repeats, users=timed_users)
    figures = {"bytes": int(model.nbytes), "bytes_per_item": model.nbytes / model.n_items,
               "metrics": metric_subset(result.metrics, ks), "n_test_users": result.n_users,
               "users_per_second": rate, "users_per_second_rounds": rates,
               "seconds_evaluate": seconds_evaluate}
    return result, figures


def evaluate_on(client, model, train, test, *, ks, num_threads=None, **options):
    """:func:`cfprune.evaluation.evaluate` of ``model`` (``options``: its ``baseline``,
    ``users``, ``keep_ranked``) in this process with ``num_threads`` when ``client`` is None,
    else on the Dask cluster of the ``distributed.Client`` ``client``
    (:func:`cfprune.distributed.evaluate_distributed`, one Numba thread per task): the same
    EvaluationResult either way."""
    if client is None:
        return evaluate(model, train, test, ks=ks, num_threads=num_threads,
                        show_progress=False, **options)
    from ..distributed import evaluate_distributed
    return evaluate_distributed(model, _csr(train), _csr(test), ks=ks, scheduler=client,
                                show_progress=False, **options)


def validation_figures(model, fit, valid, num_threads=None, users=None, client=None):
    """``{metric: value}`` of :data:`VALID_METRICS` for ``model`` on the validation part
    (``fit``'s items filtered), over ``users`` (None: every user with a validation item), in
    process or on ``client``'s cluster (:func:`evaluate_on`)."""
    result = evaluate_on(client, model, fit, valid, ks=VALID_KS, num_threads=num_threads,
                         users=users)
    return {name: float(result.metrics[name]) for name in VALID_METRICS}


def run_sweep(baseline, specs, train, test, base_result, *, ks, num_threads=None, seed=0,
              n_resamples=1000, repeats=3, log=None, validation=None, timed_users=None,
              valid_users=None, client=None):
    """Compress ``baseline`` by every spec and measure each result, a progress line per spec.

    Parameters
    ----------
    baseline : FactorModel (float32)
    specs : list of str
    train, test : Interactions (train: the compression's interactions and the seen filter)
    base_result : EvaluationResult of the baseline with ``keep_ranked=True``; the rows are
        evaluated on its users (all test users, or the report's sample of them)
    ks : tuple of int (must hold 10, 20 and 50 for the report's columns)
    num_threads : int or None, for evaluation and throughput alike
    seed : int, of the bootstrap
    log : callable(str) or None, told about skipped specs
    validation : (FactorModel, Interactions fit, Interactions valid) or None
        The ALS trained on ``fit`` (the training part less the validation part): every spec is
        also applied to it and evaluated on ``valid`` (row key ``valid_metrics``).
    timed_users, valid_users : int64 arrays or None
        The users whose throughput is timed and whose validation figures are taken (None: all).
    client : distributed.Client or None
        Evaluate on this Dask cluster (:func:`evaluate_on`; the same figures as in process).

    Returns
    -------
    rows : list of dict
        ``{"spec", "bytes", "ratio", "bytes_per_item", "table_bytes", "metrics", "delta",
        "users_per_second", "users_per_second_rounds", "seconds_compress", "seconds_evaluate",
        "info"}`` (and ``valid_metrics``) in the order of ``specs``.
    skipped : list of dict
        ``{"spec", "error"}`` for specs whose compression failed with a cfprune error.
    """
    user_items = _csr(train)
    rows, skipped = [], []
    progress = Progress("report: sweep", len(specs), unit="spec")
    for spec in specs:
        start = time.perf_counter()
        try:
            model = compress(baseline, spec, train)
        except CfpruneError as e:
            skipped.append({"spec": spec, "error": str(e)})
            if log:
                log(f"skipped {spec}: {e}")
            progress.step(f"{spec} skipped")
            continue
        seconds_compress = time.perf_counter() - start
        start = time.perf_counter()
        result = evaluate_on(client, model, train, test, ks=ks, num_threads=num_threads,
                             baseline=base_result, users=base_result.users)
        seconds_evaluate = time.perf_counter() - start
        rate, rates = measure_throughput(model, user_items, num_threads=num_threads,
                                         repeats=repeats, users=timed_users)
        extra = {}
        if validation is not None:
            tune_model, fit, valid = validation
            extra["valid_metrics"] = validation_figures(compress(tune_model, spec, fit), fit,
                                                        valid, num_threads, valid_users, client)
        progress.step(f"{spec} ({baseline.nbytes / model.nbytes:.1f}x) recall@20 "
                      f"{result.metrics['recall@20']:.4f}")
        rows.append({
            "spec": spec,
            "bytes": int(model.nbytes),
            "ratio": baseline.nbytes / model.nbytes,
            "bytes_per_item": model.nbytes / model.n_items,
            "table_bytes": {side: int(t.nbytes) for side, t in model.tables().items()},
            "serving_bytes": int(model.nbytes + model.items.serving_nbytes - model.items.nbytes),
            "metrics": metric_subset(result.metrics, ks),
            "delta": paired_deltas(result, base_result, n_resamples=n_resamples, seed=seed),
            "users_per_second": rate,
            "users_per_second_rounds": rates,
            "seconds_compress": seconds_compress,
            "seconds_evaluate": seconds_evaluate,
            "info": {"canonical_spec": model.spec,
                     "catalogue_coverage": model.info.get("catalogue_coverage", 1.0),
                     "storage": {side: t.storage for side, t in model.tables().items()},
                     "steps": model.info.get("compression", [])},
            **extra,
        })
    progress.close()
    return rows, skipped


def _csr(x):
    return getattr(x, "matrix", x)
