"""How the kernels are called: one shared pool of Python threads over ``nogil`` kernels, and
read-only inputs passed read-only.

No kernel of this package uses Numba's ``parallel=True``: its parfor lowering is slow to compile
and every parallel loop compiles a gufunc wrapper of its own. A kernel instead takes a block of
work (a worker's share of user tiles, a range of users) and releases the GIL
(``@njit(nogil=True)``), and :func:`run_workers` runs one call per worker on a shared
:class:`concurrent.futures.ThreadPoolExecutor`. Worker 0 runs on the calling thread (no thread hop: what
single-user latency wants).

:func:`thread_count` reads the ``num_threads`` arguments of the API: None means the current
default (Numba's thread count when a caller set it with ``numba.set_num_threads``, else
``NUMBA_NUM_THREADS``, which is the number of cores unless the environment says otherwise), 0
means every core, ``n >= 1`` means ``n`` threads.

Numba compiles one specialisation per argument type, and a read-only array has another type than
a writeable one: :func:`frozen` passes every input a kernel only reads as a read-only view, so
tables that arrive writeable or read-only (memory-mapped, or frozen by their owner) share one
compiled kernel.
"""

import numbers
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cfprune.errors import ShapeError

_POOL = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def cores():
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_threads():
    """Threads when the caller names none: Numba's current count if its threading layer is up
    (a caller used ``numba.set_num_threads``), else ``NUMBA_NUM_THREADS`` (without launching
    Numba's threading layer, which no kernel here needs)."""
    from numba.np.ufunc import parallel
    if parallel._is_initialized:
        import numba
        return numba.get_num_threads()
    from numba import config
    return int(config.NUMBA_NUM_THREADS)


def thread_count(num_threads, name="num_threads"):
    """int >= 1 from an API ``num_threads`` (None: :func:`default_threads`, 0: every core);
    ShapeError for anything else than a non-negative integer."""
    if num_threads is None:
        return default_threads()
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral) or \
            num_threads < 0:
        raise ShapeError(f"{name} must be a non-negative integer (0: every core), got "
                         f"{num_threads!r}")
    return cores() if num_threads == 0 else int(num_threads)


def _pool(size):
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or _POOL_SIZE < size:
            # the smaller pool is not shut down: another caller may still be submitting to it;
            # its idle threads end when it is garbage-collected
            _POOL = ThreadPoolExecutor(max_workers=size, thread_name_prefix="cfprune")
            _POOL_SIZE = size
        return _POOL


def run_workers(work, n_workers):
    """Call ``work(worker)`` for ``worker`` in ``range(n_workers)`` concurrently and wait for
    all: worker 0 runs on the calling thread (which would otherwise only wait: one thread hop
    fewer, 0.1 ms of a single-user call here), the others on the pool; the first exception
    raised (worker 0's first) is re-raised once every worker has finished."""
    if n_workers < 1:
        return
    futures = [_pool(n_workers - 1).submit(work, worker) for worker in range(1, n_workers)]
    try:
        work(0)
    finally:
        for future in futures:
            future.exception()
    for future in futures:
        future.result()


def workers_for(n_workers, amount, per_worker):
    """How many of ``n_workers`` a call doing ``amount`` units of work takes: one more for every
    ``per_worker`` units after the first (waking a pool thread costs about 0.1-0.15 ms on this
    project's 2-core machines, more than a small scan gains from it); at least 1."""
    return max(1, min(int(n_workers), 1 + (max(1, int(amount)) - 1) // int(per_worker)))


def run_blocks(work, n_items, n_workers, block=64):
    """Split ``range(n_items)`` into ``min(n_workers, n_blocks)`` contiguous spans of whole
    blocks of ``block`` items and call ``work(start, stop)`` for each concurrently."""
    n_blocks = (n_items + block - 1) // block
    n_spans = max(1, min(n_workers, n_blocks))
    per_span = (n_blocks + n_spans - 1) // n_spans * block

    def span(worker):
        start = worker * per_span
        if start < n_items:
            work(start, min(n_items, start + per_span))
    run_workers(span, n_spans)


def frozen(array, dtype):
    """A read-only C-contiguous view (or copy, when the dtype or layout differs) of ``array``:
    kernels type read-only arrays apart from writeable ones, so every read-only input goes in
    read-only, whatever the caller's flags."""
    view = np.ascontiguousarray(array, dtype=dtype).view()
    view.flags.writeable = False
    return view
