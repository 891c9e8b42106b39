"""Datasets: the MovieLens registry, your own interaction files, synthetic logs, the data home."""

from .files import load_interactions
from .home import data_home
from .movielens import (DATASETS, ML1M_NO_TIMESTAMPS, list_datasets, load_ml1m_no_timestamps,
                        load_movielens)
from .synthetic import synthetic_log, write_synthetic_log

__all__ = ["DATASETS", "ML1M_NO_TIMESTAMPS", "data_home", "list_datasets", "load_interactions",
           "load_ml1m_no_timestamps", "load_movielens", "synthetic_log", "write_synthetic_log"]
