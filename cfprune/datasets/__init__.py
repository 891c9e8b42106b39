"""Datasets: the MovieLens registry, your own interaction files, and the data home."""

from .files import ML1M_NO_TIMESTAMPS, load_interactions, load_ml1m_no_timestamps
from .home import data_home
from .movielens import DATASETS, list_datasets, load_movielens

__all__ = ["DATASETS", "ML1M_NO_TIMESTAMPS", "data_home", "list_datasets", "load_interactions",
           "load_ml1m_no_timestamps", "load_movielens"]
