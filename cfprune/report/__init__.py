"""The compression report: one call from an interaction log to a decision.

:func:`run_report` tunes and trains the float32 ALS baseline (and a BPR baseline), runs a sweep of
compression specs (:mod:`.sweep`), and writes ``report.md``, ``report.json`` (:mod:`.render`) and
PNG plots (:mod:`.plots`); :mod:`.summary` draws the decision (Pareto front, best per budget,
smallest model within 1% of the baseline's recall@20) and :mod:`.baseline` holds the tuning and
its cache.
"""

from .baseline import DEFAULT_GRID, QUICK_GRID, Grid
from .run import SCHEMA_VERSION, run_report
from .sweep import default_sweep, measure_throughput, run_sweep

__all__ = ["run_report", "Grid", "DEFAULT_GRID", "QUICK_GRID", "SCHEMA_VERSION",
           "default_sweep", "measure_throughput", "run_sweep"]
