"""The names of the metrics :func:`cfprune.evaluate` reports: the one list the evaluation, the
target grammar of the search and the command line share.

It lives apart from :mod:`cfprune.evaluation` (which re-exports it) because that module loads the
Numba kernels, and the command line checks a ``--target`` before anything heavy is imported.
"""

# every metric evaluate() reports, as ``name@k`` for each cut-off k (see cfprune.evaluation's
# docstring for what each one is); the first eight are the figures of a one-line summary
METRICS = ("recall", "truncated_recall", "precision", "ndcg", "map", "coverage", "tail_recall",
           "overlap", "hit_rate", "mrr", "auc", "pooled_precision", "pooled_recall")

# what `cfprune train` and `cfprune evaluate` print per cut-off
SUMMARY_METRICS = METRICS[:8]
