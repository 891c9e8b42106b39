"""Tile decoder of the packed low-bit item tables (int4 and int2): ``8 // bits`` levels per byte,
dimension ``per_byte * j + t`` in bits ``bits * t`` .. of byte ``j`` (int4: the low nibble holds
dimension 2j), decoded as ``scale * q + offset`` per row or per dimension.

The decoded tiles are scored by the shared scorer of :mod:`.tiled`.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def decode_packed_tile(packed, bits, scale, offset, per_row, rows, out):
    """Write the decoded rows ``rows`` int32 [m] of ``packed`` uint8 [n, ceil(d * bits / 8)]
    (``bits`` 2 or 4) into ``out`` float32 [>= m, d]; ``scale``/``offset`` float32 [n]
    (``per_row``) or [d], ``offset`` [0] when symmetric."""
    dim = out.shape[1]
    has_offset = offset.shape[0] > 0
    per_byte = 8 // bits
    mask = (1 << bits) - 1
    for r in range(rows.shape[0]):
        row = rows[r]
        s = scale[row] if per_row else np.float32(1.0)
        o = offset[row] if per_row and has_offset else np.float32(0.0)
        for t in range(dim):
            byte = packed[row, t // per_byte]
            level = np.float32((byte >> (bits * (t % per_byte))) & mask)
            if per_row:
                out[r, t] = s * level + o
            elif has_offset:
                out[r, t] = scale[t] * level + offset[t]
            else:
                out[r, t] = scale[t] * level
