"""One SGD epoch of knowledge distillation: a student factor model learns a teacher's scores.

The caller chooses the units: the logit of user ``u`` and item ``i`` is
``z = (users[u] . items[i] - centers[u]) / temperature`` for the teacher's tables and the
student's alike (cfprune.compression.distill scales the tables so that ``temperature`` is unitless).
The loss of one user, multiplied by ``temperature ** 2`` as in Hinton et al. (2015) so that the
step size means the same at every temperature, is the sum of

- **soft BCE** (weight ``bce_weight``): for each item ``i`` of the user's row of the ``pos``
  CSR and ``n_negatives`` uniformly sampled items per such item, the binary cross-entropy between
  the target ``t = (1 - label_weight) * sigmoid(z_teacher) + label_weight * y`` (``y`` is 1 on
  the row's items, 0 on the sampled ones) and ``sigmoid(z_student)``;
- **ranking distillation** (weight ``rank_weight``, Tang and Wang, KDD 2018): each of the
  teacher's top items ``top_items[u, r]`` is a positive of weight ``top_weights[r]`` (decaying
  with the rank ``r``), and each comes with ``n_negatives`` uniformly sampled negatives of weight
  1 (hard labels: ``-log sigmoid(z)`` and ``-log(1 - sigmoid(z))``).

The gradient of the scaled loss with respect to the student's raw score is
``temperature * weight * (sigmoid(z_student) - target)``; one SGD step with L2 penalty
``regularization`` updates the user row and the item row of every pair.

Users are split into contiguous spans, one per thread of :mod:`.pool` (Hogwild: threads update
shared item rows without locks; the thread count is Numba's, as the caller set it with
``numba.set_num_threads``). Each
user draws its negatives from its own generator, seeded from ``(seed, epoch, user)``, so with
one thread an epoch is a pure function of its inputs (byte-identical reruns); with several
threads the order in which item rows receive their updates varies between runs, and so do the
last bits of the result.
"""

import numpy as np
from numba import njit

from cfprune.kernels.pool import run_blocks, thread_count

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
MIX_2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, nogil=True)
def splitmix64(state):
    """(new state, 64 random bits) of the SplitMix64 generator; both uint64."""
    state = state + GOLDEN
    z = state
    z = (z ^ (z >> np.uint64(30))) * MIX_1
    z = (z ^ (z >> np.uint64(27))) * MIX_2
    return state, z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def user_stream(seed, epoch, user):
    """The uint64 generator state of ``user`` in ``epoch``: distinct for every triple."""
    state = np.uint64(seed)
    state, a = splitmix64(state)
    state, b = splitmix64(a ^ np.uint64(epoch))
    state, c = splitmix64(b ^ np.uint64(user))
    return c


@njit(cache=True, nogil=True)
def sigmoid(z):
    if z >= 0.0:
        return 1.0 / (1.0 + np.exp(-z))
    e = np.exp(z)
    return e / (1.0 + e)


@njit(cache=True, nogil=True)
def log_sigmoid(z):
    """log(sigmoid(z)) without overflow."""
    if z >= 0.0:
        return -np.log1p(np.exp(-z))
    return z - np.log1p(np.exp(z))


@njit(cache=True, nogil=True)
def dot(a, b):
    s = np.float32(0.0)
    for f in range(a.shape[0]):
        s += a[f] * b[f]
    return s


@njit(cache=True, nogil=True)
def pair_step(student_user, student_item, logit, target, weight, temperature, learning_rate,
              regularization):
    """One SGD step on the pair (``student_user``, ``student_item``, both float32 [r], updated
    in place) whose logit is ``logit``; returns the pair's loss (times ``weight * T^2``)."""
    p = sigmoid(logit)
    grad = np.float32(temperature * weight * (p - target))
    lr = np.float32(learning_rate)
    reg = np.float32(regularization)
    for f in range(student_user.shape[0]):
        pu = student_user[f]
        qi = student_item[f]
        student_user[f] = pu - lr * (grad * qi + reg * pu)
        student_item[f] = qi - lr * (grad * pu + reg * qi)
    loss = -(target * log_sigmoid(logit) + (1.0 - target) * log_sigmoid(-logit))
    return weight * temperature * temperature * loss


@njit(cache=True, nogil=True)
def soft_pair(teacher_user, teacher_items, student_user, student_items, item, label, center,
              temperature, label_weight, weight, learning_rate, regularization):
    """The soft-BCE step of one (user, item) pair; ``label`` is the hard label y."""
    teacher_logit = (dot(teacher_user, teacher_items[item]) - center) / temperature
    target = (1.0 - label_weight) * sigmoid(teacher_logit) + label_weight * label
    logit = (dot(student_user, student_items[item]) - center) / temperature
    return pair_step(student_user, student_items[item], logit, target, weight, temperature,
                     learning_rate, regularization)


def distill_epoch(teacher_users, teacher_items, student_users, student_items, pos_indptr,
                  pos_indices, top_items, top_weights, centers, temperature, bce_weight,
                  rank_weight, label_weight, n_negatives, learning_rate, regularization, seed,
                  epoch, losses):
    """One epoch over every user; updates ``student_users``/``student_items`` in place.

    teacher_users float32 [n_users, D], teacher_items float32 [n_items, D]: the teacher.
    student_users float32 [n_users, r], student_items float32 [n_items, r]: the student.
    pos_indptr int64 [n_users + 1], pos_indices int32 [nnz]: each user's items for the soft BCE.
    top_items int32 [n_users, K]: the teacher's top-K items per user, best first (-1: none).
    top_weights float32 [K]: the weight of each rank.
    centers float32 [n_users]: the raw score that maps to logit 0 for each user.
    losses float64 [n_users]: receives each user's summed loss.
    """
    args = (teacher_users, teacher_items, student_users, student_items, pos_indptr, pos_indices,
            top_items, top_weights, centers, float(temperature), float(bce_weight),
            float(rank_weight), float(label_weight), int(n_negatives), float(learning_rate),
            float(regularization), int(seed), int(epoch), losses)
    run_blocks(lambda start, stop: distill_users(start, stop, *args), student_users.shape[0],
               thread_count(None), 1)


@njit(cache=True, nogil=True)
def distill_users(start, stop, teacher_users, teacher_items, student_users, student_items,
                  pos_indptr, pos_indices, top_items, top_weights, centers, temperature,
                  bce_weight, rank_weight, label_weight, n_negatives, learning_rate,
                  regularization, seed, epoch, losses):
    """:func:`distill_epoch` for the users ``start:stop``."""
    n_items = student_items.shape[0]
    n_items_u = np.uint64(n_items)
    n_top = top_items.shape[1]
    for u in range(start, stop):
        state = user_stream(seed, epoch, u)
        teacher_user = teacher_users[u]
        student_user = student_users[u]
        center = centers[u]
        loss = 0.0
        if bce_weight > 0.0:
            for j in range(pos_indptr[u], pos_indptr[u + 1]):
                loss += soft_pair(teacher_user, teacher_items, student_user, student_items,
                                  pos_indices[j], 1.0, center, temperature, label_weight,
                                  bce_weight, learning_rate, regularization)
                for _ in range(n_negatives):
                    state, bits = splitmix64(state)
                    item = np.int64(bits % n_items_u)
                    loss += soft_pair(teacher_user, teacher_items, student_user, student_items,
                                      item, 0.0, center, temperature, label_weight, bce_weight,
                                      learning_rate, regularization)
        if rank_weight > 0.0:
            for r in range(n_top):
                item = top_items[u, r]
                if item < 0:
                    break
                logit = (dot(student_user, student_items[item]) - center) / temperature
                loss += pair_step(student_user, student_items[item], logit, 1.0,
                                  rank_weight * top_weights[r], temperature, learning_rate,
                                  regularization)
                for _ in range(n_negatives):
                    state, bits = splitmix64(state)
                    neg = np.int64(bits % n_items_u)
                    logit = (dot(student_user, student_items[neg]) - center) / temperature
                    loss += pair_step(student_user, student_items[neg], logit, 0.0, rank_weight,
                                      temperature, learning_rate, regularization)
        losses[u] = loss
