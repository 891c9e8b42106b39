"""What a search found: one :class:`Candidate` per pipeline evaluated, the :class:`SearchResult`,
and :class:`TargetNotMet` when nothing passed. ``as_dict()`` gives the JSON record
(``OUT.search.json``); its specs are the canonical spec strings of the candidates' steps."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import CfpruneError


class TargetNotMet(CfpruneError):
    """No candidate met the targets (``result`` holds what was searched)."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


@dataclass
class Candidate:
    """One pipeline evaluated on the validation part.

    ``bytes``: serving bytes of the model validated (``estimated_bytes``: the same, computed
    before fitting); ``returned_bytes``: those of the model the search returns for this spec (the
    spec applied to the model given with all the interactions), the figure the search minimises.
    They differ when the model was retrained for validation and the spec prunes by reach (the
    reach lists of the full model and interactions keep other rows). ``reseeded``: for a PQ tail
    that passed at its seed, the k-means seeds of :data:`~cfprune.compression.search.space.RESEEDS` at which it passed too; it
    passes only when it passes at all of them (see :mod:`cfprune.compression.search.engine`).
    The byte figures are those of the search's side (the item side, or the whole model).
    ``n_users``: the validation users its figures are over; ``screened``: it failed on the
    screening sample and was not evaluated on the whole sample (the figures are the screening
    sample's). ``lower``: each target's lower bound (None for a coverage bound not computed:
    the figure or another target missed already); ``coverage``: for each coverage target whose
    bound was computed, its ``ratio`` and bootstrap ``se`` (see
    :func:`~cfprune.compression.search.validation.coverage_lower_bound`). ``confirmed``: for a
    candidate that passed on a sample of the validation users, its figures over all of them
    (``n_users``, ``metrics``, ``relative``, ``lower``, ``coverage``, ``passed``; see
    :meth:`~cfprune.compression.search.engine.TargetSearch.confirm`), None if not asked."""

    spec: str
    bytes: int
    estimated_bytes: int
    returned_bytes: int
    model_bytes: int
    metrics: dict
    relative: dict
    lower: dict
    passed: bool
    seconds_fit: float
    seconds_evaluate: float
    reseeded: list | None = None
    n_users: int = 0
    screened: bool = False
    coverage: dict = field(default_factory=dict)
    confirmed: dict | None = None

    def as_dict(self):
        return {"spec": self.spec, "bytes": self.bytes, "estimated_bytes": self.estimated_bytes,
                "returned_bytes": self.returned_bytes, "model_bytes": self.model_bytes,
                "metrics": self.metrics, "relative": self.relative, "lower": self.lower,
                "passed": self.passed, "reseeded": self.reseeded, "n_users": self.n_users,
                "screened": self.screened, "coverage": self.coverage,
                "confirmed": self.confirmed,
                "seconds_fit": self.seconds_fit, "seconds_evaluate": self.seconds_evaluate}


@dataclass
class SearchResult:
    """What :func:`search` found. ``model`` is the pick (None when nothing passed)."""

    targets: list
    budget_bytes: int | None
    baseline: dict
    baseline_bytes: int
    candidates: list
    pick: Candidate | None
    model: object = None
    split: dict = field(default_factory=dict)
    seconds: float = 0.0
    n_skipped: int = 0
    side: str = "items"
    baseline_model_bytes: int = 0
    model_bytes: int | None = None
    pass_rule: str = ""

    @property
    def model_ratio(self):
        """How many times smaller the whole model returned is (users included); None when
        nothing passed."""
        return None if self.model_bytes is None else self.baseline_model_bytes / self.model_bytes

    def as_dict(self):
        """JSON-able summary: targets, side, the pass rule (in words), validation split,
        baseline figures, the pick, the whole model's bytes and every candidate (in the order
        evaluated)."""
        return {"targets": [str(t) for t in self.targets], "budget_bytes": self.budget_bytes,
                "side": self.side, "pass_rule": self.pass_rule,
                "objective": "serving bytes of the item side (items + re-rank table) of the "
                             "model returned" if self.side == "items" else
                             "serving bytes of the whole model returned (users + items + "
                             "re-rank table)",
                "split": self.split, "baseline": {"bytes": self.baseline_bytes,
                                                  "metrics": self.baseline},
                "pick": None if self.pick is None else self.pick.as_dict(),
                "ratio": None if self.pick is None else
                self.baseline_bytes / self.pick.returned_bytes,
                "whole_model": {"baseline_bytes": self.baseline_model_bytes,
                                "bytes": self.model_bytes, "ratio": self.model_ratio},
                "n_candidates": len(self.candidates), "n_skipped_by_bytes": self.n_skipped,
                "seconds": self.seconds,
                "candidates": [c.as_dict() for c in self.candidates]}
