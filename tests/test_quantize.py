"""The PQ encoder and k-means kernels (cfprune/kernels/quantize.py) against independent
references: float64 brute force over every centroid (tests/reference_compress.py), NumPy
Lloyd steps, scikit-learn's and faiss's k-means inertia."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cfprune.kernels.quantize import kmeans_subspaces, nearest_centroids

from . import reference_compress as ref


def brute_force_errors(x, codes, codebooks, bounds):
    """float64 [n]: per row the squared distance to its centroids, by loops."""
    out = np.zeros(x.shape[0])
    for i in range(x.shape[0]):
        for s in range(len(bounds) - 1):
            for j in range(int(bounds[s]), int(bounds[s + 1])):
                diff = float(x[i, j]) - float(codebooks[int(codes[i, s]), j])
                out[i] += diff * diff
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 300), st.sampled_from([(4, 1), (6, 3), (7, 3), (8, 4)]),
       st.integers(1, 40), st.sampled_from([0.0, 1.0, 300.0]), st.floats(1e-4, 1.0),
       st.integers(0, 10_000))
def test_nearest_centroids_equal_float64_brute_force(n, shape, ksub, offset, spread, seed):
    """Far from the origin (offset 300, spread 1e-4) the float32 distances
    ||x||^2 + ||c||^2 - 2 x.c cannot tell the centroids apart: the codes must still be those of
    float64 brute force, first of equals, and duplicated centroids tie to the lower code."""
    d, m = shape
    rng = np.random.default_rng(seed)
    bounds = np.linspace(0, d, m + 1).round().astype(np.int32)
    codebooks = (offset + spread * rng.normal(size=(ksub, d))).astype(np.float32)
    if ksub > 2:
        codebooks[ksub - 1] = codebooks[ksub // 2]          # an exact duplicate
    x = (offset + spread * rng.normal(size=(n, d))).astype(np.float32)
    x[: min(n, ksub)] = codebooks[: min(n, ksub)]          # rows on a centroid: distance 0
    codes, errors = nearest_centroids(x, codebooks, bounds)
    want = ref.nearest_codes(x, codebooks, bounds)
    np.testing.assert_array_equal(codes, want)
    np.testing.assert_allclose(errors, brute_force_errors(x, want, codebooks, bounds),
                               rtol=1e-12, atol=1e-300)


def lloyd_inertia(x, centroids):
    """float64: the sum of squared distances of the rows to their nearest centroid."""
    d2 = ((x[:, None, :].astype(np.float64) - centroids[None].astype(np.float64)) ** 2).sum(2)
    return d2.min(1).sum()


def test_kmeans_is_a_lloyd_fixed_point_as_good_as_sklearn():
    """On well separated blobs (2 columns, 12 clusters on a grid of step 20, unit noise) the
    centroids are the means of their nearest rows (NumPy) and the inertia is that of
    scikit-learn's best of 10 k-means++ starts."""
    from sklearn.cluster import KMeans
    rng = np.random.default_rng(0)
    centres = 20.0 * np.stack(np.meshgrid(np.arange(4), np.arange(3)), -1).reshape(12, 2)
    x = (centres[rng.integers(0, 12, 3000)] + rng.normal(size=(3000, 2))).astype(np.float32)
    bounds = np.array([0, 2], np.int32)
    ours = kmeans_subspaces(x, bounds, 12, iters=100, seed=0)
    nearest = ((x[:, None, :] - ours[None].astype(np.float64)) ** 2).sum(2).argmin(1)
    for c in range(12):
        np.testing.assert_allclose(ours[c], x[nearest == c].astype(np.float64).mean(0),
                                   rtol=1e-5, atol=1e-5)
    theirs = KMeans(12, init="k-means++", n_init=10, random_state=0).fit(x)
    assert lloyd_inertia(x, ours) <= theirs.inertia_ * (1 + 1e-4)


@pytest.mark.parametrize("ksub", [16, 256])
def test_kmeans_subspaces_inertia_against_faiss(ksub):
    """Every sub-space of a correlated table (8 x 4 columns): the inertia within 2% of faiss's
    k-means (25 iterations, the same rows) or better."""
    import faiss
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(40 * ksub, 32)) @ rng.normal(size=(32, 32))).astype(np.float32)
    bounds = np.arange(0, 33, 4, dtype=np.int32)
    ours = kmeans_subspaces(x, bounds, ksub, iters=25, seed=0)
    for s in range(8):
        part = np.ascontiguousarray(x[:, bounds[s]:bounds[s + 1]])
        kmeans = faiss.Kmeans(4, ksub, niter=25, seed=s, max_points_per_centroid=1 << 20)
        kmeans.train(part)
        assert lloyd_inertia(part, ours[:, bounds[s]:bounds[s + 1]]) <= \
            1.02 * lloyd_inertia(part, kmeans.centroids)
