"""Target search: the smallest pipeline of the existing methods that keeps every target.

``cfprune.compress(model, target="recall@20>=0.97,coverage@20>=0.90", interactions=train)``
(CLI: ``cfprune compress MODEL --train TRAIN --target ...``) runs :func:`search`, which runs a
:class:`TargetSearch`:

1. a seeded validation part (``valid_fraction`` of every user's interactions) is carved out of
   the training interactions; the compressions are fitted with the rest (``fit``: popularity
   counts, reach lists) and every candidate is evaluated on the validation part with the ``fit``
   items filtered, as :func:`cfprune.evaluate` does. The user's test data never enters. The
   model was trained on the validation items too, and a model scores what it memorised highly:
   measured so, low rank and coarse codes look far worse than they are on held-out data (on
   ML-1M, ``lowrank:rank=48`` keeps 90% of validation recall but 99% of test recall). So a model
   whose ``model.info`` records its training (``train_als``/``train_bpr``) is retrained on
   ``fit`` with the same parameters (:func:`~cfprune.compression.search.validation.held_out_model`), the search runs on that model, and
   the pick's spec is then applied to the model given, with all the interactions. (``valid=``
   gives a validation part the model never saw instead, as the report does.);
2. a target ``metric@k>=x`` holds when the candidate's validation figure is at least ``x`` times
   the uncompressed model's on the same users (any metric :func:`cfprune.evaluate` computes:
   recall, ndcg, coverage, tail_recall, overlap, ...), by a one-sided lower bound: for a
   per-user metric the mean less ``z`` paired standard errors; for coverage (a catalogue
   figure, distinct items over the users' lists) its ratio to the model's less ``z`` standard
   errors of that ratio over paired bootstrap resamples of the users
   (:func:`~cfprune.compression.search.validation.coverage_lower_bound`). A PQ tail (k-means) that passes is fitted
   and evaluated again at the seeds :data:`~cfprune.compression.search.space.RESEEDS` and passes only if it passes there too: the
   model returned is another k-means fit, and one seed's pass can be luck (on ml-100k,
   ``prune-rows:by=reach,k=50|lowrank:rank=24|pq:m=12,nbits=4`` kept 100.9% of the validation
   recall@20 at seed 0 and 94-98% at seeds 1-3);
3. the candidates are pipelines ``[row pruning] | [lowrank] | quantiser`` of compressor objects
   (:mod:`~cfprune.compression.search.space`): row pruning by popularity (keep 0.7 ... 0.05) or
   by reach (``k`` = 5, 2.5, 1.5 and 1 times the largest target cut-off), joint low rank at 7/8,
   13/16, 3/4 ... 1/4 of the dimension, and the quantisers int8, int4, int2 (per dimension), PQ
   with 8- and 4-bit codes at several ``m``, and OPQ / the anisotropic loss on the 4-bit PQ. A
   *tail* (low rank, quantiser) is tried along each pruning chain;
4. pruning of the search: the serving bytes of a candidate are computed before it is fitted
   (:func:`~cfprune.compression.search.bytes.planned_item_bytes`: the steps' table plans
   chained, the storages' own byte counts), both for the model validated and for
   the one returned (with reach pruning, the retrained model's reach lists on ``fit`` keep other
   rows than the given model's on all the interactions: on ML-1M 996 against 1065 for ``k=20``);
   the bytes of the model returned are the objective, so nothing at least as large as the best
   model found is fitted or evaluated; along a pruning chain a candidate that keeps fewer rows is
   assumed no better, so the chain is dropped when its largest level still smaller than the best
   fails, and otherwise the smallest passing level is found by bisection. The cheap tails (scalar
   quantisers) run first, so that the expensive ones (PQ k-means) are only fitted where they can
   still win. Fitted prefixes (pruned, pruned then low-rank models) are cached and shared by
   every tail that starts with them.

5. at scale: the figures are over at most ``sample_users`` validation users (a seeded uniform
   sample; the paired standard error over the sample is the sampling error, so the lower bound
   counts it), and with more validation users than that every candidate is first evaluated on a
   nested sample of 1/8 of them: one whose 99% upper bound of a per-user target misses its share
   there stops (``screened``); it can pass only on the whole sample. With fewer validation users
   than ``sample_users`` (MovieLens) the search is the exhaustive one above, figure for figure.
   The coverage ratio falls as the users grow (more users reach more of the tail that pruned
   rows and coarse codes reach less: 94.3% over 32,768 users, 89.7% over 200,000 for one
   candidate on the 200k log), so over a sample the passing candidates, smallest first, are
   then judged the same way over every validation user until one holds
   (:meth:`TargetSearch.confirm`): that one is the pick. The reach lists of a model are
   ranked once for every reach cut-off, a model's users are factorised once for every joint
   low rank, and the evaluation plan is made once per set of users. With ``scheduler`` the evaluations run on a Dask
   cluster through :func:`cfprune.distributed.evaluate_distributed` (same blocks, same
   combination: the same figures);
6. ``side="both"``: every pipeline may end with a user-side step
   (:func:`~cfprune.compression.search.space.user_steps_for`: ``fold-users``, no user table
   shipped, for an ALS model; a per-row user quantiser; one that fails alone is not tried
   further), and the objective is the bytes of the whole model returned.

With ``budget_bytes`` instead, the candidates must fit in that many serving bytes and meet the
targets that have a threshold, and the pick maximises the first target's metric (along a chain,
the level that keeps most rows within the budget).

The result (:class:`~cfprune.compression.search.results.SearchResult`) lists every candidate
evaluated with its serving bytes and validation figures; ``result.model`` is the pick (the
validated model itself when the users were not re-solved).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from tqdm.auto import tqdm

from ...errors import DataError, SpecError
from ...interactions import Interactions, as_csr
from ..pipeline import Pipeline
from ..lowrank import shared_user_factorisation
from ..rows import PruneRows, reach_counts, reach_lists, shared_reach_lists
from ..spec import format_spec
from .bytes import SIDES, planned_bytes, serving_bytes
from .results import Candidate, SearchResult, TargetNotMet
from .space import (RESEEDS, low_ranks, popularity_pruners, quantisers, reach_cutoffs,
                    reseeded, user_steps_for)
from .targets import parse_targets
from .validation import (COVERAGE_RESAMPLES, bootstrap_coverage, coverage_lower_bound,
                         held_out_model, lower_bound, sample_users, upper_bound)

DEFAULT_SAMPLE_USERS = 32768
SCREEN_SHARE = 8
SCREEN_Z = NormalDist().inv_cdf(0.99)


@dataclass(frozen=True)
class Level:
    """One level of a pruning chain: the pruning step (None: no pruning) and the item rows it
    keeps in the model validated and in the model returned (they differ for by=reach when the
    model was retrained for validation)."""

    step: object
    kept: int
    kept_returned: int


class TargetSearch:
    """The search of the module docstring, one method per stage.

    Parameters
    ----------
    targets : str or list of str
        See :func:`search` (``target``).
    budget_bytes, side, sample_users, confidence, seed, num_threads, scheduler, show_progress, log
        See :func:`search`.

    :meth:`run` sets the state every stage works on: ``model`` (the model validated),
    ``original`` (the model given), ``refit`` (whether ``model`` was retrained without the
    validation part), ``data``/``fit``/``valid`` (the interactions, the part the compressions are
    fitted with, the validation part), ``base_result``/``base_metrics``/``baseline_bytes`` (the
    uncompressed model on the validation part), ``users``/``screen_users`` (the validation
    users the figures are over, None for all, and the smaller sample every candidate is screened
    on first, None for no screening), ``candidates`` (every Candidate in the order evaluated),
    ``best``/``best_steps``/``best_model`` (the pick so far) and ``n_skipped``.
    """

    def __init__(self, targets, budget_bytes=None, *, side="items",
                 sample_users=DEFAULT_SAMPLE_USERS, confidence=0.95, seed=0, num_threads=None,
                 scheduler=None, show_progress=None, log=None):
        self.targets = parse_targets(targets)
        if budget_bytes is None and any(t.threshold is None for t in self.targets):
            raise SpecError("every target needs a share (metric@k>=share) unless a byte budget "
                            "is given")
        if budget_bytes is not None and (isinstance(budget_bytes, bool) or
                                         int(budget_bytes) < 1):
            raise SpecError(f"budget_bytes must be a positive number of bytes, got "
                            f"{budget_bytes!r}")
        self.budget_bytes = None if budget_bytes is None else int(budget_bytes)
        if side not in SIDES:
            raise SpecError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
        if sample_users is not None and (isinstance(sample_users, bool) or
                                         int(sample_users) < 2):
            raise SpecError(f"sample_users must be at least 2 users (or None: all), got "
                            f"{sample_users!r}")
        self.side = side
        self.sample_users = None if sample_users is None else int(sample_users)
        self.scheduler = scheduler
        self.client = None
        self.z = NormalDist().inv_cdf(confidence) if confidence else 0.0
        self.seed = seed
        self.num_threads = num_threads
        self.show_progress = show_progress
        self.log = log
        self.ks = tuple(sorted({t.k for t in self.targets}))
        self.with_overlap = any(t.metric == "overlap" for t in self.targets)
        self.with_coverage = any(t.metric == "coverage" and t.threshold is not None
                                 for t in self.targets)

    # the validation part ------------------------------------------------------------------------
    def prepare(self, model, interactions, valid=None, valid_fraction=0.1):
        """Carve the validation part (or take ``valid``) and retrain the model without it."""
        from ...splits import random_split
        if interactions is None:
            raise DataError("a target search needs the training interactions (interactions=, "
                            "CLI --train) to carve its validation part from")
        data = interactions if isinstance(interactions, Interactions) else \
            Interactions(as_csr(interactions, "interactions"))
        if data.shape != (model.n_users, model.n_items):
            raise DataError(f"the interactions are {data.shape[0]} users x {data.shape[1]} "
                            f"items but the model has {model.n_users} users x {model.n_items} "
                            f"items")
        self.original, self.refit, self.data = model, False, data
        self.plans = {}
        if valid is None:
            fit, valid = random_split(data, test_fraction=valid_fraction, seed=self.seed)
            t0 = time.perf_counter()
            model, self.refit = held_out_model(model, fit, self.num_threads)
            if self.refit:
                self.say(f"retrained {model.info.get('algorithm')} without the validation part "
                         f"in {time.perf_counter() - t0:.0f} s")
        else:
            fit = data
            valid = valid if isinstance(valid, Interactions) else \
                Interactions(as_csr(valid, "valid"))
        if valid.nnz == 0:
            raise DataError("the validation part is empty: the interactions are too few to "
                            f"carve {valid_fraction:.0%} of each user's out")
        self.model, self.fit, self.valid = model, fit, valid
        self.users, self.screen_users, n_valid_users = sample_users(
            valid.matrix, model.n_users, self.sample_users, SCREEN_SHARE, self.seed)
        self.split = {"valid_fraction": None if fit is data else valid_fraction,
                      "seed": self.seed, "retrained_on_fit": self.refit, "n_fit": fit.nnz,
                      "n_valid": valid.nnz, "n_valid_users_all": n_valid_users,
                      "sample_users": self.sample_users,
                      "n_screen_users": None if self.screen_users is None else
                      int(self.screen_users.size)}

    def evaluate_model(self, model, baseline=None, users=None):
        """EvaluationResult of ``model`` on the validation part at the targets' cut-offs, over
        ``users`` (None: the search's sample, :attr:`users`), in process or, with a scheduler,
        on the Dask cluster (:func:`cfprune.distributed.evaluate_distributed`: the same blocks
        and the same combination, so the same figures)."""
        options = dict(baseline=baseline, users=self.users if users is None else users,
                       keep_ranked=self.with_coverage or (baseline is None and
                                                          self.with_overlap))
        if self.client is not None:
            from ...distributed import evaluate_distributed
            return evaluate_distributed(model, self.fit.matrix, self.valid.matrix, self.ks,
                                        scheduler=self.client, show_progress=False,
                                        num_threads=1 if self.num_threads is None else
                                        self.num_threads, **options)
        from ...evaluation import DEFAULT_BATCH_SIZE, evaluate_block, summarise, user_blocks
        plan = self.plan(model, **options)
        return summarise((evaluate_block(model, self.fit.matrix, plan, block, baseline=baseline,
                                         num_threads=self.num_threads)
                          for block in user_blocks(plan.users, DEFAULT_BATCH_SIZE)), plan)

    def plan(self, model, baseline, users, keep_ranked):
        """The :class:`~cfprune.evaluation.EvaluationPlan` of an in-process evaluation (what
        :func:`cfprune.evaluation.evaluate` makes at every call: the users with a validation
        item, the tail items of the ``fit`` counts, the validation CSR), made once per set of
        users and options: every candidate has the shape of the model validated."""
        from ...evaluation import plan_evaluation
        key = (id(users), baseline is not None, keep_ranked)
        if key not in self.plans:
            self.plans[key] = (users, plan_evaluation(model, self.fit.matrix, self.valid.matrix,
                                                      self.ks, baseline=baseline, users=users,
                                                      keep_ranked=keep_ranked))
        return self.plans[key][1]

    def baseline(self):
        """Evaluate the uncompressed model: the figures every share is relative to (over the
        sample, and over the screening sample when there is one)."""
        t0 = time.perf_counter()
        self.base_result = self.evaluate_model(self.model)
        self.base_lists = self.base_result if self.with_overlap else None
        self.base_metrics = self.figures(self.base_result)
        self.screen_base = None if self.screen_users is None else \
            self.evaluate_model(self.model, users=self.screen_users)
        self.baseline_bytes = serving_bytes(self.model, self.side)
        self.split["n_valid_users"] = self.base_result.n_users
        self.say(f"baseline on {self.base_result.n_users:,} validation users"
                 + ("" if self.screen_users is None else
                    f" (of {self.split['n_valid_users_all']:,}; screening on "
                    f"{self.screen_users.size:,})")
                 + f" in {time.perf_counter() - t0:.0f} s")

    def figures(self, result):
        """{target key: figure} of a baseline EvaluationResult (overlap with itself is 1)."""
        return {t.key: float(result.metrics[t.key]) if t.metric != "overlap" else 1.0
                for t in self.targets}

    def pass_rule(self):
        """The pass rule in words, for the JSON record."""
        n, n_all = self.split["n_valid_users"], self.split["n_valid_users_all"]
        return (f"over {n:,} of {n_all:,} validation users, at one-sided z = {self.z:.3f}: a "
                f"per-user target passes when the candidate's mean less z paired standard "
                f"errors of the per-user change reaches the share of the float model's mean; "
                f"coverage when its ratio to the float model's less z bootstrap standard "
                f"errors ({COVERAGE_RESAMPLES} paired resamples of the users) reaches the share"
                + ("" if n >= n_all else "; then the passing candidates, smallest first, are "
                   "built on the model given with all the interactions until one keeps the "
                   "coverage share by that bound over every user against the model given "
                   "(coverage over a sample, and on the retrained model, overstates it)"))

    def say(self, line):
        """One line to ``log`` (if given), with the seconds since the search started."""
        if self.log is not None:
            self.log(f"[{time.perf_counter() - self.start:6.0f} s] {line}")

    # the candidates -----------------------------------------------------------------------------
    def pruning_chains(self):
        """[popularity chain, reach chain]: lists of :class:`Level`, most rows kept first."""
        n_items = self.model.n_items
        popularity = []
        for step in popularity_pruners():
            kept = max(1, int(np.floor(step.keep * n_items + 0.5)))
            popularity.append(Level(step, kept, kept))
        reach = []
        for k in reach_cutoffs(max(self.ks)):
            kept = max(1, int(np.count_nonzero(reach_counts(self.model, self.fit.matrix, k))))
            returned = kept if not self.refit else max(1, int(np.count_nonzero(
                reach_counts(self.original, self.data.matrix, k))))
            reach.append(Level(PruneRows(by="reach", k=k), kept, returned))
        return [popularity, sorted(reach, key=lambda level: -level.kept)]

    def tails(self):
        """[(LowRank or None, quantiser)]: every cheap tail, then every expensive one."""
        cheap_tails, expensive_tails = [], []
        for lowrank in low_ranks(self.model.dim):
            cheap, expensive = quantisers(self.model.dim if lowrank is None else lowrank.rank)
            cheap_tails += [(lowrank, q) for q in cheap]
            expensive_tails += [(lowrank, q) for q in expensive]
        return cheap_tails + expensive_tails

    def candidates(self, level, lowrank, quantiser, user_step=None):
        """(steps, bytes of the model validated, bytes of the model returned) of the pipeline
        ``level.step | lowrank | quantiser | user_step``, the bytes (of :attr:`side`) from the
        byte model."""
        steps = [s for s in (level.step, lowrank, quantiser, user_step) if s is not None]
        n_items, dim, n_users = self.model.n_items, self.model.dim, self.model.n_users
        return (steps, planned_bytes(steps, n_items, dim, n_users, level.kept, self.side),
                planned_bytes(steps, n_items, dim, n_users, level.kept_returned, self.side))

    def user_steps(self):
        """[user-side step or None]: with ``side="both"`` the user steps
        (:func:`~cfprune.compression.search.space.user_steps_for`: ``fold-users`` for an ALS
        model, the per-row quantisers) that pass alone (the item table float32), smallest
        first, then None; with ``side="items"`` [None].

        A user quantiser that fails alone is assumed to fail under any item compression too (as
        a pruning level that keeps fewer rows is assumed no better), so it is not tried with
        one."""
        if self.side == "items":
            return [None]
        unpruned = Level(None, self.model.n_items, self.model.n_items)
        alone = [(step, self.candidates(unpruned, None, None, step))
                 for step in user_steps_for(self.model)]
        alone.sort(key=lambda item: item[1][2])
        passing = [step for step, planned in alone if self.evaluate(*planned).passed]
        return passing + [None]

    # one candidate --------------------------------------------------------------------------------
    def fitted(self, steps):
        """The model validated compressed by ``steps``, reusing the longest fitted prefix.

        A user-side last step (``side="both"``) compresses the user table alone, so its table
        is made once per user table it starts from and put in place of that prefix's users:
        the same table fitting it again would make (the model's records are not this pipeline's,
        so the pick is fitted again in :meth:`run`)."""
        if steps and getattr(steps[-1], "table", None) == "users":
            base = self.fitted(steps[:-1]) if len(steps) > 1 else self.model
            key = (steps[-1].spec_string(), id(base.users))
            if key not in self.user_tables:   # holding the table keeps its id from reuse
                compressed = Pipeline([steps[-1]]).fit(base, self.fit.matrix)
                self.user_tables[key] = (base.users, compressed.users)
                return compressed
            return base.replace(users=self.user_tables[key][1])
        keys = [s.spec_string() for s in steps]
        for cut in range(len(steps), 0, -1):
            if tuple(keys[:cut]) in self.prefixes:
                base = self.prefixes[tuple(keys[:cut])]
                break
        else:
            base, cut = self.model, 0
        for i in range(cut, len(steps)):
            base = Pipeline([steps[i]]).fit(base, self.fit.matrix)
            self.prefixes[tuple(keys[:i + 1])] = base
        return base

    def judge(self, result, base_result, base_metrics):
        """(metrics, relative, lower, passed, coverage) of an EvaluationResult against its
        baseline on the same users: a target passes when its lower bound reaches its share.

        A per-user target's bound is the paired one
        (:func:`~cfprune.compression.search.validation.lower_bound`); coverage's is the
        bootstrap bound of its ratio to the baseline's
        (:func:`~cfprune.compression.search.validation.coverage_lower_bound`), computed only
        when the figure itself and every other target pass (else its ``lower`` is None: it
        could not change the verdict). ``coverage``: {key: that bound's ratio and standard
        error}."""
        metrics, relative, lower, coverage = {}, {}, {}, {}
        for t in self.targets:
            value = float(result.metrics[t.key])
            metrics[t.key] = value
            base = base_metrics[t.key]
            relative[t.key] = value / base if base > 0 else (math.inf if value > 0 else 1.0)
            lower[t.key] = None if t.metric == "coverage" else \
                lower_bound(result, base_result, t, self.z)

        def holds(t):
            return t.threshold is None or (lower[t.key] is not None and lower[t.key] >=
                                           t.threshold * base_metrics[t.key] - 1e-12)
        others = all(holds(t) for t in self.targets if t.metric != "coverage")
        for t in self.targets:
            if t.metric == "coverage" and t.threshold is not None and others and \
                    metrics[t.key] >= t.threshold * base_metrics[t.key] - 1e-12:
                coverage[t.key] = self.coverage_bound(result, base_result, t.k)
                lower[t.key] = coverage[t.key].pop("lower")
        passed = all(holds(t) for t in self.targets)
        return metrics, relative, lower, passed, coverage

    def coverage_bound(self, result, base_result, k, z=None):
        """The bootstrap bound of coverage@k at ``z`` (None: the search's) of two
        EvaluationResults of the same users
        (:func:`~cfprune.compression.search.validation.coverage_lower_bound`, resampled at the
        search's seed), the baseline's resampled counts computed once per set of users."""
        return self.lists_bound(result.ranked[:, :k], base_result.ranked[:, :k],
                                (id(base_result), k), z)

    def lists_bound(self, ranked, base_ranked, key, z=None):
        """:func:`~cfprune.compression.search.validation.coverage_lower_bound` of two sets of
        lists of the same users, the baseline's resampled counts kept under ``key``."""
        z = self.z if z is None else z
        if z and key not in self.base_coverage_counts:
            self.base_coverage_counts[key] = bootstrap_coverage(base_ranked, COVERAGE_RESAMPLES,
                                                                self.seed)
        return coverage_lower_bound(ranked, base_ranked, self.model.n_items, z,
                                    COVERAGE_RESAMPLES, self.seed,
                                    self.base_coverage_counts.get(key))

    def screened_out(self, result):
        """Whether a candidate evaluated on the screening sample cannot pass on the full
        sample: for some per-user target, even its one-sided 99% upper bound (mean plus
        :data:`SCREEN_Z` paired standard errors over the screening users) lies below the share
        of the baseline's mean on those users; or for coverage, its ratio to the baseline's
        over the screening users plus :data:`SCREEN_Z` bootstrap standard errors
        (:func:`~cfprune.compression.search.validation.coverage_lower_bound`) lies below the share. The coverage ratio falls as the users grow (see
        there; from 4,096 to 32,768 users it moves by a few tenths of a point either way on the
        200k log, then falls), so a ratio short of the share over the screening users is short
        of it over the whole sample and over all the validation users too."""
        for t in self.targets:
            if t.threshold is None:
                continue
            if t.metric == "coverage":
                if result.metrics[t.key] >= t.threshold * self.screen_metrics[t.key] - 1e-12:
                    continue
                estimate = self.coverage_bound(result, self.screen_base, t.k, SCREEN_Z)
                if estimate["ratio"] + SCREEN_Z * estimate["se"] < t.threshold - 1e-12:
                    return True
                continue
            upper = upper_bound(result, self.screen_base, t, SCREEN_Z)
            if upper < t.threshold * self.screen_metrics[t.key] - 1e-12:
                return True
        return False

    def measure(self, steps, estimate, returned):
        """(Candidate with its own pass/fail, compressed model): ``steps`` fitted and
        evaluated, first on the screening sample (when there is one: a candidate that clearly
        fails there stops, recorded with those figures and ``screened=True``), then on the
        whole sample, where alone it can pass."""
        t0 = time.perf_counter()
        compressed = self.fitted(steps)
        t1 = time.perf_counter()
        screened = False
        if self.screen_users is not None:
            result = self.evaluate_model(compressed, self.base_lists, users=self.screen_users)
            screened = self.screened_out(result)
        if screened:
            metrics, relative, lower, _, coverage = self.judge(result, self.screen_base,
                                                               self.screen_metrics)
            passed = False
        else:
            result = self.evaluate_model(compressed, self.base_lists)
            metrics, relative, lower, passed, coverage = self.judge(result, self.base_result,
                                                                    self.base_metrics)
        t2 = time.perf_counter()
        if self.budget_bytes is not None and returned > self.budget_bytes:
            passed = False
        spec = format_spec(steps)
        cand = Candidate(spec, serving_bytes(compressed, self.side), estimate, returned,
                         int(compressed.nbytes), metrics, relative, lower, passed, t1 - t0,
                         t2 - t1, n_users=int(result.n_users), screened=screened,
                         coverage=coverage)
        self.candidates_evaluated.append(cand)
        self.bar.update(1)
        if self.log is not None:
            figures = "  ".join(f"{k} {relative[k]:.3f}" for k in relative)
            verdict = "screened out" if screened else ("pass" if passed else "fail")
            self.say(f"{len(self.candidates_evaluated):4d} {verdict:<12} "
                     f"{self.baseline_bytes / returned:6.1f}x  {returned:>11,} B  {figures}  "
                     f"{spec}  ({t1 - t0:.1f} s fit, {t2 - t1:.1f} s evaluate)")
        return cand, compressed

    def evaluate(self, steps, estimate, returned):
        """The Candidate of ``steps`` (evaluated once; a passing k-means tail again at
        :data:`RESEEDS`), the pick updated."""
        spec = format_spec(steps)
        if spec in self.cache:
            return self.cache[spec]
        cand, compressed = self.measure(steps, estimate, returned)
        if cand.passed and any(s.name == "pq" for s in steps):
            # k-means: the model returned is another fit, so the tail must pass at other seeds
            cand.reseeded = [seed for seed in RESEEDS
                             if self.measure(reseeded(steps, seed), estimate, returned)[0].passed]
            cand.passed = len(cand.reseeded) == len(RESEEDS)
        self.cache[spec] = cand
        if cand.passed:
            self.passing.append((cand, steps))
        if cand.passed and self.better(cand, self.best):
            self.best, self.best_steps, self.best_model = cand, steps, compressed
        self.bar.set_postfix_str("best: none" if self.best is None else
                                 f"{self.baseline_bytes / self.best.returned_bytes:.1f}x "
                                 f"{self.best.spec}")
        return cand

    def confirm(self):
        """With a sample of the validation users and a coverage target: the passing
        candidates, best first, are applied to the model given with all the interactions (the
        model the search returns) until one keeps each coverage target over every user there,
        by the bound of :func:`~cfprune.compression.search.validation.coverage_lower_bound`
        against the model given (its lists: the pruning chains' reach lists, every user with an
        interaction, seen items filtered); it is the pick, those before it stop passing, and
        each one asked records that in ``confirmed``.

        Coverage needs no held-out items (it counts the distinct items of the lists), so it is
        measured on the model returned itself, over every user, as a test over all users
        measures it. Over a sample it is overstated (it falls as the users grow), and on the
        retrained model it is not the returned model's: on the 200k log the pick of the sample
        kept 94.5% of coverage@20 over 32,768 validation users, 90.9% over all 199,880, and
        89.7% on the model returned over all 200,000 users (its test figure)."""
        catalogue = [t for t in self.targets if t.metric == "coverage" and
                     t.threshold is not None]
        if self.users is None or not catalogue or not self.passing:
            return
        t0 = time.perf_counter()
        matrix = self.data.matrix
        users = np.flatnonzero(np.diff(matrix.indptr) > 0)
        width = max(reach_cutoffs(max(self.ks)))
        base_lists = reach_lists(self.original, matrix, width)
        self.best = self.best_steps = self.best_model = None
        first = self.targets[0].key
        order = (lambda item: (-item[0].metrics[first], item[0].returned_bytes)) \
            if self.budget_bytes is not None else \
            (lambda item: (item[0].returned_bytes, -item[0].metrics[first]))
        for cand, steps in sorted(self.passing, key=order):
            returned = Pipeline(steps).fit(self.original, self.data)
            ranked, _ = returned.recommend(users, matrix[users], k=max(self.ks),
                                           filter_seen=True, num_threads=self.num_threads)
            coverage = {t.key: self.lists_bound(ranked[:, :t.k], base_lists[:, :t.k],
                                                ("returned", t.k))
                        for t in catalogue}
            passed = all(coverage[t.key]["lower"] >= t.threshold *
                         _distinct_share(base_lists[:, :t.k], self.model.n_items) - 1e-12
                         for t in catalogue)
            cand.confirmed = {"n_users": int(users.size), "coverage": coverage,
                              "passed": passed}
            figures = "  ".join(f"{k} {v['ratio']:.3f} (se {v['se']:.4f})"
                                for k, v in coverage.items())
            self.say(f"the model returned, over all {users.size:,} users: "
                     f"{'holds' if passed else 'fails'}  {figures}  {cand.spec}")
            if passed:
                self.best, self.best_steps, self.best_model = cand, steps, returned
                self.returned = returned
                break
            cand.passed = False
        self.say(f"confirmation in {time.perf_counter() - t0:.0f} s")

    def better(self, cand, best):
        """Whether ``cand`` beats ``best``: fewer returned bytes (then the first metric), or
        within a budget the first metric (then fewer bytes)."""
        if best is None:
            return True
        first = self.targets[0].key
        if self.budget_bytes is not None:
            return ((cand.metrics[first], -cand.returned_bytes)
                    > (best.metrics[first], -best.returned_bytes))
        return ((cand.returned_bytes, -cand.metrics[first])
                < (best.returned_bytes, -best.metrics[first]))

    # one tail along the pruning chains ------------------------------------------------------------
    def search_tail(self, lowrank, quantiser, chains, user_step=None):
        """Try ``lowrank | quantiser | user_step`` along every pruning chain: within a budget
        the level that keeps most rows and fits; else skip what cannot beat the best, drop a
        chain whose largest open level fails, and bisect for its last passing level."""
        unpruned = Level(None, self.model.n_items, self.model.n_items)
        for levels in chains:
            full = [self.candidates(level, lowrank, quantiser, user_step)
                    for level in [unpruned] + levels]
            sizes = [returned for _, _, returned in full]

            def run(i):
                return self.evaluate(*full[i])
            if self.budget_bytes is not None:
                fitting = [i for i, size in enumerate(sizes) if size <= self.budget_bytes]
                if fitting:
                    run(fitting[0])
                else:
                    self.n_skipped += len(full)
                continue
            limit = math.inf if self.best is None else self.best.returned_bytes
            open_levels = [i for i, size in enumerate(sizes) if size < limit]
            self.n_skipped += len(full) - len(open_levels)
            if not open_levels:
                continue
            lo, hi = open_levels[0], open_levels[-1]
            # the level keeping most rows first: when it fails, no level of the chain passes
            if not run(lo).passed:
                continue
            lo += 1
            while lo <= hi:                               # bisect for the last passing level
                mid = (lo + hi) // 2
                if self.best is not None and sizes[mid] >= self.best.returned_bytes:
                    lo = mid + 1      # the best moved on while bisecting
                    continue
                if run(mid).passed:
                    lo = mid + 1
                else:
                    hi = mid - 1

    # the whole search -----------------------------------------------------------------------------
    def run(self, model, interactions, valid=None, valid_fraction=0.1):
        """SearchResult of the search on ``model`` (see :func:`search`); raises TargetNotMet
        (with ``.result``) when no candidate passes. The reach lists of each model are ranked
        once, at the largest reach cut-off, for the chains and every reach pruning fitted
        (:func:`~cfprune.compression.rows.shared_reach_lists`), and the users of each model are
        factorised once for every joint low rank
        (:func:`~cfprune.compression.lowrank.shared_user_factorisation`)."""
        self.start = start = time.perf_counter()
        owned = False
        if self.scheduler is not None:
            from ...distributed import connect
            self.client, owned = connect(self.scheduler)
        try:
            with shared_reach_lists(), shared_user_factorisation():
                return self._run(model, interactions, valid, valid_fraction, start)
        finally:
            if owned:
                self.client.close()
            self.client = None

    def _run(self, model, interactions, valid, valid_fraction, start):
        self.prepare(model, interactions, valid, valid_fraction)
        self.baseline()
        self.screen_metrics = None if self.screen_base is None else \
            self.figures(self.screen_base)
        self.candidates_evaluated, self.prefixes, self.cache = [], {}, {}
        self.user_tables, self.base_coverage_counts = {}, {}
        self.best = self.best_steps = self.best_model = None
        self.n_skipped, self.passing, self.returned = 0, [], None
        self.bar = tqdm(desc="search", unit="cand", disable=self.show_progress is False or
                        (self.show_progress is None and not sys.stderr.isatty()))
        try:
            chains = self.pruning_chains()
            self.say("reach counts of the pruning chains done")
            for user_step in self.user_steps():
                for lowrank, quantiser in self.tails():
                    self.search_tail(lowrank, quantiser, chains, user_step)
        finally:
            self.bar.close()
        self.confirm()
        result = SearchResult(self.targets, self.budget_bytes, self.base_metrics,
                              self.baseline_bytes, self.candidates_evaluated, self.best,
                              self.best_model, self.split, time.perf_counter() - start,
                              self.n_skipped, side=self.side,
                              baseline_model_bytes=serving_bytes(self.original, "both"),
                              pass_rule=self.pass_rule())
        if self.best is None:
            raise TargetNotMet(
                f"no pipeline of the {len(self.candidates_evaluated)} evaluated meets "
                f"{', '.join(str(t) for t in self.targets)}"
                + ("" if self.budget_bytes is None else f" within {self.budget_bytes:,} bytes")
                + " on the validation part; keep the uncompressed model", result)
        if self.returned is not None:
            result.model = self.returned       # built and confirmed on the model given
        elif self.refit or self.side == "both":
            # the validated steps, applied to the model given, with all its data
            result.model = Pipeline(self.best_steps).fit(self.original, self.data)
        result.model_bytes = serving_bytes(result.model, "both")
        result.seconds = time.perf_counter() - start
        self.say(f"pick {self.best.spec}: {result.baseline_bytes / self.best.returned_bytes:.1f}x "
                 f"({self.side}), whole model {result.baseline_model_bytes / result.model_bytes:.2f}x")
        info = dict(result.model.info)
        info["search"] = {k: v for k, v in result.as_dict().items() if k != "candidates"}
        result.model = result.model.replace(info=info)
        return result


def search(model, interactions, target="recall@20>=0.97", budget_bytes=None, *, side="items",
           valid=None, valid_fraction=0.1, sample_users=DEFAULT_SAMPLE_USERS, confidence=0.95,
           seed=0, num_threads=None, scheduler=None, show_progress=None, log=None):
    """Search compression pipelines for the smallest model that keeps every target.

    Parameters
    ----------
    model : FactorModel
        The uncompressed model (any storage).
    interactions : Interactions or scipy CSR [n_users, n_items]
        The training interactions the model was trained on (never the test data).
    target : str or list of str
        ``"metric@k>=share,..."``: every share is relative to ``model`` on the validation part.
        With ``budget_bytes`` a target may omit ``>=share``; the first is maximised.
    budget_bytes : int or None
        Serving bytes (see :func:`serving_bytes`) the pick may take; None: minimise the bytes.
    side : "items" or "both"
        ``"items"``: the search compresses the item table (low rank narrows the users too) and
        minimises the item side's bytes; ``"both"``: it compresses the user table too
        (:func:`~cfprune.compression.search.space.user_steps_for`: ``fold-users`` for an ALS
        model, which ships no user table, and the per-row user quantisers) under the same
        targets and minimises the bytes of the whole model. Either way the result
        states the whole model's bytes (``result.model_bytes``, ``baseline_model_bytes``).
    valid : Interactions or scipy CSR, optional
        A validation part held out of ``interactions`` already (``model`` trained without it):
        then ``interactions`` are used whole to fit the compressions and filter the seen items.
    valid_fraction : float
        Otherwise, the share of every user's interactions carved out for validation (seeded by
        ``seed``).
    sample_users : int or None
        At most this many validation users (a uniform sample without replacement, seeded by
        ``seed``) are evaluated; None: all. Every figure, share and bound is over the sampled
        users. With fewer validation users than this, all are evaluated and the search is the
        exhaustive one. With more, every candidate is first evaluated on a nested sample of
        ``1/8`` of them and stops there when it clearly fails (see
        :meth:`TargetSearch.screened_out`); it can pass only on the whole sample.
    confidence : float or None
        A per-user metric (all but coverage) meets its target when its one-sided ``confidence``
        lower bound does: the candidate's mean less ``z`` standard errors of the paired per-user
        change against the model (``z = 1.645`` at 0.95), over the (sampled) validation users.
        That standard error is the sampling error of the sample's mean paired change as an
        estimate of the mean over all users, so sampling the users is counted in the bound
        (the bound is over the sample's users: a smaller sample gives a wider one). Without it,
        the smallest candidate that passes by luck of the validation sample would be picked
        (winner's curse); None or 0 compares the means. Coverage (a catalogue figure, not a
        mean over users) meets its target when its ratio to the model's less ``z`` paired
        bootstrap standard errors (200 resamples of the users, seeded by ``seed``) reaches the
        share; over a sample, the passing candidates are then confirmed over every validation
        user, smallest first (:meth:`TargetSearch.confirm`): coverage over a sample overstates
        the coverage over all users that a test measures.
    num_threads : int or None
        Threads for retrieval and evaluation (with ``scheduler``: Numba threads per Dask task,
        default 1).
    scheduler : str, distributed.Client or None
        Evaluate the baseline and every candidate on this Dask cluster
        (:func:`cfprune.distributed.evaluate_distributed`): the same figures and the same pick
        as in process. The compressions are fitted in this process.
    show_progress : bool or None
        tqdm bar of the candidates (None: on a terminal only).
    log : callable(str) or None
        Receives one line per stage (retraining, baseline, reach counts, the pick) and per
        candidate evaluated, each with the seconds since the start.

    Returns
    -------
    SearchResult
        Raises :class:`TargetNotMet` (with ``.result``) when no candidate passes.
    """
    return TargetSearch(target, budget_bytes, side=side, sample_users=sample_users,
                        confidence=confidence, seed=seed, num_threads=num_threads,
                        scheduler=scheduler, show_progress=show_progress,
                        log=log).run(model, interactions, valid, valid_fraction)


def _distinct_share(ids, n_items):
    """Distinct valid ids (>= 0) of ``ids`` over ``n_items``: the coverage of those lists."""
    return int(np.unique(ids[ids >= 0]).size) / n_items
