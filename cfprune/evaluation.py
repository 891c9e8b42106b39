"""evaluate(): streamed ranking metrics of a model on a test split, with per-user arrays.

The users are scored in batches: each batch's top-``max(ks)`` comes from ``model.recommend`` (seen
training items filtered) and goes straight to the Numba metric kernels
(:mod:`cfprune.kernels.metrics`), so memory is the model plus one batch, never users x items.

One code path serves one process and a Dask cluster: :func:`plan_evaluation` validates the inputs
once (:class:`EvaluationPlan`), :func:`evaluate_block` turns a block of users into a
:class:`BlockState` (per-user values, relevant counts, the coverage first-position array and, if
asked, the ranked lists), and :func:`summarise` combines any set of block states covering the
planned users. :func:`evaluate` loops over the blocks here;
:func:`cfprune.distributed.evaluate_distributed` maps them over Dask workers.

Metric names (``k`` in ``ks``; the list is :data:`cfprune.metric_names.METRICS`), each the mean
over the evaluated users unless said otherwise:

=========================  ===================================================================
``recall@k``               hits / |relevant|
``truncated_recall@k``     hits / min(k, |relevant|) (Liang et al. 2018)
``precision@k``            hits / k
``ndcg@k``                 binary-relevance nDCG, ideal DCG over min(k, |relevant|) hits
``map@k``                  mean of AP@k = sum of precision at each hit / min(k, |relevant|)
``hit_rate@k``             share of users with at least one hit
``mrr@k``                  mean reciprocal rank of the first hit within the top k (0 if none)
``auc@k``                  ``implicit``'s top-k limited AUC
``pooled_precision@k``     sum of hits / sum of min(k, |relevant|) over users
``pooled_recall@k``        sum of hits / sum of |relevant| over users
``coverage@k``             distinct items in the evaluated users' top-k lists / n_items
``tail_recall@k``          tail test items found / tail test items, averaged over users with at
                           least one tail test item (tail: every item outside the head, the
                           shortest prefix of items by training count, ties lower id first,
                           whose counts reach ``tail_share`` of all training interactions)
``overlap@k``              |top k ∩ baseline top k| / valid baseline ids in the top k (only with
                           ``baseline``), averaged over users with a non-empty baseline list
=========================  ===================================================================

``implicit.evaluation.ranking_metrics_at_k(model, train, test, K)`` returns, in these names,
``precision`` = ``pooled_precision@K``, ``map`` = ``map@K``, ``ndcg`` = ``ndcg@K`` and
``auc`` = ``auc@K`` (see :data:`IMPLICIT_NAMES` and :func:`implicit_metrics`).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np
from .errors import DataError, ShapeError
from .interactions import as_csr
from .kernels import metrics as mk
from .kernels.pool import thread_count
from .metric_names import METRICS
from .progress import Progress

DEFAULT_BATCH_SIZE = 2048
PROGRESS_INTERVAL = 10.0  # seconds between two progress lines off a terminal
_NO_BASELINE = np.zeros((0, 0), dtype=np.int32)

# per-user metric name -> row of the kernel's value array
PER_USER_METRICS = {
    "hits": mk.HITS,
    "recall": mk.RECALL,
    "truncated_recall": mk.TRUNCATED_RECALL,
    "precision": mk.PRECISION,
    "ndcg": mk.NDCG,
    "map": mk.AVERAGE_PRECISION,
    "hit_rate": mk.HIT_RATE,
    "mrr": mk.RECIPROCAL_RANK,
    "auc": mk.AUC,
    "tail_recall": mk.TAIL_RECALL,
    "overlap": mk.OVERLAP,
}

# implicit.evaluation.ranking_metrics_at_k key -> cfprune metric name (format with k)
IMPLICIT_NAMES = {
    "precision": "pooled_precision@{k}",
    "map": "map@{k}",
    "ndcg": "ndcg@{k}",
    "auc": "auc@{k}",
}


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured.

    Attributes
    ----------
    metrics : dict[str, float]
        Flat ``name@k`` keys (see the module docstring).
    per_user : dict[str, ndarray float64 [n_users]]
        ``name@k`` for every per-user metric (``hits``, ``recall``, ``truncated_recall``,
        ``precision``, ``ndcg``, ``map``, ``hit_rate``, ``mrr``, ``auc``, ``tail_recall`` and,
        with a baseline, ``overlap``) plus ``n_relevant`` and ``n_tail_relevant``; entry ``i``
        belongs to user ``users[i]``; NaN where the metric is undefined for that user.
    users : ndarray int64 [n_users]
        The evaluated users (test rows with at least one item), ascending.
    ks : tuple[int, ...]
    n_users, n_items : int
    tail_share : float
    ranked : ndarray int32 [n_users, max(ks)] or None
        Each evaluated user's ranked ids (kept with ``evaluate(..., keep_ranked=True)``), so the
        result can serve as another evaluation's ``baseline`` without scoring again.
    """

    metrics: dict
    per_user: dict
    users: np.ndarray
    ks: tuple
    n_users: int
    n_items: int
    tail_share: float
    info: dict = field(default_factory=dict)
    ranked: np.ndarray | None = None

    def __getitem__(self, name):
        return self.metrics[name]

    def __contains__(self, name):
        return name in self.metrics

    def as_dict(self):
        """A flat JSON-able dict: the metrics plus ``n_users``, ``n_items``, ``ks``,
        ``tail_share``."""
        return {"n_users": self.n_users, "n_items": self.n_items, "ks": list(self.ks),
                "tail_share": self.tail_share, **self.metrics}


def implicit_metrics(result, k):
    """The figures ``implicit.evaluation.ranking_metrics_at_k(..., K=k)`` reports, by its names:
    ``{"precision", "map", "ndcg", "auc"}``."""
    return {name: result.metrics[key.format(k=k)] for name, key in IMPLICIT_NAMES.items()}


def tail_items(train_counts, tail_share):
    """bool [n_items]: True for items outside the head.

    The head is the shortest prefix of the items sorted by training count (descending, ties by
    lower id) whose counts sum to at least ``tail_share`` of all training interactions.
    """
    counts = np.asarray(train_counts, dtype=np.int64)
    if not 0.0 <= tail_share <= 1.0:
        raise DataError(f"tail_share={tail_share}; expected a share in [0, 1]")
    order = np.lexsort((np.arange(counts.size), -counts))
    cumulative = np.cumsum(counts[order])
    target = tail_share * (cumulative[-1] if counts.size else 0)
    n_head = int(np.searchsorted(cumulative, target, side="left")) + 1 if target > 0 else 0
    tail = np.ones(counts.size, dtype=np.bool_)
    tail[order[:n_head]] = False
    return tail


@dataclass
class EvaluationPlan:
    """What every block of one evaluation shares: validated once, by :func:`plan_evaluation`.

    Attributes
    ----------
    users : ndarray int64 [n]
        The users to evaluate (ascending, each with at least one test item).
    ks : ndarray int64 [n_ks]
        Cut-offs, strictly increasing; the models are asked for ``max_k = ks[-1]`` items.
    n_items : int
    tail : ndarray bool [n_items]
        :func:`tail_items` of the training counts.
    tail_share : float
    test_indptr : ndarray int64 [n_test_rows + 1]; test_indices : ndarray int32 [nnz]
        The test CSR, indices sorted within each row.
    with_overlap : bool
        A baseline is compared (``overlap@k``).
    keep_ranked : bool
        Blocks return their ranked lists.
    """

    users: np.ndarray
    ks: np.ndarray
    n_items: int
    tail: np.ndarray
    tail_share: float
    test_indptr: np.ndarray
    test_indices: np.ndarray
    with_overlap: bool
    keep_ranked: bool

    @property
    def max_k(self):
        return int(self.ks[-1])


@dataclass
class BlockState:
    """The partial metric state of one block of users, as :func:`evaluate_block` returns it.

    Attributes
    ----------
    users : ndarray int64 [n_block]
        The block's users, a slice of ``plan.users``.
    values : ndarray float64 [N_METRICS, n_ks, n_block]
        Per-user metric values (rows: the constants of :mod:`cfprune.kernels.metrics`).
    n_relevant, n_tail_relevant : ndarray int64 [n_block]
    first_position : ndarray int64 [n_items]
        Best rank each item reached in the block's lists (``max_k`` if none); blocks combine by
        element-wise minimum.
    ranked : ndarray int32 [n_block, max_k] or None
        The block's ranked ids (with ``plan.keep_ranked``).
    """

    users: np.ndarray
    values: np.ndarray
    n_relevant: np.ndarray
    n_tail_relevant: np.ndarray
    first_position: np.ndarray
    ranked: np.ndarray | None = None


def evaluate(model, train, test, ks=(10, 20, 50), *, batch_size=None, num_threads=None,
             baseline=None, tail_share=0.8, users=None, show_progress=None, keep_ranked=False):
    """Ranking metrics of ``model`` on ``test``, filtering the items of ``train``.

    The users are cut into blocks of ``batch_size``; each block goes through
    :func:`evaluate_block` and the block states through :func:`summarise`, the same two steps
    :func:`cfprune.distributed.evaluate_distributed` runs on a Dask cluster.

    Parameters
    ----------
    model : FactorModel or any object with ``recommend(users, user_items, k, filter_seen,
            num_threads=...) -> (ids int32 [n, k], scores float32 [n, k])`` and ``n_users``
    train, test : Interactions or scipy.sparse matrix [n_users, n_items]
        The training interactions (filtered out of the recommendations, and the item counts that
        define the tail) and the held-out interactions (every stored pair is relevant).
    ks : int or sequence of int
        Cut-offs; the models are asked for ``max(ks)`` items.
    batch_size : int or None
        Users per block (default 2048).
    num_threads : int or None
        Threads for ``recommend`` and the metric kernels: 0 means every core; default Numba's
        thread count (the number of cores unless ``NUMBA_NUM_THREADS`` says otherwise).
    baseline : model, EvaluationResult or None
        Adds ``overlap@k`` between the baseline's top-k lists and ``model``'s. A model is asked
        for its lists batch by batch (scoring a second model); an :class:`EvaluationResult`
        made with ``keep_ranked=True`` (at least ``max(ks)`` wide) lends its stored lists, so a
        sweep scores the baseline once. Users absent from that result get NaN overlap.
    tail_share : float
        The share of training interactions held by the head items (see ``tail_recall@k``).
    users : int array or None
        Evaluate only these users (those of them with a test item).
    show_progress : bool or None
        False: silent; otherwise a tqdm bar on a terminal and, off one, a line at most every
        :data:`PROGRESS_INTERVAL` seconds (:class:`cfprune.progress.Progress`).
    keep_ranked : bool
        Keep every evaluated user's top-``max(ks)`` ids in ``result.ranked``.

    Returns
    -------
    EvaluationResult
    """
    train_csr = as_csr(train, "train")
    plan = plan_evaluation(model, train_csr, test, ks, baseline=baseline, tail_share=tail_share,
                           users=users, keep_ranked=keep_ranked)
    blocks = user_blocks(plan.users, DEFAULT_BATCH_SIZE if batch_size is None else batch_size)

    def states():
        with Progress("evaluate", plan.users.size, unit="user", show=show_progress,
                      min_interval=PROGRESS_INTERVAL) as progress:
            for block in blocks:
                yield evaluate_block(model, train_csr, plan, block, baseline=baseline,
                                     num_threads=num_threads)
                progress.step("users", n=block.size)

    return summarise(states(), plan)


def plan_evaluation(model, train, test, ks=(10, 20, 50), *, baseline=None, tail_share=0.8,
                    users=None, keep_ranked=False):
    """Validate the inputs of an evaluation once and return its :class:`EvaluationPlan`.

    The arguments are those of :func:`evaluate`; ``train`` and ``test`` are Interactions or
    scipy.sparse matrices of one shape. Raises DataError / ShapeError naming what is wrong.
    """
    train_csr = as_csr(train, "train")
    test_csr = as_csr(test, "test")
    if train_csr.shape != test_csr.shape:
        raise ShapeError(f"train has shape {train_csr.shape} but test has {test_csr.shape}; both "
                         f"must be users x items of one dataset")
    n_items = test_csr.shape[1]
    ks_array = _cut_offs(ks)
    max_k = int(ks_array[-1])
    n_model_users = _check_model(model, "model", n_items)
    if isinstance(baseline, EvaluationResult):
        _check_stored_baseline(baseline, max_k, n_items)
    elif baseline is not None:
        n_model_users = min(n_model_users, _check_model(baseline, "baseline", n_items))
    return EvaluationPlan(
        users=_evaluated_users(test_csr, n_model_users, users), ks=ks_array, n_items=int(n_items),
        tail=tail_items(np.bincount(train_csr.indices, minlength=n_items), tail_share),
        tail_share=float(tail_share),
        test_indptr=np.ascontiguousarray(test_csr.indptr, dtype=np.int64),
        test_indices=np.ascontiguousarray(test_csr.indices, dtype=np.int32),
        with_overlap=baseline is not None, keep_ranked=bool(keep_ranked))


def user_blocks(users, block_size):
    """Consecutive slices of ``users`` (int64 [n]) of ``block_size`` users (the last shorter)."""
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral) or \
            block_size < 1:
        raise DataError(f"batch_size={block_size!r}; expected a positive number of users")
    return [users[start:start + block_size] for start in range(0, users.size, int(block_size))]


def evaluate_block(model, train, plan, users, *, baseline=None, num_threads=None):
    """Score one block of users and compute their metric state.

    Parameters
    ----------
    model : as in :func:`evaluate`
    train : scipy.sparse CSR [n_users, n_items]
        The training matrix (``as_csr`` of it); each user's row is filtered from its list.
    plan : EvaluationPlan
    users : int64 [n_block]
        Users of ``plan.users`` (any subset; ascending in practice).
    baseline : model, EvaluationResult or None
        As in :func:`evaluate`; must be given when ``plan.with_overlap``.
    num_threads : int or None
        Threads for ``recommend`` and the metric kernel (0: every core).

    Returns
    -------
    BlockState
    """
    users = np.ascontiguousarray(users, dtype=np.int64)
    if plan.with_overlap and baseline is None:
        raise DataError("the evaluation plan compares a baseline but evaluate_block got none")
    threads = {} if num_threads is None else {"num_threads": int(num_threads)}
    seen = train[users]
    ranked = _recommend(model, users, seen, plan.max_k, threads, "model")
    if not plan.with_overlap:
        base = _NO_BASELINE
    elif isinstance(baseline, EvaluationResult):
        base = _stored_lists(baseline, users)
    else:
        base = _recommend(baseline, users, seen, plan.max_k, threads, "baseline")
    first_position = np.full(plan.n_items, plan.max_k, dtype=np.int64)
    values, n_relevant, n_tail_relevant = mk.ranking_metrics(
        ranked, users.astype(np.int32), plan.test_indptr, plan.test_indices, plan.ks,
        plan.n_items, plan.tail, base, n_workers=thread_count(num_threads))
    mk.mark_first_positions(ranked, first_position)
    return BlockState(users=users, values=values, n_relevant=n_relevant,
                      n_tail_relevant=n_tail_relevant, first_position=first_position,
                      ranked=ranked if plan.keep_ranked else None)


def summarise(states, plan):
    """Combine block states into the :class:`EvaluationResult` of ``plan``.

    ``states`` is any iterable of :class:`BlockState` (consumed once, in any order) whose users
    together are exactly ``plan.users``; per-user arrays are placed by user, coverage positions
    combined by minimum. Raises DataError when a user is missing or evaluated twice.
    """
    users = plan.users
    n = users.size
    max_k = plan.max_k
    values = np.empty((mk.N_METRICS, plan.ks.size, n))
    n_relevant = np.empty(n, dtype=np.int64)
    n_tail_relevant = np.empty(n, dtype=np.int64)
    first_position = np.full(plan.n_items, max_k, dtype=np.int64)
    ranked = np.empty((n, max_k), dtype=np.int32) if plan.keep_ranked else None
    filled = np.zeros(n, dtype=np.int64)
    for state in states:
        rows = np.searchsorted(users, state.users)
        if np.any(rows >= n) or not np.array_equal(users[np.minimum(rows, n - 1)], state.users):
            raise DataError("a block state holds users outside the evaluation plan")
        values[:, :, rows] = state.values
        n_relevant[rows] = state.n_relevant
        n_tail_relevant[rows] = state.n_tail_relevant
        np.minimum(first_position, state.first_position, out=first_position)
        if ranked is not None:
            ranked[rows] = state.ranked
        filled[rows] += 1
    if not np.all(filled == 1):
        missing = np.flatnonzero(filled == 0)
        twice = np.flatnonzero(filled > 1)
        raise DataError(f"the block states cover the planned users unevenly: {missing.size} "
                        f"missing (e.g. {users[missing[:5]].tolist()}), {twice.size} repeated "
                        f"(e.g. {users[twice[:5]].tolist()})")
    return _result(values, n_relevant, n_tail_relevant, first_position, plan, ranked)


def _result(values, n_relevant, n_tail_relevant, first_position, plan, ranked):
    ks = plan.ks
    n_items = plan.n_items
    with_overlap = plan.with_overlap
    metrics = {}
    per_user = {"n_relevant": n_relevant.astype(np.float64),
                "n_tail_relevant": n_tail_relevant.astype(np.float64)}
    for j, k in enumerate(ks.tolist()):
        for name, row in PER_USER_METRICS.items():
            if name == "overlap" and not with_overlap:
                continue
            per_user[f"{name}@{k}"] = values[row, j]
        hits = values[mk.HITS, j].sum()
        for name in METRICS:
            key = f"{name}@{k}"
            if name == "coverage":
                metrics[key] = float(np.count_nonzero(first_position < k)) / n_items \
                    if n_items else float("nan")
            elif name == "pooled_precision":
                metrics[key] = _ratio(hits, np.minimum(n_relevant, k).sum())
            elif name == "pooled_recall":
                metrics[key] = _ratio(hits, n_relevant.sum())
            elif key in per_user:       # overlap only with a baseline
                metrics[key] = _mean_defined(per_user[key])
    info = {"n_tail_items": int(plan.tail.sum()),
            "n_tail_users": int(np.count_nonzero(n_tail_relevant))}
    return EvaluationResult(metrics=metrics, per_user=per_user, users=plan.users,
                            ks=tuple(ks.tolist()), n_users=int(plan.users.size),
                            n_items=int(n_items), tail_share=plan.tail_share, info=info,
                            ranked=ranked)


def _mean_defined(x):
    defined = x[~np.isnan(x)]
    return float(defined.mean()) if defined.size else float("nan")


def _ratio(a, b):
    return float(a) / float(b) if b else float("nan")


def _cut_offs(ks):
    arr = np.unique(np.atleast_1d(np.asarray(ks)))
    if arr.size == 0 or arr.dtype.kind not in "iu" or arr[0] < 1:
        raise DataError(f"ks={ks!r}; expected one or more positive integer cut-offs")
    return np.ascontiguousarray(arr, dtype=np.int64)


def _check_model(model, name, n_items):
    if not hasattr(model, "recommend"):
        raise DataError(f"{name} has no recommend() method: {type(model).__name__}")
    model_items = getattr(model, "n_items", None)
    if model_items is not None and model_items != n_items:
        raise ShapeError(f"{name} scores {model_items} items but the interaction matrices have "
                         f"{n_items} item columns")
    n_users = getattr(model, "n_users", None)
    if n_users is None:
        raise DataError(f"{name} has no n_users attribute: {type(model).__name__}")
    return int(n_users)


def _evaluated_users(test_csr, n_model_users, users):
    """int64 [n]: ascending users < n_model_users with at least one test item."""
    counts = np.diff(test_csr.indptr)
    has_test = np.flatnonzero(counts[:n_model_users] > 0)
    if users is None:
        return has_test.astype(np.int64)
    users = np.unique(np.asarray(users, dtype=np.int64))
    if users.size and (users[0] < 0 or users[-1] >= test_csr.shape[0]):
        raise DataError(f"users holds ids outside [0, {test_csr.shape[0]}): "
                        f"{users[0]}..{users[-1]}")
    return np.intersect1d(users, has_test).astype(np.int64)


def _recommend(model, batch, seen, k, threads, name):
    ids, _ = model.recommend(batch, seen, k=k, filter_seen=True, **threads)
    ids = np.asarray(ids)
    if ids.shape != (batch.size, k):
        raise ShapeError(f"{name}.recommend returned ids of shape {ids.shape}, expected "
                         f"({batch.size}, {k})")
    return np.ascontiguousarray(ids, dtype=np.int32)


def _check_stored_baseline(baseline, max_k, n_items):
    if baseline.ranked is None:
        raise DataError("the baseline EvaluationResult holds no ranked lists; evaluate the "
                        "baseline with keep_ranked=True")
    if baseline.ranked.shape[1] < max_k or baseline.n_items != n_items:
        raise ShapeError(f"the baseline EvaluationResult ranked {baseline.ranked.shape[1]} of "
                         f"{baseline.n_items} items per user; expected at least {max_k} of "
                         f"{n_items}")


def _stored_lists(baseline, batch):
    """int32 [len(batch), max_k]: the baseline's stored lists for ``batch`` (-1 rows for users
    it did not evaluate)."""
    pos = np.minimum(np.searchsorted(baseline.users, batch), max(baseline.users.size - 1, 0))
    found = baseline.users[pos] == batch if baseline.users.size else np.zeros(batch.size, bool)
    lists = np.full((batch.size, baseline.ranked.shape[1]), -1, dtype=np.int32)
    lists[found] = baseline.ranked[pos[found]]
    return lists
