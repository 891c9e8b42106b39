"""The compression report end to end on a small synthetic log: files, schema, plots, cache,
determinism, and the decision figures recomputed here from the rows."""

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

from cfprune import Interactions
from cfprune.errors import SpecError
from cfprune.report import Grid, run_report
from cfprune.report import baseline as baseline_module
from cfprune.report.scale import ScaleRule, carried_points, halving_rungs, sampled_users
from cfprune.report.summary import best_per_budget, holm, pareto_front, smallest_within

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXPECTED_PLOTS = {"tradeoff.png", "throughput.png", "delta.png"}
METHODS = ["fp16:table=both", "int8:table=both", "pq:m=4,table=both",
           "prune-rows:keep=0.5,by=popularity", "lowrank:rank=4|int8"]
SMALL_GRID = Grid(factors=(4, 8), regularization=(1.0, 10.0), bpr_learning_rate=(0.01,),
                  bpr_iterations=(20,))
TIMING_PREFIXES = ("seconds", "users_per_second")

# The schema check: required keys and their types, per block and per row.
NUMBER = (int, float)
TOP_LEVEL = {"schema_version": int, "dataset": dict, "split": dict, "settings": dict,
             "baseline": dict, "bpr_baseline": dict, "rows": list, "skipped": list,
             "summary": dict, "plots": dict, "seconds_total": NUMBER, "seconds_stages": dict}
DATASET = {"name": str, "n_users": int, "n_items": int, "nnz": int}
SPLIT = {"kind": str, "test_fraction": NUMBER, "valid_fraction": NUMBER, "seed": int,
         "n_train": int, "n_test": int, "n_valid": int, "n_test_users": int}
BASELINE = {"algorithm": str, "params": dict, "bytes": int, "bytes_per_item": NUMBER,
            "metrics": dict, "users_per_second": NUMBER, "seconds_train": NUMBER,
            "seconds_evaluate": NUMBER, "tuning": dict, "n_test_users": int}
TUNING = {"grid": dict, "results": list, "best": dict, "cache_key": str}
ROW = {"spec": str, "bytes": int, "ratio": NUMBER, "bytes_per_item": NUMBER,
       "table_bytes": dict, "metrics": dict, "delta": dict, "users_per_second": NUMBER,
       "seconds_compress": NUMBER, "seconds_evaluate": NUMBER, "info": dict,
       "valid_metrics": dict, "users_per_second_rounds": list}
INTERVAL = {"diff": NUMBER, "low": NUMBER, "high": NUMBER, "significant": bool}
SUMMARY = {"metric": str, "tolerance": NUMBER, "baseline_score": NUMBER,
           "best_per_budget": list, "pareto_front": list, "n_significant_losses": int,
           "n_significant_losses_uncorrected": int, "guards": dict, "uninformative": list,
           "decided_on": str, "baseline_valid": dict, "search": (dict, type(None))}
ROW_METRICS = [f"{name}@{k}" for k in (10, 20, 50)
               for name in ("recall", "ndcg", "map", "coverage", "tail_recall", "overlap")]
BASELINE_METRICS = [f"{name}@{k}" for k in (10, 20, 50)
                    for name in ("recall", "ndcg", "map", "coverage", "tail_recall")]


def synthetic_log(n_users=240, n_items=180, dim=5, per_user=24, seed=7):
    """Users pick their top items under a low-rank score plus popularity and Gumbel noise."""
    rng = np.random.default_rng(seed)
    score = rng.normal(size=(n_users, dim)) @ rng.normal(size=(dim, n_items))
    score += np.linspace(2.0, 0.0, n_items) + rng.gumbel(size=(n_users, n_items))
    items = np.argsort(-score, axis=1)[:, :per_user]
    users = np.repeat(np.arange(n_users), per_user)
    matrix = sp.csr_matrix((np.ones(users.size, np.float32), (users, items.ravel())),
                           shape=(n_users, n_items))
    return Interactions(matrix, name="synthetic")


def check_keys(obj, schema, where):
    for key, kind in schema.items():
        assert key in obj, f"{where} lacks {key!r}"
        assert isinstance(obj[key], kind) and not (kind is NUMBER and isinstance(obj[key],
                                                                                   bool)), \
            f"{where}[{key!r}] is {type(obj[key]).__name__}, expected {kind}"


def strip_timings(obj):
    if isinstance(obj, dict):
        return {k: strip_timings(v) for k, v in obj.items() if not k.startswith(TIMING_PREFIXES)}
    if isinstance(obj, list):
        return [strip_timings(v) for v in obj]
    return obj


@pytest.fixture(scope="module")
def data():
    return synthetic_log()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("report")
    lines = []
    report = run_report(data, out, methods=METHODS, seed=3, num_threads=2, grid=SMALL_GRID,
                        n_resamples=200, repeats=1, log=lines.append)
    return out, report, lines


def test_files_and_json_schema(first_run, data):
    out, report, _ = first_run
    on_disk = json.loads((out / "report.json").read_text())
    assert strip_timings(on_disk) == strip_timings(json.loads(json.dumps(report)))
    check_keys(on_disk, TOP_LEVEL, "report")
    assert on_disk["schema_version"] == 2
    check_keys(on_disk["dataset"], DATASET, "dataset")
    assert (on_disk["dataset"]["n_users"], on_disk["dataset"]["n_items"],
            on_disk["dataset"]["nnz"]) == (data.n_users, data.n_items, data.nnz)
    check_keys(on_disk["split"], SPLIT, "split")
    assert on_disk["split"]["n_train"] + on_disk["split"]["n_test"] == data.nnz
    for name in ("baseline", "bpr_baseline"):
        b = on_disk[name]
        check_keys(b, BASELINE, name)
        check_keys(b["tuning"], TUNING, f"{name}.tuning")
        for metric in BASELINE_METRICS:
            assert isinstance(b["metrics"][metric], NUMBER), f"{name} {metric}"
    assert len(on_disk["baseline"]["tuning"]["results"]) == 4
    assert len(on_disk["bpr_baseline"]["tuning"]["results"]) == 1
    assert on_disk["baseline"]["params"]["factors"] in (4, 8)
    assert [row["spec"] for row in on_disk["rows"]] == METHODS
    for row in on_disk["rows"]:
        check_keys(row, ROW, row["spec"])
        for metric in ROW_METRICS:
            assert isinstance(row["metrics"][metric], NUMBER), f"{row['spec']} {metric}"
        check_keys(row["delta"]["recall@20"], INTERVAL, f"{row['spec']} delta")
        assert row["users_per_second"] > 0
    check_keys(on_disk["summary"], SUMMARY, "summary")
    stages = on_disk["seconds_stages"]
    assert list(stages) == ["split and tuning", "training", "baselines evaluated", "sweep",
                            "target search", "plots"]
    assert all(v >= 0 for v in stages.values())
    assert sum(stages.values()) <= on_disk["seconds_total"]


def test_row_figures_agree_with_their_definitions(first_run, data):
    _, report, _ = first_run
    base = report["baseline"]
    n_dense = (data.n_users + data.n_items) * base["params"]["factors"] * 4
    assert base["bytes"] == n_dense
    for row in report["rows"]:
        assert row["bytes"] == sum(row["table_bytes"].values())
        assert row["ratio"] == pytest.approx(base["bytes"] / row["bytes"])
        assert row["bytes_per_item"] == pytest.approx(row["bytes"] / data.n_items)
        d = row["delta"]["recall@20"]
        # every test user has a defined recall, so the paired mean difference is the
        # difference of the means
        assert d["diff"] == pytest.approx(row["metrics"]["recall@20"] -
                                          base["metrics"]["recall@20"], abs=1e-12)
        assert d["low"] <= d["diff"] <= d["high"]
        assert d["significant"] == (d["low"] > 0 or d["high"] < 0)
    fp16 = report["rows"][0]
    assert fp16["bytes"] == base["bytes"] // 2
    assert fp16["metrics"]["overlap@20"] > 0.95


def test_summary_matches_a_recomputation_on_validation(first_run):
    _, report, lines = first_run
    rows, base, summary = report["rows"], report["baseline"], report["summary"]
    valid_base = report["baseline_valid"]
    assert summary["decided_on"] == "validation"
    guards = {"recall@20": 0.01}
    for name, tol in (("coverage@20", 0.10), ("tail_recall@20", 0.10)):
        if valid_base[name] >= 0.005 and base["metrics"][name] >= 0.005:
            guards[name] = tol
        else:
            assert name in summary["uninformative"]
    ok = [r for r in rows if all(r["valid_metrics"][name] >= (1 - tol) * valid_base[name]
                                 for name, tol in guards.items())]
    chosen = summary["smallest_within_tolerance"]
    if ok:
        smallest = min(r["bytes"] for r in ok)
        assert chosen["bytes"] == smallest
        assert chosen["spec"] in {r["spec"] for r in ok if r["bytes"] == smallest}
        row = rows[chosen["index"]]
        assert chosen["test"]["recall@20"] == row["metrics"]["recall@20"]
        assert chosen["valid"]["recall@20"] == row["valid_metrics"]["recall@20"]
        assert chosen["spec"] in lines[-1]
    else:
        assert chosen is None
    for bucket in summary["best_per_budget"]:
        members = [r for r in rows if _bucket(r["ratio"]) == bucket["budget"]]
        assert bucket["recall@20"] == max(r["valid_metrics"]["recall@20"] for r in members)
        assert bucket["test"] == rows[bucket["index"]]["metrics"]["recall@20"]
    # Holm over the rows' p-values, by hand
    p = sorted((r["delta"]["recall@20"]["p_value"], r["delta"]["recall@20"]["diff"])
               for r in rows)
    losses = 0
    for rank, (value, diff) in enumerate(p):
        if value > 0.05 / (len(p) - rank):
            break
        losses += diff < 0
    assert summary["n_significant_losses"] == losses
    found = summary["search"]     # the run is not quick: the target search ran
    assert found["target"].startswith("recall@20>=0.99")
    if found["spec"]:
        assert found["valid_relative"]["recall@20"] >= 0.99 - 1e-9


def _bucket(ratio):
    for label, high in (("<=2x", 2), ("<=4x", 4), ("<=8x", 8), ("<=16x", 16)):
        if ratio <= high:
            return label
    return ">16x"


def test_markdown_tables(first_run):
    out, report, lines = first_run
    text = (out / "report.md").read_text()
    assert "## Baselines (float32)" in text and "## Conclusion" in text
    table_lines = [line for line in text.splitlines() if line.startswith("| ")]
    for spec in METHODS:
        cell = "`" + spec.replace("|", "\\|") + "`"
        assert sum(cell in line for line in table_lines) == 1, spec
    n_bold_rows = sum(" | **`" in line for line in table_lines)
    assert n_bold_rows == len(report["summary"]["best_per_budget"]) >= 1
    for name in EXPECTED_PLOTS:
        assert f"]({name})" in text
    assert lines[0].startswith("synthetic:") and lines[1].startswith("ALS float32")
    assert lines[2].startswith("BPR float32") and "recall@20" in lines[1]


def test_plots_are_real_images(first_run):
    import matplotlib.image as mpimg
    out, _, _ = first_run
    pngs = {p.name for p in out.glob("*.png")}
    assert pngs == EXPECTED_PLOTS
    for name in pngs:
        path = out / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        image = mpimg.imread(path)
        assert image.ndim == 3 and image.shape[2] in (3, 4)
        assert image.shape[0] >= 200 and image.shape[1] >= 400
        assert image.std() > 0.01  # not a blank canvas


def test_rerun_reads_the_tuning_cache_and_repeats_the_figures(first_run, data, monkeypatch):
    out, report, _ = first_run
    calls = []
    real_train_als = baseline_module.train_als

    def counting_train_als(*args, **kwargs):
        calls.append(kwargs.get("factors"))
        return real_train_als(*args, **kwargs)

    monkeypatch.setattr(baseline_module, "train_als", counting_train_als)
    lines = []
    again = run_report(data, out, methods=METHODS, seed=3, num_threads=2, grid=SMALL_GRID,
                       n_resamples=200, repeats=1, log=lines.append)
    # the final retrain and the model the decisions are made with (trained without validation)
    assert calls == [report["baseline"]["params"]["factors"]] * 2
    assert any("cache" in line for line in lines)
    assert strip_timings(json.loads(json.dumps(again))) == \
        strip_timings(json.loads(json.dumps(report)))
    assert len(list((out / "cache").glob("tuning-*.json"))) == 1


def test_other_seed_changes_the_split_and_the_cache_key(tmp_path, data):
    report = run_report(data, tmp_path, methods=["fp16"], seed=4, num_threads=2,
                        grid=Grid(factors=(4,), regularization=(1.0,), bpr_learning_rate=(0.01,),
                                  bpr_iterations=(10,)),
                        n_resamples=50, repeats=1, log=None)
    assert report["split"]["seed"] == 4
    assert len(report["rows"]) == 1 and report["rows"][0]["spec"] == "fp16"


def test_bad_spec_stops_before_any_work(tmp_path, data, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("training started before the specs were checked")

    monkeypatch.setattr(baseline_module, "train_als", fail)
    with pytest.raises(SpecError, match="pq"):
        run_report(data, tmp_path, methods=["fp16", "pq:m=oops"], log=None)


def test_cli_report(tmp_path, data):
    from cfprune.cli import main
    path = tmp_path / "ratings.csv"
    coo = data.matrix.tocoo()
    lines = ["user,item,rating"] + [f"u{u},i{i},5" for u, i in zip(coo.row, coo.col)]
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    code = main(["report", "--ratings", str(path), "--out", str(out), "--quick", "--methods",
                 "fp16:table=both", "int4", "--threads", "2", "--seed", "1"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert [r["spec"] for r in report["rows"]] == ["fp16:table=both", "int4"]
    assert report["split"]["seed"] == 1
    assert {p.name for p in out.glob("*.png")} == EXPECTED_PLOTS


def test_decision_helpers_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 12))
        sizes = rng.integers(1, 6, size=n).tolist()
        scores = np.round(rng.random(n), 1).tolist()
        points = list(zip(sizes, scores))
        front = set(pareto_front(points))
        for i, (b, s) in enumerate(points):
            dominated = any(b2 <= b and s2 >= s and (b2 < b or s2 > s)
                            for j, (b2, s2) in enumerate(points) if j != i)
            duplicate_earlier = any((b2, s2) == (b, s) for b2, s2 in points[:i])
            assert (i in front) == (not dominated and not duplicate_earlier)
        rows = [{"spec": str(i), "bytes": b, "ratio": 20.0 / b, "metrics": {"recall@20": s}}
                for i, (b, s) in enumerate(points)]
        base = float(rng.random())
        pick = smallest_within(rows, base)
        ok = [i for i, r in enumerate(rows) if r["metrics"]["recall@20"] >= 0.99 * base]
        assert (pick is None) == (not ok)
        if ok:
            assert rows[pick]["bytes"] == min(rows[i]["bytes"] for i in ok)
        for bucket in best_per_budget(rows):
            members = [r for r in rows if _bucket(r["ratio"]) == bucket["budget"]]
            assert bucket["recall@20"] == max(r["metrics"]["recall@20"] for r in members)
            assert not math.isnan(bucket["recall@20"])
        pvalues = rng.random(n).tolist()
        rejected = holm(pvalues)
        ranked = sorted(range(n), key=lambda i: pvalues[i])
        expect, stop = [False] * n, False
        for rank, i in enumerate(ranked):
            stop = stop or pvalues[i] > 0.05 / (n - rank)
            expect[i] = not stop
        assert rejected == expect


SMALL_SCALE = ScaleRule(sample_beyond_users=100, eval_users=60, throughput_users=50,
                        halving_eta=2, min_rung_users=50)


def test_halving_schedule():
    rule = ScaleRule()
    assert halving_rungs(12, 6_040, rule) == [(6_040, 12)]            # MovieLens: one rung
    assert halving_rungs(12, 200_000, rule) == [(22_223, 12), (66_667, 4), (200_000, 2)]
    assert halving_rungs(4, 200_000, rule) == [(22_223, 4), (66_667, 2), (200_000, 1)]
    assert halving_rungs(4, 200_000, rule, single_last=False) == [(22_223, 4), (66_667, 2)]
    assert halving_rungs(2, 1_000_000, rule) == [(333_334, 2), (1_000_000, 1)]
    assert halving_rungs(2, 1_000_000, rule, single_last=False) == [(333_334, 2)]
    assert halving_rungs(1, 1_000_000, rule, single_last=False) == []
    assert halving_rungs(1, 6_040, rule, single_last=False) == [(6_040, 1)]    # MovieLens
    # ALS's 3 factor counts: the best of each reaches the last rung
    assert halving_rungs(12, 200_000, rule, n_groups=3) == \
        [(22_223, 12), (66_667, 4), (200_000, 3)]
    assert halving_rungs(12, 6_040, rule, n_groups=3) == [(6_040, 12)]
    assert halving_rungs(2, 1_000_000, rule, n_groups=2) == [(1_000_000, 2)]    # quick grid
    assert halving_rungs(4, 1_000_000, rule, n_groups=2) == [(111_112, 4), (333_334, 2),
                                                             (1_000_000, 2)]
    plain = ScaleRule(carry_each_group=False)
    assert halving_rungs(12, 200_000, plain, n_groups=3) == \
        [(22_223, 12), (66_667, 4), (200_000, 2)]


def test_carried_points_keep_the_best_of_each_group():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 10))
        scores = rng.integers(0, 4, n).astype(float).tolist()     # ties on purpose
        groups = rng.integers(0, 3, n).tolist()
        keep = int(rng.integers(1, n + 1))
        got = carried_points(scores, groups, keep)
        assert got == sorted(got) and len(got) == keep == len(set(got))
        best = {}                                 # each group's best point, ties: the earliest
        for i in range(n):
            if groups[i] not in best or scores[i] > scores[best[groups[i]]]:
                best[groups[i]] = i
        leaders = sorted(best.values(), key=lambda i: (-scores[i], i))
        if keep >= len(leaders):
            assert set(leaders) <= set(got)
            # the rest: no point left out scores above a carried point that is not a leader
            others = [i for i in got if i not in leaders]
            out = [i for i in range(n) if i not in got]
            if others and out:
                assert min(scores[i] for i in others) >= max(scores[i] for i in out)
        else:
            assert got == sorted(leaders[:keep])
        plain = carried_points(scores, None, keep)
        assert plain == sorted(sorted(range(n), key=lambda i: (-scores[i], i))[:keep])


def test_user_samples_are_seeded_subsets_of_the_users_with_items(data):
    small = sampled_users(data, ScaleRule(), 0, "test")
    assert small is None                                  # below the rule: every user
    users = sampled_users(data, SMALL_SCALE, 0, "test")
    assert users.size == 60 and np.all(np.diff(users) > 0)
    assert np.all(np.diff(data.matrix.indptr)[users] > 0)
    assert np.array_equal(users, sampled_users(data, SMALL_SCALE, 0, "test"))
    assert not np.array_equal(users, sampled_users(data, SMALL_SCALE, 1, "test"))
    assert not np.array_equal(users, sampled_users(data, SMALL_SCALE, 0, "valid"))


def test_report_at_scale_samples_users_and_halves_the_grid(tmp_path, data, capsys,
                                                           monkeypatch):
    import cfprune.models.training as training
    monkeypatch.setattr(training, "ITERATION_LINE_SECONDS", 0.0)
    lines = []
    report = run_report(data, tmp_path, methods=METHODS[:2], seed=3, num_threads=2,
                        grid=SMALL_GRID, n_resamples=100, repeats=1, log=lines.append,
                        scale=SMALL_SCALE)
    # at scale the baselines' trainings say how far they are (off a terminal: lines); the
    # tuning grid's many small trainings do not
    logged = capsys.readouterr().err.splitlines()
    assert sum(line.startswith("train ALS ") for line in logged) == SMALL_GRID.iterations
    assert any(line.startswith("train BPR 1/") for line in logged)
    scale = report["scale"]
    assert scale["sampled"] and scale["n_valid_users"] == 60 and scale["n_timed_users"] == 50
    assert report["baseline"]["n_test_users"] == report["split"]["n_test_users"] == 60
    assert report["bpr_baseline"]["n_test_users"] == 60
    # the rows are measured on the baseline's sampled users: the paired mean change is the
    # difference of the means
    for row in report["rows"]:
        assert row["delta"]["recall@20"]["diff"] == pytest.approx(
            row["metrics"]["recall@20"] - report["baseline"]["metrics"]["recall@20"], abs=1e-12)
    # successive halving, recomputed from the recorded results: 4 points on 60 users, 2 on 120,
    # 2 on every user (the best of each of the 2 factor counts is carried to the last rung);
    # the chosen point is the best of the last rung
    results = report["baseline"]["tuning"]["results"]
    assert [(r["rung"], r["n_users"]) for r in results] == \
        [(0, 60)] * 4 + [(1, 120)] * 2 + [(2, 240)] * 2
    for rung in (1, 2):
        before = [r for r in results if r["rung"] == rung - 1]
        survivors = {(f, max((r for r in before if r["factors"] == f),
                             key=lambda r: r["recall@20"])["regularization"])
                     for f in SMALL_GRID.factors}
        assert {(r["factors"], r["regularization"]) for r in results if r["rung"] == rung} \
            == survivors
    best = report["baseline"]["tuning"]["best"]
    last = max((r for r in results if r["rung"] == 2), key=lambda r: r["recall@20"])
    assert (last["factors"], last["regularization"]) == (best["factors"], best["regularization"])
    bpr = report["bpr_baseline"]
    assert bpr["tuning"]["results"] == []       # one point: nothing to choose, no rung trained
    assert (bpr["params"]["learning_rate"], bpr["params"]["iterations"]) == (0.01, 20)
    assert bpr["params"]["threads"] == 2           # BPR on every thread given (not one)
    text = (tmp_path / "report.md").read_text()
    assert "Scale: With 240 users (more than 100)" in text and "users trained on" in text
    assert f"BPR ({bpr['params']['factors']} factors): one grid point (learning_rate 0.01, " \
        f"iterations 20)" in text
    assert report["summary"]["search"]["n_candidates"] >= 1
