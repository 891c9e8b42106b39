"""Compression methods: each turns a FactorModel into a smaller one (see docs/architecture.md).

``Pipeline("prune-rows:keep=0.9|int8").fit(model)`` parses a spec string and applies its steps left
to right (``cfprune.compress``, in :mod:`cfprune.facade`, is the one call for a spec or a target
search); ``describe()`` lists every method and parameter.
"""

from .base import Compressor, Param, TableCompressor
from .lowrank import LowRank
from .magnitude import Magnitude
from .pipeline import Pipeline
from .pq import ProductQuantization
from .rows import PruneRows
from .scalar import Float16, Int2, Int4, Int8
from .spec import (METHODS, available_methods, canonical_spec, describe, format_spec,
                   method_class, parse_spec)

__all__ = ["Compressor", "Param", "TableCompressor", "LowRank", "Magnitude", "Pipeline",
           "ProductQuantization", "PruneRows", "Float16", "Int2", "Int4", "Int8",
           "METHODS",
           "available_methods", "canonical_spec", "describe", "format_spec", "method_class",
           "parse_spec"]
