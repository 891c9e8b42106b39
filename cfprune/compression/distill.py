"""Knowledge distillation: ``distill:rank=16`` trains a rank-r student on the teacher's scores.

The student is an ordinary :class:`~cfprune.models.factors.FactorModel` with dense float32 tables
of ``rank`` columns, so every later step (``distill:rank=16|int8``) and every retrieval path
applies to it. It starts from the joint low-rank truncation of the teacher
(:func:`cfprune.compression.lowrank.joint_truncation`, the Frobenius-optimal rank-r approximation of
``U V^T``) and is then trained by SGD (:mod:`cfprune.kernels.distill`) to match the part of the
teacher's score matrix that ranking depends on.

Logits. ALS scores are not logits, so scores are mapped to logits per user:
``z(u, i) = (s(u, i) - c_u) / (temperature * spread)``, where ``c_u`` is the teacher's score of
its ``top``-th best item for ``u`` (seen items excluded when interactions are given) and
``spread`` is the mean over users of the gap between the teacher's best and ``top``-th best
score. At ``temperature=1`` a user's top-``top`` items of the teacher sit at logits 0..1 and the
bulk of the catalogue well below 0: the sigmoid is steep where the top of the ranking is decided.

Losses (``loss=``):

- ``bce`` (default): soft binary cross-entropy between ``sigmoid(z_teacher)`` and
  ``sigmoid(z_student)`` on each user's positives and ``negatives`` uniformly sampled items per
  positive. ``positives=top`` (default) takes the teacher's top-``top`` unseen items,
  ``observed`` the items of ``interactions`` (the teacher's top when no interactions are given),
  ``both`` their union. ``label_weight`` mixes the hard label (1 for positives, 0 for sampled
  items) into the target;
- ``rank``: ranking distillation (Tang and Wang, KDD 2018, "Ranking Distillation"): the teacher's
  top-``top`` items are positives with weight ``w_r ∝ exp(-r / decay)`` (r = 1..top, normalised to
  mean 1), each with ``negatives`` uniformly sampled hard negatives;
- ``mix``: ``(1 - mix) * bce + mix * rank``.

The defaults come from ``benchmarks/bench_distill.py`` (validation split of MovieLens 100k): the
teacher's own top items as BCE positives keep more of its ranking than the observed items, which
retrieval filters out anyway; the rank loss alone, whose hard labels pull the student away from
the teacher's scores, keeps less of it than the soft BCE. SGD was measured as enough: from the
truncation the loss moves little, and the step costs seconds on MovieLens 1M.

Determinism: every user draws its samples from its own generator seeded from
``(seed, epoch, user)``, so with ``num_threads=1`` (the default) a run is byte-identical to a rerun
with the same seed. With more threads the users are trained in parallel and update shared item rows without
locks (Hogwild); the sampling is unchanged but the order of the item updates, hence the last bits
of the factors (and rarely a tie in the ranking), varies between runs.
"""

from __future__ import annotations


import numba
import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from ..errors import SpecError
from ..kernels.distill import distill_epoch
from ..tables import DenseTable
from .base import Compressor, Param
from .lowrank import joint_truncation


class Distill(Compressor):
    """Train a student factor model of rank ``rank`` on the teacher's ranking."""

    name = "distill"
    schema = {
        "rank": Param(int, 16, "rank of the student", low=1),
        "init": Param(str, "lowrank", "student start: lowrank (joint truncation of the "
                      "teacher) or random (seeded normal)", choices=("lowrank", "random")),
        "loss": Param(str, "bce", "bce: soft labels; rank: rank-weighted top items "
                      "(Tang & Wang 2018); mix: (1-mix)*bce + mix*rank",
                      choices=("bce", "rank", "mix")),
        "mix": Param(float, 0.5, "weight of the rank loss when loss=mix", low=0.0, high=1.0),
        "top": Param(int, 20, "teacher's top-N per user: rank-loss positives, logit centre",
                     low=1),
        "decay": Param(float, 10.0, "lambda of the rank weights exp(-r/lambda)", low=0.0,
                       low_open=True),
        "temperature": Param(float, 1.0, "logit = (score - centre) / (temperature * spread)",
                             low=0.0, low_open=True),
        "positives": Param(str, "top", "bce positives: observed (the interactions), top (the "
                           "teacher's top-N unseen) or both; observed needs interactions",
                           choices=("observed", "top", "both")),
        "negatives": Param(int, 4, "uniformly sampled items per positive", low=0),
        "label_weight": Param(float, 0.0, "share of the hard label in the bce target", low=0.0,
                              high=1.0),
        "iterations": Param(int, 20, "epochs: passes over the users", low=0),
        "learning_rate": Param(float, 0.05, "SGD learning rate (decays linearly to a tenth)",
                               low=0.0, low_open=True),
        "regularization": Param(float, 1e-4, "L2 penalty per SGD step", low=0.0),
        "seed": Param(int, 0, "seed of the sampling", low=0),
        "num_threads": Param(int, 1, "Numba threads (1: byte-identical reruns; 0: all cores, "
                                     "faster, last bits vary)", low=0),
    }
    renamed = {"epochs": "iterations", "lr": "learning_rate", "reg": "regularization",
               "threads": "num_threads"}

    def fitted_state(self, before, after, info, learned):
        """Distillation trains the student on the teacher's scores: it cannot encode a new item
        without retraining."""
        from .fitted import FittedStep
        return FittedStep(self.name, self.spec_string(),
                          {"unsupported": "distillation cannot encode a new item without "
                                          "retraining the student; refit with every item, or "
                                          "use lowrank:rank=... instead"})

    def _compress(self, model, interactions):
        if model.rerank is not None:
            raise SpecError("distill: the teacher has a re-rank table; distil first, then add "
                            "pq:...,rerank=...")
        if model.items.valid_rows() is not None:
            raise SpecError("distill: the teacher's item table has rows pruned out of the "
                            "catalogue; put distill before prune-rows")
        if self.rank > model.dim:
            raise SpecError(f"distill: rank={self.rank} exceeds the teacher's dimension "
                            f"{model.dim}")
        teacher_users = model.users.decode()
        teacher_items = model.items.decode()
        top_items, top_scores = teacher_top(model, interactions, self.top)
        centers, spread = logit_frame(top_scores)
        users, items = self._initial_student(teacher_users, teacher_items, spread)
        positives = bce_positives(top_items, interactions, self.positives, model.n_items)
        users, items, history = train_student(
            teacher_users, teacher_items, users, items, positives, top_items, centers, spread,
            bce_weight=self._bce_weight(), rank_weight=self._rank_weight(),
            label_weight=self.label_weight, decay=self.decay, temperature=self.temperature,
            negatives=self.negatives, epochs=self.iterations, lr=self.learning_rate,
            reg=self.regularization, seed=self.seed, threads=self.num_threads)
        info = {"rank_used": int(users.shape[1]), "dim_before": int(model.dim),
                "spread": spread, "loss_history": history}
        return model.replace(users=DenseTable(users), items=DenseTable(items)), info, {}

    def _initial_student(self, teacher_users, teacher_items, spread):
        if self.init == "lowrank":
            users, items, _, _, _ = joint_truncation(teacher_users, teacher_items, self.rank)
            return users, items
        rng = np.random.Generator(np.random.PCG64(self.seed))
        scale = 0.1 * np.sqrt(spread / self.rank)
        return (rng.normal(0.0, scale, (teacher_users.shape[0], self.rank)),
                rng.normal(0.0, scale, (teacher_items.shape[0], self.rank)))

    def _bce_weight(self):
        return {"bce": 1.0, "rank": 0.0, "mix": 1.0 - self.mix}[self.loss]

    def _rank_weight(self):
        return {"bce": 0.0, "rank": 1.0, "mix": self.mix}[self.loss]


def distill(teacher, rank=16, interactions=None, **params):
    """A rank-``rank`` student of ``teacher`` (see :class:`Distill` for the parameters).

    teacher : FactorModel; interactions : Interactions or CSR [n_users, n_items], optional (the
    training interactions: BCE positives and the seen items left out of the teacher's top list).
    Returns a FactorModel with dense float32 tables of ``rank`` columns.
    """
    return Distill(rank=rank, **params).fit(teacher, interactions)


def teacher_top(model, interactions, n):
    """The teacher's top-``n`` unseen items per user: (ids int32 [n_users, n] (-1 pads),
    scores float32 [n_users, n]), best first; seen items are those of ``interactions`` (CSR or
    None)."""
    seen = interactions if interactions is not None else \
        sp.csr_matrix((model.n_users, model.n_items), dtype=np.float32)
    return model.recommend(np.arange(model.n_users), seen, k=n,
                           filter_seen=interactions is not None)


def logit_frame(top_scores):
    """(centres float32 [n_users], spread float): each user's score at the last valid rank of
    its top list, and the mean gap between best and that score (1.0 when every gap is 0)."""
    valid = np.isfinite(top_scores)
    n_valid = valid.sum(axis=1)
    rows = np.arange(top_scores.shape[0])
    last = np.maximum(n_valid - 1, 0)
    centers = np.where(n_valid > 0, top_scores[rows, last], 0.0).astype(np.float64)
    best = np.where(n_valid > 0, top_scores[:, 0], 0.0)
    gaps = (best - centers)[n_valid > 0]
    spread = float(gaps.mean()) if gaps.size and gaps.mean() > 0 else 1.0
    return centers, spread


def rank_weights(n, decay):
    """float32 [n]: ``exp(-r / decay)`` for r = 1..n, scaled to mean 1."""
    w = np.exp(-np.arange(1, n + 1, dtype=np.float64) / decay)
    return (w / w.mean()).astype(np.float32) if n else w.astype(np.float32)


def bce_positives(top_items, interactions, which, n_items):
    """CSR [n_users, n_items] of each user's BCE positives: the teacher's top items, the
    observed ``interactions`` (CSR) or both; the top items alone when no interactions."""
    n_users = top_items.shape[0]
    valid = top_items >= 0
    rows = np.repeat(np.arange(n_users), valid.sum(axis=1))
    top = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, top_items[valid])),
                        shape=(n_users, n_items))
    if interactions is None or which == "top":
        return top
    observed = sp.csr_matrix(interactions, dtype=np.float32)
    if which == "observed":
        return observed
    both = (observed + top).tocsr()
    both.sort_indices()
    return both




def train_student(teacher_users, teacher_items, users, items, positives, top_items, centers,
                  spread, *, bce_weight, rank_weight, label_weight, decay, temperature,
                  negatives, epochs, lr, reg, seed, threads):
    """SGD epochs of :func:`cfprune.kernels.distill.distill_epoch` from the initial student
    ``users`` [n_users, r], ``items`` [n_items, r]. Returns (users float32, items float32,
    mean loss per user of each epoch)."""
    # work in units of `spread` (scores divided by it), split evenly between the two sides of
    # the student so that its user and item rows keep comparable norms
    root = np.sqrt(spread)
    t_users = np.ascontiguousarray(teacher_users / spread, dtype=np.float32)
    t_items = np.ascontiguousarray(teacher_items, dtype=np.float32)
    s_users = np.ascontiguousarray(users / root, dtype=np.float32)
    s_items = np.ascontiguousarray(items / root, dtype=np.float32)
    scaled_centers = np.ascontiguousarray(centers / spread, dtype=np.float32)
    indptr = np.ascontiguousarray(positives.indptr, dtype=np.int64)
    indices = np.ascontiguousarray(positives.indices, dtype=np.int32)
    top = np.ascontiguousarray(top_items, dtype=np.int32)
    weights = rank_weights(top.shape[1], decay)
    losses = np.zeros(s_users.shape[0], dtype=np.float64)
    history = []
    previous = numba.get_num_threads()
    numba.set_num_threads(threads or numba.config.NUMBA_NUM_THREADS)
    try:
        bar = tqdm(range(epochs), desc="distill", unit="epoch", disable=None)
        for epoch in bar:
            step = lr * (1.0 - 0.9 * epoch / max(epochs - 1, 1))
            distill_epoch(t_users, t_items, s_users, s_items, indptr, indices, top, weights,
                          scaled_centers, float(temperature), float(bce_weight),
                          float(rank_weight), float(label_weight), int(negatives), float(step),
                          float(reg), int(seed), int(epoch), losses)
            history.append(float(losses.mean()))
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    finally:
        numba.set_num_threads(previous)
    return (np.ascontiguousarray(s_users * root, dtype=np.float32),
            np.ascontiguousarray(s_items * root, dtype=np.float32), history)
