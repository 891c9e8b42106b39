"""Tile decoder of int4 item tables: two 4-bit levels per byte (dimension 2j in the low nibble of
byte j, 2j+1 in the high nibble), decoded as ``scale * q + offset`` per row or per dimension.

The decoded tiles are scored by the shared scorer of :mod:`.tiled`.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def decode_int4_tile(packed, scale, offset, per_row, rows, out):
    """Write the decoded rows ``rows`` of ``packed`` uint8 [n, ceil(d/2)] into ``out``."""
    dim = out.shape[1]
    has_offset = offset.shape[0] > 0
    for r in range(rows.shape[0]):
        row = rows[r]
        s = scale[row] if per_row else np.float32(1.0)
        o = offset[row] if per_row and has_offset else np.float32(0.0)
        for t in range(dim):
            byte = packed[row, t >> 1]
            level = np.float32((byte >> 4) if t & 1 else (byte & 15))
            if per_row:
                out[r, t] = s * level + o
            elif has_offset:
                out[r, t] = scale[t] * level + offset[t]
            else:
                out[r, t] = scale[t] * level
