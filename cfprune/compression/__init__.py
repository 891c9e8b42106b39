"""Compression methods: each turns a FactorModel into a smaller one (see docs/architecture.md).

``compress(model, "prune-rows:keep=0.9|int8")`` parses a spec string and applies its steps left
to right; ``describe()`` lists every method and parameter.
"""

from .base import Compressor, Param, TableCompressor
from .lowrank import LowRank
from .magnitude import Magnitude
from .pipeline import Pipeline, compress
from .pq import ProductQuantization
from .rows import PruneRows
from .scalar import Float16, Int2, Int4, Int8
from .spec import (METHODS, available_methods, canonical_spec, describe, format_spec,
                   method_class, parse_spec)

__all__ = ["Compressor", "Param", "TableCompressor", "LowRank", "Magnitude", "Pipeline",
           "compress", "ProductQuantization", "PruneRows", "Float16", "Int2", "Int4", "Int8",
           "METHODS",
           "available_methods", "canonical_spec", "describe", "format_spec", "method_class",
           "parse_spec"]
