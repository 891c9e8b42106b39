"""Scalar quantisation: ``fp16``, ``int8``, ``int4`` and ``int2``.

Affine (default): per row (``axis=row``) or per dimension (``axis=dim``) the range [min, max] is
cut into ``2^bits - 1`` equal steps, ``scale = (max - min) / (2^bits - 1)``; the offset is chosen so
that ``min`` decodes exactly to the lowest level (int8: code -128, int4: level 0), so the codes
use the whole range and negative weights are as well served as positive ones. A weight is coded
by rounding to the nearest level and clipping to the code range; decode is
``scale * q + offset``, so the error per weight is at most half a step (``scale / 2``). A constant
row or dimension (max == min) gets ``scale = 1`` and decodes exactly to its value.

``int2`` has four levels 0..3 (four codes per byte). With so few levels the full range wastes
them on the extremes, so per row or dimension the range is first shrunk about its centre: of the
factors ``1, 0.95, ..., 0.3`` the one whose codes (rounded and clipped) give the least squared
error is kept; weights beyond the shrunk range clip to the end levels.

Symmetric (``int8:symmetric=true``): ``scale = max|w| / 127``, codes in [-127, 127], no offset
array (the table is 8 bytes per row or dimension lighter). ``int4`` offers no symmetric form: its
levels are the unsigned 0..15, so a symmetric 4-bit code would still need ``offset = -8 * scale``
and save nothing.

``axis=auto`` quantises both ways and keeps the one that keeps more of the ranking: on a seeded
sample of ``sample_users`` users of the model's own user table it compares each variant's top-
``topk`` items with the float32 top-``topk`` (mean overlap); ties go to ``dim``, whose scales
take fewer bytes. The overlaps and the choice are recorded in ``model.info``.
"""

from __future__ import annotations

import numpy as np

from ..errors import SpecError
from ..tables import Float16Table, Int2Table, Int4Table, Int8Table
from .base import Param, TableCompressor

FP16_MAX = float(np.finfo(np.float16).max)


def _affine_ranges(x, axis):
    """float64 (lo, hi) per row (axis="row") or per column (axis="dim")."""
    reduce_axis = 1 if axis == "row" else 0
    x64 = x.astype(np.float64)
    if x.shape[reduce_axis] == 0:
        n = x.shape[1 - reduce_axis]
        return np.zeros(n), np.zeros(n)
    return x64.min(axis=reduce_axis), x64.max(axis=reduce_axis)


def _broadcast(v, axis):
    return v[:, None] if axis == "row" else v[None, :]


INT2_SHRINK = np.round(np.arange(1.0, 0.29, -0.05), 2)


def affine_quantize(x, bits, axis, ranges=None):
    """Affine codes of ``x`` float [n, d].

    Returns (q int16 [n, d] in [qmin, qmax], scale float32, offset float32), with
    ``qmin = -128, qmax = 127`` for 8 bits and ``0, 2^bits - 1`` otherwise, and decode
    ``scale * q + offset`` (scale and offset [n] for axis="row", [d] for axis="dim").
    ``ranges``: (lo, hi) float64 per row or dimension (default: the min and max).
    """
    qmin, qmax = (-128, 127) if bits == 8 else (0, 2 ** bits - 1)
    lo, hi = _affine_ranges(x, axis) if ranges is None else ranges
    span = hi - lo
    scale = np.where(span > 0, span / (qmax - qmin), 1.0).astype(np.float32)
    offset = (lo - qmin * scale.astype(np.float64)).astype(np.float32)
    q = np.rint((x.astype(np.float64) - _broadcast(offset.astype(np.float64), axis))
                / _broadcast(scale.astype(np.float64), axis))
    q = np.clip(q, qmin, qmax).astype(np.int16)
    return q, scale, offset


def symmetric_quantize_int8(x, axis):
    """Symmetric int8 codes of ``x``: (codes int8 [n, d] in [-127, 127], scale float32); decode
    ``scale * codes``."""
    reduce_axis = 1 if axis == "row" else 0
    x64 = x.astype(np.float64)
    amax = np.abs(x64).max(axis=reduce_axis) if x.shape[reduce_axis] else \
        np.zeros(x.shape[1 - reduce_axis])
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(x64 / _broadcast(scale.astype(np.float64), axis)), -127, 127)
    return q.astype(np.int8), scale


def encode_int8(x, axis="row", symmetric=False):
    """Int8Table of ``x`` float [n, d] (see the module docstring)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if symmetric:
        codes, scale = symmetric_quantize_int8(x, axis)
        return Int8Table(codes, scale, None, axis=axis)
    q, scale, offset = affine_quantize(x, 8, axis)
    return Int8Table(q.astype(np.int8), scale, offset, axis=axis)


def encode_int4(x, axis="row"):
    """Int4Table of ``x`` float [n, d], levels 0..15 packed two per byte."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    q, scale, offset = affine_quantize(x, 4, axis)
    return Int4Table(Int4Table.pack(q), scale, offset, axis=axis, dim=x.shape[1])


def shrunk_ranges(x, bits, axis):
    """(lo, hi) float64 per row or dimension: the min-max range shrunk about its centre by the
    factor of :data:`INT2_SHRINK` that gives the codes of least squared error."""
    lo, hi = _affine_ranges(x, axis)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    reduce_axis = 1 if axis == "row" else 0
    x64 = x.astype(np.float64)
    best_err = np.full(lo.shape, np.inf)
    best_lo, best_hi = lo.copy(), hi.copy()
    for factor in INT2_SHRINK:
        ranges = (centre - factor * half, centre + factor * half)
        q, scale, offset = affine_quantize(x, bits, axis, ranges)
        decoded = q * _broadcast(scale.astype(np.float64), axis) + \
            _broadcast(offset.astype(np.float64), axis)
        err = ((decoded - x64) ** 2).sum(axis=reduce_axis)
        better = err < best_err
        best_err[better] = err[better]
        best_lo[better], best_hi[better] = ranges[0][better], ranges[1][better]
    return best_lo, best_hi


def encode_int2(x, axis="row"):
    """Int2Table of ``x`` float [n, d], levels 0..3 on the shrunk range, four per byte."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    q, scale, offset = affine_quantize(x, 2, axis, shrunk_ranges(x, 2, axis))
    return Int2Table(Int2Table.pack(q), scale, offset, axis=axis, dim=x.shape[1])


def encode_fp16(x):
    """Float16Table of ``x``; SpecError when a weight does not fit in float16."""
    x = np.asarray(x, dtype=np.float32)
    big = float(np.abs(x).max()) if x.size else 0.0
    if big > FP16_MAX:
        raise SpecError(f"fp16: a weight of magnitude {big:g} does not fit in float16 "
                        f"(max {FP16_MAX:g}); use int8 or pq")
    return Float16Table(x.astype(np.float16))


def quantize_fitted(x, bits, scale, offset):
    """Codes of ``x`` float [n, d] with a fitted per-dimension ``scale`` and ``offset`` float32
    [d] (``offset`` None: symmetric int8): the fit's rounding, values outside the fitted range
    clipped to the end codes. int8 for 8 bits, int16 levels 0..15 for 4 bits."""
    x64 = np.asarray(x, dtype=np.float64)
    scale64 = scale.astype(np.float64)[None, :]
    if offset is None:
        return np.clip(np.rint(x64 / scale64), -127, 127).astype(np.int8)
    qmin, qmax = (-128, 127) if bits == 8 else (0, 2 ** bits - 1)
    q = np.clip(np.rint((x64 - offset.astype(np.float64)[None, :]) / scale64), qmin, qmax)
    return q.astype(np.int8 if bits == 8 else np.int16)


def topk_ids(scores, k):
    """int64 [n, k]: per row the ids of the k largest scores, ties to the lower id, best first."""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.empty((scores.shape[0], 0), np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(scores, part, axis=1)
    ids = np.take_along_axis(part, np.lexsort((part, -values), axis=1), axis=1).astype(np.int64)
    # rows with a tie across the k-th place: the partition may hold a higher id of the tie
    tied = np.flatnonzero((scores >= values.min(axis=1)[:, None]).sum(axis=1) > k)
    if tied.size:
        ids[tied] = np.argsort(-scores[tied], axis=1, kind="stable")[:, :k]
    return ids


def ranking_overlap(users_ref, items_ref, users_var, items_var, k, valid=None):
    """Mean over users of |top-k(variant) ∩ top-k(reference)| / k, scores by inner product.

    users_* float [n_users, d]; items_* float [n_items, d]; valid: bool [n_items] or None (items
    False are never ranked).
    """
    ref = users_ref @ items_ref.T
    var = users_var @ items_var.T
    if valid is not None:
        ref[:, ~valid] = -np.inf
        var[:, ~valid] = -np.inf
    k = min(k, ref.shape[1] if valid is None else int(valid.sum()))
    if k == 0 or ref.shape[0] == 0:
        return 1.0
    a = topk_ids(ref, k)
    b = topk_ids(var, k)
    hits = [np.intersect1d(a[i], b[i], assume_unique=True).size for i in range(a.shape[0])]
    return float(np.mean(hits)) / k


class _ScalarMethod(TableCompressor):
    """Shared ``axis=auto`` selection of int8, int4 and int2."""

    def encode(self, x, axis):
        raise NotImplementedError

    def item_state(self, before, after, info):
        """axis=row: state-free; axis=dim: the fitted scale and offset."""
        params = {"axis": after.axis, "symmetric": after.offset is None}
        if after.axis == "row":
            return params, {}
        arrays = {"scale": after.scale}
        if after.offset is not None:
            arrays["offset"] = after.offset
        return params, arrays

    @classmethod
    def encode_rows(cls, table, params, arrays):
        """New rows (``table``, any storage) encoded with the fitted state."""
        x = np.ascontiguousarray(table.decode(), dtype=np.float32)
        if params["axis"] == "row":
            return cls._encode_free(x, params)
        scale, offset = arrays["scale"], arrays.get("offset")
        if scale.shape != (x.shape[1],):
            raise SpecError(f"{cls.name}: new rows have {x.shape[1]} dimensions, the fitted "
                            f"scales {scale.shape[0]}")
        return cls._encode_with(x, scale, offset)

    def compress_table(self, table, ctx):
        x = table.decode()
        if self.axis != "auto":
            return self.encode(x, self.axis), {"axis": self.axis}
        variants = {axis: self.encode(x, axis) for axis in ("dim", "row")}
        overlaps = {axis: self._overlap(x, t.decode(), ctx) for axis, t in variants.items()}
        chosen = "dim" if overlaps["dim"] >= overlaps["row"] else "row"
        return variants[chosen], {"axis": chosen, "auto_overlap": overlaps,
                                  "auto_topk": self.topk}

    def _overlap(self, x_ref, x_var, ctx):
        """Top-k overlap with float32 when this side's rows ``x_ref`` become ``x_var``."""
        rng = np.random.default_rng(self.seed)
        model = ctx.model
        if ctx.side == "items":
            users = model.users.decode()
            sample = rng.choice(users.shape[0], min(self.sample_users, users.shape[0]),
                                replace=False)
            u = users[np.sort(sample)]
            return ranking_overlap(u, x_ref, u, x_var, self.topk)
        items = model.items.decode()
        valid = model.items.valid_rows()
        sample = np.sort(rng.choice(x_ref.shape[0], min(self.sample_users, x_ref.shape[0]),
                                    replace=False))
        return ranking_overlap(x_ref[sample], items, x_var[sample], items, self.topk, valid)


AUTO_PARAMS = {
    "sample_users": Param(int, 1000, "axis=auto: users sampled to measure the top-k overlap",
                          low=1),
    "topk": Param(int, 20, "axis=auto: k of the top-k overlap", low=1),
    "seed": Param(int, 0, "axis=auto: seed of the user sample", low=0),
}


class Float16(TableCompressor):
    """Half precision: 2 bytes per weight."""

    name = "fp16"
    schema = dict(TableCompressor.schema)

    def compress_table(self, table, ctx):
        return encode_fp16(table.decode()), {}

    def item_state(self, before, after, info):
        return {}, {}

    @classmethod
    def encode_rows(cls, table, params, arrays):
        """New rows in float16 (state-free)."""
        return encode_fp16(table.decode())

    def plan_rows(self, plan):
        return Float16Table.plan(plan.n_rows, plan.dim)


class Int8(_ScalarMethod):
    """8-bit codes with a float32 scale (and offset) per row or per dimension."""

    name = "int8"
    schema = {
        "axis": Param(str, "row", "one scale per row, per dimension, or the better of both",
                      choices=("row", "dim", "auto")),
        "symmetric": Param(bool, False, "scale = max|w|/127 and no offset"),
        **AUTO_PARAMS,
        **TableCompressor.schema,
    }

    def encode(self, x, axis):
        return encode_int8(x, axis, self.symmetric)

    @staticmethod
    def _encode_free(x, params):
        return encode_int8(x, "row", params["symmetric"])

    @staticmethod
    def _encode_with(x, scale, offset):
        return Int8Table(quantize_fitted(x, 8, scale, offset), scale, offset, axis="dim")

    def plan_rows(self, plan):
        return Int8Table.plan(plan.n_rows, plan.dim, axis=_planned_axis(self),
                              symmetric=self.symmetric)


class _PackedMethod(_ScalarMethod):
    """Low-bit levels packed several per byte (:class:`~cfprune.tables.scalar._PackedTable`), an
    affine scale and offset per row or dimension; ``bits``, ``table_class`` and ``encoder`` (the
    function that fits and encodes ``x`` along an axis) name the width."""

    bits = 0
    table_class = None
    schema = {
        "axis": Param(str, "row", "one scale per row, per dimension, or the better of both",
                      choices=("row", "dim", "auto")),
        **AUTO_PARAMS,
        **TableCompressor.schema,
    }

    def encode(self, x, axis):
        return type(self).encoder(x, axis)

    @classmethod
    def _encode_free(cls, x, params):
        return cls.encoder(x, "row")

    @classmethod
    def _encode_with(cls, x, scale, offset):
        levels = quantize_fitted(x, cls.bits, scale, offset)
        return cls.table_class(cls.table_class.pack(levels), scale, offset, axis="dim",
                               dim=x.shape[1])

    def plan_rows(self, plan):
        return self.table_class.plan(plan.n_rows, plan.dim, axis=_planned_axis(self))


class Int4(_PackedMethod):
    """4-bit levels 0..15 packed two per byte, affine scale and offset per row or dimension."""

    name = "int4"
    bits, table_class, encoder = 4, Int4Table, staticmethod(encode_int4)


class Int2(_PackedMethod):
    """2-bit levels 0..3 packed four per byte on a shrunk affine range per row or dimension."""

    name = "int2"
    bits, table_class, encoder = 2, Int2Table, staticmethod(encode_int2)


def _planned_axis(method):
    """The axis of a scalar method's table before fitting; SpecError for ``axis=auto``, which
    chooses by a measurement."""
    if method.axis == "auto":
        raise SpecError(f"{method.spec_string()}: axis=auto chooses row or dim when fitted; "
                        f"give axis=row or axis=dim for a byte count before fitting")
    return method.axis
