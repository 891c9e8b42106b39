"""Product-quantised storage: m sub-spaces, up to 256 centroids each, one uint8 code per
sub-space, and an optional orthogonal rotation (OPQ)."""

import numpy as np

from ..errors import ShapeError
from .base import Table, check_matrix, hold, row_index


class PQTable(Table):
    """Arrays: ``codes`` uint8 [n, m]; ``codebooks`` float32 [ksub, d], sub-space s owning the
    columns ``bounds[s]:bounds[s+1]``; ``bounds`` int32 [m+1]; optional ``rotation`` float32
    [d, d]. A row decodes as the concatenation of its centroids, times ``rotation.T``; so an
    inner product ``u . x`` equals ``(u @ rotation) . x_rot``."""

    storage = "pq"

    def __init__(self, codes, codebooks, bounds, rotation=None):
        self.codes = check_matrix(codes, "codes", np.uint8)
        self.codebooks = check_matrix(codebooks, "codebooks", np.float32)
        bounds = np.ascontiguousarray(bounds, dtype=np.int32)
        m = self.codes.shape[1]
        ksub, d = self.codebooks.shape
        if bounds.shape != (m + 1,) or bounds[0] != 0 or bounds[-1] != d or \
                np.any(np.diff(bounds) <= 0):
            raise ShapeError(f"bounds {bounds.tolist()} must rise strictly from 0 to dim={d} in "
                             f"m+1={m + 1} steps")
        if not 1 <= ksub <= 256:
            raise ShapeError(f"a PQ codebook holds 1..256 centroids, got {ksub}")
        if self.codes.size and int(self.codes.max()) >= ksub:
            raise ShapeError(f"a code {int(self.codes.max())} points past the {ksub} centroids")
        self.bounds = bounds
        if rotation is not None:
            rotation = check_matrix(rotation, "rotation", np.float32)
            if rotation.shape != (d, d):
                raise ShapeError(f"rotation has shape {rotation.shape}, expected ({d}, {d})")
        self.rotation = rotation
        sources = (codes, codebooks, bounds, rotation)
        self.codes, self.codebooks, self.bounds, self.rotation = (
            hold(a, *sources) for a in (self.codes, self.codebooks, self.bounds, self.rotation))

    @property
    def n_rows(self):
        return self.codes.shape[0]

    @property
    def dim(self):
        return self.codebooks.shape[1]

    @property
    def m(self):
        return self.codes.shape[1]

    @property
    def ksub(self):
        return self.codebooks.shape[0]

    def decode_rotated(self, rows=None):
        """float32 [n, dim]: the centroid concatenation, in the rotated space."""
        codes = self.codes[row_index(rows, self.n_rows)]
        out = np.empty((codes.shape[0], self.dim), np.float32)
        for s in range(self.m):
            lo, hi = self.bounds[s], self.bounds[s + 1]
            out[:, lo:hi] = self.codebooks[codes[:, s], lo:hi]
        return out

    def decode(self, rows=None):
        out = self.decode_rotated(rows)
        if self.rotation is not None:
            out = out @ self.rotation.T
        return np.ascontiguousarray(out, dtype=np.float32)

    def arrays(self):
        out = {"codes": self.codes, "codebooks": self.codebooks, "bounds": self.bounds}
        if self.rotation is not None:
            out["rotation"] = self.rotation
        return out

    @classmethod
    def from_arrays(cls, arrays, **params):
        return cls(arrays["codes"], arrays["codebooks"], arrays["bounds"], arrays.get("rotation"))


def subspace_bounds(dim, m):
    """int32 [m+1]: split ``dim`` columns into ``m`` contiguous sub-spaces whose sizes differ by
    at most one (the first ``dim % m`` get the extra column)."""
    if not 1 <= m <= dim:
        raise ShapeError(f"m={m} sub-spaces cannot split dim={dim}; need 1 <= m <= dim")
    sizes = np.full(m, dim // m, np.int32)
    sizes[: dim % m] += 1
    return np.r_[0, np.cumsum(sizes)].astype(np.int32)
