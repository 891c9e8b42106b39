"""Bayesian personalised ranking (Rendle et al. 2009), trained by ``implicit``."""

from __future__ import annotations

from .factors import FactorModel
from .training import (TRAINING_DEFAULTS, fit_implicit, ids_of, new_implicit_model,
                       progress_default, training_matrix)

BPR = TRAINING_DEFAULTS["bpr"]


def train_bpr(train, factors=BPR["factors"], learning_rate=BPR["learning_rate"],
              regularization=BPR["regularization"], iterations=BPR["iterations"], num_threads=0,
              seed=0, show_progress=None):
    """Train BPR on a users x items matrix and return a float32 :class:`FactorModel`.

    The defaults are a point of the report's tuning grid (learning rate 0.05 overfits the
    MovieLens sets within 50 epochs). With ``num_threads`` other than 1, ``implicit`` updates
    shared factors without locks, so runs with the same seed differ slightly.

    ``implicit`` stores the item bias as an extra factor (users carry a constant 1 there), so the
    returned tables have ``factors + 1`` columns and the score is still a plain inner product.
    Parameters are those of ``implicit.bpr.BayesianPersonalizedRanking``; see :func:`train_als`
    for ``train``, ``num_threads``, ``seed`` and ``show_progress``.
    """
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    matrix = training_matrix(train)
    model = new_implicit_model(BayesianPersonalizedRanking, factors=factors,
                               learning_rate=learning_rate, regularization=regularization,
                               iterations=iterations, num_threads=num_threads, random_state=seed)
    fit_implicit(model, matrix, progress_default(show_progress))
    user_ids, item_ids = ids_of(train)
    info = {"algorithm": "bpr", "factors": factors, "learning_rate": learning_rate,
            "regularization": regularization, "iterations": iterations, "seed": seed}
    return FactorModel(model.user_factors, model.item_factors, user_ids=user_ids,
                       item_ids=item_ids, info=info)
