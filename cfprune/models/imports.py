"""FactorModels from factors made elsewhere: ``implicit`` models and their files, ``.npy`` pairs."""

from __future__ import annotations

import os

import numpy as np

from ..errors import DataError, ModelFileError, ShapeError
from ..io import read_npy, read_npz
from .factors import FactorModel


def from_arrays(user_factors, item_factors, *, user_ids=None, item_ids=None, info=None):
    """A float32 FactorModel from two arrays [n_users, d] and [n_items, d] (checked: 2-D,
    floating point, finite, equal d)."""
    return FactorModel(user_factors, item_factors, user_ids=user_ids, item_ids=item_ids,
                       info=info)


def from_implicit(model, *, user_ids=None, item_ids=None):
    """A FactorModel from a fitted ``implicit`` matrix-factorisation model (CPU or GPU: GPU
    factors are brought to the host with ``to_cpu``)."""
    if hasattr(model, "to_cpu") and not isinstance(getattr(model, "user_factors", None),
                                                   np.ndarray):
        model = model.to_cpu()
    users = getattr(model, "user_factors", None)
    items = getattr(model, "item_factors", None)
    if users is None or items is None:
        raise ShapeError(f"{type(model).__name__} has no user_factors/item_factors: fit it first, "
                         f"or it is not a matrix-factorisation model")
    info = {"algorithm": type(model).__name__, "imported_from": "implicit"}
    for name in ("factors", "regularization", "alpha", "learning_rate", "iterations"):
        value = getattr(model, name, None)
        if isinstance(value, (int, float)):
            info[name] = value
    return from_arrays(users, items, user_ids=user_ids, item_ids=item_ids, info=info)


def load_implicit_file(path, *, user_ids=None, item_ids=None):
    """A FactorModel from a file written by ``implicit``'s ``model.save(path)`` (an ``.npz`` with
    ``user_factors`` and ``item_factors``), read without pickle."""
    path = os.fspath(path)
    arrays = read_npz(path, "implicit model file", ModelFileError)
    if not {"user_factors", "item_factors"} <= set(arrays):
        raise ModelFileError(f"{path} has no user_factors/item_factors arrays (found "
                             f"{sorted(arrays)}): not a file written by implicit's save")
    info = {"imported_from": f"implicit file {os.path.basename(path)}"}
    for name in ("factors", "regularization", "alpha", "learning_rate", "iterations"):
        if name in arrays and arrays[name].shape == ():
            info[name] = arrays[name].item()
    return from_arrays(arrays["user_factors"], arrays["item_factors"], user_ids=user_ids,
                       item_ids=item_ids, info=info)


def load_npy_pair(user_path, item_path, *, user_ids=None, item_ids=None):
    """A FactorModel from two ``.npy`` files (read without pickle)."""
    arrays = [read_npy(path, "factor file", DataError) for path in (user_path, item_path)]
    try:
        return from_arrays(*arrays, user_ids=user_ids, item_ids=item_ids,
                           info={"imported_from": f"{os.path.basename(os.fspath(user_path))}, "
                                                  f"{os.path.basename(os.fspath(item_path))}"})
    except ShapeError as e:
        raise ShapeError(f"{os.fspath(user_path)} / {os.fspath(item_path)}: {e}") from None
