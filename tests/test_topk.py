"""The bounded top-k selection and the seen-item walk against a full sort."""

import numpy as np
from hypothesis import given, settings, strategies as st

from cfprune.kernels.topk import EMPTY_ID, new_heaps, push_row, sort_heaps
from tests.reference_kernels import topk_reference

SETTINGS = settings(max_examples=60, deadline=None)


@SETTINGS
@given(st.integers(1, 400), st.integers(1, 50), st.integers(0, 2 ** 32 - 1), st.booleans(),
       st.integers(1, 5))
def test_push_row_in_chunks_equals_full_sort(n_items, k, seed, ties, n_chunks):
    """Scores offered in ascending-id chunks (as scorers do) give the reference top-k exactly."""
    rng = np.random.default_rng(seed)
    scores = (rng.integers(0, 4, n_items) if ties else rng.standard_normal(n_items))
    scores = scores.astype(np.float32)
    seen = np.sort(rng.choice(n_items, size=int(rng.integers(0, n_items + 1)), replace=False))
    seen = seen.astype(np.int32)
    heap_scores, heap_ids = new_heaps(1, k)
    pos = 0
    cuts = np.linspace(0, n_items, n_chunks + 1).astype(int)
    for a, b in zip(cuts[:-1], cuts[1:]):
        pos = push_row(heap_scores[0], heap_ids[0], scores[a:b], a, np.empty(0, np.int32),
                       seen, pos, seen.size)
    sort_heaps(heap_scores, heap_ids)
    ref_ids, ref_scores = topk_reference(scores[None].astype(np.float64), k, [set(seen.tolist())])
    np.testing.assert_array_equal(heap_ids, ref_ids)
    np.testing.assert_array_equal(heap_scores, ref_scores.astype(np.float32))


def test_item_map_and_nan_and_padding():
    """Mapped rows report their item ids, NaN scores never enter, empty slots become -1/-inf."""
    heap_scores, heap_ids = new_heaps(1, 4)
    scores = np.array([1.0, np.nan, 1.0], dtype=np.float32)
    item_map = np.array([7, 9, 12], dtype=np.int32)
    push_row(heap_scores[0], heap_ids[0], scores, 0, item_map, np.array([12], np.int32), 0, 1)
    assert EMPTY_ID in heap_ids
    sort_heaps(heap_scores, heap_ids)
    np.testing.assert_array_equal(heap_ids[0], [7, -1, -1, -1])
    assert heap_scores[0, 0] == 1.0 and np.all(np.isneginf(heap_scores[0, 1:]))


def test_negative_infinite_scores_beat_empty_slots():
    heap_scores, heap_ids = new_heaps(1, 3)
    scores = np.array([-np.inf, 2.0], dtype=np.float32)
    push_row(heap_scores[0], heap_ids[0], scores, 0, np.empty(0, np.int32),
             np.empty(0, np.int32), 0, 0)
    sort_heaps(heap_scores, heap_ids)
    np.testing.assert_array_equal(heap_ids[0], [1, 0, -1])
