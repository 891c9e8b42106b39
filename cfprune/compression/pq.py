"""Product quantisation: ``pq:m=16,nbits=8|4,rotation=none|opq,loss=mse|anisotropic``.

The ``d`` columns are split into ``m`` contiguous sub-spaces (sizes differ by at most one when
``m`` does not divide ``d``, :func:`~cfprune.tables.subspace_bounds`); each sub-space gets a
codebook of ``ksub`` centroids learnt by k-means
(:func:`cfprune.kernels.quantize.kmeans_subspaces`: k-means++ start seeded by ``seed + s`` for
sub-space ``s``, at most ``iterations`` Lloyd iterations, on at most 256 rows per centroid as
faiss does) and each row stores one uint8 code per sub-space (the nearest centroid, one pass of a
Numba kernel over all rows). Tables of more than ``train_rows`` rows are trained on a seeded
sample of that many rows and then all encoded. A table (or training sample) of fewer rows than
``ksub`` gets ``ksub = n_rows`` (recorded as ``ksub_used``).

``nbits=4`` stores 4-bit codes, two sub-spaces per byte, into codebooks of at most 16 centroids
(``ksub`` defaults to 16 then): the codebooks take ``16 d`` floats instead of ``256 d`` (at d=64,
4 KiB instead of 64 KiB), which pays off on small catalogues, and the codes half the bytes of
``nbits=8`` at the same ``m``.

``rotation=opq`` (Ge et al. 2013, non-parametric OPQ): starting from the identity, ``rounds``
alternations of (k-means codebooks and codes on the rotated rows ``X R``, warm-started) and
(the orthogonal Procrustes rotation ``R = argmin ||X R - Y||``, ``Y`` the decoded codes, from the
SVD of ``X^T Y``). The table stores ``rotation = R``, so that ``x ~ x_rot @ rotation.T``.

``loss=anisotropic`` (Guo et al. 2020, "Accelerating Large-Scale Inference with Anisotropic
Vector Quantization", ScaNN): the residual ``r = x - x~`` of a row is weighted
``h_par ||r_par||^2 + h_perp ||r_perp||^2`` with ``r_par`` its component along ``x`` and
``eta = h_par / h_perp``, i.e. (with ``h_perp = 1``) the loss
``||r||^2 + (eta - 1) (r . x)^2 / ||x||^2``, which penalises the error that changes inner products
with queries near ``x``. Starting from the MSE codebooks and codes, ``rounds`` rounds of

- score-aware assignment: coordinate descent over the sub-spaces, each row's code in sub-space
  ``s`` set to the centroid minimising the full loss with its other codes fixed (vectorised over
  rows; ``sweeps`` passes over the sub-spaces), and
- codebook update: for each sub-space in turn, the exact weighted least-squares centroids given the
  codes and the other sub-spaces' centroids (a ``d_s x d_s`` linear system per centroid:
  ``(n_k I + sum_i w_i x_is x_is^T) c = sum_i x_is + sum_i w_i b_i x_is``). This is block
  coordinate descent on the joint least-squares problem, not its one-shot joint solve.

Each step cannot increase the loss; the step records it before and after. With ``rotation=opq``
the rotation is learnt with the MSE loss first and the anisotropic refinement runs in the rotated
space (the loss is rotation invariant).

Two-stage retrieval: ``rerank=int8|fp16|fp32`` also stores the item table before quantisation in
that storage as ``model.rerank`` and sets ``model.candidates`` (``candidates=100``): retrieval
scans that many candidates from the PQ codes and re-ranks them with the re-rank table. Its bytes
count in ``model.nbytes``.
"""

from __future__ import annotations


import numpy as np
import scipy.sparse as sp

from ..errors import SpecError
from ..tables import DenseTable, PQTable, subspace_bounds
from .base import Param, TableCompressor
from .scalar import encode_fp16, encode_int8

ROW_BATCH = 8192
# k-means learns each codebook from at most this many rows per centroid (faiss's default)
KMEANS_POINTS_PER_CENTROID = 256


def kmeans_codebooks(x, bounds, ksub, *, iters, seed, init=None):
    """float32 [ksub, d]: per sub-space k-means centroids of ``x`` float32 [n, d] (n >= ksub),
    learnt on at most ``KMEANS_POINTS_PER_CENTROID * ksub`` of its rows (a seeded sample, as
    faiss does). ``init`` (float32 [ksub, d]) warm-starts every sub-space."""
    from ..kernels.quantize import kmeans_subspaces
    limit = KMEANS_POINTS_PER_CENTROID * ksub
    if x.shape[0] > limit:
        rng = np.random.default_rng(seed)
        x = x[np.sort(rng.choice(x.shape[0], limit, replace=False))]
    return kmeans_subspaces(x, bounds, ksub, iters, seed, init)


def assign_nearest(x, codebooks, bounds):
    """(codes uint8 [n, m], errors float64 [n]): per sub-space the nearest centroid (squared
    L2; ties to the lower code) and each row's squared reconstruction error."""
    from ..kernels.quantize import nearest_centroids
    return nearest_centroids(x, codebooks, bounds)


def decode_codes(codes, codebooks, bounds):
    """float64 [n, d]: the centroid concatenation of ``codes``."""
    out = np.empty((codes.shape[0], codebooks.shape[1]), np.float64)
    for s in range(len(bounds) - 1):
        lo, hi = bounds[s], bounds[s + 1]
        out[:, lo:hi] = codebooks[codes[:, s], lo:hi]
    return out


def rotate_rows(x, rotation):
    """float32 [n, d]: ``x @ rotation`` computed in float64 (``x`` float32 [n, d], ``rotation``
    [d, d]), in row batches (no float64 copy of the whole table)."""
    rotation = np.asarray(rotation, np.float64)
    out = np.empty((x.shape[0], rotation.shape[1]), np.float32)
    for start in range(0, x.shape[0], ROW_BATCH):
        rows = slice(start, start + ROW_BATCH)
        out[rows] = x[rows].astype(np.float64) @ rotation
    return out


def mean_squared_error(x, codes, codebooks, bounds):
    """float: the mean over rows of ``||x - decode(codes)||^2`` (float64, in row batches)."""
    total = 0.0
    for start in range(0, x.shape[0], ROW_BATCH):
        rows = slice(start, start + ROW_BATCH)
        diff = x[rows].astype(np.float64) - decode_codes(codes[rows], codebooks, bounds)
        total += float((diff * diff).sum())
    return total / x.shape[0]


def anisotropic_weights(x, eta):
    """float64 [n]: ``(eta - 1) / ||x||^2`` per row (0 for a zero row)."""
    sq = (np.asarray(x, np.float64) ** 2).sum(1)
    return np.where(sq > 0, (eta - 1.0) / np.where(sq > 0, sq, 1.0), 0.0)


def anisotropic_loss(x, x_hat, eta):
    """float64 [n]: ``||r||^2 + (eta - 1) (r . x)^2 / ||x||^2`` per row, ``r = x - x_hat``."""
    x = np.asarray(x, np.float64)
    r = x - x_hat
    return (r * r).sum(1) + anisotropic_weights(x, eta) * (r * x).sum(1) ** 2


def assign_anisotropic(x, codebooks, bounds, codes, eta, sweeps):
    """uint8 [n, m]: ``codes`` improved by coordinate descent on the anisotropic loss (each
    sub-space's code re-chosen with the others fixed, ``sweeps`` passes)."""
    codes = codes.copy()
    m = len(bounds) - 1
    cb = codebooks.astype(np.float64)
    for start in range(0, x.shape[0], ROW_BATCH):
        xb = x[start:start + ROW_BATCH].astype(np.float64)
        cb_codes = codes[start:start + ROW_BATCH]
        w = anisotropic_weights(xb, eta)
        p = ((xb - decode_codes(cb_codes, cb, bounds)) * xb).sum(1)  # r . x
        rows = np.arange(xb.shape[0])
        for _ in range(sweeps):
            for s in range(m):
                lo, hi = bounds[s], bounds[s + 1]
                xs, c = xb[:, lo:hi], cb[:, lo:hi]
                xs_sq = (xs * xs).sum(1)
                dots = xs @ c.T                                   # [n, ksub]
                p_other = p - (xs_sq - dots[rows, cb_codes[:, s]])
                par = p_other[:, None] + xs_sq[:, None] - dots    # r . x for each choice
                loss = (c * c).sum(1)[None, :] - 2.0 * dots + w[:, None] * par * par
                best = np.argmin(loss, axis=1)
                cb_codes[:, s] = best
                p = p_other + xs_sq - dots[rows, best]
    return codes


def update_codebooks_anisotropic(x, codebooks, bounds, codes, eta):
    """float32 [ksub, d]: each sub-space's centroids in turn set to the exact minimiser of the
    anisotropic loss given the codes and the other sub-spaces (empty centroids unchanged)."""
    x = np.asarray(x, np.float64)
    cb = codebooks.astype(np.float64)
    ksub, m = cb.shape[0], len(bounds) - 1
    w = anisotropic_weights(x, eta)
    p = ((x - decode_codes(codes, cb, bounds)) * x).sum(1)
    n = x.shape[0]
    for s in range(m):
        lo, hi = bounds[s], bounds[s + 1]
        ds = hi - lo
        xs = x[:, lo:hi]
        xs_sq = (xs * xs).sum(1)
        current = codes[:, s].astype(np.int64)
        b = p - (xs_sq - (xs * cb[current, lo:hi]).sum(1)) + xs_sq   # p_other + ||x_s||^2
        onehot = sp.csc_matrix((np.ones(n), (current, np.arange(n))), shape=(ksub, n))
        counts = np.asarray(onehot.sum(1)).ravel()
        gram = np.zeros((ksub, ds * ds))
        step = max(1, 4_000_000 // (ds * ds))
        for start in range(0, n, step):
            sl = slice(start, start + step)
            outer = (w[sl, None, None] * xs[sl, :, None] * xs[sl, None, :]).reshape(-1, ds * ds)
            gram += onehot[:, sl] @ outer
        gram = gram.reshape(ksub, ds, ds) + counts[:, None, None] * np.eye(ds)
        rhs = onehot @ (xs + (w * b)[:, None] * xs)
        used = counts > 0
        cb[used, lo:hi] = np.linalg.solve(gram[used], rhs[used][:, :, None])[:, :, 0]
        p = b - (xs * cb[current, lo:hi]).sum(1)
    return cb.astype(np.float32)


def learn_rotation(x, bounds, ksub, *, iters, rounds, seed):
    """(rotation float32 [d, d], codebooks float32 [ksub, d]) by non-parametric OPQ."""
    from scipy.linalg import orthogonal_procrustes

    d = x.shape[1]
    rotation = np.eye(d)
    x64 = x.astype(np.float64)
    codebooks = None
    for _ in range(rounds):
        x_rot = (x64 @ rotation).astype(np.float32)
        codebooks = kmeans_codebooks(x_rot, bounds, ksub, iters=iters, seed=seed, init=codebooks)
        y = decode_codes(assign_nearest(x_rot, codebooks, bounds)[0], codebooks, bounds)
        rotation, _ = orthogonal_procrustes(x64, y)
    return rotation, codebooks


def train_pq(x, m, ksub, *, rotation="none", loss="mse", eta=4.0, iters=25, rounds=5, sweeps=2,
             seed=0, train_rows=100_000, nbits=8):
    """(PQTable, info) for ``x`` float32 [n, d] (see the module docstring)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    if not 1 <= m <= d:
        raise SpecError(f"pq: m={m} sub-spaces cannot split dim={d}; need 1 <= m <= {d}")
    if n == 0:
        raise SpecError("pq: the table has no rows to learn codebooks from")
    bounds = subspace_bounds(d, m)
    rng = np.random.default_rng(seed)
    train = x if n <= train_rows else x[np.sort(rng.choice(n, train_rows, replace=False))]
    ksub_used = min(ksub, train.shape[0])
    info = {"m": m, "ksub": ksub, "ksub_used": ksub_used,
            "subspace_dims": np.diff(bounds).tolist(), "train_rows": int(train.shape[0])}
    rot = None
    if rotation == "opq":
        rot, codebooks = learn_rotation(train, bounds, ksub_used, iters=iters, rounds=rounds,
                                        seed=seed)
        # encode with the rotation the table stores (float32), so that new rows encoded later
        # with the stored rotation get the codes the fit gives them (encode_pq_rows)
        rot = rot.astype(np.float32).astype(np.float64)
        train = rotate_rows(train, rot)
        x_rot = rotate_rows(x, rot)
        codebooks = kmeans_codebooks(train, bounds, ksub_used, iters=iters, seed=seed,
                                     init=codebooks)
    else:
        x_rot = x
        codebooks = kmeans_codebooks(train, bounds, ksub_used, iters=iters, seed=seed)
    if loss == "anisotropic":
        train_codes = assign_nearest(train, codebooks, bounds)[0]
        before = anisotropic_loss(train, decode_codes(train_codes, codebooks, bounds), eta).mean()
        for _ in range(rounds):
            train_codes = assign_anisotropic(train, codebooks, bounds, train_codes, eta, sweeps)
            codebooks = update_codebooks_anisotropic(train, codebooks, bounds, train_codes, eta)
        train_codes = assign_anisotropic(train, codebooks, bounds, train_codes, eta, sweeps)
        after = anisotropic_loss(train, decode_codes(train_codes, codebooks, bounds), eta).mean()
        info.update(anisotropic_loss_before=float(before), anisotropic_loss_after=float(after))
        if train.shape[0] == n:
            codes = train_codes
        else:
            codes = assign_anisotropic(x_rot, codebooks, bounds,
                                       assign_nearest(x_rot, codebooks, bounds)[0], eta, sweeps)
        info["mse"] = mean_squared_error(x_rot, codes, codebooks, bounds)
    else:
        codes, errors = assign_nearest(x_rot, codebooks, bounds)
        info["mse"] = float(errors.mean())
    if nbits == 4:
        codes = PQTable.pack4(codes)
    table = PQTable(codes, codebooks, bounds, None if rot is None else rot.astype(np.float32),
                    nbits=nbits)
    return table, info


def encode_pq_rows(x, codebooks, bounds, rotation=None, *, loss="mse", eta=4.0, sweeps=2):
    """uint8 [n, m]: codes of rows ``x`` float32 [n, d] with fitted codebooks (and rotation), as
    :func:`train_pq` encodes the rows it did not train on."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if rotation is not None:
        x = rotate_rows(x, rotation)
    codes = assign_nearest(x, codebooks, bounds)[0]
    if loss == "anisotropic":
        codes = assign_anisotropic(x, codebooks, bounds, codes, eta, sweeps)
    return codes


class ProductQuantization(TableCompressor):
    """m 8- or 4-bit codes per row into per-sub-space codebooks (optionally OPQ / anisotropic)."""

    name = "pq"
    schema = {
        "m": Param(int, 16, "number of sub-spaces (1..dim)", low=1),
        "nbits": Param(int, 8, "bits per code: 8 (ksub <= 256) or 4 (ksub <= 16, two codes a "
                       "byte)", choices=None, low=4, high=8),
        "ksub": Param(int, None, "centroids per sub-space (default 2^nbits)", low=1, high=256,
                      optional=True),
        "rotation": Param(str, "none", "opq: learn an orthogonal rotation first",
                          choices=("none", "opq")),
        "loss": Param(str, "mse", "anisotropic: ScaNN score-aware loss",
                      choices=("mse", "anisotropic")),
        "eta": Param(float, 4.0, "anisotropic: weight of the parallel residual (h_par/h_perp)",
                     low=0.0, low_open=True),
        "iterations": Param(int, 25, "k-means iterations per fit", low=1),
        "rounds": Param(int, 5, "OPQ rotation updates / anisotropic refinement rounds", low=1),
        "sweeps": Param(int, 2, "anisotropic: passes over the sub-spaces per assignment", low=1),
        "train_rows": Param(int, 100_000, "train on a sample of this many rows when larger",
                            low=1),
        "seed": Param(int, 0, "seed of k-means and of the training sample", low=0),
        "rerank": Param(str, "none", "second item table for two-stage retrieval",
                        choices=("none", "int8", "fp16", "fp32")),
        "candidates": Param(int, 100, "rerank: candidates scanned from the PQ codes", low=1),
        **TableCompressor.schema,
    }
    renamed = {"iters": "iterations"}

    def _check_params(self):
        if self.nbits not in (4, 8):
            raise SpecError(f"pq: nbits={self.nbits} is not allowed; expected 4 or 8")
        if self.ksub is not None and self.ksub > 2 ** self.nbits:
            raise SpecError(f"pq: ksub={self.ksub} needs more than nbits={self.nbits} bits; "
                            f"use ksub <= {2 ** self.nbits} or nbits=8")
        if self.rerank != "none" and self.table == "users":
            raise SpecError("pq: rerank applies to the item table; use table=items or both")
        if self.rerank == "none" and self._non_default("candidates"):
            raise SpecError("pq: candidates applies with rerank=int8|fp16|fp32")

    def compress_table(self, table, ctx):
        ksub = 2 ** self.nbits if self.ksub is None else self.ksub
        return train_pq(table.decode(), self.m, ksub, rotation=self.rotation,
                        loss=self.loss, eta=self.eta, iters=self.iterations, rounds=self.rounds,
                        sweeps=self.sweeps, seed=self.seed, train_rows=self.train_rows,
                        nbits=self.nbits)

    def item_state(self, before, after, info):
        """The codebooks, sub-space bounds and rotation; the loss and the re-rank storage."""
        params = {"loss": self.loss, "eta": self.eta, "sweeps": self.sweeps,
                  "rerank": self.rerank, "nbits": int(after.nbits)}
        arrays = {"codebooks": after.codebooks, "bounds": after.bounds}
        if after.rotation is not None:
            arrays["rotation"] = after.rotation
        return params, arrays

    @classmethod
    def encode_rows(cls, table, params, arrays):
        """New rows as a PQTable with the fitted codebooks; with a re-rank table, the pair
        (PQTable, re-rank Table of the same rows)."""
        x = table.decode()
        codebooks, bounds = arrays["codebooks"], arrays["bounds"]
        if x.shape[1] != codebooks.shape[1]:
            raise SpecError(f"pq: new rows have {x.shape[1]} dimensions, the codebooks "
                            f"{codebooks.shape[1]}")
        rotation = arrays.get("rotation")
        codes = encode_pq_rows(x, codebooks, bounds, rotation, loss=params["loss"],
                               eta=params["eta"], sweeps=params["sweeps"])
        nbits = params.get("nbits", 8)
        out = PQTable(PQTable.pack4(codes) if nbits == 4 else codes, codebooks, bounds, rotation,
                      nbits=nbits)
        if params.get("rerank", "none") == "none":
            return out
        return out, _encode_rerank(x, params["rerank"])

    def _compress(self, model, interactions):
        rerank = None if self.rerank == "none" else self._rerank_table(model.items)
        compressed, info, learned = super()._compress(model, interactions)
        if rerank is None:
            return compressed, info, learned
        info["rerank"] = {"storage": self.rerank, "nbytes": int(rerank.nbytes),
                          "candidates": self.candidates}
        return compressed.replace(rerank=rerank, candidates=self.candidates), info, learned

    def _rerank_table(self, items):
        """The item table before quantisation, in the ``rerank`` storage (same row wrapper)."""
        return items.with_stored(_encode_rerank(items.stored.decode(), self.rerank))

    def plan_rows(self, plan):
        """As :func:`train_pq` builds it: ``ksub`` at most the training rows, the rotation with
        ``rotation=opq``. A re-rank table (``rerank=``) is a second table: no plan."""
        if not 1 <= self.m <= plan.dim:
            raise SpecError(f"pq: m={self.m} sub-spaces cannot split dim={plan.dim}; need "
                            f"1 <= m <= {plan.dim}")
        if self.rerank != "none":
            raise SpecError(f"{self.spec_string()}: the re-rank table is a second table; no "
                            f"plan of the item side")
        ksub = 2 ** self.nbits if self.ksub is None else self.ksub
        ksub_used = min(ksub, min(plan.n_rows, self.train_rows))
        return PQTable.plan(plan.n_rows, plan.dim, m=self.m, nbits=self.nbits, ksub=ksub_used,
                            rotation=self.rotation == "opq")


def _encode_rerank(x, storage):
    """The re-rank Table of rows ``x`` float32 [n, d] in ``storage`` (int8|fp16|fp32)."""
    return {"int8": lambda: encode_int8(x, "row"), "fp16": lambda: encode_fp16(x),
            "fp32": lambda: DenseTable(x)}[storage]()
