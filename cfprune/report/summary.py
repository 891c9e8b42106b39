"""The decision a report draws from its rows: Pareto front, best row per budget, smallest model
within a tolerance of the baseline.

Every function here reads plain report rows (dicts with ``spec``, ``bytes``, ``ratio`` and
``metrics``), so it works the same on a fresh sweep and on a ``report.json`` read back.
"""

from __future__ import annotations

import math

SUMMARY_METRIC = "recall@20"
TOLERANCE = 0.01
# (label, upper bound of the compression ratio, inclusive)
BUDGETS = (("<=2x", 2.0), ("<=4x", 4.0), ("<=8x", 8.0), ("<=16x", 16.0), (">16x", math.inf))


def _score(row, metric):
    value = row["metrics"].get(metric, math.nan)
    return -math.inf if value is None or math.isnan(value) else value


def budget_of(ratio):
    """The label of the budget bucket holding a compression ``ratio``."""
    for label, high in BUDGETS:
        if ratio <= high:
            return label
    return BUDGETS[-1][0]


def best_per_budget(rows, metric=SUMMARY_METRIC):
    """list of ``{"budget", "spec", "index", "ratio", metric}``: for each non-empty budget
    bucket (by ``ratio``), the row with the highest ``metric`` (ties: fewer bytes, then the
    earlier row). ``index`` is the row's position in ``rows``."""
    out = []
    for label, _ in BUDGETS:
        members = [i for i, r in enumerate(rows) if budget_of(r["ratio"]) == label]
        if not members:
            continue
        best = min(members, key=lambda i: (-_score(rows[i], metric), rows[i]["bytes"], i))
        out.append({"budget": label, "spec": rows[best]["spec"], "index": best,
                    "ratio": rows[best]["ratio"], metric: rows[best]["metrics"].get(metric)})
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


def smallest_within(rows, base_score, metric=SUMMARY_METRIC, tolerance=TOLERANCE):
    """The index of the smallest row (fewest bytes; ties: higher ``metric``, then earlier) whose
    ``metric`` is at least ``(1 - tolerance) * base_score``; None when no row is."""
    floor = (1.0 - tolerance) * base_score
    ok = [i for i, r in enumerate(rows) if _score(r, metric) >= floor]
    if not ok:
        return None
    return min(ok, key=lambda i: (rows[i]["bytes"], -_score(rows[i], metric), i))


def summarise(rows, baseline, metric=SUMMARY_METRIC, tolerance=TOLERANCE):
    """The ``summary`` block of report.json.

    ``{"metric", "tolerance", "baseline_score", "smallest_within_tolerance": {"spec", "index",
    "bytes", "ratio", metric, "relative_change"} or None, "best_per_budget": [...],
    "pareto_front": [specs, "float32 baseline" included when on the front],
    "n_significant_losses"}``. No timing enters it, so it is the same on every rerun.
    """
    base_score = baseline["metrics"][metric]
    pick = smallest_within(rows, base_score, metric, tolerance)
    chosen = None
    if pick is not None:
        row = rows[pick]
        chosen = {"spec": row["spec"], "index": pick, "bytes": row["bytes"],
                  "ratio": row["ratio"], metric: row["metrics"][metric],
                  "relative_change": (row["metrics"][metric] - base_score) / base_score
                  if base_score else math.nan}
    points = [(baseline["bytes"], base_score)] + [(r["bytes"], _score(r, metric)) for r in rows]
    names = ["float32 baseline"] + [r["spec"] for r in rows]
    losses = sum(1 for r in rows
                 if r.get("delta", {}).get(metric, {}).get("significant")
                 and r["delta"][metric]["diff"] < 0)
    return {"metric": metric, "tolerance": tolerance, "baseline_score": base_score,
            "smallest_within_tolerance": chosen,
            "best_per_budget": best_per_budget(rows, metric),
            "pareto_front": [names[i] for i in pareto_front(points)],
            "n_significant_losses": losses}


def summary_sentence(summary, baseline_bytes):
    """One line naming the smallest model within the tolerance of the baseline."""
    metric = summary["metric"]
    pct = f"{100 * summary['tolerance']:g}%"
    chosen = summary["smallest_within_tolerance"]
    if chosen is None:
        return (f"No compressed model keeps {metric} within {pct} of the float32 baseline "
                f"({summary['baseline_score']:.4f}); keep the baseline ({baseline_bytes:,} bytes).")
    return (f"Smallest model within {pct} (relative) of the baseline's {metric}: "
            f"{chosen['spec']} - {chosen['bytes']:,} bytes ({chosen['ratio']:.1f}x smaller), "
            f"{metric} {chosen[metric]:.4f} vs {summary['baseline_score']:.4f} "
            f"({100 * chosen['relative_change']:+.2f}%).")
