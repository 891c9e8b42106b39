"""What ALS and BPR training share: input checks, thread pinning and the wrap into a FactorModel."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
from threadpoolctl import threadpool_limits

from ..errors import DataError, TrainingError
from ..interactions import Interactions, as_csr
from ..progress import Progress, on_terminal

# the training defaults, one record: the keyword defaults of train_als and train_bpr, the values
# `cfprune train --help` shows, the report's fixed settings and the parameters the target search
# retrains a recorded model with (a model's ``info`` holds these keys and ``seed``)
TRAINING_DEFAULTS = MappingProxyType({
    "als": MappingProxyType({"factors": 64, "regularization": 30.0, "alpha": 10.0,
                             "iterations": 15}),
    "bpr": MappingProxyType({"factors": 64, "learning_rate": 0.01, "regularization": 0.01,
                             "iterations": 50}),
})


def training_matrix(train):
    """CSR float32 users x items from an Interactions or a scipy sparse matrix, checked."""
    matrix = as_csr(train, "training data")
    if matrix.nnz and (not np.all(np.isfinite(matrix.data)) or matrix.data.min() < 0):
        raise DataError("interaction weights must be finite and non-negative")
    if matrix.nnz == 0:
        raise DataError("the training matrix has no interactions")
    return matrix


def new_implicit_model(cls, *args, **kwargs):
    """An ``implicit`` model built with BLAS pinned to one thread (its constructor warns
    otherwise; its solvers parallelise themselves)."""
    with threadpool_limits(limits=1, user_api="blas"):
        return cls(*args, **kwargs)


# off a terminal, a training writes a line per iteration at most this often (and its last)
ITERATION_LINE_SECONDS = 5.0


def fit_implicit(model, matrix, show_progress):
    """Fit an ``implicit`` CPU model on a users x items CSR with BLAS pinned to one thread (the
    ``implicit`` solvers parallelise themselves). ``show_progress`` (:func:`progress_default`):
    True shows ``implicit``'s bar, None a line per iteration when stderr is not a terminal
    (:class:`cfprune.progress.Progress`), False nothing."""
    from implicit.recommender_base import ModelFitError
    name = {"AlternatingLeastSquares": "ALS", "BayesianPersonalizedRanking": "BPR"}.get(
        type(model).__name__, type(model).__name__)
    lines = Progress(f"train {name}", model.iterations, unit="iteration",
                     show=None if show_progress is None else False,
                     min_interval=ITERATION_LINE_SECONDS)
    callback = (lambda *_: lines.step()) if lines.mode == "lines" else None
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            model.fit(matrix, show_progress=bool(show_progress), callback=callback)
    except ModelFitError as e:
        raise TrainingError(f"{type(model).__name__} training diverged ({e}); lower the learning "
                            f"rate or raise the regularisation") from None
    return model


def progress_default(show_progress):
    """What :func:`fit_implicit` shows: None (the default) is ``implicit``'s bar on a terminal
    (True) and per-iteration lines otherwise (None); a bool is kept."""
    if show_progress is None:
        return True if on_terminal() else None
    return bool(show_progress)


def ids_of(train):
    if isinstance(train, Interactions):
        return train.user_ids, train.item_ids
    return None, None
