"""The target grammar of the search: ``"recall@20>=0.97,coverage@20>=0.9"``."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ...errors import SpecError
from ...metric_names import METRICS

_TARGET = re.compile(r"^\s*([a-z_]+)@(\d+)\s*(?:>=\s*([0-9.eE+-]+))?\s*$")


@dataclass(frozen=True)
class Target:
    """``metric@k >= threshold`` relative to the uncompressed model (threshold None: no floor,
    only a metric to maximise within a byte budget)."""

    metric: str
    k: int
    threshold: float | None

    @property
    def key(self):
        return f"{self.metric}@{self.k}"

    def __str__(self):
        return self.key + ("" if self.threshold is None else f">={self.threshold:g}")


def parse_targets(target):
    """list[Target] from ``"recall@20>=0.97,coverage@20>=0.9"`` (or a list of such strings).
    SpecError naming the bad item and the metrics allowed (:data:`cfprune.metric_names.METRICS`,
    every metric :func:`cfprune.evaluate` computes)."""
    if isinstance(target, str):
        items = [t for t in target.split(",")]
    elif isinstance(target, (list, tuple)):
        items = [str(t) for t in target]
    else:
        raise SpecError(f"a target must be a string like 'recall@20>=0.97', got "
                        f"{type(target).__name__}")
    out = []
    for item in items:
        match = _TARGET.match(item.lower())
        if not match or match.group(1) not in METRICS:
            raise SpecError(f"target {item.strip()!r} is not metric@k>=share (e.g. "
                            f"recall@20>=0.97); metrics: {', '.join(METRICS)}")
        k = int(match.group(2))
        threshold = None if match.group(3) is None else float(match.group(3))
        if k < 1:
            raise SpecError(f"target {item.strip()!r}: k must be at least 1")
        if threshold is not None and not (0.0 <= threshold < math.inf):
            raise SpecError(f"target {item.strip()!r}: the share must be a number >= 0")
        out.append(Target(match.group(1), k, threshold))
    if not out:
        raise SpecError("no target given (e.g. 'recall@20>=0.97')")
    return out
