"""Users folded in at serving time: ``fold-users`` (ALS models).

The step replaces the user table by :class:`~cfprune.tables.FoldedUsers`, which ships no vector:
serving computes each user's vector from that user's interactions (the ``user_items`` that
``recommend`` and ``evaluate`` take anyway) by the closed-form ALS user step against the item
table as it is then stored, so the model's bytes are its item side alone. The step needs the
ALS ``regularization`` and ``alpha``: given as parameters, else read from ``model.info`` (as
:func:`cfprune.train_als` records them); a model trained otherwise (BPR) is refused, since the
ALS step is not how its users were made.

Steps after it that need user vectors get them by folding in the training interactions against
the current item table through the Table protocol (``prune-rows:by=reach`` ranks the items with
``model.recommend`` over the training interactions, which folds them in); a step that needs the
user table itself (``lowrank``, a users-side quantiser, ``int8:axis=auto``, ``distill``) stops
with a one-line error saying to put it before ``fold-users``. The item table is unchanged, so
``cfprune.add_items`` encodes new items through the other steps and the users fold in against
the grown table.
"""

from __future__ import annotations

from ..errors import SpecError
from ..tables import FoldedUsers
from .base import Compressor, Param


class FoldUsers(Compressor):
    """Ship no user table: fold each user in from their interactions at serving time (ALS)."""

    name = "fold-users"
    schema = {
        "regularization": Param(float, None, "the ALS regularization (default: the model's "
                                "info)", low=0.0, low_open=True, optional=True),
        "alpha": Param(float, None, "the ALS confidence scale (default: the model's info)",
                       low=0.0, low_open=True, optional=True),
    }

    def _constants(self, info):
        """(regularization, alpha) from the parameters, else from ``info``; SpecError when the
        model is not ALS or neither says."""
        algorithm = info.get("algorithm")
        if algorithm is not None and algorithm != "als":
            raise SpecError(f"fold-users: the model is {algorithm}, not als: its users are not "
                            f"the ALS user step of their interactions")
        values = []
        for key in ("regularization", "alpha"):
            value = getattr(self, key)
            value = info.get(key) if value is None else value
            if value is None:
                raise SpecError(f"fold-users: the model's info records no ALS {key}: give "
                                f"fold-users:{key}=<value>")
            values.append(float(value))
        return tuple(values)

    def _compress(self, model, interactions):
        if isinstance(model.users, FoldedUsers):
            raise SpecError("fold-users: the users are already folded in")
        regularization, alpha = self._constants(model.info)
        users = FoldedUsers(model.n_users, model.dim, regularization, alpha)
        info = {"regularization": regularization, "alpha": alpha,
                "users_nbytes_before": int(model.users.nbytes)}
        return model.replace(users=users), info, {}

    def fitted_state(self, before, after, info, learned):
        """None: the item table is unchanged (new items pass through the other steps)."""
        return None

    def plan_table(self, plan, side="items"):
        """The ``side`` table's plan (see :meth:`Compressor.plan_table`): the item table
        unchanged; the user table a folded table of that shape, 0 bytes."""
        return plan if side == "items" else FoldedUsers.plan(plan.n_rows, plan.dim)
