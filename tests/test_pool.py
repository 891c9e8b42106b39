"""The kernels' thread pool: worker 0 on the calling thread, errors after every worker ends,
and the worker count a call of a given size takes."""

import threading
import time

import pytest

from cfprune.kernels.pool import run_blocks, run_workers, workers_for


def test_worker_zero_runs_on_the_calling_thread_and_the_others_do_not():
    threads = {}
    lock = threading.Lock()

    def work(worker):
        with lock:
            threads[worker] = threading.get_ident()
    run_workers(work, 3)
    assert sorted(threads) == [0, 1, 2]
    assert threads[0] == threading.get_ident()
    assert threads[1] != threading.get_ident() and threads[2] != threading.get_ident()


def test_an_error_is_raised_only_once_every_worker_has_finished():
    finished = []

    def work(worker):
        if worker == 0:
            raise ValueError("worker 0 failed")
        time.sleep(0.2)
        finished.append(worker)
    with pytest.raises(ValueError, match="worker 0 failed"):
        run_workers(work, 2)
    assert finished == [1]

    def late(worker):
        if worker == 1:
            raise KeyError("worker 1 failed")
    with pytest.raises(KeyError, match="worker 1 failed"):
        run_workers(late, 2)


def test_blocks_cover_the_range_once_and_zero_workers_run_nothing():
    spans = []
    lock = threading.Lock()

    def work(start, stop):
        with lock:
            spans.append((start, stop))
    run_blocks(work, 1000, 3, block=64)
    covered = sorted(i for start, stop in spans for i in range(start, stop))
    assert covered == list(range(1000)) and len(spans) == 3
    run_workers(lambda worker: pytest.fail("no worker for n_workers=0"), 0)


@pytest.mark.parametrize("n_workers, amount, per_worker, expected", [
    (2, 1, 100, 1), (2, 100, 100, 1), (2, 101, 100, 2), (2, 10 ** 9, 100, 2),
    (8, 350, 100, 4), (1, 10 ** 9, 100, 1), (4, 0, 100, 1)])
def test_a_worker_more_for_every_share_of_work(n_workers, amount, per_worker, expected):
    assert workers_for(n_workers, amount, per_worker) == expected
