"""The target search: the smallest pipeline of the existing methods that keeps every target.

One idea per module: :mod:`.targets` (the grammar ``recall@20>=0.97``), :mod:`.space` (the
pipelines tried, as compressor objects), :mod:`.bytes` (the byte model: the storages' own counts
through the steps' table plans), :mod:`.validation` (the held-out model and the paired lower
bound), :mod:`.results` (Candidate, SearchResult, the JSON record) and :mod:`.engine` (the
:class:`TargetSearch` class and :func:`search`; see its docstring for how the search runs).
Importing this package loads neither the evaluation kernels nor the trainers: the command line
checks a ``--target`` with :func:`parse_targets` before anything heavy is imported.
"""

from .bytes import planned_bytes, planned_item_bytes, serving_bytes
from .engine import TargetSearch, search
from .results import Candidate, SearchResult, TargetNotMet
from .targets import Target, parse_targets
from .validation import held_out_model

__all__ = ["Candidate", "SearchResult", "Target", "TargetNotMet", "TargetSearch",
           "held_out_model", "parse_targets", "planned_bytes", "planned_item_bytes", "search",
           "serving_bytes"]
