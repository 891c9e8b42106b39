"""run_report(): one call from an interaction log to report.md, report.json and the plots."""

from __future__ import annotations

import os
import sys
import time

import numba

from .. import __version__
from ..compression.search import TargetNotMet, search, serving_bytes
from ..compression.search.engine import DEFAULT_SAMPLE_USERS
from ..errors import DataError
from ..facade import compress
from ..interactions import Interactions
from ..io import ensure_dir, write_json
from ..progress import Progress, on_terminal
from ..splits import random_split, temporal_split
from .baseline import (DEFAULT_GRID, QUICK_GRID, bpr_threads, train_baselines, tune_baselines,
                       tuned_als)
from .plots import PLOTS, write_plots
from .render import describe_params, terminal_table, write_markdown
from .summary import GUARDS, TOLERANCE, informative, summarise, summary_sentence
from .scale import DEFAULT_SCALE, sampled_users, throughput_users
from .sweep import (THROUGHPUT_K, VALID_METRICS, check_specs, default_sweep, evaluate_baseline,
                    evaluate_on, paired_deltas, run_sweep, validation_figures)

SCHEMA_VERSION = 2
REPORT_KS = (10, 20, 50)
SPLITS = ("random", "temporal")


def run_report(data, out_dir, methods=None, seed=0, num_threads=None, ks=REPORT_KS, quick=False,
               split="random", test_fraction=0.2, *, leave_last=1, grid=None, cache_dir=None,
               n_resamples=1000, repeats=3, log=print, scale=DEFAULT_SCALE, scheduler=None):
    """Tune and train the float32 baselines, sweep compression specs, write the report.

    Parameters
    ----------
    data : Interactions
        Implicit feedback (the stored values are the training confidences).
    out_dir : path
        Created if needed; receives ``report.md``, ``report.json``, the PNG plots and (unless
        ``cache_dir`` is given) ``cache/tuning-<key>.json``.
    methods : list of str or None
        Spec strings of a custom sweep; None runs :func:`~cfprune.report.sweep.default_sweep`.
    seed : int
        Seeds the split, the training, the sampling of the compressions that sample and the
        bootstrap: the same seed gives the same report.json figures (timings aside).
    num_threads : int or None
        Threads for training, evaluation and retrieval (None: all cores); every model is timed
        with the same count.
    ks : sequence of int
        Cut-offs evaluated; 10, 20 and 50 are always added (the report's columns use them).
    quick : bool
        A smaller tuning grid and sweep, and no target search (a smoke run).
    split : {"random", "temporal"}
        Per-user random hold-out of ``test_fraction``, or each user's last ``leave_last``.
    grid : Grid or None
        The ALS tuning grid (default :data:`~cfprune.report.baseline.DEFAULT_GRID`, or
        ``QUICK_GRID`` when ``quick``).
    cache_dir : path or None
        Where the tuning results are cached (default ``out_dir/cache``).
    n_resamples : int
        Bootstrap resamples of each paired interval.
    repeats : int
        Timed rounds per throughput measurement (best kept).
    log : callable(str) or None
        Receives the lines printed as the report goes (baselines first, the summary last);
        the long steps also write progress lines to stderr (:class:`cfprune.progress.Progress`).
    scale : ScaleRule
        Beyond ``scale.sample_beyond_users`` users, figures come from seeded user samples and
        the tuning grid runs by successive halving (:mod:`cfprune.report.scale`; the rule is
        stated in report.md and report.json ``scale``).
    scheduler : str, distributed.Client or None
        A Dask scheduler (see :func:`cfprune.distributed.connect`): the evaluations of the
        baselines, of every sweep row and of the target search's candidates run their user
        blocks on its workers (one Numba thread per task) with the same figures as in process;
        the training, the compressions and the throughput timings stay in this process. A worker
        lost mid-run is survived (its blocks run again elsewhere) or, when the scheduler gives
        up, named in a one-line DataError.

    Returns
    -------
    dict
        The content of report.json.
    """
    if scheduler is None:
        return _report(data, out_dir, methods, seed, num_threads, ks, quick, split,
                       test_fraction, leave_last, grid, cache_dir, n_resamples, repeats, log,
                       scale, None)
    from ..distributed import connect
    client, owned = connect(scheduler)
    try:
        return _report(data, out_dir, methods, seed, num_threads, ks, quick, split,
                       test_fraction, leave_last, grid, cache_dir, n_resamples, repeats, log,
                       scale, client)
    finally:
        if owned:
            client.close()


def _report(data, out_dir, methods, seed, num_threads, ks, quick, split, test_fraction,
            leave_last, grid, cache_dir, n_resamples, repeats, log, scale, client):
    """:func:`run_report` with ``client`` a ``distributed.Client`` or None (in process)."""
    start_total = time.perf_counter()
    stages = StageClock()
    say = log or (lambda text: None)
    if not isinstance(data, Interactions):
        raise DataError(f"run_report needs an Interactions log (e.g. load_movielens(name)."
                        f"implicit()), got {type(data).__name__}")
    if data.nnz == 0:
        raise DataError(f"{data.name or 'the interaction log'} has no interactions")
    specs = check_specs(methods) if methods else None
    ks = tuple(sorted(set(int(k) for k in ks) | set(REPORT_KS)))
    grid = grid or (QUICK_GRID if quick else DEFAULT_GRID)
    out_dir = os.fspath(out_dir)
    ensure_dir(out_dir)
    cache_dir = os.path.join(out_dir, "cache") if cache_dir is None else os.fspath(cache_dir)

    train, test, split_info = _split(data, split, test_fraction, leave_last, seed)
    tune_train, valid = random_split(train, test_fraction=grid.valid_fraction, seed=seed + 1)
    split_info.update(valid_fraction=grid.valid_fraction, n_tune_train=tune_train.nnz,
                      n_valid=valid.nnz)
    tuning, tune_model = tune_baselines(tune_train, valid, grid, seed=seed,
                                        num_threads=num_threads, cache_dir=cache_dir, log=say,
                                        rule=scale)
    tuning.pop("from_cache")
    stages.lap("split and tuning")
    als, bpr, seconds_train = train_baselines(train, tuning, grid, seed=seed,
                                              num_threads=num_threads, rule=scale)
    stages.lap("training")

    test_users = sampled_users(test, scale, seed, "test")
    valid_users = sampled_users(valid, scale, seed, "valid")
    timed = throughput_users(data.n_users, scale, seed)
    with Progress("report: evaluating the baselines", 2, unit="model") as progress:
        base_result, base = evaluate_baseline(als, train, test, ks=ks, num_threads=num_threads,
                                              repeats=repeats, users=test_users,
                                              timed_users=timed, client=client)
        progress.step(f"ALS on {base_result.n_users:,} test users")
        bpr_result, bpr_figures = evaluate_baseline(bpr, train, test, ks=ks,
                                                    num_threads=num_threads, repeats=repeats,
                                                    users=test_users, timed_users=timed,
                                                    client=client)
        progress.step(f"BPR on {bpr_result.n_users:,} test users")
    split_info["n_test_users"] = base_result.n_users
    tuning_common = {"grid": tuning["grid"], "cache_key": tuning["cache_key"]}
    base.update(algorithm="als", seconds_train=seconds_train["als"],
                params={**tuning["als"]["best"], "alpha": grid.alpha,
                        "iterations": grid.iterations, "seed": seed},
                tuning={**tuning_common, **tuning["als"]})
    bpr_figures.update(algorithm="bpr", seconds_train=seconds_train["bpr"],
                       params={**tuning["bpr"]["best"],
                               "regularization": grid.bpr_regularization, "seed": seed,
                               "threads": bpr_threads(train, num_threads, scale)},
                       tuning={**tuning_common, **tuning["bpr"]},
                       delta_vs_als=paired_deltas(bpr_result, base_result,
                                                  n_resamples=n_resamples, seed=seed))
    name = data.name or "interactions"
    say(f"{name}: {data.n_users:,} users x {data.n_items:,} items, {data.nnz:,} interactions; "
        f"{split} split, {base_result.n_users:,} test users")
    for label, figures in (("ALS", base), ("BPR", bpr_figures)):
        m = figures["metrics"]
        say(f"{label} float32 ({describe_params(figures)}): recall@10 {m['recall@10']:.4f}  "
            f"recall@20 {m['recall@20']:.4f}  nDCG@10 {m['ndcg@10']:.4f}")

    stages.lap("baselines evaluated")
    specs = specs if specs is not None else check_specs(default_sweep(als.dim, quick=quick))
    if tune_model is None:
        tune_model = tuned_als(tune_train, tuning, grid, seed=seed, num_threads=num_threads)
    valid_base = validation_figures(tune_model, tune_train, valid, num_threads, valid_users,
                                    client)
    rows, skipped = run_sweep(als, specs, train, test, base_result, ks=ks,
                              num_threads=num_threads, seed=seed, n_resamples=n_resamples,
                              repeats=repeats, log=say,
                              validation=(tune_model, tune_train, valid), timed_users=timed,
                              valid_users=valid_users, client=client)
    stages.lap("sweep")
    found = None if quick else target_search(
        als, tune_model, train, tune_train, valid, test, base, valid_base, seed=seed,
        num_threads=num_threads, log=say, test_users=test_users, valid_users=valid_users,
        sample_users=scale.eval_users if scale.applies(data.n_users) else DEFAULT_SAMPLE_USERS,
        client=client)
    if not quick:
        stages.lap("target search")
    summary = summarise(rows, base, valid_baseline=valid_base, search=found)
    report = {
        "schema_version": SCHEMA_VERSION,
        "cfprune_version": __version__,
        "dataset": {"name": name, "n_users": data.n_users, "n_items": data.n_items,
                    "nnz": data.nnz},
        "split": split_info,
        "scale": {**scale.as_dict(data.n_users), "rule": scale.describe(data.n_users),
                  "n_valid_users": None if valid_users is None else int(valid_users.size),
                  "n_timed_users": None if timed is None else int(timed.size)},
        "settings": {"ks": list(ks), "seed": seed, "n_resamples": n_resamples,
                     "confidence": 0.95, "throughput_k": THROUGHPUT_K,
                     "threads": num_threads, "threads_label": _threads_label(num_threads),
                     "timing_repeats": repeats, "quick": bool(quick),
                     "custom_methods": methods is not None},
        "baseline": base,
        "baseline_valid": valid_base,
        "bpr_baseline": bpr_figures,
        "rows": rows,
        "skipped": skipped,
        "summary": summary,
        "plots": dict(PLOTS),
    }
    write_plots(report, out_dir)
    stages.lap("plots")
    report["seconds_stages"] = stages.seconds
    report["seconds_total"] = time.perf_counter() - start_total
    print(f"report: stages {stages.describe()}; {report['seconds_total']:.0f} s in all",
          file=sys.stderr, flush=True)
    write_json(os.path.join(out_dir, "report.json"), report)
    write_markdown(os.path.join(out_dir, "report.md"), report)
    _print_summary(say, report, out_dir)
    return report


def target_search(als, tune_model, train, tune_train, valid, test, base, valid_base, *, seed,
                  num_threads, log, test_users=None, valid_users=None,
                  sample_users=DEFAULT_SAMPLE_USERS, client=None):
    """The report's ``--target`` run: the smallest pipeline keeping recall@20 within the
    tolerance (and the informative guards of :data:`~.summary.GUARDS`) on the validation part,
    searched on the ALS trained without it, then applied to the baseline and measured on test
    (on ``test_users``, None: all). ``sample_users`` is the search's seeded sample of
    validation users (None: all; the search's default holds every MovieLens user; at scale the report's ``eval_users``, so
    that the search screens every candidate on a nested eighth of them first; its paired lower
    bounds are over that sample); the pick's validation figures are over ``valid_users``
    (None: all), the users of ``valid_base``. With a Dask ``client`` the candidates are evaluated on its
    cluster (the same figures and pick). Off a terminal the search writes a line per stage and
    candidate to stderr, with the seconds since it began.

    Returns ``{"target", "spec", "bytes", "ratio", "item_bytes", "item_ratio", "valid",
    "valid_relative", "test", "test_relative", "n_candidates", "seconds"}`` (``spec`` None and
    ``message`` when no pipeline meets the target)."""
    clauses = [f"recall@20>={1 - TOLERANCE:g}"]
    clauses += [f"{name}>={1 - tol:g}" for name, tol in GUARDS.items()
                if informative(valid_base.get(name)) and informative(base["metrics"].get(name))]
    target = ",".join(clauses)
    progress = Progress("report: target search", 1, unit="search")
    try:
        result = search(tune_model, tune_train, target, valid=valid, seed=seed,
                        sample_users=sample_users, num_threads=1 if client is not None else num_threads, scheduler=client,
                        log=None if on_terminal() else _search_line)
    except TargetNotMet as e:
        progress.step(f"no pipeline meets {target}")
        progress.close()
        log(f"target search ({target}): {e}")
        return {"target": target, "spec": None, "message": str(e),
                "n_candidates": len(e.result.candidates), "seconds": e.result.seconds}
    pick = result.pick
    progress.step(f"{pick.spec} of {len(result.candidates)} candidates")
    progress.close()
    final = compress(als, pick.spec, train)
    test_metrics = evaluate_on(client, final, train, test, ks=(20,), num_threads=num_threads,
                               users=test_users).metrics
    test_figures = {name: float(test_metrics[name]) for name in VALID_METRICS}
    valid_figures = validation_figures(result.model, tune_train, valid, num_threads, valid_users,
                                       client)
    out = {"target": target, "spec": pick.spec, "bytes": int(final.nbytes),
           "ratio": als.nbytes / final.nbytes, "item_bytes": serving_bytes(final),
           "item_ratio": serving_bytes(als) / serving_bytes(final),
           "valid": valid_figures,
           "valid_relative": {k: v / valid_base[k] if valid_base[k] else None
                              for k, v in valid_figures.items()},
           "test": test_figures,
           "test_relative": {k: v / base["metrics"][k] if base["metrics"][k] else None
                             for k, v in test_figures.items()},
           "n_candidates": len(result.candidates), "seconds": result.seconds}
    log(f"target search ({target}): {pick.spec}, item table {out['item_ratio']:.1f}x smaller "
        f"({len(result.candidates)} candidates, {result.seconds:.0f} s)")
    return out


class StageClock:
    """The wall seconds of the report's stages, for report.json ``seconds_stages`` and the
    closing stderr line (``lap(name)`` closes the stage that began at the previous lap)."""

    def __init__(self):
        self.seconds = {}
        self._last = time.perf_counter()

    def lap(self, name):
        now = time.perf_counter()
        self.seconds[name] = now - self._last
        self._last = now

    def describe(self):
        """``"name 12 s, name 3 s"`` in stage order."""
        return ", ".join(f"{name} {seconds:.0f} s" for name, seconds in self.seconds.items())


def _search_line(line):
    print(f"report: target search: {line}", file=sys.stderr, flush=True)


def _split(data, split, test_fraction, leave_last, seed):
    """(train, test, split dict) of ``data``."""
    if split == "random":
        train, test = random_split(data, test_fraction=test_fraction, seed=seed)
        info = {"kind": "random", "test_fraction": test_fraction, "seed": seed}
    elif split == "temporal":
        train, test = temporal_split(data, k=leave_last)
        info = {"kind": "temporal", "leave_last": leave_last, "test_fraction": 0.0,
                "seed": seed}
    else:
        raise DataError(f"the report supports the splits {', '.join(SPLITS)}, not {split!r} "
                        f"(strong generalisation needs fold-in of held-out users, which the "
                        f"report does not do)")
    info.update(n_train=train.nnz, n_test=test.nnz)
    return train, test, info


def _threads_label(num_threads):
    n = numba.get_num_threads() if num_threads is None else int(num_threads)
    return f"{n} thread{'s' if n != 1 else ''}"


def _print_summary(say, report, out_dir):
    rows = report["rows"]
    say(terminal_table(report))
    say(f"{len(rows)} compressed models evaluated"
        + (f", {len(report['skipped'])} skipped" if report["skipped"] else "")
        + f" in {report['seconds_total']:.1f} s; wrote {os.path.join(out_dir, 'report.md')}, "
          f"report.json and {len(report['plots'])} plots")
    for b in report["summary"]["best_per_budget"]:
        say(f"  best {b['budget']:>5} on validation: {b['spec']} (recall@20 validation "
            f"{b['recall@20']:.4f}, test {b['test']:.4f}, {b['ratio']:.1f}x)")
    say(summary_sentence(report["summary"], report["baseline"], report.get("baseline_valid")))
