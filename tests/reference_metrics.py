"""Brute-force NumPy references for ranking and its metrics (small data only).

Written from the definitions, with plain Python loops over users and dense score rows; nothing
here imports cfprune's kernels.
"""

import math

import numpy as np


def topk_reference(user_factors, item_factors, users, train_dense, k):
    """Top-k by dense scores: higher score first, then lower item id; items with a non-zero in
    ``train_dense[u]`` skipped; fewer than k eligible items padded with id -1, score -inf.

    Returns ids int32 [n, k], scores float32 [n, k]. Scores are computed in float64 and rounded to
    float32 once, so integer-valued factors give exact (and tie-rich) scores.
    """
    n_items = item_factors.shape[0]
    ids = np.full((len(users), k), -1, dtype=np.int32)
    scores = np.full((len(users), k), -np.inf, dtype=np.float32)
    for row, u in enumerate(users):
        s = (np.asarray(item_factors, np.float64) @ np.asarray(user_factors[u], np.float64))
        s = s.astype(np.float32)
        eligible = [i for i in range(n_items) if train_dense[u, i] == 0]
        eligible.sort(key=lambda i: (-float(s[i]), i))
        for p, i in enumerate(eligible[:k]):
            ids[row, p] = i
            scores[row, p] = s[i]
    return ids, scores


def user_metrics_reference(ranked_row, relevant, k, n_items, tail=None, baseline_row=None):
    """Every per-user metric at cut-off k for one user.

    ranked_row: item ids best first (-1 padding), any length (positions past its end are
    padding); relevant: set of test items. Returns a dict of floats (NaN where undefined).
    """
    top = [int(i) for i in list(ranked_row)[:k]]
    top += [-1] * (k - len(top))
    flags = [i >= 0 and i in relevant for i in top]
    hits = sum(flags)
    n_rel = len(relevant)
    out = {"hits": float(hits), "precision": hits / k, "hit_rate": float(hits > 0)}
    first = next((p for p, f in enumerate(flags) if f), None)
    out["mrr"] = 0.0 if first is None else 1.0 / (first + 1)
    if n_rel:
        m = min(k, n_rel)
        out["recall"] = hits / n_rel
        out["truncated_recall"] = hits / m
        dcg = sum(1.0 / math.log2(p + 2) for p, f in enumerate(flags) if f)
        idcg = sum(1.0 / math.log2(p + 2) for p in range(m))
        out["ndcg"] = dcg / idcg
        ap = 0.0
        for p, f in enumerate(flags):
            if f:
                ap += sum(flags[:p + 1]) / (p + 1)
        out["map"] = ap / m
    else:
        for name in ("recall", "truncated_recall", "ndcg", "map"):
            out[name] = math.nan
    out["auc"] = auc_reference(flags, n_rel, n_items)
    if tail is not None:
        tail_rel = [i for i in relevant if tail[i]]
        tail_hits = sum(1 for i in top if i >= 0 and i in relevant and tail[i])
        out["tail_hits"] = float(tail_hits)
        out["tail_recall"] = tail_hits / len(tail_rel) if tail_rel else math.nan
    if baseline_row is not None:
        base = [int(i) for i in list(baseline_row)[:k] if i >= 0]
        shared = set(i for i in top if i >= 0) & set(base)
        out["overlap"] = len(shared) / len(base) if base else math.nan
    return out


def auc_reference(flags, n_pos, n_items):
    """implicit's top-k AUC, from its definition: the probability that a positive outranks a
    negative, where the top-k list orders the items it holds, every unranked item sits below
    them, and unranked positives tie (count half) with unranked negatives.

    flags: hit flag per top-k position (padding counts as a ranked negative, as in implicit).
    """
    n_neg = n_items - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranked_pos = sum(flags)
    ranked_neg = len(flags) - ranked_pos
    unranked_pos = n_pos - ranked_pos
    unranked_neg = n_neg - ranked_neg
    pairs = 0.0
    pos_above = 0
    for f in flags:
        if f:
            pos_above += 1
        else:
            pairs += pos_above  # this ranked negative sits below pos_above ranked positives
    # ranked positives outrank every unranked negative
    pairs += ranked_pos * unranked_neg
    # unranked positives tie with unranked negatives
    pairs += 0.5 * unranked_pos * unranked_neg
    return pairs / (n_pos * n_neg)


def tail_mask_reference(train_dense, tail_share):
    """bool [n_items]: items outside the shortest head (by training count desc, ties lower id)
    whose counts reach ``tail_share`` of all training interactions."""
    counts = [int(np.count_nonzero(train_dense[:, i])) for i in range(train_dense.shape[1])]
    order = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
    target = tail_share * sum(counts)
    tail = np.ones(len(counts), dtype=bool)
    running = 0
    for i in order:
        if target <= 0 or running >= target:
            break
        tail[i] = False
        running += counts[i]
    return tail


def coverage_reference(ranked, k, n_items):
    """Distinct valid ids among the first k columns of ranked, over n_items."""
    seen = set(int(i) for row in ranked for i in list(row)[:k] if i >= 0)
    return len(seen) / n_items


def paired_bootstrap_reference(a, b, n_resamples, confidence, seed):
    """scipy.stats.bootstrap on the paired sample, percentile interval."""
    from scipy import stats
    res = stats.bootstrap((np.asarray(a), np.asarray(b)),
                          lambda x, y, axis=-1: np.mean(x, axis=axis) - np.mean(y, axis=axis),
                          paired=True, vectorized=True, n_resamples=n_resamples,
                          confidence_level=confidence, method="percentile",
                          random_state=np.random.default_rng(seed))
    return res.confidence_interval.low, res.confidence_interval.high
