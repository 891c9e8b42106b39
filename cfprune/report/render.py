"""report.json and report.md from the report dict built by :func:`cfprune.report.run_report`.

The JSON holds every figure (schema: README, "report.json schema"); NaN and infinities are written
as ``null`` so that any JSON reader takes the file. The markdown holds the tables a person reads:
the baselines, the tuning grid, one row per compressed model (the best row of each budget bucket
in bold) and a concluding paragraph.
"""

from __future__ import annotations

import math


from ..io import atomic_write
from .summary import summary_sentence

METHOD_COLUMNS = ("#", "spec", "bytes", "ratio", "bytes/item", "recall@10", "recall@20", "recall@50",
                  "nDCG@20", "MAP@20", "coverage@20", "tail_recall@20", "overlap@20",
                  "Δrecall@20 [95% CI]", "users/s")


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


def method_cells(number, row):
    """The markdown cells of sweep row ``number`` (1-based, as the plots label it), in
    :data:`METHOD_COLUMNS` order."""
    m = row["metrics"]
    return [str(number), _spec_cell(row["spec"]), _bytes(row["bytes"]), f"{row['ratio']:.1f}x",
            f"{row['bytes_per_item']:.1f}", _num(m.get("recall@10")), _num(m.get("recall@20")),
            _num(m.get("recall@50")), _num(m.get("ndcg@20")), _num(m.get("map@20")),
            _num(m.get("coverage@20")), _num(m.get("tail_recall@20")),
            _num(m.get("overlap@20")), _delta(row.get("delta", {}).get("recall@20")),
            _rate(row.get("users_per_second"))]


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
    rows = []
    for r in tuning["results"]:
        cells = [label] + [f"{r[n]:g}" for n in names] + [_num(r["recall@20"]),
                                                           _num(r["ndcg@20"])]
        chosen = all(r[n] == tuning["best"][n] for n in names)
        rows.append([f"**{c}**" for c in cells] if chosen else cells)
    return _table(["model", *names, "recall@20", "nDCG@20"], rows)


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
            "users; * marks an interval that excludes 0. **Bold**: the best recall@20 of its "
            "budget bucket (" + ", ".join(b["budget"] for b in summary["best_per_budget"]) + ").",
            ""]
    table_rows = []
    for i, row in enumerate(rows):
        cells = method_cells(i + 1, row)
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
    """A paragraph drawing the decision from the summary."""
    base, rows, summary = report["baseline"], report["rows"], report["summary"]
    metric = summary["metric"]
    parts = [f"The tuned float32 ALS baseline ({base['params']['factors']} factors) reaches "
             f"{metric} {summary['baseline_score']:.4f} in {_bytes(base['bytes'])} bytes "
             f"(BPR: {report['bpr_baseline']['metrics'][metric]:.4f})."]
    parts.append(summary_sentence(summary, base["bytes"]))
    if summary["best_per_budget"]:
        best = "; ".join(f"{b['budget']}: {_spec_text(b['spec'])} ({b[metric]:.4f})"
                         for b in summary["best_per_budget"])
        parts.append(f"Best {metric} per budget - {best}.")
    if rows:
        parts.append(f"{summary['n_significant_losses']} of {len(rows)} compressed models lose "
                     f"{metric} significantly (95% paired interval below 0).")
        fastest = max(rows, key=lambda r: r["users_per_second"])
        parts.append(f"Fastest retrieval: {_spec_text(fastest['spec'])} at "
                     f"{_rate(fastest['users_per_second'])} users/s (baseline "
                     f"{_rate(base['users_per_second'])} users/s; timings vary between runs).")
    return " ".join(parts)
