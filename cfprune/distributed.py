"""Batch top-k and evaluation over blocks of users, in-process or on a ``dask.distributed`` cluster.

The model, the train CSR and (for evaluation) the :class:`~cfprune.evaluation.EvaluationPlan`
holding the test CSR are sent once to the cluster, each as the result of a task (see
:func:`_scatter`), and fetched once by every worker that runs a block; each task then receives only its block of user ids and runs the same Numba kernels as a
single-process run: ``model.recommend`` for the lists and
:func:`cfprune.evaluation.evaluate_block` for the metric state. The client combines the block
states with :func:`cfprune.evaluation.summarise`, the very function
:func:`cfprune.evaluation.evaluate` ends with, so both paths give identical figures.

Fault tolerance: a task that raises is retried ``retries`` times; a task whose worker dies is
rescheduled by the scheduler (up to its ``distributed.scheduler.allowed-failures``, default 3).
The shared objects are held as task results, which the scheduler computes again when the worker
holding them dies. Every block is a pure function of its users, so a re-run block gives the same
result and the combined result stays complete. A task lost with its workers more often than the
scheduler allows raises a one-line DataError naming it.

Threads: each task runs its kernels with ``num_threads`` Numba threads (default 1), so a worker
with ``t`` threads uses ``t * num_threads`` cores; run workers with ``--nthreads 1`` and raise
``num_threads`` instead, or the reverse, never both (workers with several threads need a
thread-safe Numba threading layer, ``omp`` or ``tbb``, not ``workqueue``). Workers load the
compiled kernels from Numba's on-disk cache (``cache=True``; ``NUMBA_CACHE_DIR`` when the
package directory is not writable), so a kernel compiles at most once per machine, not once per
task.

Candidate files (:func:`recommend_to_files`): ``part-NNNNN.npz`` per block with ``users`` int64
[n], ``ids`` int32 [n, k], ``scores`` float32 [n, k], each written atomically by the worker that
computed it (so ``out_dir`` must be a directory every worker can reach), and ``manifest.json``
written last by the client. :func:`read_candidates` reads them back.
"""

from __future__ import annotations

import hashlib
import io
import json
import os

import numpy as np
from tqdm.auto import tqdm

from .errors import DataError, MissingDependencyError, ShapeError
from .evaluation import DEFAULT_BATCH_SIZE as DEFAULT_EVALUATION_BLOCK
from .evaluation import evaluate_block, plan_evaluation, summarise, user_blocks
from .interactions import as_csr
from .io import atomic_write, check_readable, ensure_dir, read_json, read_npz

DEFAULT_BLOCK_SIZE = 8192
DEFAULT_RETRIES = 3
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "cfprune-candidates"
MANIFEST_VERSION = 1
INSTALL_HINT = "pip install 'cfprune[dask]'  (or: pip install 'dask[distributed]')"


def require_distributed():
    """The ``distributed`` module, or MissingDependencyError saying how to install it."""
    try:
        import distributed
    except ImportError as e:
        raise MissingDependencyError(
            f"running on a Dask cluster needs dask.distributed, which is not installed ({e}); "
            f"install it with: {INSTALL_HINT}") from None
    return distributed


def connect(scheduler):
    """``(client, owned)``: a ``distributed.Client`` for ``scheduler`` and whether we opened it.

    ``scheduler`` is a scheduler address (``"tcp://host:8786"``), a ``distributed.Client``, or
    None for the client already current in this process.
    """
    distributed = require_distributed()
    if isinstance(scheduler, distributed.Client):
        return scheduler, False
    if scheduler is None:
        try:
            return distributed.get_client(), False
        except ValueError:
            raise DataError("no Dask scheduler given and no Dask client is running; pass "
                            "scheduler='tcp://HOST:PORT' (cfprune ... --scheduler ADDRESS)") \
                from None
    if not isinstance(scheduler, str):
        raise DataError(f"scheduler must be an address string or a distributed.Client, got "
                        f"{type(scheduler).__name__}")
    try:
        return distributed.Client(scheduler, set_as_default=False), True
    except (OSError, TimeoutError) as e:
        raise DataError(f"cannot reach the Dask scheduler at {scheduler!r}: {e}") from None


def evaluate_distributed(model, train, test, ks=(10, 20, 50), *, baseline=None, scheduler=None,
                         block_size=None, num_threads=1, tail_share=0.8, users=None,
                         keep_ranked=False, retries=DEFAULT_RETRIES, show_progress=None):
    """:func:`cfprune.evaluation.evaluate` with the user blocks mapped over a Dask cluster.

    Parameters
    ----------
    model, train, test, ks, baseline, tail_share, users, keep_ranked
        As in :func:`cfprune.evaluation.evaluate`; the result is identical to it.
    scheduler : str, distributed.Client or None
        See :func:`connect`.
    block_size : int or None
        Users per task (default: ``evaluate``'s batch size, 2048). The figures equal those of
        ``evaluate(..., batch_size=block_size)`` bit for bit (a user's scores can differ in the
        last bit with its position in a batch, as BLAS tiles differ, which may reorder near-ties).
    num_threads : int or None
        Numba threads per task (default 1; None: the worker's Numba default).
    retries : int
        Extra attempts of a block whose task raised.
    show_progress : bool or None
        tqdm bar over finished blocks; None shows it on a terminal only.

    Returns
    -------
    EvaluationResult
    """
    train_csr = as_csr(train, "train")
    plan = plan_evaluation(model, train_csr, test, ks, baseline=baseline, tail_share=tail_share,
                           users=users, keep_ranked=keep_ranked)
    blocks = user_blocks(plan.users,
                         DEFAULT_EVALUATION_BLOCK if block_size is None else block_size)
    client, owned = connect(scheduler)
    try:
        shared = _scatter(client, model=model, train=train_csr, plan=plan, baseline=baseline)
        futures = [client.submit(_evaluate_task, block, **shared, num_threads=num_threads,
                                 retries=retries, pure=False) for block in blocks]
        return summarise(_gathered(client, futures, plan.users.size, "evaluate",
                                   show_progress, lambda state: state.users.size), plan)
    finally:
        if owned:
            client.close()


def recommend_to_files(model, users, train, k=10, out_dir=None, *, scheduler=None,
                       block_size=None, num_threads=None, filter_seen=True, candidates=None,
                       retries=DEFAULT_RETRIES, show_progress=None):
    """Top-k lists of ``users`` written as partitioned ``.npz`` files plus a manifest.

    Parameters
    ----------
    model : FactorModel
    users : int array [n]
        Model user rows, in the order the parts list them.
    train : scipy.sparse matrix or Interactions [n_users, n_items], or None
        Each user's seen items (one row per model user); may be None only when ``filter_seen``
        is False (else ShapeError, as in :meth:`FactorModel.recommend`).
    k : int
    out_dir : str or path
        Created if missing; receives ``part-NNNNN.npz`` and ``manifest.json``.
    scheduler : str, distributed.Client or None
        A Dask scheduler (see :func:`connect`); None computes the blocks in this process.
    block_size : int or None
        Users per part (default 8192). The lists are those of one ``model.recommend`` call over
        ``users`` when ``block_size`` is a multiple of its batch size (4096), and identical with
        or without ``scheduler`` for any ``block_size``.
    num_threads : int or None
        Numba threads per block (Dask default 1, in-process default Numba's setting).
    filter_seen, candidates
        As in :meth:`FactorModel.recommend`.
    retries : int
        Extra attempts of a block whose task raised (Dask only).
    show_progress : bool or None

    Returns
    -------
    list of str
        The part files written, in user order.
    """
    if out_dir is None:
        raise DataError("recommend_to_files needs an output directory (--out DIR)")
    users = np.ascontiguousarray(np.atleast_1d(np.asarray(users)))
    if users.ndim != 1 or (users.size and users.dtype.kind not in "iu"):
        raise DataError(f"users must be a 1-D integer array, got shape {users.shape} and dtype "
                        f"{users.dtype}")
    users = users.astype(np.int64)
    if filter_seen and train is None:
        raise ShapeError("filter_seen=True needs train (the users' known items); pass "
                         "filter_seen=False to rank every item")
    seen = as_csr(train, "train") if filter_seen else None
    if seen is not None and seen.shape != (model.n_users, model.n_items):
        raise DataError(f"train has shape {seen.shape}; expected one row per model user and one "
                        f"column per item: ({model.n_users}, {model.n_items})")
    out_dir = ensure_dir(os.path.abspath(os.fspath(out_dir)))
    blocks = user_blocks(users, DEFAULT_BLOCK_SIZE if block_size is None else block_size)
    jobs = [(index, os.path.join(out_dir, f"part-{index:05d}.npz"), block)
            for index, block in enumerate(blocks)]
    options = dict(k=k, filter_seen=filter_seen, candidates=candidates)
    if scheduler is None:
        def parts():
            for index, path, block in jobs:
                yield _write_part(path, block, model, seen, num_threads=num_threads, **options)
        written = list(_progress(parts(), users.size, "recommend", show_progress,
                                 lambda part: part["n_users"]))
    else:
        client, owned = connect(scheduler)
        try:
            shared = _scatter(client, model=model, seen=seen)
            futures = [client.submit(_write_part, path, block, **shared,
                                     num_threads=1 if num_threads is None else num_threads,
                                     **options, retries=retries, pure=False)
                       for _, path, block in jobs]
            written = list(_gathered(client, futures, users.size, "recommend", show_progress,
                                     lambda part: part["n_users"]))
        finally:
            if owned:
                client.close()
    written.sort(key=lambda part: part["file"])
    manifest = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "k": int(k),
                "n_users": int(users.size), "n_items": int(model.n_items),
                "filter_seen": bool(filter_seen), "spec": getattr(model, "spec", ""),
                "parts": written}
    atomic_write(os.path.join(out_dir, MANIFEST),
                 lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    return [os.path.join(out_dir, part["file"]) for part in written]


def read_candidates(out_dir):
    """``(users int64 [n], ids int32 [n, k], scores float32 [n, k])`` from a directory written
    by :func:`recommend_to_files`, in manifest order; each part is checked against the
    manifest's sha256 and user count."""
    path = os.path.join(os.fspath(out_dir), MANIFEST)
    manifest = read_json(path, "candidate manifest", DataError)
    try:
        if manifest.get("format") != MANIFEST_FORMAT or \
                manifest.get("version") != MANIFEST_VERSION:
            raise DataError(f"{path}: not a {MANIFEST_FORMAT} v{MANIFEST_VERSION} manifest")
        k = int(manifest["k"])
        parts = [(os.path.join(os.fspath(out_dir), part["file"]), part["sha256"],
                  int(part["n_users"])) for part in manifest["parts"]]
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: not a {MANIFEST_FORMAT} v{MANIFEST_VERSION} manifest (a field "
                        f"is missing or malformed: {e})") from None
    users, ids, scores = [np.empty(0, np.int64)], [np.empty((0, k), np.int32)], \
        [np.empty((0, k), np.float32)]
    for file, digest, n_users in parts:
        check_readable(file, f"candidate part listed in {MANIFEST}", DataError)
        with open(file, "rb") as f:
            raw = f.read()
        if hashlib.sha256(raw).hexdigest() != digest:
            raise DataError(f"{file}: sha256 differs from {MANIFEST}: the part was truncated or "
                            f"changed after it was written")
        arrays = read_npz(file, "candidate part", DataError)
        if not {"users", "ids", "scores"} <= set(arrays) or arrays["users"].size != n_users:
            raise DataError(f"{file}: holds {sorted(arrays)} with "
                            f"{arrays.get('users', np.empty(0)).size} users, {MANIFEST} says "
                            f"users, ids, scores of {n_users} users")
        users.append(arrays["users"])
        ids.append(arrays["ids"])
        scores.append(arrays["scores"])
    return np.concatenate(users), np.concatenate(ids), np.concatenate(scores)


def _scatter(client, **objects):
    """Futures of ``objects`` held on the cluster (None stays None).

    Each is the result of a task that returns the object, not scattered data: the scheduler
    keeps the task, so when the worker holding the object dies it computes it again on another
    one (scattered data cannot be recomputed, and a broadcast scatter keeps trying to reach a
    worker that died during it). Every block task depends on these futures, so each worker
    fetches each object once."""
    return {name: None if obj is None else client.submit(_held, obj, pure=False)
            for name, obj in objects.items()}


def _held(obj):
    return obj


def _evaluate_task(users, model, train, plan, baseline, num_threads):
    return evaluate_block(model, train, plan, users, baseline=baseline, num_threads=num_threads)


def _write_part(path, users, model, seen, *, k, filter_seen, candidates, num_threads):
    """Recommend for one block, write ``path`` atomically; the manifest entry of the part."""
    rows = seen[users] if seen is not None else None
    ids, scores = model.recommend(users, rows, k=k, filter_seen=filter_seen,
                                  candidates=candidates, num_threads=num_threads,
                                  user_items_rows="requested")
    buffer = io.BytesIO()
    np.savez(buffer, users=users, ids=ids, scores=scores)
    data = buffer.getvalue()
    atomic_write(path, lambda f: f.write(data))
    return {"file": os.path.basename(path), "n_users": int(users.size),
            "first_user": int(users[0]) if users.size else None,
            "last_user": int(users[-1]) if users.size else None,
            "sha256": hashlib.sha256(data).hexdigest()}


def _gathered(client, futures, total, desc, show_progress, size_of):
    """Results of ``futures`` as they finish, with a progress bar counted in users.

    ``as_completed`` runs on ``client``'s event loop: the client :func:`connect` opens for an
    address is not the process default (``set_as_default=False``), so without ``loop`` it would
    look for a default client and fail when there is none."""
    distributed = require_distributed()
    finished = distributed.as_completed(futures, loop=client.loop)

    def results():
        for future in finished:
            try:
                yield future.result()
            except distributed.KilledWorker as e:
                raise DataError(f"a {desc} task was lost with the Dask workers running it more "
                                f"often than the scheduler allows ({e}); the cluster is "
                                f"failing") from None
    return _progress(results(), total, desc, show_progress, size_of)


def _progress(results, total, desc, show_progress, size_of):
    disable = None if show_progress is None else not show_progress
    with tqdm(total=total, disable=disable, desc=desc, unit="user") as bar:
        for result in results:
            yield result
            bar.update(size_of(result))


__all__ = ["evaluate_distributed", "recommend_to_files", "read_candidates", "connect",
           "require_distributed"]
