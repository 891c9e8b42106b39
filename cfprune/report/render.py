"""report.json and report.md from the report dict built by :func:`cfprune.report.run_report`.

The JSON holds every figure (schema: README, "report.json schema"); NaN and infinities are written
as ``null`` so that any JSON reader takes the file. The markdown holds the tables a person reads:
the baselines, the tuning grid, one row per compressed model (the best row of each budget bucket
in bold) and a concluding paragraph.
"""

from __future__ import annotations

import math


from ..io import atomic_write
from .summary import holm, summary_sentence

METHOD_COLUMNS = ("#", "spec", "bytes", "ratio", "bytes/item", "recall@20 (valid)", "recall@10",
                  "recall@20", "recall@50", "nDCG@20", "MAP@20", "coverage@20",
                  "tail_recall@20", "overlap@20", "Δrecall@20 [95% CI]", "p (*: Holm)", "users/s")
TERMINAL_COLUMNS = (("#", 3), ("spec", 44), ("ratio", 7), ("valid r@20", 10), ("recall@20", 9),
                    ("cov@20", 7), ("tail@20", 7), ("Δrecall@20", 10), ("users/s", 9))


def write_markdown(path, report):
    """Write :func:`render_markdown` of ``report`` to ``path`` atomically."""
    text = render_markdown(report).encode()
    atomic_write(path, lambda f: f.write(text))


# cells ---------------------------------------------------------------------------------------
def _num(value, digits=4):
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def _bytes(n):
    return f"{int(n):,}"


def _rate(value):
    return "–" if value is None else f"{value:,.0f}"


def _delta(d):
    if not d or d.get("diff") is None or (isinstance(d["diff"], float) and
                                          not math.isfinite(d["diff"])):
        return "–"
    mark = " *" if d.get("significant") else ""
    return f"{d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]{mark}"


def _table(header, rows, left=1):
    """A markdown table; the first ``left`` columns align left, the others right."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _spec_cell(spec):
    """A spec as a code span inside a table cell (``|`` escaped)."""
    return "`" + spec.replace("|", "\\|") + "`"


def _spec_text(spec):
    """A spec as a code span in running text."""
    return f"`{spec}`"


def method_cells(number, row, holm_rejects=None):
    """The markdown cells of sweep row ``number`` (1-based, as the plots label it), in
    :data:`METHOD_COLUMNS` order. ``holm_rejects``: whether Holm's correction keeps the row's
    recall@20 change significant."""
    m = row["metrics"]
    d = row.get("delta", {}).get("recall@20") or {}
    p = d.get("p_value")
    p_cell = "–" if p is None else f"{p:.2g}" + (" *" if holm_rejects else "")
    return [str(number), _spec_cell(row["spec"]), _bytes(row["bytes"]), f"{row['ratio']:.1f}x",
            f"{row['bytes_per_item']:.1f}", _num(row.get("valid_metrics", {}).get("recall@20")),
            _num(m.get("recall@10")), _num(m.get("recall@20")),
            _num(m.get("recall@50")), _num(m.get("ndcg@20")), _num(m.get("map@20")),
            _num(m.get("coverage@20")), _num(m.get("tail_recall@20")),
            _num(m.get("overlap@20")), _delta(d), p_cell, _rate(row.get("users_per_second"))]


def _holm_rejects(rows):
    """bool per row: Holm keeps its recall@20 change significant at family-wise 5%."""
    p = [(row.get("delta", {}).get("recall@20") or {}).get("p_value", 1.0) for row in rows]
    return holm([1.0 if v is None else v for v in p])


def terminal_table(report):
    """The comparison table printed on the terminal: one line per compressed model."""
    def fit(text, width):
        text = str(text)
        return text if len(text) <= width else text[:width - 1] + "…"

    base = report["baseline"]
    lines = ["  ".join(f"{name:<{w}}" if name in ("#", "spec") else f"{name:>{w}}"
                       for name, w in TERMINAL_COLUMNS)]
    m = base["metrics"]
    lines.append("  ".join([f"{'':<3}", f"{'float32 ALS':<44}", f"{'1.0x':>7}",
                            f"{_num(report.get('baseline_valid', {}).get('recall@20')):>10}",
                            f"{_num(m['recall@20']):>9}", f"{_num(m['coverage@20']):>7}",
                            f"{_num(m['tail_recall@20']):>7}", f"{'':>10}",
                            f"{_rate(base['users_per_second']):>9}"]))
    for n, row in enumerate(report["rows"], start=1):
        m = row["metrics"]
        d = row.get("delta", {}).get("recall@20") or {}
        diff = "–" if d.get("diff") is None else f"{d['diff']:+.4f}" + \
            ("*" if d.get("significant") else " ")
        lines.append("  ".join([f"{n:<3}", f"{fit(row['spec'], 44):<44}",
                                f"{row['ratio']:>6.1f}x",
                                f"{_num(row.get('valid_metrics', {}).get('recall@20')):>10}",
                                f"{_num(m['recall@20']):>9}", f"{_num(m['coverage@20']):>7}",
                                f"{_num(m['tail_recall@20']):>7}", f"{diff:>10}",
                                f"{_rate(row['users_per_second']):>9}"]))
    return "\n".join(lines)


def describe_params(baseline):
    """The training parameters of a baseline in words (``32 factors, reg 30, alpha 10``)."""
    p = baseline["params"]
    if baseline["algorithm"] == "als":
        return f"{p['factors']} factors, reg {p['regularization']:g}, alpha {p['alpha']:g}"
    return (f"{p['factors']} factors, lr {p['learning_rate']:g}, {p['iterations']} epochs, "
            f"reg {p['regularization']:g}")


def _baseline_cells(name, b):
    m = b["metrics"]
    what = f"{name} ({describe_params(b)})"
    return [what, _bytes(b["bytes"]), f"{b['bytes_per_item']:.1f}", _num(m.get("recall@10")),
            _num(m.get("recall@20")), _num(m.get("recall@50")), _num(m.get("ndcg@10")),
            _num(m.get("ndcg@20")), _num(m.get("map@20")), _num(m.get("coverage@20")),
            _num(m.get("tail_recall@20")), _rate(b.get("users_per_second"))]


def grid_edges(tuning, names):
    """The parameters among ``names`` whose chosen value is the smallest or largest of at least
    three tried (a wider grid might do better there)."""
    edges = []
    for name in names:
        tried = sorted({r[name] for r in tuning["results"]})
        if len(tried) >= 3 and tuning["best"][name] in (tried[0], tried[-1]):
            edges.append(name)
    return edges


def _tuning_table(tuning, names, label):
    """The grid's results; at scale (results with ``n_users``) a column of the users each point
    was trained on, one row per point and rung, the chosen point bold in its last rung."""
    if not tuning["results"]:
        return (f"{label}: one grid point ("
                + ", ".join(f"{n} {tuning['best'][n]:g}" for n in names)
                + "), nothing to choose: not tuned at this scale.")
    rows = []
    halving = any("n_users" in r for r in tuning["results"])
    last = max((r.get("rung", 0) for r in tuning["results"]), default=0)
    for r in tuning["results"]:
        cells = [label] + [f"{r[n]:g}" for n in names]
        cells += [f"{r['n_users']:,}"] if halving else []
        cells += [_num(r["recall@20"]), _num(r["ndcg@20"])]
        chosen = all(r[n] == tuning["best"][n] for n in names) and r.get("rung", 0) == last
        rows.append([f"**{c}**" for c in cells] if chosen else cells)
    users = ["users trained on"] if halving else []
    return _table(["model", *names, *users, "recall@20", "nDCG@20"], rows)


# document ------------------------------------------------------------------------------------
def render_markdown(report):
    """The text of report.md (GitHub-flavoured markdown)."""
    ds, split = report["dataset"], report["split"]
    base, bpr = report["baseline"], report["bpr_baseline"]
    summary = report["summary"]
    out = [f"# Compression report: {ds['name']}", ""]
    out.append(f"{ds['n_users']:,} users, {ds['n_items']:,} items, {ds['nnz']:,} interactions. "
               f"Split: {split['kind']}, test fraction {split['test_fraction']:g} "
               f"({split['n_train']:,} train / {split['n_test']:,} test interactions, "
               f"{split['n_test_users']:,} test users), seed {split['seed']}; the ALS grid was "
               f"scored on a validation part ({split['valid_fraction']:g} of each user's "
               f"training interactions). Retrieval: top-{report['settings']['throughput_k']} "
               f"with seen items filtered, {report['settings']['threads_label']}.")
    scale = report.get("scale") or {}
    if scale.get("sampled"):
        out += ["", f"Scale: {scale['rule']}"]
    out += ["", "## Baselines (float32)", ""]
    header = ["model", "bytes", "bytes/item", "recall@10", "recall@20", "recall@50", "nDCG@10",
              "nDCG@20", "MAP@20", "coverage@20", "tail_recall@20", "users/s"]
    out.append(_table(header, [_baseline_cells("ALS", base), _baseline_cells("BPR", bpr)]))
    d = bpr.get("delta_vs_als", {}).get("recall@20")
    if d:
        out += ["", f"BPR − ALS recall@20: {_delta(d)} (paired bootstrap over the same users)."]
    out += ["", "### Tuning (recall@20 on the validation part; chosen point in bold)", ""]
    out.append(_tuning_table(base["tuning"], ("factors", "regularization"), "ALS"))
    out.append("")
    out.append(_tuning_table(bpr["tuning"], ("learning_rate", "iterations"),
                             f"BPR ({bpr['params']['factors']} factors)"))
    for label, b, names in (("ALS", base, ("factors", "regularization")),
                            ("BPR", bpr, ("learning_rate", "iterations"))):
        edges = grid_edges(b["tuning"], names)
        if edges:
            chosen = " and ".join(f"{n} = {b['tuning']['best'][n]:g}" for n in edges)
            verb = "is" if len(edges) == 1 else "are"
            out += ["", f"{label}: {chosen} {verb} at the edge of the grid; a wider grid may "
                        f"find a better baseline."]

    rows = report["rows"]
    bold = {b["index"] for b in summary["best_per_budget"]}
    out += ["", "## Compressed models", "",
            "Every row compresses the ALS baseline "
            f"({_bytes(base['bytes'])} bytes). ratio = baseline bytes / model bytes (users, "
            "items and any re-rank table); bytes/item = model bytes / items. Δrecall@20: change "
            "against the baseline with its paired-bootstrap 95% interval over the same test "
            "users; * marks an interval that excludes 0 (uncorrected). p: the paired "
            "test's p-value of that change, * when it stays significant after Holm's correction "
            "over all rows. recall@20 (valid): the same spec applied to the ALS trained without "
            "the validation part, on that part: the picks below are made on it. **Bold**: the "
            "best validation recall@20 of its budget bucket ("
            + ", ".join(b["budget"] for b in summary["best_per_budget"]) + ").", ""]
    table_rows = []
    rejects = _holm_rejects(rows)
    for i, row in enumerate(rows):
        cells = method_cells(i + 1, row, rejects[i])
        table_rows.append([f"**{c}**" for c in cells] if i in bold else cells)
    out.append(_table(METHOD_COLUMNS, table_rows, left=2))
    if report.get("skipped"):
        out += ["", "Skipped (the compression failed):", ""]
        out += [f"- {_spec_text(s['spec'])}: {s['error']}" for s in report["skipped"]]
    out += ["", "## Plots", ""]
    for name, caption in report["plots"].items():
        out += [f"![{caption}]({name})", ""]
    out += ["## Conclusion", "", conclusion(report), ""]
    return "\n".join(out)


def conclusion(report):
    """Paragraphs drawing the decision from the summary: the headline pick (made on the
    validation part, reported on test), what a recall-only pick would cost, the best model per
    budget and whether it beats the baseline beyond noise, the target search, the corrected
    count of significant losses, uninformative metrics and timing noise."""
    base, rows, summary = report["baseline"], report["rows"], report["summary"]
    metric = summary["metric"]
    parts = [f"The tuned float32 ALS baseline ({base['params']['factors']} factors) reaches "
             f"{metric} {summary['baseline_score']:.4f}, coverage@20 "
             f"{_num(base['metrics'].get('coverage@20'))} and tail_recall@20 "
             f"{_num(base['metrics'].get('tail_recall@20'))} in {_bytes(base['bytes'])} bytes "
             f"(BPR: {report['bpr_baseline']['metrics'][metric]:.4f})."]
    parts.append(summary_sentence(summary, base, report.get("baseline_valid")))
    other = summary.get("recall_only_pick")
    if other is not None:
        costs = ", ".join(f"{name} {_num(base['metrics'][name])} -> {_num(other['test'][name])}"
                          for name in summary["guards"])
        parts.append(f"Asked for {metric} alone, the pick would be {_spec_text(other['spec'])} "
                     f"({other['ratio']:.1f}x), which on test moves {costs}: it keeps recall by "
                     f"giving up what it does not measure.")
    for name in summary.get("uninformative", []):
        parts.append(f"{name} is about 0 for the baseline ({_num(base['metrics'].get(name))}) on "
                     f"this dataset, so it cannot show what compression costs: it is left out "
                     f"of the decision and of the plots.")
    if summary["best_per_budget"]:
        cells = []
        for b in summary["best_per_budget"]:
            d = b.get("test_delta") or {}
            verdict = ("within noise of the baseline" if not d.get("significant") else
                       "above the baseline" if d["diff"] > 0 else "below the baseline")
            cells.append(f"{b['budget']}: {_spec_text(b['spec'])} (validation {_num(b[metric])}, "
                         f"test {_num(b.get('test'))}, {verdict})")
        parts.append(f"Best {metric} per budget, chosen on validation - " + "; ".join(cells)
                     + ". A bucket best that is within noise is no better than the float32 "
                       "model; only a smaller size is bought.")
    found = summary.get("search")
    if found:
        if found.get("spec"):
            parts.append(
                f"The target search (`{found['target']}`, relative to the float32 model on the "
                f"validation part, {found['n_candidates']} pipelines in "
                f"{found['seconds']:.0f} s) picks {_spec_text(found['spec'])}: item table "
                f"{found['item_ratio']:.1f}x smaller, whole model {found['ratio']:.1f}x; kept "
                + ", ".join(f"{k} {100 * found['valid_relative'][k]:.1f}% on validation / "
                            f"{100 * found['test_relative'][k]:.1f}% on test"
                            for k in ("recall@20", "coverage@20", "tail_recall@20")
                            if found["valid_relative"].get(k) is not None and
                            found["test_relative"].get(k) is not None)
                + " (the diamond on the trade-off plot).")
        else:
            parts.append(f"The target search (`{found['target']}`) found no pipeline: "
                         f"{found.get('message', '')}")
    if rows:
        parts.append(f"{summary['n_significant_losses']} of {len(rows)} compressed models lose "
                     f"{metric} significantly after Holm's correction over the {len(rows)} "
                     f"comparisons ({summary['n_significant_losses_uncorrected']} by uncorrected "
                     f"95% intervals).")
        parts.append(timing_sentence(report))
    return " ".join(parts)


def timing_sentence(report):
    """The fastest row and whether its lead over the baseline exceeds the spread of the timed
    rounds (the slowest round of the one against the fastest of the other)."""
    base, rows = report["baseline"], report["rows"]
    fastest = max(rows, key=lambda r: r["users_per_second"])
    lo = min(fastest.get("users_per_second_rounds") or [fastest["users_per_second"]])
    hi = max(base.get("users_per_second_rounds") or [base["users_per_second"]])
    n = len(fastest.get("users_per_second_rounds") or [1])
    spreads = [max(r) / min(r) for r in [base.get("users_per_second_rounds")] +
               [row.get("users_per_second_rounds") for row in rows] if r and min(r) > 0]
    spread = f"; the timed rounds of one model differ by up to {max(spreads):.2f}x" \
        if spreads else ""
    if lo > hi:
        verdict = "faster than the baseline in every timed round"
    else:
        verdict = "a lead within timing noise (its slowest round is not faster than the " \
                  "baseline's fastest)"
    return (f"Fastest retrieval: {_spec_text(fastest['spec'])} at "
            f"{_rate(fastest['users_per_second'])} users/s (best of {n} rounds; baseline "
            f"{_rate(base['users_per_second'])} users/s), {verdict}{spread}. Differences between "
            f"rows smaller than that spread are noise.")
