"""Target search: the smallest pipeline of the existing methods that keeps every target.

``compress(model, target="recall@20>=0.97,coverage@20>=0.90", interactions=train)`` (CLI:
``cfprune compress MODEL --train TRAIN --target ...``) runs :func:`search`:

1. a seeded validation part (``valid_fraction`` of every user's interactions) is carved out of
   the training interactions; the compressions are fitted with the rest (``fit``: popularity
   counts, reach lists) and every candidate is evaluated on the validation part with the ``fit``
   items filtered, as :func:`cfprune.evaluate` does. The user's test data never enters. The
   model was trained on the validation items too, and a model scores what it memorised highly:
   measured so, low rank and coarse codes look far worse than they are on held-out data (on
   ML-1M, ``lowrank:rank=48`` keeps 90% of validation recall but 99% of test recall). So a model
   whose ``model.info`` records its training (``train_als``/``train_bpr``) is retrained on
   ``fit`` with the same parameters (:func:`held_out_model`), the search runs on that model, and
   the pick's spec is then applied to the model given, with all the interactions. (``valid=``
   gives a validation part the model never saw instead, as the report does.);
2. a target ``metric@k>=x`` holds when the candidate's validation figure is at least ``x`` times
   the uncompressed model's on the same users (any metric :func:`cfprune.evaluate` computes:
   recall, ndcg, coverage, tail_recall, overlap, ...). A PQ tail (k-means) that passes is fitted
   and evaluated again at the seeds :data:`RESEEDS` and passes only if it passes there too: the
   model returned is another k-means fit, and one seed's pass can be luck (on ml-100k,
   ``prune-rows:by=reach,k=50|lowrank:rank=24|pq:m=12,nbits=4`` kept 100.9% of the validation
   recall@20 at seed 0 and 94-98% at seeds 1-3);
3. the candidates are pipelines ``[row pruning] | [lowrank] | quantiser``: row pruning by
   popularity (keep 0.7 ... 0.05) or by reach (``k`` = 5, 2.5, 1.5 and 1 times the largest target
   cut-off), joint low rank at 7/8, 13/16, 3/4 ... 1/4 of the dimension, and the quantisers
   int8, int4, int2 (per dimension), PQ with 8- and 4-bit codes at several ``m``, and OPQ / the
   anisotropic loss on the 4-bit PQ. A *tail* (low rank, quantiser) is tried along each pruning
   chain;
4. pruning of the search: the serving bytes of a candidate are computed before it is fitted
   (:func:`estimate_item_bytes`, exact for these storages), both for the model validated and for
   the one returned (with reach pruning, the retrained model's reach lists on ``fit`` keep other
   rows than the given model's on all the interactions: on ML-1M 996 against 1065 for ``k=20``);
   the bytes of the model returned are the objective, so nothing at least as large as the best
   model found is fitted or evaluated; along a pruning chain a candidate that keeps fewer rows is
   assumed no better, so the chain is dropped when its largest level still smaller than the best
   fails, and otherwise the smallest passing level is found by bisection. The cheap tails (scalar
   quantisers) run first, so that the expensive ones (PQ k-means) are only fitted where they can
   still win. Fitted prefixes (pruned, pruned then low-rank models) are cached and shared by
   every tail that starts with them.

With ``budget_bytes`` instead, the candidates must fit in that many serving bytes and meet the
targets that have a threshold, and the pick maximises the first target's metric (along a chain,
the level that keeps most rows within the budget).

The result (:class:`SearchResult`) lists every candidate evaluated with its serving bytes and
validation figures; ``result.model`` is the pick (the validated model itself when the users
were not re-solved).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from tqdm.auto import tqdm

from ..errors import CfpruneError, DataError, SpecError
from ..interactions import Interactions, as_csr
from ..tables.pruned import kept_nbytes
from ..uncertainty import paired_standard_error, paired_users
from .pipeline import Pipeline

METRICS = ("recall", "ndcg", "coverage", "tail_recall", "overlap", "truncated_recall",
           "precision", "map", "hit_rate", "mrr", "auc", "pooled_precision", "pooled_recall")
POPULARITY_KEEPS = (0.7, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.07, 0.05)
REACH_FACTORS = (5.0, 2.5, 1.5, 1.0)
RANK_FRACTIONS = (0.875, 0.8125, 0.75, 0.625, 0.5, 0.375, 0.25)
SEARCH_PQ_ITERS = 10
SEARCH_PQ_ROUNDS = 2
RESEEDS = (1,)
_TARGET = re.compile(r"^\s*([a-z_]+)@(\d+)\s*(?:>=\s*([0-9.eE+-]+))?\s*$")


class TargetNotMet(CfpruneError):
    """No candidate met the targets (``result`` holds what was searched)."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Target:
    """``metric@k >= threshold`` relative to the uncompressed model (threshold None: no floor,
    only a metric to maximise within a byte budget)."""

    metric: str
    k: int
    threshold: float | None

    @property
    def key(self):
        return f"{self.metric}@{self.k}"

    def __str__(self):
        return self.key + ("" if self.threshold is None else f">={self.threshold:g}")


def parse_targets(target):
    """list[Target] from ``"recall@20>=0.97,coverage@20>=0.9"`` (or a list of such strings).
    SpecError naming the bad item and the metrics allowed."""
    if isinstance(target, str):
        items = [t for t in target.split(",")]
    elif isinstance(target, (list, tuple)):
        items = [str(t) for t in target]
    else:
        raise SpecError(f"a target must be a string like 'recall@20>=0.97', got "
                        f"{type(target).__name__}")
    out = []
    for item in items:
        match = _TARGET.match(item.lower())
        if not match or match.group(1) not in METRICS:
            raise SpecError(f"target {item.strip()!r} is not metric@k>=share (e.g. "
                            f"recall@20>=0.97); metrics: {', '.join(METRICS)}")
        k = int(match.group(2))
        threshold = None if match.group(3) is None else float(match.group(3))
        if k < 1:
            raise SpecError(f"target {item.strip()!r}: k must be at least 1")
        if threshold is not None and not (0.0 <= threshold < math.inf):
            raise SpecError(f"target {item.strip()!r}: the share must be a number >= 0")
        out.append(Target(match.group(1), k, threshold))
    if not out:
        raise SpecError("no target given (e.g. 'recall@20>=0.97')")
    return out


def serving_bytes(model):
    """Bytes the item side of ``model`` holds to serve: the item table and any re-rank table.

    The search ranks candidates by this figure. The user table is not counted: the search leaves
    it in its storage (only low rank narrows it), and counting it would reward a lower rank for
    shrinking the users rather than the catalogue."""
    return int(model.items.nbytes + (0 if model.rerank is None else model.rerank.nbytes))


def _packed_columns(dim, bits):
    return (dim * bits + 7) // 8


def estimate_item_bytes(n_items, n_kept, rank, quantiser):
    """Exact serving bytes of the item table of a candidate before it is fitted.

    ``n_kept`` rows kept of ``n_items`` (``n_kept == n_items``: not pruned), ``rank`` the
    dimension after low rank, ``quantiser`` its spec (``int8|int4|int2:axis=dim`` or
    ``pq:m=..,nbits=..[,rotation=opq]``). ``math.inf`` when the quantiser cannot apply (more
    PQ sub-spaces than columns)."""
    name, _, args = quantiser.partition(":")
    params = dict(p.split("=") for p in args.split(",") if p)
    if name == "pq" and int(params["m"]) > rank:
        return math.inf
    if name in ("int8", "int4", "int2"):
        bits = int(name[3:])
        size = n_kept * _packed_columns(rank, bits) + 2 * 4 * rank
    elif name == "pq":
        m, nbits = int(params["m"]), int(params.get("nbits", 8))
        ksub = min(2 ** nbits, n_kept)
        size = n_kept * _packed_columns(m, nbits) + ksub * rank * 4 + 4 * (m + 1)
        if params.get("rotation") == "opq":
            size += rank * rank * 4
    else:
        raise SpecError(f"no byte estimate for {quantiser!r}")
    return size + (kept_nbytes(n_items, n_kept) if n_kept < n_items else 0)


@dataclass
class Candidate:
    """One pipeline evaluated on the validation part.

    ``bytes``: serving bytes of the model validated (``estimated_bytes``: the same, computed
    before fitting); ``returned_bytes``: those of the model the search returns for this spec (the
    spec applied to the model given with all the interactions), the figure the search minimises.
    They differ when the model was retrained for validation and the spec prunes by reach (the
    reach lists of the full model and interactions keep other rows). ``reseeded``: for a PQ tail
    that passed at its seed, the k-means seeds of :data:`RESEEDS` at which it passed too; it
    passes only when it passes at all of them (see the module docstring)."""

    spec: str
    bytes: int
    estimated_bytes: int
    returned_bytes: int
    model_bytes: int
    metrics: dict
    relative: dict
    lower: dict
    passed: bool
    seconds_fit: float
    seconds_evaluate: float
    reseeded: list | None = None

    def as_dict(self):
        return {"spec": self.spec, "bytes": self.bytes, "estimated_bytes": self.estimated_bytes,
                "returned_bytes": self.returned_bytes, "model_bytes": self.model_bytes,
                "metrics": self.metrics, "relative": self.relative, "lower": self.lower,
                "passed": self.passed, "reseeded": self.reseeded,
                "seconds_fit": self.seconds_fit, "seconds_evaluate": self.seconds_evaluate}


@dataclass
class SearchResult:
    """What :func:`search` found. ``model`` is the pick (None when nothing passed)."""

    targets: list
    budget_bytes: int | None
    baseline: dict
    baseline_bytes: int
    candidates: list
    pick: Candidate | None
    model: object = None
    split: dict = field(default_factory=dict)
    seconds: float = 0.0
    n_skipped: int = 0

    def as_dict(self):
        """JSON-able summary: targets, validation split, baseline figures, the pick and every
        candidate (in the order evaluated)."""
        return {"targets": [str(t) for t in self.targets], "budget_bytes": self.budget_bytes,
                "objective": "serving bytes of the item side (items + re-rank table) of the "
                             "model returned",
                "split": self.split, "baseline": {"bytes": self.baseline_bytes,
                                                  "metrics": self.baseline},
                "pick": None if self.pick is None else self.pick.as_dict(),
                "ratio": None if self.pick is None else
                self.baseline_bytes / self.pick.returned_bytes,
                "n_candidates": len(self.candidates), "n_skipped_by_bytes": self.n_skipped,
                "seconds": self.seconds,
                "candidates": [c.as_dict() for c in self.candidates]}


def _rank_grid(dim):
    ranks = sorted({int(round(f * dim)) for f in RANK_FRACTIONS if 2 <= round(f * dim) < dim},
                   reverse=True)
    return [None] + ranks


def _quantisers(rank):
    """(cheap, expensive) quantiser specs for a table of ``rank`` columns."""
    cheap = ["int8:axis=dim", "int4:axis=dim", "int2:axis=dim"]
    pq = []
    for div, nbits in ((2, 4), (4, 4), (8, 4), (4, 8), (8, 8)):
        m = rank // div
        if m >= 1:
            pq.append(f"pq:m={m},nbits={nbits},iterations={SEARCH_PQ_ITERS}")
    variants = []
    for div in (4, 8):
        m = rank // div
        if m >= 1:
            base = f"pq:m={m},nbits=4,iterations={SEARCH_PQ_ITERS}"
            variants += [base + f",rotation=opq,rounds={SEARCH_PQ_ROUNDS}",
                         base + f",loss=anisotropic,rounds={SEARCH_PQ_ROUNDS}"]
    return cheap, pq + variants


def search(model, interactions, target="recall@20>=0.97", budget_bytes=None, *, valid=None,
           valid_fraction=0.1, confidence=0.95, seed=0, num_threads=None, show_progress=None,
           log=None):
    """Search compression pipelines for the smallest model that keeps every target.

    Parameters
    ----------
    model : FactorModel
        The uncompressed model (any storage; the search compresses its item table).
    interactions : Interactions or scipy CSR [n_users, n_items]
        The training interactions the model was trained on (never the test data).
    target : str or list of str
        ``"metric@k>=share,..."``: every share is relative to ``model`` on the validation part.
        With ``budget_bytes`` a target may omit ``>=share``; the first is maximised.
    budget_bytes : int or None
        Serving bytes (see :func:`serving_bytes`) the pick may take; None: minimise the bytes.
    valid : Interactions or scipy CSR, optional
        A validation part held out of ``interactions`` already (``model`` trained without it):
        then ``interactions`` are used whole to fit the compressions and filter the seen items.
    valid_fraction : float
        Otherwise, the share of every user's interactions carved out for validation (seeded by
        ``seed``).
    confidence : float or None
        A per-user metric (all but coverage) meets its target when its one-sided ``confidence``
        lower bound does: the candidate's mean less ``z`` standard errors of the paired per-user
        change against the model (``z = 1.645`` at 0.95). Without it, the smallest candidate
        that passes by luck of the validation sample would be picked (winner's curse); None or
        0 compares the means.
    num_threads : int or None
        Threads for retrieval and evaluation.
    show_progress : bool or None
        tqdm bar of the candidates (None: on a terminal only).
    log : callable(str) or None
        Receives one line per candidate evaluated.

    Returns
    -------
    SearchResult
        Raises :class:`TargetNotMet` (with ``.result``) when no candidate passes.
    """
    from ..evaluation import evaluate
    from ..splits import random_split
    from .rows import reach_counts

    start = time.perf_counter()
    targets = parse_targets(target)
    if budget_bytes is None and any(t.threshold is None for t in targets):
        raise SpecError("every target needs a share (metric@k>=share) unless a byte budget is "
                        "given")
    if budget_bytes is not None and (isinstance(budget_bytes, bool) or int(budget_bytes) < 1):
        raise SpecError(f"budget_bytes must be a positive number of bytes, got {budget_bytes!r}")
    if interactions is None:
        raise DataError("a target search needs the training interactions (interactions=, CLI "
                        "--train) to carve its validation part from")
    data = interactions if isinstance(interactions, Interactions) else \
        Interactions(as_csr(interactions, "interactions"))
    if data.shape != (model.n_users, model.n_items):
        raise DataError(f"the interactions are {data.shape[0]} users x {data.shape[1]} items "
                        f"but the model has {model.n_users} users x {model.n_items} items")
    original, refit = model, False
    if valid is None:
        fit, valid = random_split(data, test_fraction=valid_fraction, seed=seed)
        model, refit = held_out_model(model, fit, num_threads)
    else:
        fit = data
        valid = valid if isinstance(valid, Interactions) else \
            Interactions(as_csr(valid, "valid"))
    if valid.nnz == 0:
        raise DataError("the validation part is empty: the interactions are too few to carve "
                        f"{valid_fraction:.0%} of each user's out")
    fit_csr = fit.matrix
    ks = tuple(sorted({t.k for t in targets}))
    with_overlap = any(t.metric == "overlap" for t in targets)

    def run_eval(m, baseline=None):
        return evaluate(m, fit_csr, valid.matrix, ks, num_threads=num_threads,
                        show_progress=False, baseline=baseline, keep_ranked=baseline is None
                        and with_overlap)

    z = NormalDist().inv_cdf(confidence) if confidence else 0.0
    base_result = run_eval(model)
    base_lists = base_result if with_overlap else None
    base_metrics = {t.key: float(base_result.metrics[t.key]) if t.metric != "overlap" else 1.0
                    for t in targets}
    baseline_bytes = serving_bytes(model)
    split_info = {"valid_fraction": None if fit is data else valid_fraction, "seed": seed,
                  "retrained_on_fit": refit, "n_fit": fit.nnz,
                  "n_valid": valid.nnz, "n_valid_users": base_result.n_users}

    candidates, fitted, cache = [], {}, {}
    state = {"best": None, "skipped": 0}
    bar = tqdm(desc="search", unit="cand", disable=show_progress is False or
               (show_progress is None and not _is_terminal()))

    def measure(spec, estimate, returned):
        """(Candidate with its own pass/fail, compressed model): ``spec`` fitted and evaluated."""
        t0 = time.perf_counter()
        compressed = _fit_cached(model, spec, fit_csr, fitted)
        t1 = time.perf_counter()
        result = run_eval(compressed, base_lists)
        t2 = time.perf_counter()
        metrics, relative, lower = {}, {}, {}
        for t in targets:
            value = float(result.metrics[t.key])
            metrics[t.key] = value
            base = base_metrics[t.key]
            relative[t.key] = value / base if base > 0 else (math.inf if value > 0 else 1.0)
            lower[t.key] = value - z * _paired_se(result, base_result, t)
        passed = all(t.threshold is None or lower[t.key] >= t.threshold * base_metrics[t.key]
                     - 1e-12 for t in targets)
        if budget_bytes is not None and returned > budget_bytes:
            passed = False
        cand = Candidate(spec, serving_bytes(compressed), estimate, returned,
                         int(compressed.nbytes), metrics, relative, lower, passed, t1 - t0,
                         t2 - t1)
        candidates.append(cand)
        bar.update(1)
        if log is not None:
            figures = "  ".join(f"{k} {relative[k]:.3f}" for k in relative)
            log(f"{'pass' if passed else 'fail'}  {baseline_bytes / returned:6.1f}x  "
                f"{returned:>9,} B  {figures}  {spec}")
        return cand, compressed

    def evaluate_spec(spec, estimate, returned):
        if spec in cache:
            return cache[spec]
        cand, compressed = measure(spec, estimate, returned)
        if cand.passed and "pq:" in spec:
            # k-means: the model returned is another fit, so the tail must pass at other seeds
            cand.reseeded = [seed for seed in RESEEDS
                             if measure(_reseeded(spec, seed), estimate, returned)[0].passed]
            cand.passed = len(cand.reseeded) == len(RESEEDS)
        cache[spec] = cand
        if cand.passed and _better(cand, state["best"], targets[0].key, budget_bytes):
            state["best"] = cand
            state["model"] = compressed
        best = state["best"]
        bar.set_postfix_str("best: none" if best is None else
                            f"{baseline_bytes / best.returned_bytes:.1f}x {best.spec}")
        return cand

    # pruning chains: (spec prefix, rows kept when validated, rows kept in the model returned)
    # per level, most rows first
    n_items = model.n_items
    max_k = max(ks)
    chains = {"popularity": [(f"prune-rows:keep={keep},by=popularity",
                              max(1, int(np.floor(keep * n_items + 0.5))))
                             for keep in POPULARITY_KEEPS]}
    chains["popularity"] = [(spec, kept, kept) for spec, kept in chains["popularity"]]
    reach = []
    for factor in REACH_FACTORS:
        k = max(max_k, int(round(factor * max_k)))
        if any(spec.endswith(f"k={k}") for spec, _, _ in reach):
            continue
        kept = max(1, int(np.count_nonzero(reach_counts(model, fit_csr, k))))
        returned = kept if not refit else \
            max(1, int(np.count_nonzero(reach_counts(original, data.matrix, k))))
        reach.append((f"prune-rows:by=reach,k={k}", kept, returned))
    chains["reach"] = sorted(reach, key=lambda level: -level[1])

    def try_tail(lowrank, quantiser):
        rank = model.dim if lowrank is None else int(lowrank.split("=")[1])
        for levels in chains.values():
            full = [("", n_items, n_items)] + levels

            def size_of(kept):   # joint low rank keeps at most as many columns as rows on a side
                return estimate_item_bytes(n_items, kept, rank if lowrank is None else
                                           min(rank, kept, model.n_users), quantiser)
            estimates = [size_of(kept) for _, kept, _ in full]
            sizes = [size_of(returned) for _, _, returned in full]

            def run(i):
                return evaluate_spec(_join(full[i][0], lowrank, quantiser), estimates[i],
                                     sizes[i])
            if budget_bytes is not None:
                fitting = [i for i, size in enumerate(sizes) if size <= budget_bytes]
                if fitting:
                    run(fitting[0])
                else:
                    state["skipped"] += len(full)
                continue
            best = state["best"]
            open_levels = [i for i, size in enumerate(sizes)
                           if size < (math.inf if best is None else best.returned_bytes)]
            state["skipped"] += len(full) - len(open_levels)
            if not open_levels:
                continue
            lo, hi = open_levels[0], open_levels[-1]
            # the level keeping most rows first: when it fails, no level of the chain passes
            if not run(lo).passed:
                continue
            lo += 1
            while lo <= hi:                               # bisect for the last passing level
                mid = (lo + hi) // 2
                best = state["best"]
                if best is not None and sizes[mid] >= best.returned_bytes:
                    lo = mid + 1      # the best moved on while bisecting
                    continue
                if run(mid).passed:
                    lo = mid + 1
                else:
                    hi = mid - 1

    tails_cheap, tails_expensive = [], []
    for lowrank in _rank_grid(model.dim):
        rank = model.dim if lowrank is None else lowrank
        cheap, expensive = _quantisers(rank)
        spec = None if lowrank is None else f"lowrank:rank={lowrank}"
        tails_cheap += [(spec, q) for q in cheap]
        tails_expensive += [(spec, q) for q in expensive]
    try:
        for lowrank, quantiser in tails_cheap + tails_expensive:
            try_tail(lowrank, quantiser)
    finally:
        bar.close()
    pick = state["best"]
    result = SearchResult(targets, None if budget_bytes is None else int(budget_bytes),
                          base_metrics, baseline_bytes, candidates, pick,
                          state.get("model"), split_info, time.perf_counter() - start,
                          state["skipped"])
    if pick is None:
        raise TargetNotMet(f"no pipeline of the {len(candidates)} evaluated meets "
                           f"{', '.join(str(t) for t in targets)}"
                           + ("" if budget_bytes is None else f" within {budget_bytes:,} bytes")
                           + " on the validation part; keep the uncompressed model", result)
    if refit:   # the validated spec, applied to the model given, with all its interactions
        result.model = Pipeline(pick.spec).fit(original, data)
    info = dict(result.model.info)
    info["search"] = {k: v for k, v in result.as_dict().items() if k != "candidates"}
    result.model = result.model.replace(info=info)
    return result


def held_out_model(model, fit, num_threads=None):
    """(model retrained on ``fit``, True) when ``model.info`` records how it was trained (ALS or
    BPR with every parameter, as :func:`cfprune.train_als` / ``train_bpr`` record them), so that
    the validation items are truly held out; else (model, False) unchanged, and its validation
    figures include what it memorised of those items."""
    from ..models import train_als, train_bpr
    info = model.info
    keys = {"als": ("factors", "regularization", "alpha", "iterations", "seed"),
            "bpr": ("factors", "learning_rate", "regularization", "iterations", "seed")}
    algorithm = info.get("algorithm")
    if algorithm not in keys or any(k not in info for k in keys[algorithm]):
        return model, False
    params = {k: info[k] for k in keys[algorithm]}
    trainer = train_als if algorithm == "als" else train_bpr
    threads = 0 if num_threads is None else int(num_threads)
    if algorithm == "bpr":
        threads = 1       # BPR is reproducible on one thread only
    return trainer(fit, num_threads=threads, show_progress=False, **params), True


def _paired_se(result, base_result, target):
    """Standard error of the mean paired per-user change of ``target`` (0 for coverage, which
    is not a per-user mean)."""
    key = target.key
    if key not in result.per_user:
        return 0.0
    values = result.per_user[key]
    if target.metric == "overlap":
        return paired_standard_error(values, np.ones_like(values))[1]
    ia, ib = paired_users(result, base_result)
    return paired_standard_error(values[ia], base_result.per_user[key][ib])[1]


def _reseeded(spec, seed):
    """``spec`` with ``seed=<seed>`` on its PQ step."""
    return "|".join(step + f",seed={seed}" if step.startswith("pq:") else step
                    for step in spec.split("|"))


def _join(*parts):
    return "|".join(p for p in parts if p)


def _better(cand, best, first_key, budget_bytes):
    if best is None:
        return True
    if budget_bytes is not None:
        return ((cand.metrics[first_key], -cand.returned_bytes)
                > (best.metrics[first_key], -best.returned_bytes))
    return ((cand.returned_bytes, -cand.metrics[first_key])
            < (best.returned_bytes, -best.metrics[first_key]))


def _fit_cached(model, spec, interactions, fitted):
    """``Pipeline(spec).fit(model)`` reusing the longest prefix of steps already fitted."""
    steps = spec.split("|")
    for cut in range(len(steps) - 1, 0, -1):
        prefix = "|".join(steps[:cut])
        if prefix in fitted:
            base, rest = fitted[prefix], steps[cut:]
            break
    else:
        base, rest, cut = model, steps, 0
    for i, step in enumerate(rest):
        base = Pipeline(step).fit(base, interactions)
        key = "|".join(steps[:cut + i + 1])
        if i < len(rest) - 1:
            fitted[key] = base
    return base


def _is_terminal():
    import sys
    return sys.stderr.isatty()
