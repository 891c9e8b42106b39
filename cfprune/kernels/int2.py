"""Tile decoder of int2 item tables: four 2-bit levels per byte (dimension 4j + t in bits
2t..2t+1 of byte j), decoded as ``scale * q + offset`` per row or per dimension.

The decoded tiles are scored by the shared scorer of :mod:`.tiled`.
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def decode_int2_tile(packed, scale, offset, per_row, rows, out):
    """Write the decoded rows ``rows`` int32 [m] of ``packed`` uint8 [n, ceil(d/4)] into ``out``
    float32 [m, d]; ``scale``/``offset`` float32 [n] (``per_row``) or [d], ``offset`` [0] when
    symmetric."""
    dim = out.shape[1]
    has_offset = offset.shape[0] > 0
    for r in range(rows.shape[0]):
        row = rows[r]
        s = scale[row] if per_row else np.float32(1.0)
        o = offset[row] if per_row and has_offset else np.float32(0.0)
        for t in range(dim):
            level = np.float32((packed[row, t >> 2] >> (2 * (t & 3))) & 3)
            if per_row:
                out[r, t] = s * level + o
            elif has_offset:
                out[r, t] = scale[t] * level + offset[t]
            else:
                out[r, t] = scale[t] * level
