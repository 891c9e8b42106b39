"""Tile decoders of the dense storages (float32 and float16) and the tile sizes of the scorers.

A tile decoder writes the table rows ``rows`` (int32 [m], any order) as float32 into
``out[:m]`` [>= m, d]; :mod:`.tiled` scores the decoded tile with one BLAS GEMM. Float16 rows are
widened in registers by :func:`half_to_float32` (Numba has no float16 type: an intrinsic emitting
LLVM's ``fpext``), which the few-users scan uses too.

Scorers split the users into tiles of :data:`USERS_PER_TILE` and walk the item table in tiles of
:data:`ITEMS_PER_TILE` rows, so an item row is decoded once per tile of users.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

USERS_PER_TILE = 64
ITEMS_PER_TILE = 512


@intrinsic
def half_to_float32(typingctx, bits):
    """float32: the float16 whose bit pattern is ``bits`` (uint16), widened exactly (every
    finite value, subnormals, infinities and NaN as NumPy's ``astype``): LLVM's ``fpext``, which
    a vectorised loop turns into ``vcvtph2ps`` (F16C) on x86."""
    if bits != types.uint16:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    return types.float32(types.uint16), codegen


@njit(cache=True, nogil=True)
def decode_float32_tile(items, rows, out):
    """Copy the rows ``rows`` of the float32 table ``items`` [n, d] into ``out``."""
    dim = out.shape[1]
    for r in range(rows.shape[0]):
        row = rows[r]
        for t in range(dim):
            out[r, t] = items[row, t]


@njit(cache=True, nogil=True)
def decode_float16_tile(items_bits, rows, out):
    """Widen the rows ``rows`` of a float16 table, given as its uint16 view ``items_bits``
    [n, d], into ``out``, exactly."""
    dim = out.shape[1]
    for r in range(rows.shape[0]):
        row = rows[r]
        for t in range(dim):
            out[r, t] = half_to_float32(items_bits[row, t])
