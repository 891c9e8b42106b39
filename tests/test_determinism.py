"""The same seed gives byte-identical saved models, through training and compression."""

import numpy as np
import pytest
import scipy.sparse as sp

from cfprune.facade import compress
from cfprune.models import train_als, train_bpr


@pytest.fixture(scope="module")
def matrix():
    m = sp.random(150, 90, density=0.08, random_state=7, format="csr", dtype=np.float32)
    m.data[:] = 1.0
    return m


@pytest.mark.parametrize("spec", ["int8:axis=auto", "pq:m=4,rotation=opq,loss=anisotropic",
                                  "prune-rows:keep=0.5,by=popularity|lowrank:rank=4|int4",
                                  "magnitude:sparsity=0.7", "distill:rank=4,iterations=2"])
def test_same_seed_same_bytes(matrix, spec, tmp_path):
    paths = []
    for run in range(2):
        model = train_als(matrix, factors=8, iterations=3, num_threads=2, seed=11)
        small = compress(model, spec, matrix)
        paths.append(tmp_path / f"run{run}.npz")
        small.save(paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_bpr_single_thread_is_reproducible(matrix, tmp_path):
    for run in range(2):
        train_bpr(matrix, factors=4, iterations=5, num_threads=1, seed=3).save(tmp_path / f"{run}")
    assert (tmp_path / "0").read_bytes() == (tmp_path / "1").read_bytes()


def test_other_seed_other_model(matrix):
    a = train_als(matrix, factors=8, iterations=3, seed=1).user_factors
    b = train_als(matrix, factors=8, iterations=3, seed=2).user_factors
    assert not np.array_equal(a, b)
