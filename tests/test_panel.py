"""The panel layout and the in-register block scorer against NumPy."""

import numpy as np
import pytest
from numba import njit

from cfprune.kernels.panel import PANEL_ITEMS, PANEL_USERS, block_scores, to_panel


@njit(cache=False)
def _scores(users, panel, dim, thresholds, group, block):
    out = np.empty(PANEL_USERS * PANEL_ITEMS, np.float32)
    passed = block_scores(users.reshape(-1), group * PANEL_USERS * dim, panel,
                          block * PANEL_ITEMS * dim, dim, thresholds, group * PANEL_USERS, out)
    return passed, out


@pytest.mark.parametrize("dim", [1, 3, 16, 64, 100])
def test_block_scores_equal_numpy_and_flag_the_users_with_a_score_at_their_threshold(dim):
    rng = np.random.default_rng(dim)
    n_rows = 3 * PANEL_ITEMS - 5          # a last block with padding
    n_users = 3 * PANEL_USERS
    items = rng.standard_normal((n_rows, dim)).astype(np.float32)
    users = rng.standard_normal((n_users, dim)).astype(np.float32)
    panel = np.full(3 * PANEL_ITEMS * dim, np.nan, np.float32)
    to_panel(items, n_rows, panel)
    exact = users.astype(np.float64) @ items.T.astype(np.float64)
    for group in range(3):
        for block in range(3):
            rows = slice(block * PANEL_ITEMS, min(n_rows, (block + 1) * PANEL_ITEMS))
            members = slice(group * PANEL_USERS, (group + 1) * PANEL_USERS)
            want = exact[members, rows]
            # thresholds: user r's best score for even r (passes), just above it for odd r
            best = want.max(axis=1).astype(np.float32)
            thresholds = np.full(n_users, np.inf, np.float32)
            thresholds[members] = np.where(np.arange(PANEL_USERS) % 2 == 0,
                                           best - 1e-3 * (1 + np.abs(best)),
                                           best + 1e-3 * (1 + np.abs(best)))
            passed, out = _scores(users, panel, dim, thresholds, group, block)
            got = out.reshape(PANEL_USERS, PANEL_ITEMS)
            width = rows.stop - rows.start
            np.testing.assert_allclose(got[:, :width], want, rtol=0,
                                       atol=1e-5 * max(1.0, np.abs(want).max()))
            np.testing.assert_array_equal(got[:, width:], 0.0)   # padded items score 0
            expected = sum(1 << r for r in range(PANEL_USERS) if r % 2 == 0)
            if width < PANEL_ITEMS:   # padding scores 0: a user whose threshold is <= 0 passes
                expected |= sum(1 << r for r in range(PANEL_USERS)
                                if thresholds[group * PANEL_USERS + r] <= 0)
            assert passed == expected


def test_infinite_and_nan_thresholds_never_pass_and_minus_infinity_always_does():
    rng = np.random.default_rng(0)
    items = rng.standard_normal((PANEL_ITEMS, 8)).astype(np.float32)
    users = rng.standard_normal((PANEL_USERS, 8)).astype(np.float32)
    panel = np.empty(PANEL_ITEMS * 8, np.float32)
    to_panel(items, PANEL_ITEMS, panel)
    thresholds = np.full(PANEL_USERS, np.inf, np.float32)
    thresholds[0] = -np.inf
    thresholds[-1] = np.nan
    passed, _ = _scores(users, panel, 8, thresholds, 0, 0)
    assert passed == 1


NARROW = r"""
import numpy as np
from llvmlite import binding
host = binding.get_host_cpu_features
def without_avx512():
    features = host()
    for name in list(features):
        if name.startswith("avx512"):
            features[name] = False
    return features
binding.get_host_cpu_features = without_avx512
from cfprune.kernels import panel
assert (panel.PANEL_USERS, panel.LANES) == (2, 8), (panel.PANEL_USERS, panel.LANES)
from cfprune.kernels.tiled import float32_tiles, score_tiles, table_order
from cfprune.kernels.topk import new_heaps, sort_heaps
rng = np.random.default_rng(1)
items = rng.standard_normal((3000, 24)).astype(np.float32)
users = rng.standard_normal((7, 24)).astype(np.float32)
heap_scores, heap_ids = new_heaps(7, 5)
none = np.empty(0, np.int32)
score_tiles(users, float32_tiles(items), *table_order(3000), 2, none, none,
            np.zeros(7, np.int64), np.zeros(7, np.int64), heap_scores, heap_ids, route="flat")
sort_heaps(heap_scores, heap_ids)
exact = users.astype(np.float64) @ items.T.astype(np.float64)
want = np.argsort(-exact, axis=1, kind="stable")[:, :5]
assert (heap_ids == want).all(), (heap_ids, want)
print("narrow ok")
"""


def test_the_narrow_panel_of_cpus_without_avx512_scores_the_same(tmp_path):
    """The 8-lane, 2-user kernel that a CPU without AVX-512 compiles (the host's features
    patched before the import), in a process and a Numba cache of its own."""
    import subprocess
    import sys
    from tests.processes import process_env
    done = subprocess.run([sys.executable, "-c", NARROW], capture_output=True, text=True,
                          env=process_env(NUMBA_CACHE_DIR=tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "narrow ok" in done.stdout
