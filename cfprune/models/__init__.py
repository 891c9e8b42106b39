"""Factor models: the FactorModel container, training with ``implicit``, fold-in and imports."""

from .als import train_als
from .bpr import train_bpr
from .factors import FactorModel
from .foldin import fold_in_users
from .imports import from_arrays, from_implicit, load_implicit_file, load_npy_pair

__all__ = ["FactorModel", "train_als", "train_bpr", "fold_in_users", "from_arrays",
           "from_implicit", "load_implicit_file", "load_npy_pair"]
