"""The report's float32 baselines: ALS and BPR tuned on a validation split, cached on disk.

Both grids are trained on the training part minus a validation part carved from it and scored
by recall@20 on the validation part (seen items filtered); the best point of each is retrained on
the whole training part. ALS searches factors x regularisation; BPR, with the factors ALS chose,
searches learning rate x iterations (``implicit``'s BPR overfits quickly on small data, so the
epoch count matters more than anything else), on one thread up to 5M training interactions so
that it is reproducible. The grid results are stored as JSON under a key
that hashes everything they depend on (the data, the split, the grids, the seed and the library
versions), so a rerun with the same inputs skips the grids.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError
from ..evaluation import evaluate
from ..io import atomic_write, ensure_dir
from ..models import train_als, train_bpr
from ..models.training import TRAINING_DEFAULTS

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


def cache_key(train, valid, grid, seed):
    """The hex key of a tuning run: the tuning train and validation matrices, grid and seed, and
    the versions of the libraries that train and score."""
    import implicit
    import numba
    content = {"format": CACHE_FORMAT, "version": CACHE_VERSION,
               "train": fingerprint(train.matrix), "valid": fingerprint(valid.matrix),
               "grid": grid.as_dict(), "seed": int(seed),
               "implicit": implicit.__version__, "numba": numba.__version__}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:24]


def _als(train, grid, factors, reg, seed, threads):
    return train_als(train, factors=factors, regularization=reg, alpha=grid.alpha,
                     iterations=grid.iterations, num_threads=threads, seed=seed,
                     show_progress=False)


def bpr_threads(train, num_threads):
    """The threads BPR trains with: one up to :data:`BPR_SINGLE_THREAD_MAX_NNZ` training
    interactions (``implicit``'s multi-threaded BPR updates shared factors without locks, so only
    one thread gives the same model for the same seed), ``num_threads`` (0: all) beyond, where
    one thread would take too long and the figures then vary slightly between runs."""
    if train.nnz <= BPR_SINGLE_THREAD_MAX_NNZ:
        return 1
    return 0 if num_threads is None else int(num_threads)


def _bpr(train, grid, factors, learning_rate, iterations, seed, threads):
    return train_bpr(train, factors=factors, learning_rate=learning_rate,
                     regularization=grid.bpr_regularization, iterations=iterations,
                     num_threads=threads, seed=seed, show_progress=False)


def _best(results):
    scores = np.array([r[TUNING_METRIC] for r in results], dtype=np.float64)
    return results[int(np.argmax(np.where(np.isnan(scores), -np.inf, scores)))]


def tune_baselines(train, valid, grid, *, seed=0, num_threads=None, cache_dir=None, log=None):
    """Train every grid point on ``train`` and score recall@20 on ``valid``.

    Parameters
    ----------
    train, valid : Interactions of one shape (valid's items are unseen in train)
    grid : Grid
    seed : int
    num_threads : int or None (ALS training and the evaluation; BPR: see :func:`bpr_threads`)
    cache_dir : path or None
        Read the results from / write them to ``cache_dir/tuning-<key>.json``.
    log : callable(str) or None

    Returns
    -------
    dict
        ``{"grid": grid.as_dict(), "cache_key", "from_cache",
        "als": {"results": [{"factors", "regularization", "recall@20", "ndcg@20",
        "seconds_train"}], "best": {"factors", "regularization"}},
        "bpr": {"results": [{"learning_rate", "iterations", "recall@20", "ndcg@20",
        "seconds_train"}], "best": {"factors", "learning_rate", "iterations"}}}``; each best
        point has the highest validation recall@20 (ties: the earlier point).
    """
    if not grid.als_points() or not grid.bpr_points():
        raise DataError("a tuning grid is empty: give at least one value of factors, "
                        "regularization, bpr_learning_rate and bpr_iterations")
    key = cache_key(train, valid, grid, seed)
    path = None if cache_dir is None else os.path.join(os.fspath(cache_dir),
                                                       f"tuning-{key}.json")
    if path is not None and os.path.isfile(path):
        cached = _read_cache(path, key)
        if cached is not None:
            if log:
                log(f"tuning: grid results read from the cache {path}")
            cached["from_cache"] = True
            return cached
    threads = 0 if num_threads is None else int(num_threads)
    total = len(grid.als_points()) + len(grid.bpr_points())
    with tqdm(total=total, desc="tune baselines", unit="model", disable=None) as bar:
        als_results = []
        for factors, reg in grid.als_points():
            start = time.perf_counter()
            model = _als(train, grid, factors, reg, seed, threads)
            als_results.append({"factors": factors, "regularization": reg,
                                "seconds_train": time.perf_counter() - start,
                                **_validation_scores(model, train, valid, num_threads)})
            bar.update()
        als_best = _best(als_results)
        bpr_results = []
        for learning_rate, iterations in grid.bpr_points():
            start = time.perf_counter()
            model = _bpr(train, grid, als_best["factors"], learning_rate, iterations, seed,
                         bpr_threads(train, num_threads))
            bpr_results.append({"learning_rate": learning_rate, "iterations": iterations,
                                "seconds_train": time.perf_counter() - start,
                                **_validation_scores(model, train, valid, num_threads)})
            bar.update()
    bpr_best = _best(bpr_results)
    out = {"grid": grid.as_dict(), "cache_key": key,
           "als": {"results": als_results,
                   "best": {"factors": als_best["factors"],
                            "regularization": als_best["regularization"]}},
           "bpr": {"results": bpr_results,
                   "best": {"factors": als_best["factors"],
                            "learning_rate": bpr_best["learning_rate"],
                            "iterations": bpr_best["iterations"]}}}
    if path is not None:
        ensure_dir(os.path.dirname(path))
        text = json.dumps({"format": CACHE_FORMAT, "version": CACHE_VERSION, "key": key, **out},
                          indent=1).encode()
        atomic_write(path, lambda f: f.write(text))
    out["from_cache"] = False
    return out


def _validation_scores(model, train, valid, num_threads):
    metrics = evaluate(model, train, valid, ks=(20,), num_threads=num_threads,
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
    return {name: stored[name] for name in ("grid", "cache_key", "als", "bpr")}


def train_baselines(train, tuning, grid, *, seed=0, num_threads=None):
    """(ALS model, BPR model, seconds dict): both best points of ``tuning`` retrained on
    ``train``."""
    threads = 0 if num_threads is None else int(num_threads)
    als_best, bpr_best = tuning["als"]["best"], tuning["bpr"]["best"]
    start = time.perf_counter()
    als = _als(train, grid, als_best["factors"], als_best["regularization"], seed, threads)
    seconds_als = time.perf_counter() - start
    start = time.perf_counter()
    bpr = _bpr(train, grid, bpr_best["factors"], bpr_best["learning_rate"],
               bpr_best["iterations"], seed, bpr_threads(train, num_threads))
    seconds_bpr = time.perf_counter() - start
    return als, bpr, {"als": seconds_als, "bpr": seconds_bpr}


def tuned_als(train, tuning, grid, *, seed=0, num_threads=None):
    """The ALS of ``tuning``'s best point trained on ``train`` (the report trains it on the
    training part less the validation part, to make its decisions on that part)."""
    best = tuning["als"]["best"]
    return _als(train, grid, best["factors"], best["regularization"], seed,
                0 if num_threads is None else int(num_threads))
