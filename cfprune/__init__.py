"""cfprune: compress collaborative-filtering models and retrieve top-k from the compressed tables.

The public API (imported lazily, so ``import cfprune`` and a command-line mistake stay fast)::

    Interactions                                          the user x item log with its id maps
    load_movielens, load_interactions, list_datasets      data
    load_ml1m_no_timestamps
    random_split, temporal_split, strong_generalization_split
    train_als, train_bpr, FactorModel, fold_in_users      models
    from_implicit, load_implicit_file, load_npy_pair
    compress, describe_methods, add_items                 compression (add_items: new items
                                                          encoded with the fitted state)
    recommend, evaluate, paired_difference                retrieval and evaluation
    as_implicit, export_faiss                             implicit and faiss interop
    save, load                                            model files
"""

from importlib import import_module

from .errors import (CfpruneError, DataError, MissingDependencyError, ModelFileError, ShapeError,
                     SpecError, TrainingError)

__version__ = "0.1.0"

_LAZY = {
    "Interactions": "cfprune.interactions",
    "load_movielens": "cfprune.datasets",
    "load_interactions": "cfprune.datasets",
    "list_datasets": "cfprune.datasets",
    "load_ml1m_no_timestamps": "cfprune.datasets",
    "random_split": "cfprune.splits",
    "temporal_split": "cfprune.splits",
    "strong_generalization_split": "cfprune.splits",
    "train_als": "cfprune.models",
    "train_bpr": "cfprune.models",
    "FactorModel": "cfprune.models",
    "fold_in_users": "cfprune.models",
    "from_implicit": "cfprune.models",
    "load_implicit_file": "cfprune.models",
    "load_npy_pair": "cfprune.models",
    "compress": "cfprune.facade",
    "describe_methods": ("cfprune.compression", "describe"),
    "add_items": "cfprune.compression.encode",
    "recommend": "cfprune.retrieval",
    "evaluate": "cfprune.evaluation",
    "paired_difference": "cfprune.uncertainty",
    "as_implicit": "cfprune.implicit_adapter",
    "export_faiss": "cfprune.export",
}


def save(model, path):
    """Write ``model`` to ``path`` atomically (see :meth:`FactorModel.save`)."""
    model.save(path)


def load(path):
    """Read and verify a model file written by :func:`save`."""
    from .models import FactorModel
    return FactorModel.load(path)


def __getattr__(name):
    if name in _LAZY:
        module, attr = _LAZY[name] if isinstance(_LAZY[name], tuple) else (_LAZY[name], name)
        value = getattr(import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cfprune' has no attribute {name!r}")


def __dir__():
    return __all__


__all__ = sorted(["CfpruneError", "DataError", "ShapeError", "SpecError", "ModelFileError",
                  "MissingDependencyError", "TrainingError", "save", "load", *_LAZY])
