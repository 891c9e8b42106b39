"""The decision a report draws from its rows: Pareto front, best row per budget, smallest model
within a tolerance of the baseline, and how many rows lose significantly.

The decisions are made on the validation part when the rows carry ``valid_metrics`` (the spec
applied to the ALS model trained without that part, see :mod:`.sweep`), and only reported on the
test split, so the headline is not optimistic by selection. The smallest model must keep not only
recall@20 within ``tolerance`` but also what the project exists to show, coverage@20 and
tail_recall@20, within :data:`GUARDS`; a guard whose baseline figure is about 0 (below
:data:`INFORMATIVE_FLOOR`) says nothing and is left out, and the summary names it uninformative.
Significant losses are counted after Holm's correction over the rows.

Every function here reads plain report rows (dicts with ``spec``, ``bytes``, ``ratio``,
``metrics`` and optionally ``valid_metrics``), so it works the same on a fresh sweep and on a
``report.json`` read back.
"""

from __future__ import annotations

import math

SUMMARY_METRIC = "recall@20"
TOLERANCE = 0.01
GUARDS = {"coverage@20": 0.10, "tail_recall@20": 0.10}
INFORMATIVE_FLOOR = 0.005
FAMILY_ALPHA = 0.05
# (label, upper bound of the compression ratio, inclusive)
BUDGETS = (("<=2x", 2.0), ("<=4x", 4.0), ("<=8x", 8.0), ("<=16x", 16.0), (">16x", math.inf))


def _score(row, metric, key="metrics"):
    value = row[key].get(metric, math.nan)
    return -math.inf if value is None or math.isnan(value) else value


def budget_of(ratio):
    """The label of the budget bucket holding a compression ``ratio``."""
    for label, high in BUDGETS:
        if ratio <= high:
            return label
    return BUDGETS[-1][0]


def best_per_budget(rows, metric=SUMMARY_METRIC, key="metrics"):
    """list of ``{"budget", "spec", "index", "ratio", metric}``: for each non-empty budget
    bucket (by ``ratio``), the row with the highest ``row[key][metric]`` (ties: fewer bytes, then
    the earlier row). ``index`` is the row's position in ``rows``; ``metric`` is the figure the
    choice was made on."""
    out = []
    for label, _ in BUDGETS:
        members = [i for i, r in enumerate(rows) if budget_of(r["ratio"]) == label]
        if not members:
            continue
        best = min(members, key=lambda i: (-_score(rows[i], metric, key), rows[i]["bytes"], i))
        out.append({"budget": label, "spec": rows[best]["spec"], "index": best,
                    "ratio": rows[best]["ratio"], metric: rows[best][key].get(metric)})
    return out


def pareto_front(points):
    """Indices of the points no other point beats on both axes.

    ``points``: list of (bytes, score). A point is dominated when another has at most its bytes
    and at least its score, one of them strictly. Returned in ascending bytes.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front, best = [], -math.inf
    for i in order:
        score = points[i][1]
        if score > best:
            front.append(i)
            best = score
    return front


def smallest_within(rows, base_score, metric=SUMMARY_METRIC, tolerance=TOLERANCE, *,
                    key="metrics", guards=None):
    """The index of the smallest row (fewest bytes; ties: higher ``metric``, then earlier) whose
    ``row[key][metric]`` is at least ``(1 - tolerance) * base_score`` and, for each
    ``guards[name] = (base value, tolerance)``, whose ``row[key][name]`` is at least
    ``(1 - tolerance) * base value``; None when no row is."""
    floors = {metric: (1.0 - tolerance) * base_score}
    for name, (base, tol) in (guards or {}).items():
        floors[name] = (1.0 - tol) * base
    ok = [i for i, r in enumerate(rows)
          if all(_score(r, name, key) >= floor for name, floor in floors.items())]
    if not ok:
        return None
    return min(ok, key=lambda i: (rows[i]["bytes"], -_score(rows[i], metric, key), i))


def holm(p_values, alpha=FAMILY_ALPHA):
    """bool list: which hypotheses Holm's step-down procedure rejects at family-wise ``alpha``."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


def informative(value):
    """A baseline figure that can show a change (not None, NaN or about 0)."""
    return value is not None and not math.isnan(value) and value >= INFORMATIVE_FLOOR


def _figures(row_metrics, names):
    return {name: row_metrics.get(name) for name in names}


def _pick_record(rows, index, names, key):
    row = rows[index]
    out = {"spec": row["spec"], "index": index, "bytes": row["bytes"], "ratio": row["ratio"],
           "test": _figures(row["metrics"], names)}
    if key != "metrics":
        out["valid"] = _figures(row[key], names)
    return out


def summarise(rows, baseline, metric=SUMMARY_METRIC, tolerance=TOLERANCE, *,
              valid_baseline=None, search=None):
    """The ``summary`` block of report.json.

    ``valid_baseline``: the baseline's figures on the validation part (the rows then carry
    ``valid_metrics``, and the picks are made on them). ``search``: the record of the report's
    target search, copied in.

    Returns ``{"metric", "tolerance", "guards", "uninformative", "decided_on",
    "baseline_score", "baseline_valid", "smallest_within_tolerance": {"spec", "index", "bytes",
    "ratio", "valid", "test", "relative_change"} or None, "recall_only_pick": the same or None
    (the pick when only ``metric`` is asked, when it differs), "best_per_budget": [{"budget",
    "spec", "index", "ratio", metric, "test", "test_delta"}], "pareto_front": [specs, "float32
    baseline" included when on the front], "n_significant_losses" (Holm-corrected),
    "n_significant_losses_uncorrected", "search"}``. No timing enters it.
    """
    key = "metrics" if valid_baseline is None else "valid_metrics"
    decide_base = baseline["metrics"] if valid_baseline is None else valid_baseline
    names = [metric, *GUARDS]
    uninformative = [name for name in GUARDS
                     if not (informative(baseline["metrics"].get(name)) and
                             informative(decide_base.get(name)))]
    guards = {name: (decide_base[name], tol) for name, tol in GUARDS.items()
              if name not in uninformative}
    base_score = decide_base[metric]
    pick = smallest_within(rows, base_score, metric, tolerance, key=key, guards=guards)
    recall_only = smallest_within(rows, base_score, metric, tolerance, key=key)
    chosen = None
    if pick is not None:
        chosen = _pick_record(rows, pick, names, key)
        chosen["relative_change"] = {
            part: (chosen[part][metric] - ref[metric]) / ref[metric] if ref[metric] else math.nan
            for part, ref in (("test", baseline["metrics"]), ("valid", decide_base))
            if part in chosen}
    budgets = best_per_budget(rows, metric, key)
    for b in budgets:
        b["test"] = rows[b["index"]]["metrics"].get(metric)
        b["test_delta"] = rows[b["index"]].get("delta", {}).get(metric)
    points = [(baseline["bytes"], baseline["metrics"][metric])] + \
        [(r["bytes"], _score(r, metric)) for r in rows]
    labels = ["float32 baseline"] + [r["spec"] for r in rows]
    tested = [r["delta"][metric] for r in rows if r.get("delta", {}).get(metric)]
    rejected = holm([d.get("p_value", 1.0) for d in tested])
    return {"metric": metric, "tolerance": tolerance,
            "guards": {name: tol for name, (_, tol) in guards.items()},
            "uninformative": uninformative,
            "decided_on": "validation" if valid_baseline is not None else "test",
            "baseline_score": baseline["metrics"][metric],
            "baseline_valid": None if valid_baseline is None else _figures(valid_baseline, names),
            "smallest_within_tolerance": chosen,
            "recall_only_pick": None if recall_only in (None, pick) else
            _pick_record(rows, recall_only, names, key),
            "best_per_budget": budgets,
            "pareto_front": [labels[i] for i in pareto_front(points)],
            "n_significant_losses": sum(1 for d, r in zip(tested, rejected)
                                        if r and d["diff"] < 0),
            "n_significant_losses_uncorrected": sum(1 for d in tested
                                                    if d["significant"] and d["diff"] < 0),
            "search": search}


def _pct(value, ref):
    if value is None or ref is None or not ref:
        return "–"
    return f"{100 * value / ref:.1f}%"


def summary_sentence(summary, baseline, valid_baseline=None):
    """One line naming the smallest model within the tolerances, with its validation and test
    figures side by side."""
    metric = summary["metric"]
    pct = f"{100 * summary['tolerance']:g}%"
    guards = ", ".join(f"{name} within {100 * tol:g}%" for name, tol in summary["guards"].items())
    asked = f"{metric} within {pct}" + (f" and {guards}" if guards else "")
    chosen = summary["smallest_within_tolerance"]
    where = "on the validation part" if summary["decided_on"] == "validation" else "on test"
    if chosen is None:
        return (f"No compressed model keeps {asked} of the float32 baseline {where}; keep the "
                f"baseline ({baseline['bytes']:,} bytes).")
    test = baseline["metrics"]
    parts = []
    for name in [metric, *GUARDS]:
        cell = f"{name} test {chosen['test'][name]:.4f} ({_pct(chosen['test'][name], test[name])})"
        if "valid" in chosen and valid_baseline is not None:
            cell += (f", validation {chosen['valid'][name]:.4f} "
                     f"({_pct(chosen['valid'][name], valid_baseline[name])})")
        parts.append(cell)
    return (f"Smallest model keeping {asked} (relative) of the baseline, chosen {where}: "
            f"{chosen['spec']} - {chosen['bytes']:,} bytes ({chosen['ratio']:.1f}x smaller); "
            + "; ".join(parts) + " of the float32 figures.")
