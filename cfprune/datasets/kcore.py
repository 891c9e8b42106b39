"""The feedback choice and the k-core filter every loader applies last."""

from __future__ import annotations

import numpy as np


def select_feedback(interactions, implicit, threshold, min_user_interactions,
                    min_item_interactions):
    """Apply the implicit conversion and the k-core filter the loaders share.

    Explicit (``implicit=False`` and ``threshold=None``): ratings stay the matrix values and
    ``min_*`` drop users and items (a k-core) without binarising. Otherwise
    :meth:`Interactions.implicit` with ``threshold`` (None keeps every event).
    """
    if implicit or threshold is not None:
        return interactions.implicit(threshold, min_user_interactions, min_item_interactions)
    if not (min_user_interactions or min_item_interactions):
        return interactions
    core = interactions.implicit(None, min_user_interactions, min_item_interactions)
    users = np.searchsorted(interactions.user_ids, core.user_ids)
    items = np.searchsorted(interactions.item_ids, core.item_ids)
    return interactions.restrict(users, items)
