"""Read-only arrays: how a table, a loaded file and fitted state hold the arrays they keep.

The lowest layer beside :mod:`cfprune.errors`: :mod:`cfprune.io` freezes what it reads, the
tables and the fitted-state record hold their arrays through :func:`hold`, and retrieval asks
:func:`read_only_throughout` before it caches anything derived from an array.
"""

from __future__ import annotations

import zlib

import numpy as np


def hold(a, *sources):
    """``a`` read-only, as a table holds it: a caller's array is never frozen under them.

    ``sources`` are the arrays the caller passed to the constructor. ``a`` is frozen in place
    (with the arrays it views) when it shares no memory with any of them (a fresh array the
    constructor made) or is read-only down to the memory it views already (another table's
    array, a loaded model's); otherwise it is copied first, so the caller's array stays
    writeable and later writes to it cannot change the table.
    """
    if a is None:
        return None
    if not read_only_throughout(a):
        if any(isinstance(s, np.ndarray) and np.may_share_memory(a, s) for s in sources):
            a = a.copy()
        freeze(a)
    a.flags.writeable = False
    return a


def freeze(a):
    """Make ``a`` and every array it views read-only, in place (for arrays nobody else holds)."""
    while isinstance(a, np.ndarray):
        a.flags.writeable = False
        a = a.base


def read_only_throughout(a):
    """Whether no writeable array or buffer lies under ``a`` (down its chain of bases)."""
    while isinstance(a, np.ndarray):
        if a.flags.writeable:
            return False
        a = a.base
    return a is None or isinstance(a, bytes)


def fingerprint(arrays):
    """What state derived from ``arrays`` (a table's scan order, an item Gram matrix) is valid
    for: their identities, and for every array not read-only down to its memory, a CRC-32 of its
    bytes (about 13 ms per 50 MB), so an in-place change is never answered from stale state."""
    marks = []
    for array in arrays:
        marks.append(id(array))
        if not read_only_throughout(array):
            marks.append(zlib.crc32(memoryview(np.ascontiguousarray(array)).cast("B")))
    return tuple(marks)
