"""FittedStep: the plain record of what one compression step fitted, as a model holds it.

A model keeps these records (``FactorModel.fitted``) and writes them to its file; it never
interprets them. Encoding new rows with them is compression's work
(:func:`cfprune.compression.fitted.add_items`), so the model layer never imports compression.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..arrays import hold


@dataclass
class FittedStep:
    """What one compression step fitted, for the item side.

    method : the method's name (``"pq"``)
    spec : the step's canonical spec (``"pq:m=8,rotation=opq"``)
    params : JSON scalars the encoding needs (``{"axis": "dim"}``), plus ``dim_in`` (the width
        of the rows the step took); ``{"unsupported": why}`` when it cannot encode new rows
    arrays : name -> ndarray, read-only (``codebooks``, ``rotation``, ``scale``, ``map``, ...);
        empty for state-free and identity steps
    """

    method: str
    spec: str
    params: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)

    def __post_init__(self):
        # the fitted arrays as a table holds them: read-only, a caller's writeable array copied
        self.arrays = {name: hold(np.ascontiguousarray(a), a) for name, a in self.arrays.items()}

    def record(self):
        """(JSON record ``{"method", "spec", "params"}``, {name: array}): the file's form."""
        return {"method": self.method, "spec": self.spec, "params": self.params}, self.arrays

    @classmethod
    def from_record(cls, record, arrays):
        """The step from a file's record and its arrays (the inverse of :meth:`record`)."""
        return cls(record["method"], record["spec"], dict(record.get("params", {})), arrays)
