"""The search space: the pipelines ``[row pruning] | [lowrank] | quantiser`` the search tries,
as compressor objects.

Row pruning by popularity (keep :data:`POPULARITY_KEEPS`) or by reach (``k`` =
:data:`REACH_FACTORS` times the largest target cut-off), joint low rank at
:data:`RANK_FRACTIONS` of the dimension, and the quantisers int8, int4, int2 (per dimension), PQ
with 8- and 4-bit codes at several ``m``, and OPQ / the anisotropic loss on the 4-bit PQ. With
``side="both"`` each of those pipelines may end with a user-side step (:func:`user_steps_for`:
``fold-users`` for an ALS model, a per-row user quantiser).
"""

from __future__ import annotations

from ..fold import FoldUsers
from ..lowrank import LowRank
from ..pq import ProductQuantization
from ..rows import PruneRows
from ..scalar import Int2, Int4, Int8

POPULARITY_KEEPS = (0.7, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.07, 0.05)
REACH_FACTORS = (5.0, 2.5, 1.5, 1.0)
RANK_FRACTIONS = (0.875, 0.8125, 0.75, 0.625, 0.5, 0.375, 0.25)
SEARCH_PQ_ITERS = 10
SEARCH_PQ_ROUNDS = 2
RESEEDS = (1,)


def popularity_pruners():
    """list of PruneRows by popularity, most rows kept first."""
    return [PruneRows(keep=keep, by="popularity") for keep in POPULARITY_KEEPS]


def reach_cutoffs(max_k):
    """The distinct ``k`` of the reach pruners for a largest target cut-off ``max_k``, in the
    order of :data:`REACH_FACTORS` (never below ``max_k``)."""
    out = []
    for factor in REACH_FACTORS:
        k = max(max_k, int(round(factor * max_k)))
        if k not in out:
            out.append(k)
    return out


def low_ranks(dim):
    """[None (no low rank), LowRank ...]: the ranks of :data:`RANK_FRACTIONS` of ``dim`` that
    lie in [2, dim), largest first."""
    ranks = sorted({int(round(f * dim)) for f in RANK_FRACTIONS if 2 <= round(f * dim) < dim},
                   reverse=True)
    return [None] + [LowRank(rank=rank) for rank in ranks]


def quantisers(rank):
    """(cheap, expensive) quantisers (lists of Compressor) for a table of ``rank`` columns: the
    scalar ones, then PQ (k-means) and its OPQ / anisotropic variants."""
    cheap = [Int8(axis="dim"), Int4(axis="dim"), Int2(axis="dim")]
    pq = [ProductQuantization(m=rank // div, nbits=nbits, iterations=SEARCH_PQ_ITERS)
          for div, nbits in ((2, 4), (4, 4), (8, 4), (4, 8), (8, 8)) if rank // div >= 1]
    variants = []
    for div in (4, 8):
        m = rank // div
        if m >= 1:
            variants += [ProductQuantization(m=m, nbits=4, iterations=SEARCH_PQ_ITERS,
                                             rotation="opq", rounds=SEARCH_PQ_ROUNDS),
                         ProductQuantization(m=m, nbits=4, iterations=SEARCH_PQ_ITERS,
                                             loss="anisotropic", rounds=SEARCH_PQ_ROUNDS)]
    return cheap, pq + variants


def user_quantisers():
    """The user-side steps of a ``side="both"`` search: int8, int4 and int2 with one scale and
    offset per user row. Per row, not per dimension: a user's own scale multiplies all of that
    user's scores alike and leaves the user's ranking as it was, so only the rounding of the
    codes costs recall (on ML-1M int4 keeps 99.0% of recall@20 per row, 93.4% per dimension)."""
    return [Int8(axis="row", table="users"), Int4(axis="row", table="users"),
            Int2(axis="row", table="users")]


def user_steps_for(model):
    """The user-side steps a ``side="both"`` search tries on ``model``: ``fold-users`` (no user
    table shipped: each user folded in from their interactions at serving time by the ALS user
    step, :class:`~cfprune.compression.fold.FoldUsers`) when ``model.info`` records an ALS
    training with its ``regularization`` and ``alpha``, then :func:`user_quantisers`."""
    info = model.info
    folds = info.get("algorithm") == "als" and all(info.get(k) is not None
                                                   for k in ("regularization", "alpha"))
    return ([FoldUsers()] if folds else []) + user_quantisers()


def reseeded(steps, seed):
    """``steps`` with every PQ step at k-means seed ``seed`` (the other steps as they are)."""
    return [_with_seed(step, seed) if isinstance(step, ProductQuantization) else step
            for step in steps]


def _with_seed(step, seed):
    params = {k: v for k, v in step.get_params().items() if v != step.schema[k].default}
    params["seed"] = seed
    return type(step)(**params)
