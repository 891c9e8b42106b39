"""The report's float32 baselines: ALS and BPR tuned on a validation split, cached on disk.

Both grids are trained on the training part minus a validation part carved from it and scored
by recall@20 on the validation part (seen items filtered); the best point of each is retrained on
the whole training part. ALS searches factors x regularisation; BPR, with the factors ALS chose,
searches learning rate x iterations (``implicit``'s BPR overfits quickly on small data, so the
epoch count matters more than anything else), on one thread up to 5M training interactions so
that it is reproducible (:func:`bpr_threads`). Beyond the scale rule's user count
(:mod:`.scale`) both grids run by successive halving on nested seeded samples of users. The grid
results are stored as JSON under a key that hashes everything they depend on (the data, the
split, the grids, the seed, the scale rule when it samples and the library versions), so a rerun
with the same inputs skips the grids.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..evaluation import evaluate
from ..io import atomic_write, ensure_dir
from ..models import train_als, train_bpr
from ..models.training import TRAINING_DEFAULTS
from ..progress import Progress
from .scale import (DEFAULT_SCALE, carried_points, halving_rungs, rung_order, sample_rng,
                    sampled_users)

TUNING_METRIC = "recall@20"
CACHE_FORMAT = "cfprune-tuning"
CACHE_VERSION = 2
BPR_SINGLE_THREAD_MAX_NNZ = 5_000_000


@dataclass(frozen=True)
class Grid:
    """The tuning grids and the fixed training settings.

    ALS: ``factors`` x ``regularization`` (tuples), with ``alpha`` (confidence scale: a positive
    has confidence ``1 + alpha``) and ``iterations`` fixed. BPR: ``bpr_learning_rate`` x
    ``bpr_iterations`` (tuples), with ``bpr_regularization`` fixed and ALS's chosen factors.
    ``valid_fraction``: the share of each user's training interactions held out for validation.
    """

    factors: tuple = (32, 64, 128)
    regularization: tuple = (10.0, 30.0, 100.0, 300.0)
    alpha: float = TRAINING_DEFAULTS["als"]["alpha"]
    iterations: int = TRAINING_DEFAULTS["als"]["iterations"]
    bpr_learning_rate: tuple = (0.005, 0.01)
    bpr_iterations: tuple = (50, 100)
    bpr_regularization: float = TRAINING_DEFAULTS["bpr"]["regularization"]
    valid_fraction: float = 0.1

    def als_points(self):
        """list of (factors, regularization), factors-major."""
        return [(int(f), float(r)) for f in self.factors for r in self.regularization]

    def bpr_points(self):
        """list of (learning_rate, iterations), learning-rate-major."""
        return [(float(lr), int(n)) for lr in self.bpr_learning_rate for n in self.bpr_iterations]

    def as_dict(self):
        return {"factors": [int(f) for f in self.factors],
                "regularization": [float(r) for r in self.regularization],
                "alpha": float(self.alpha), "iterations": int(self.iterations),
                "bpr_learning_rate": [float(x) for x in self.bpr_learning_rate],
                "bpr_iterations": [int(n) for n in self.bpr_iterations],
                "bpr_regularization": float(self.bpr_regularization),
                "valid_fraction": float(self.valid_fraction), "metric": TUNING_METRIC}


DEFAULT_GRID = Grid()
QUICK_GRID = Grid(factors=(32, 64), regularization=(30.0,), bpr_learning_rate=(0.01,),
                  bpr_iterations=(50,))


def fingerprint(matrix):
    """sha256 hex digest of a CSR matrix's shape, structure and values."""
    h = hashlib.sha256()
    h.update(repr(matrix.shape).encode())
    for a in (matrix.indptr, matrix.indices, matrix.data):
        h.update(a.dtype.str.encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def cache_key(train, valid, grid, seed, scale=None):
    """The hex key of a tuning run: the tuning train and validation matrices, grid and seed, the
    scale rule when it samples (``scale``: its ``as_dict``), and the versions of the libraries
    that train and score."""
    import implicit
    import numba
    content = {"format": CACHE_FORMAT, "version": CACHE_VERSION,
               "train": fingerprint(train.matrix), "valid": fingerprint(valid.matrix),
               "grid": grid.as_dict(), "seed": int(seed),
               "implicit": implicit.__version__, "numba": numba.__version__}
    if scale is not None:
        content["scale"] = scale
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:24]


def _als(train, grid, factors, reg, seed, threads, show_progress=False):
    return train_als(train, factors=factors, regularization=reg, alpha=grid.alpha,
                     iterations=grid.iterations, num_threads=threads, seed=seed,
                     show_progress=show_progress)


def bpr_threads(train, num_threads, rule=DEFAULT_SCALE):
    """The threads BPR trains with: one up to :data:`BPR_SINGLE_THREAD_MAX_NNZ` training
    interactions on a log the scale ``rule`` does not sample (``implicit``'s multi-threaded BPR
    updates shared factors without locks, so only one thread gives the same model for the same
    seed), ``num_threads`` (0: all) beyond either, where one thread would take too long and the
    figures then vary slightly between runs."""
    if train.nnz <= BPR_SINGLE_THREAD_MAX_NNZ and not rule.applies(train.shape[0]):
        return 1
    return 0 if num_threads is None else int(num_threads)


def _bpr(train, grid, factors, learning_rate, iterations, seed, threads, show_progress=False):
    return train_bpr(train, factors=factors, learning_rate=learning_rate,
                     regularization=grid.bpr_regularization, iterations=iterations,
                     num_threads=threads, seed=seed, show_progress=show_progress)


def tune_baselines(train, valid, grid, *, seed=0, num_threads=None, cache_dir=None, log=None,
                   rule=DEFAULT_SCALE):
    """Train every grid point on ``train`` and score recall@20 on ``valid``.

    Where the scale ``rule`` applies, by successive halving (:func:`.scale.halving_rungs`):
    each rung trains its points on the rows of a seeded sample of users (nested samples, every
    user in the last rung) and scores them on at most ``rule.eval_users`` of those users'
    validation items; the best points of a rung (ties: the earlier point) go on to the next,
    among them the best ALS point of each factor count (:func:`.scale.carried_points`).

    Parameters
    ----------
    train, valid : Interactions of one shape (valid's items are unseen in train)
    grid : Grid
    seed : int
    num_threads : int or None (ALS training and the evaluation; BPR: see :func:`bpr_threads`)
    cache_dir : path or None
        Read the results from / write them to ``cache_dir/tuning-<key>.json``.
    log : callable(str) or None
    rule : ScaleRule

    Returns
    -------
    tuning : dict
        ``{"grid": grid.as_dict(), "cache_key", "from_cache",
        "als": {"results": [{"factors", "regularization", "recall@20", "ndcg@20",
        "seconds_train"}], "best": {"factors", "regularization"}},
        "bpr": {"results": [{"learning_rate", "iterations", "recall@20", "ndcg@20",
        "seconds_train"}], "best": {"factors", "learning_rate", "iterations"}}}``; each best
        point has the highest validation recall@20 of the last rung (ties: the earlier point).
        Where the rule applies, every result also has ``"rung"`` and ``"n_users"`` (users
        trained on) and the dict has ``"rungs"``: ``{"als": [[users, points], ...], "bpr"}``
        (BPR's last rung of one point is not trained: a one-point BPR grid has no results).
    model : FactorModel or None
        The best ALS point trained on all of ``train`` (None when read from the cache).
    """
    if not grid.als_points() or not grid.bpr_points():
        raise DataError("a tuning grid is empty: give at least one value of factors, "
                        "regularization, bpr_learning_rate and bpr_iterations")
    n_users = train.shape[0]
    sampled = rule.applies(n_users)
    key = cache_key(train, valid, grid, seed, rule.as_dict(n_users) if sampled else None)
    path = None if cache_dir is None else os.path.join(os.fspath(cache_dir),
                                                       f"tuning-{key}.json")
    if path is not None and os.path.isfile(path):
        cached = _read_cache(path, key)
        if cached is not None:
            if log:
                log(f"tuning: grid results read from the cache {path}")
            cached["from_cache"] = True
            return cached, None
    threads = 0 if num_threads is None else int(num_threads)
    order = rung_order(n_users, seed) if sampled else None
    als_rungs = halving_rungs(len(grid.als_points()), n_users, rule,
                              n_groups=len(set(grid.factors)))
    bpr_rungs = halving_rungs(len(grid.bpr_points()), n_users, rule, single_last=False)
    kept = {}

    def als_point(part, point):
        model = _als(part, grid, point[0], point[1], seed, threads)
        return model, {"factors": point[0], "regularization": point[1]}

    def bpr_point(part, point):
        model = _bpr(part, grid, als_best["factors"], point[0], point[1], seed,
                     bpr_threads(train, num_threads, rule))
        return model, {"learning_rate": point[0], "iterations": point[1]}

    common = dict(train=train, valid=valid, order=order, rule=rule, seed=seed,
                  num_threads=num_threads)
    als_results = _halving("ALS", als_point, grid.als_points(), als_rungs, kept=kept,
                           group=lambda point: point[0], **common)
    als_best = _best(als_results)
    bpr_results = _halving("BPR", bpr_point, grid.bpr_points(), bpr_rungs, kept=None, **common)
    # a one-point BPR grid at scale trains no rung: that point is the choice
    bpr_best = _best(bpr_results) if bpr_results else \
        dict(zip(("learning_rate", "iterations"), grid.bpr_points()[0]))
    out = {"grid": grid.as_dict(), "cache_key": key,
           "als": {"results": als_results,
                   "best": {"factors": als_best["factors"],
                            "regularization": als_best["regularization"]}},
           "bpr": {"results": bpr_results,
                   "best": {"factors": als_best["factors"],
                            "learning_rate": bpr_best["learning_rate"],
                            "iterations": bpr_best["iterations"]}}}
    if sampled:
        out["rungs"] = {"als": [list(r) for r in als_rungs], "bpr": [list(r) for r in bpr_rungs]}
    if path is not None:
        ensure_dir(os.path.dirname(path))
        text = json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": key, **out},
                          indent=1).encode()
        atomic_write(path, lambda f: f.write(text))
    out["from_cache"] = False
    return out, kept.get("model")


def _halving(label, train_point, points, rungs, *, train, valid, order, rule, seed,
             num_threads, kept, group=None):
    """The result dicts of every rung of one grid (the last rung's last), a progress line per
    point; ``kept`` (a dict or None) receives the best point's model of the rung trained on
    every user as ``"model"``; ``group`` (point -> key, or None) names the groups of which each
    rung carries the best point (with ``rule.carry_each_group``)."""
    results, alive = [], list(points)
    sampled = order is not None
    progress = Progress(f"report: tuning {label}", sum(n for _, n in rungs), unit="model")
    for rung, (n_rung, n_points) in enumerate(rungs):
        if rung:
            last = results[-len(alive):]
            groups = [group(p) for p in alive] if group and rule.carry_each_group else None
            alive = [alive[i] for i in carried_points([_score(r) for r in last], groups,
                                                      n_points)]
        everyone = n_rung >= train.shape[0]
        if everyone:
            part, part_valid = train, valid
            users = sampled_users(valid, rule, seed, "valid")
        else:
            rows = np.sort(order[:n_rung])
            part, part_valid = train.matrix[rows], valid.matrix[rows]
            having = np.flatnonzero(np.diff(part_valid.indptr) > 0)
            users = having if having.size <= rule.eval_users else np.sort(
                sample_rng(seed, "valid", rung).choice(having, rule.eval_users, replace=False))
        best_score = -np.inf
        for point in alive:
            start = time.perf_counter()
            model, params = train_point(part, point)
            seconds = time.perf_counter() - start
            scores = _validation_scores(model, part, part_valid, num_threads, users)
            result = {**params, "seconds_train": seconds, **scores}
            if sampled:
                result.update(rung=rung, n_users=int(min(n_rung, train.shape[0])))
            results.append(result)
            if kept is not None and everyone and _score(result) > best_score:
                best_score = _score(result)
                kept["model"] = model
            described = ", ".join(f"{k}={v:g}" for k, v in params.items())
            where = f" on {n_rung:,} users" if sampled else ""
            progress.step(f"({described}){where} recall@20 {scores['recall@20']:.4f}")
    progress.close()
    return results


def _score(result):
    value = result[TUNING_METRIC]
    return -np.inf if value is None or np.isnan(value) else value


def _best(results):
    """The best result of the last rung (results without ``rung`` are one rung)."""
    last = max((r.get("rung", 0) for r in results), default=0)
    final = [r for r in results if r.get("rung", 0) == last]
    return final[int(np.argmax([_score(r) for r in final]))]


def _validation_scores(model, train, valid, num_threads, users=None):
    metrics = evaluate(model, train, valid, ks=(20,), num_threads=num_threads, users=users,
                       show_progress=False).metrics
    return {"recall@20": metrics["recall@20"], "ndcg@20": metrics["ndcg@20"]}


def _read_cache(path, key):
    """The cached tuning dict, or None when the file is unreadable or for another key."""
    try:
        with open(path, encoding="utf-8") as f:
            stored = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("format") != CACHE_FORMAT or \
            stored.get("version") != CACHE_VERSION or stored.get("key") != key:
        return None
    return {name: stored[name] for name in ("grid", "cache_key", "als", "bpr", "rungs")
            if name in stored}


def train_baselines(train, tuning, grid, *, seed=0, num_threads=None, rule=DEFAULT_SCALE):
    """(ALS model, BPR model, seconds dict): both best points of ``tuning`` retrained on
    ``train``, a progress line each; on a log the scale ``rule`` samples, where one training
    takes minutes, also the trainings' own progress (a line at most every
    :data:`~cfprune.models.training.ITERATION_LINE_SECONDS` off a terminal)."""
    threads = 0 if num_threads is None else int(num_threads)
    als_best, bpr_best = tuning["als"]["best"], tuning["bpr"]["best"]
    show = None if rule.applies(train.shape[0]) else False
    with Progress("report: training the baselines", 2, unit="model") as progress:
        start = time.perf_counter()
        als = _als(train, grid, als_best["factors"], als_best["regularization"], seed, threads,
                   show)
        seconds_als = time.perf_counter() - start
        progress.step(f"ALS ({als_best['factors']} factors) in {seconds_als:.0f} s")
        start = time.perf_counter()
        bpr = _bpr(train, grid, bpr_best["factors"], bpr_best["learning_rate"],
                   bpr_best["iterations"], seed, bpr_threads(train, num_threads, rule), show)
        seconds_bpr = time.perf_counter() - start
        progress.step(f"BPR ({bpr_best['iterations']} iterations) in {seconds_bpr:.0f} s")
    return als, bpr, {"als": seconds_als, "bpr": seconds_bpr}


def tuned_als(train, tuning, grid, *, seed=0, num_threads=None):
    """The ALS of ``tuning``'s best point trained on ``train`` (the report trains it on the
    training part less the validation part, to make its decisions on that part; a tuning run
    that is not read from the cache hands it over instead)."""
    best = tuning["als"]["best"]
    return _als(train, grid, best["factors"], best["regularization"], seed,
                0 if num_threads is None else int(num_threads))
