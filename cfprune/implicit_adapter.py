"""``as_implicit(model)``: a cfprune model behind ``implicit``'s recommender interface.

The wrapper subclasses ``implicit.recommender_base.RecommenderBase`` and answers ``recommend``
from the model's own (compressed) tables through :func:`cfprune.retrieval.recommend`, so code
written around ``implicit`` -- ``implicit.evaluation.ranking_metrics_at_k`` in particular -- runs
unchanged on any cfprune model and reports the figures :func:`cfprune.evaluate` reports
(:func:`cfprune.evaluation.implicit_metrics`).

Shapes follow ``implicit``: a scalar user gives 1-D ``(ids, scores)``, an array of users 2-D;
``user_items`` has one row per requested user. Ties go to the lower item id; fewer than ``N``
eligible items pad with id -1 and score -inf (cfprune's convention).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.recommender_base import RecommenderBase

from .errors import CfpruneError, DataError, ShapeError
from .retrieval import positive_int


def as_implicit(model, *, regularization=None, alpha=None, num_threads=0):
    """An ``implicit``-style recommender answering from ``model``'s tables.

    Parameters
    ----------
    model : FactorModel
    regularization, alpha : float or None
        The ALS fold-in constants for ``recalculate_user=True`` (default: the values recorded
        in ``model.info`` by :func:`cfprune.train_als` or the import).
    num_threads : int
        Threads of ``recommend`` (0: every core), as ``implicit``'s ``num_threads``.
    """
    from .models import FactorModel
    if not isinstance(model, FactorModel):
        raise DataError(f"as_implicit expects a FactorModel, got {type(model).__name__}")
    return ImplicitRecommender(model, regularization=regularization, alpha=alpha,
                               num_threads=num_threads)


class ImplicitRecommender(RecommenderBase):
    """``implicit``'s ``RecommenderBase`` over a :class:`~cfprune.models.FactorModel`.

    Attributes
    ----------
    model : FactorModel
    user_factors, item_factors : float32 [n_users, dim], [n_items, dim]
        The decoded tables (computed once, on first use).
    """

    def __init__(self, model, *, regularization=None, alpha=None, num_threads=0):
        self.model = model
        info = model.info or {}
        self.regularization = info.get("regularization") if regularization is None \
            else float(regularization)
        self.alpha = float(info.get("alpha", 1.0)) if alpha is None else float(alpha)
        self.num_threads = int(num_threads)
        self._user_factors = self._item_factors = None

    # factors --------------------------------------------------------------------------------
    @property
    def user_factors(self):
        if self._user_factors is None:
            self._user_factors = self.model.users.decode()
        return self._user_factors

    @property
    def item_factors(self):
        if self._item_factors is None:
            self._item_factors = self.model.items.decode()
        return self._item_factors

    # implicit's interface -------------------------------------------------------------------
    def fit(self, user_items, show_progress=True, callback=None):
        raise CfpruneError("a wrapped cfprune model is fitted already: train with "
                           "cfprune.train_als/train_bpr and compress with cfprune.compress")

    def recommend(self, userid, user_items, N=10, filter_already_liked_items=True,
                  filter_items=None, recalculate_user=False, items=None):
        """Top ``N`` items per user (see ``implicit.recommender_base.RecommenderBase``).

        ``user_items`` : CSR [n, n_items], one row per entry of ``userid`` (needed when filtering
        liked items or recalculating users). ``recalculate_user=True`` folds each user in from
        its row by the closed-form ALS step against the model's (compressed) item table.
        Returns ``(ids int32, scores float32)``: [N] for a scalar ``userid``, else [n, N].
        """
        scalar = np.isscalar(userid) or (isinstance(userid, np.ndarray) and userid.ndim == 0)
        users = np.atleast_1d(np.asarray(userid))
        if users.ndim != 1 or (users.size and not np.issubdtype(users.dtype, np.integer)):
            raise ShapeError(f"userid must be an int or a 1-D int array, got {users.dtype} "
                             f"{users.shape}")
        if items is not None and filter_items is not None and len(filter_items):
            raise ShapeError("give items or filter_items, not both (as in implicit)")
        N = positive_int(N, "N")
        model = self.model
        csr = None
        if filter_already_liked_items or recalculate_user:
            if not sp.issparse(user_items):
                raise ShapeError("user_items must be a scipy CSR matrix with one row per user")
            csr = sp.csr_matrix(user_items)
            if csr.shape != (users.size, model.n_items):
                raise ShapeError(f"user_items has shape {csr.shape}; implicit's convention is "
                                 f"one row per requested user: ({users.size}, {model.n_items})")
            csr.sort_indices()
        if recalculate_user:
            model, users = self._folded(csr), np.arange(users.size)
        seen = _seen(csr if filter_already_liked_items else None, filter_items, users.size,
                     model.n_items)
        if items is not None:
            ids, scores = _rank_subset(model, users, seen, N, items)
        else:
            ids, scores = model.recommend(users, seen, k=N, filter_seen=seen is not None,
                                          num_threads=self.num_threads or None,
                                          user_items_rows="requested")
        return (ids[0], scores[0]) if scalar else (ids, scores)

    def recalculate_user(self, userid, user_items):
        """float32 [n, dim] (or [dim] for a scalar ``userid``): the users folded in from
        ``user_items`` against the model's item table."""
        csr = sp.csr_matrix(user_items)
        vectors = self._fold(csr)
        return vectors[0] if np.isscalar(userid) else vectors

    def similar_items(self, itemid, N=10, recalculate_item=False, item_users=None,
                      filter_items=None, items=None):
        """The ``N`` items of highest cosine similarity to ``itemid`` (decoded tables)."""
        if recalculate_item:
            raise CfpruneError("recalculate_item is not supported: add the item with "
                               "cfprune.add_items(model, vectors) instead")
        return _similar(self.item_factors, itemid, N, filter_items, items,
                        self.model.items.valid_rows())

    def similar_users(self, userid, N=10, filter_users=None, users=None):
        """The ``N`` users of highest cosine similarity to ``userid`` (decoded tables)."""
        return _similar(self.user_factors, userid, N, filter_users, users, None)

    def save(self, file):
        """Write the wrapped model as a cfprune model file (:meth:`FactorModel.save`)."""
        self.model.save(file)

    @classmethod
    def load(cls, fileobj_or_path):
        """A wrapper around the cfprune model file ``fileobj_or_path``."""
        from .models import FactorModel
        return cls(FactorModel.load(fileobj_or_path))

    # fold-in ----------------------------------------------------------------------------------
    def _fold(self, csr):
        if self.regularization is None:
            raise DataError("recalculate_user needs the ALS regularization, which the model's "
                            "info does not record: as_implicit(model, regularization=...)")
        return self.model.fold_in_users(csr, regularization=self.regularization,
                                        alpha=self.alpha)

    def _folded(self, csr):
        """The model with its users replaced by the fold-in of ``csr``'s rows."""
        from .models.factors import FactorModel
        m = self.model
        return FactorModel(self._fold(csr), m.items, rerank=m.rerank, item_ids=m.item_ids,
                           candidates=m.candidates)

    def __repr__(self):
        return f"as_implicit({self.model!r})"


def _seen(liked, filter_items, n_users, n_items):
    """CSR [n_users, n_items] of the items to skip per user (liked rows plus ``filter_items``
    for every user), or None when nothing is skipped."""
    if filter_items is None or len(filter_items) == 0:
        return liked
    cols = np.unique(np.asarray(filter_items, dtype=np.int64))
    if cols.size and (cols[0] < 0 or cols[-1] >= n_items):
        raise ShapeError(f"filter_items holds ids outside [0, {n_items})")
    extra = sp.csr_matrix((np.ones(n_users * cols.size, np.float32),
                           np.tile(cols, n_users), np.arange(n_users + 1) * cols.size),
                          shape=(n_users, n_items))
    if liked is None:
        return extra
    ones = sp.csr_matrix((np.ones(liked.nnz, np.float32), liked.indices, liked.indptr),
                         shape=liked.shape)
    out = (ones + extra).tocsr()
    out.sort_indices()
    return out


def _rank_subset(model, users, seen, N, items):
    """Top-``N`` of the sorted item subset ``items`` by exact scores of the model's final table
    (the re-rank table when it has one), skipping ``seen`` and items out of the catalogue."""
    items = np.unique(np.asarray(items, dtype=np.int64))
    if items.size == 0 or items[0] < 0 or items[-1] >= model.n_items:
        raise ShapeError(f"items must be a non-empty list of ids in [0, {model.n_items})")
    table = model.rerank if model.rerank is not None else model.items
    scores = model.users.decode(users) @ table.decode(items).T
    valid = model.items.valid_rows()
    if valid is not None:
        scores[:, ~valid[items]] = -np.inf
    if seen is not None:
        for r in range(users.size):
            row = seen.indices[seen.indptr[r]:seen.indptr[r + 1]]
            scores[r, np.isin(items, row)] = -np.inf
    return _top(scores, items, min(N, items.size))


def _similar(factors, query, N, filter_ids, subset, valid):
    scalar = np.isscalar(query)
    q = np.atleast_1d(np.asarray(query, dtype=np.int64))
    if q.size and (q.min() < 0 or q.max() >= factors.shape[0]):
        raise ShapeError(f"ids outside [0, {factors.shape[0]})")
    if subset is not None and filter_ids is not None and len(filter_ids):
        raise ShapeError("give items or filter_items, not both (as in implicit)")
    ids = np.arange(factors.shape[0]) if subset is None else \
        np.unique(np.asarray(subset, dtype=np.int64))
    norms = np.linalg.norm(factors.astype(np.float64), axis=1)
    norms[norms == 0] = 1e-10
    scores = (factors[q].astype(np.float64) @ factors[ids].T.astype(np.float64)) / \
        (norms[q][:, None] * norms[ids][None, :])
    scores = scores.astype(np.float32)
    if valid is not None:
        scores[:, ~valid[ids]] = -np.inf
    if filter_ids is not None and len(filter_ids):
        scores[:, np.isin(ids, np.asarray(filter_ids))] = -np.inf
    out_ids, out_scores = _top(scores, ids, min(positive_int(N, "N"), ids.size))
    return (out_ids[0], out_scores[0]) if scalar else (out_ids, out_scores)


def _top(scores, ids, N):
    """(ids int32 [n, N], scores float32 [n, N]) best first, ties to the lower id, -inf
    entries padded as id -1."""
    order = np.lexsort((np.broadcast_to(ids, scores.shape), -scores), axis=1)[:, :N]
    top_scores = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    top_ids = ids[order].astype(np.int32)
    top_ids[~np.isfinite(top_scores)] = -1
    return top_ids, top_scores
