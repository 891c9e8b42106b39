"""Closed-form ALS fold-in: user vectors for users the model never saw."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..errors import ShapeError


def fold_in_users(item_factors, user_items, regularization, alpha=1.0):
    """Solve the ALS user step for every row of ``user_items`` with the item table fixed.

    For user u with items I and confidences ``c = alpha * r`` (``implicit``'s convention) this is
    the exact minimiser of the implicit-ALS loss (Hu, Koren and Volinsky 2008):
    ``(V^T V + V_I^T diag(c - 1) V_I + reg I) x = V_I^T c``, the step ``implicit``'s
    ``recalculate_user`` takes (solved in batches by :mod:`cfprune.kernels.foldin`, the one
    fold-in of the package, which :class:`~cfprune.tables.folded.FoldedUsers` serves with).

    Parameters
    ----------
    item_factors : float32 [n_items, dim]
    user_items : scipy.sparse [n_users, n_items]
        The new users' fold-in interactions (rows may be empty: their vector is zero).
    regularization, alpha : float
        As used in training.

    Returns
    -------
    float32 [n_users, dim]
    """
    from ..kernels.foldin import item_gram, solve_users
    V = np.ascontiguousarray(item_factors, dtype=np.float32)
    m = sp.csr_matrix(user_items, dtype=np.float32)
    if m.shape[1] != V.shape[0]:
        raise ShapeError(f"user_items has {m.shape[1]} item columns but the model has "
                         f"{V.shape[0]} items")
    gram = item_gram([V], V.shape[1], regularization)
    return solve_users(gram, V, m.indptr, m.indices, float(alpha) * m.data)
