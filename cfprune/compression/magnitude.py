"""Magnitude pruning of weights: ``magnitude:sparsity=0.5`` or ``magnitude:tau=0.01``.

- ``sparsity=s`` (default 0.5): zero the ``round(s * n * d)`` weights of smallest magnitude over
  the whole table (``scope=global``), or the ``round(s * d)`` smallest of every row
  (``scope=row``, every row keeps the same number of weights).
- ``tau=t``: zero every weight with ``|w| <= t`` (one global threshold; ``scope`` does not apply).

Ties at the threshold are broken arbitrarily but deterministically. The result is stored as a
:class:`~cfprune.tables.SparseTable` (CSR), whose bytes count every array: 8 bytes of ``indptr``
per row, and per kept weight 4 bytes of value plus a 1-, 2- or 4-byte column index. At moderate
sparsity that is no smaller than the dense float32 table (at dim <= 256 a kept weight costs 5
bytes, so CSR only pays below 80% density); the step records ``smaller_than_dense`` and the two
byte counts so a report can say so.
"""

from __future__ import annotations

import numpy as np

from ..errors import SpecError
from ..tables import SparseTable
from .base import Param, TableCompressor


def magnitude_mask(x, sparsity=None, tau=None, scope="global"):
    """bool [n, d]: True for the weights of ``x`` that are kept (see the module docstring)."""
    a = np.abs(np.asarray(x, dtype=np.float32))
    if tau is not None:
        return a > tau
    keep = np.ones(a.shape, bool)
    if scope == "global":
        n_zero = int(np.floor(sparsity * a.size + 0.5))
        if n_zero:
            flat = np.argpartition(a.ravel(), n_zero - 1)[:n_zero]
            keep.ravel()[flat] = False
    else:
        n_zero = int(np.floor(sparsity * a.shape[1] + 0.5))
        if n_zero and a.shape[0]:
            cols = np.argpartition(a, n_zero - 1, axis=1)[:, :n_zero]
            np.put_along_axis(keep, cols, False, axis=1)
    return keep


class Magnitude(TableCompressor):
    """Zero the smallest weights and store the table as CSR."""

    name = "magnitude"
    schema = {
        "sparsity": Param(float, None, "fraction of weights zeroed (default 0.5 unless tau is "
                          "given)", low=0.0, high=1.0, high_open=True, optional=True),
        "tau": Param(float, None, "zero every weight with |w| <= tau", low=0.0, optional=True),
        "scope": Param(str, "global", "sparsity over the whole table or within each row",
                       choices=("global", "row")),
        **TableCompressor.schema,
    }

    def _check_params(self):
        if self.sparsity is not None and self.tau is not None:
            raise SpecError("magnitude: give sparsity or tau, not both")
        if self.tau is not None and self.scope == "row":
            raise SpecError("magnitude: scope=row applies to sparsity; tau is one global "
                            "threshold")

    def compress_table(self, table, ctx):
        x = table.decode()
        sparsity = 0.5 if self.sparsity is None and self.tau is None else self.sparsity
        keep = magnitude_mask(x, sparsity, self.tau, self.scope)
        sparse = SparseTable.from_dense(np.where(keep, x, np.float32(0)))
        dense_bytes = 4 * x.size
        info = {"nnz": int(sparse.data.shape[0]), "density": sparse.density,
                "sparsity": 1.0 - sparse.density, "sparse_nbytes": int(sparse.nbytes),
                "dense_nbytes": int(dense_bytes),
                "smaller_than_dense": bool(sparse.nbytes < dense_bytes)}
        if not info["smaller_than_dense"]:
            info["note"] = (f"the CSR table ({sparse.nbytes} bytes) is not smaller than the dense "
                            f"float32 table ({dense_bytes} bytes)")
        return sparse, info

    def item_state(self, before, after, info):
        """The magnitude threshold: ``tau``, the largest zeroed magnitude of a global
        ``sparsity`` cut, or ``scope=row`` (state-free: each row keeps its largest weights)."""
        if self.tau is not None:
            return {"rule": "tau", "tau": self.tau}, {}
        sparsity = 0.5 if self.sparsity is None else self.sparsity
        if self.scope == "row":
            return {"rule": "row", "sparsity": sparsity}, {}
        x = before.decode()
        zeroed = np.abs(x[~magnitude_mask(x, sparsity, None, "global")])
        return {"rule": "tau", "tau": float(zeroed.max()) if zeroed.size else -1.0}, {}

    @classmethod
    def encode_rows(cls, table, params, arrays):
        """New rows with the fitted threshold (or their own per-row cut), as CSR."""
        x = table.decode()
        if params["rule"] == "row":
            keep = magnitude_mask(x, params["sparsity"], None, "row")
        else:
            keep = np.abs(x) > params["tau"]
        return SparseTable.from_dense(np.where(keep, x, np.float32(0)))
