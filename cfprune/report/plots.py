"""The report's PNG plots (matplotlib, Agg backend, no display needed).

- ``tradeoff.png``: recall@20 (left) and tail_recall@20 (right) against bytes per item on a log
  axis, the float32 baseline as a star, the Pareto front of recall@20 as a line (its points
  numbered as the rows of report.md, so no long label can overlap another) and the target
  search's pick as a diamond; a metric that is about 0 for the baseline is not plotted as noise:
  its panel says it is uninformative on this dataset;
- ``throughput.png``: retrieval users/s against recall@20, points numbered as the rows of
  report.md;
- ``delta.png``: each method's recall@20 change against the baseline with its 95% interval,
  coloured when the change stays significant after Holm's correction over the rows.
"""

from __future__ import annotations

import math
import os

from ..io import atomic_write
from .summary import holm, informative, pareto_front

PLOTS = {
    "tradeoff.png": "recall@20 and tail_recall@20 against bytes per item (log), Pareto front",
    "throughput.png": "retrieval throughput (users/s) against recall@20",
    "delta.png": "recall@20 change against the float32 baseline, 95% paired interval",
}
FAMILY_COLOURS = {"prune-rows": "tab:brown", "magnitude": "tab:pink", "lowrank": "tab:blue",
                  "fp16": "tab:olive", "int8": "tab:orange", "int4": "tab:red",
                  "pq": "tab:green", "distill": "tab:purple", "pipeline": "tab:gray"}


def family(spec):
    """The method family of a spec for colouring: its method name, or ``pipeline``."""
    if "|" in spec:
        return "pipeline"
    return spec.split(":", 1)[0].strip().lower()


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _value(row, metric):
    v = row["metrics"].get(metric)
    return math.nan if v is None else v


def _legend_handles(plt, families):
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], marker="*", linestyle="", color="black", markersize=12,
                      label="float32 ALS")]
    handles += [Line2D([], [], marker="o", linestyle="", color=FAMILY_COLOURS.get(f, "black"),
                       label=f) for f in families]
    return handles


def write_plots(report, out_dir):
    """Write every plot of :data:`PLOTS` into ``out_dir``; returns their paths."""
    plt = _pyplot()
    paths = []
    for name, draw in (("tradeoff.png", _tradeoff), ("throughput.png", _throughput),
                       ("delta.png", _delta)):
        fig = draw(plt, report)
        path = os.path.join(os.fspath(out_dir), name)
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
        plt.close(fig)
        paths.append(path)
    return paths


def _families(rows):
    seen = []
    for r in rows:
        f = family(r["spec"])
        if f not in seen:
            seen.append(f)
    return seen


def _plain_log_axis(axis):
    """Tick labels of a log axis as plain numbers (``30``, ``100``) rather than powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0), numticks=15))
    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}" if x >= 1 else f"{x:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda x, _: ""))


def _tradeoff(plt, report):
    base, rows = report["baseline"], report["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4))
    points = [base] + rows
    front = pareto_front([(p["bytes"], _value(p, "recall@20")) for p in points])
    found = report["summary"].get("search") or {}
    for ax, metric in zip(axes, ("recall@20", "tail_recall@20")):
        if not informative(_value(base, metric)):
            ax.text(0.5, 0.5, f"{metric} is about 0 for the float32 baseline\n"
                              f"({_value(base, metric):.4f}): uninformative on this dataset,\n"
                              f"not plotted", ha="center", va="center", transform=ax.transAxes,
                    fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        if found.get("spec"):
            ax.scatter(found["bytes"] / report["dataset"]["n_items"], found["test"][metric],
                       marker="D", s=90, color="tab:red", edgecolors="black", zorder=6)
        for r in rows:
            ax.scatter(r["bytes_per_item"], _value(r, metric), s=36,
                       color=FAMILY_COLOURS.get(family(r["spec"]), "black"), alpha=0.85,
                       zorder=3)
        ax.scatter(base["bytes_per_item"], _value(base, metric), marker="*", s=220,
                   color="black", zorder=4)
        ax.axhline(_value(base, metric), color="black", linewidth=0.8, linestyle=":")
        xs = [points[i]["bytes_per_item"] for i in front]
        ys = [_value(points[i], metric) for i in front]
        ax.scatter(xs, ys, s=110, facecolors="none", edgecolors="black", linewidths=1.2,
                   zorder=5)
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis)
        ax.set_xlabel("bytes per item (whole model / items, log scale)")
        ax.set_ylabel(metric)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].plot([points[i]["bytes_per_item"] for i in front],
                 [_value(points[i], "recall@20") for i in front], color="black",
                 linewidth=1.2, alpha=0.6, zorder=2)
    for n, i in enumerate(j for j in front if j != 0):
        axes[0].annotate(f"#{i}", (points[i]["bytes_per_item"], _value(points[i], "recall@20")),
                         textcoords="offset points", xytext=(5, -11 if n % 2 else 5),
                         fontsize=8)
    axes[0].set_title("recall@20 against size (ringed + line: Pareto front)", fontsize=10)
    axes[1].set_title("tail_recall@20 against size (ringed: the same Pareto models)",
                      fontsize=10)
    handles = _legend_handles(plt, _families(rows))
    if found.get("spec"):
        from matplotlib.lines import Line2D
        handles.append(Line2D([], [], marker="D", linestyle="", color="tab:red",
                              markeredgecolor="black",
                              label="target search pick (test; items compressed)"))
    axes[0].legend(handles=handles, fontsize=8, loc="lower right")
    fig.suptitle(f"{report['dataset']['name']}: quality against size (#n: row n of report.md)",
                 fontsize=11)
    fig.tight_layout()
    return fig


def _short(spec, width=28):
    return spec if len(spec) <= width else spec[:width - 1] + "…"


def _throughput(plt, report):
    base, rows = report["baseline"], report["rows"]
    fig, ax = plt.subplots(figsize=(8, 5.4))
    for n, r in enumerate(rows, start=1):
        ax.scatter(_value(r, "recall@20"), r["users_per_second"], s=36,
                   color=FAMILY_COLOURS.get(family(r["spec"]), "black"), zorder=3)
        ax.annotate(str(n), (_value(r, "recall@20"), r["users_per_second"]),
                    textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.scatter(_value(base, "recall@20"), base["users_per_second"], marker="*", s=220,
               color="black", zorder=4)
    from matplotlib.ticker import FuncFormatter
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
    ax.set_xlabel("recall@20")
    ax.set_ylabel(f"users/s (top-{report['settings']['throughput_k']}, seen items filtered)")
    ax.set_title(f"{report['dataset']['name']}\nretrieval throughput "
                 f"({report['settings']['threads_label']}; n: row n of report.md)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(handles=_legend_handles(plt, _families(rows)), fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _delta(plt, report):
    rows = report["rows"]
    fig, ax = plt.subplots(figsize=(9, max(2.8, 0.32 * len(rows) + 1.4)))
    labels, diffs, lows, highs, colours = [], [], [], [], []
    rejected = holm([r["delta"]["recall@20"].get("p_value") or 1.0 for r in rows])
    for r, significant in zip(rows, rejected):
        d = r["delta"]["recall@20"]
        diff = math.nan if d["diff"] is None else d["diff"]
        labels.append(f"#{len(labels) + 1} {_short(r['spec'], 44)} ({r['ratio']:.1f}x)")
        diffs.append(diff)
        lows.append(0.0 if d["low"] is None else max(diff - d["low"], 0.0))
        highs.append(0.0 if d["high"] is None else max(d["high"] - diff, 0.0))
        colours.append("tab:red" if significant and diff < 0 else
                       "tab:green" if significant else "tab:gray")
    positions = list(range(len(rows)))
    ax.barh(positions, diffs, xerr=[lows, highs], color=colours, alpha=0.85,
            error_kw={"elinewidth": 1, "capsize": 2})
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(positions)
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("Δ recall@20 against float32 ALS (95% paired bootstrap interval)")
    ax.set_title(f"{report['dataset']['name']}\nrecall@20 change per method "
                 "(red/green: significant after Holm's correction over the rows)", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
