"""Dask scale-out: a 2-process LocalCluster on loopback gives the in-process figures and lists."""

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cfprune import cli
from cfprune.distributed import evaluate_distributed, read_candidates, recommend_to_files
from cfprune.errors import DataError, MissingDependencyError, ShapeError
from cfprune.evaluation import evaluate
from cfprune.models.factors import FactorModel
from cfprune.tables import Int8Table

from .processes import DaskProcesses, run_cli
from .reference_data import DATA_HOME, real_archive
from .reference_metrics import topk_reference, user_metrics_reference



@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    with cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def catalogue():
    """A synthetic catalogue: integer-valued dense factors (exact, tie-rich scores), train and
    test CSR with some empty rows, and an int8 copy of the model (a compressed table)."""
    rng = np.random.default_rng(7)
    n_users, n_items, dim = 1500, 700, 8
    users = rng.integers(-3, 4, (n_users, dim)).astype(np.float32)
    items = rng.integers(-3, 4, (n_items, dim)).astype(np.float32)
    train = sp.random(n_users, n_items, density=0.02, format="csr", random_state=1,
                      dtype=np.float32)
    train.data[:] = 1.0
    test = sp.random(n_users, n_items, density=0.01, format="csr", random_state=2,
                     dtype=np.float32)
    test = (test - test.multiply(train > 0)).tocsr()
    test.eliminate_zeros()
    test.data[:] = 1.0
    model = FactorModel(users, items)
    codes = rng.integers(-127, 128, (n_items, dim)).astype(np.int8)
    scale = rng.uniform(0.01, 0.05, n_items).astype(np.float32)
    compressed = FactorModel(users, Int8Table(codes, scale, axis="row"))
    return model, compressed, train, test


class CrashOnceModel:
    """Wraps a model; the first ``recommend`` that meets ``crash_user`` kills its process (or
    raises, with ``hard=False``) after leaving ``marker``, so the retried block succeeds."""

    def __init__(self, model, marker, crash_user, hard=True):
        self.model = model
        self.marker = str(marker)
        self.crash_user = int(crash_user)
        self.hard = hard
        self.n_users = model.n_users
        self.n_items = model.n_items

    def recommend(self, users, user_items, k=10, filter_seen=True, candidates=None,
                  batch_size=None, num_threads=None, user_items_rows="auto"):
        if self.crash_user in np.asarray(users).tolist() and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            if self.hard:
                os._exit(1)
            raise OSError("a transient failure of the first attempt")
        return self.model.recommend(users, user_items, k=k, filter_seen=filter_seen,
                                    candidates=candidates, num_threads=num_threads,
                                    user_items_rows=user_items_rows)


def assert_same_result(actual, expected):
    assert actual.metrics.keys() == expected.metrics.keys()
    for name, value in expected.metrics.items():
        got = actual.metrics[name]
        assert (math.isnan(got) and math.isnan(value)) or got == value, name
    assert actual.per_user.keys() == expected.per_user.keys()
    for name, value in expected.per_user.items():
        np.testing.assert_array_equal(actual.per_user[name], value, err_msg=name)
    np.testing.assert_array_equal(actual.users, expected.users)
    assert (actual.n_users, actual.n_items, actual.ks) == \
        (expected.n_users, expected.n_items, expected.ks)
    if expected.ranked is not None:
        np.testing.assert_array_equal(actual.ranked, expected.ranked)


def test_evaluation_on_the_cluster_equals_in_process_and_the_reference(client, catalogue):
    model, compressed, train, test = catalogue
    expected = evaluate(compressed, train, test, ks=(5, 20), batch_size=256, baseline=model,
                        keep_ranked=True, num_threads=1)
    actual = evaluate_distributed(compressed, train, test, ks=(5, 20), baseline=model,
                                  scheduler=client, block_size=256, keep_ranked=True)
    assert_same_result(actual, expected)
    # the lists themselves against brute force over the decoded tables
    sample = np.arange(0, actual.users.size, 97)
    _, ref_scores = topk_reference(compressed.users.decode(), compressed.items.decode(),
                                   actual.users[sample], train.toarray(), 20)
    exact = compressed.users.decode()[actual.users[sample]] @ compressed.items.decode().T
    got_scores = np.take_along_axis(exact, actual.ranked[sample].astype(np.int64), axis=1)
    np.testing.assert_allclose(got_scores, ref_scores, rtol=1e-5, atol=1e-5)
    for row in sample:
        u = actual.users[row]
        relevant = set(test.indices[test.indptr[u]:test.indptr[u + 1]].tolist())
        reference = user_metrics_reference(actual.ranked[row], relevant, 20, test.shape[1])
        assert actual.per_user["recall@20"][row] == pytest.approx(reference["recall"])
        assert actual.per_user["ndcg@20"][row] == pytest.approx(reference["ndcg"])


def test_stored_baseline_and_subset_of_users_on_the_cluster(client, catalogue):
    model, _, train, test = catalogue
    base = evaluate(model, train, test, ks=(10,), keep_ranked=True, num_threads=1)
    subset = np.arange(0, 1500, 3)
    expected = evaluate(model, train, test, ks=(3, 10), baseline=base, users=subset,
                        batch_size=128, num_threads=1)
    actual = evaluate_distributed(model, train, test, ks=(3, 10), baseline=base, users=subset,
                                  scheduler=client, block_size=128)
    assert_same_result(actual, expected)
    assert actual.metrics["overlap@10"] == 1.0


def test_workers_load_the_kernels_from_the_numba_cache(client, catalogue):
    model, _, train, test = catalogue
    evaluate(model, train, test, ks=(10,), batch_size=100, num_threads=1)
    evaluate_distributed(model, train, test, ks=(10,), scheduler=client, block_size=100)

    def compile_stats():
        from cfprune.kernels import metrics
        stats = metrics.metrics_users.stats
        return (len(metrics.metrics_users.signatures), sum(stats.cache_hits.values()),
                sum(stats.cache_misses.values()))

    for signatures, hits, misses in client.run(compile_stats).values():
        # one compiled signature loaded once from disk, however many blocks ran there
        assert (signatures, hits, misses) == (1, 1, 0)


def test_candidate_files_on_the_cluster_equal_in_process_and_brute_force(client, catalogue,
                                                                         tmp_path):
    model, compressed, train, _ = catalogue
    users = np.arange(model.n_users - 1, -1, -2)  # any order, any subset
    local = recommend_to_files(model, users, train, k=15, out_dir=tmp_path / "local",
                               block_size=200, num_threads=1)
    remote = recommend_to_files(model, users, train, k=15, out_dir=tmp_path / "remote",
                                block_size=200, scheduler=client)
    assert [os.path.basename(p) for p in local] == [os.path.basename(p) for p in remote]
    assert len(local) == math.ceil(users.size / 200)
    got_users, ids, scores = read_candidates(tmp_path / "remote")
    np.testing.assert_array_equal(got_users, users)
    for a, b in zip(read_candidates(tmp_path / "local"), (got_users, ids, scores)):
        np.testing.assert_array_equal(a, b)
    ref_ids, ref_scores = topk_reference(model.users.decode(), model.items.decode(), users,
                                         train.toarray(), 15)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)
    manifest = json.loads((tmp_path / "remote" / "manifest.json").read_text())
    assert manifest["n_users"] == users.size and manifest["k"] == 15
    assert sum(part["n_users"] for part in manifest["parts"]) == users.size
    # a compressed model, and blocks that are whole retrieval batches: one recommend() call
    one_call = recommend_to_files(compressed, np.arange(compressed.n_users), train, k=5,
                                  out_dir=tmp_path / "int8", block_size=4096, scheduler=client)
    assert len(one_call) == 1
    expected = compressed.recommend(np.arange(compressed.n_users), train, k=5)
    for a, b in zip(read_candidates(tmp_path / "int8")[1:], expected):
        np.testing.assert_array_equal(a, b)


def test_a_worker_dying_mid_run_still_gives_the_complete_result(client, catalogue, tmp_path):
    model, _, train, test = catalogue
    expected = evaluate(model, train, test, ks=(10,), batch_size=300, num_threads=1)
    crashing = CrashOnceModel(model, tmp_path / "crashed", crash_user=expected.users[700])
    workers_before = set(client.scheduler_info()["workers"])
    actual = evaluate_distributed(crashing, train, test, ks=(10,), scheduler=client,
                                  block_size=300)
    assert (tmp_path / "crashed").exists()
    client.wait_for_workers(2)
    assert set(client.scheduler_info()["workers"]) != workers_before  # one was replaced
    assert_same_result(actual, expected)


def test_a_failing_block_is_retried_and_files_stay_complete(client, catalogue, tmp_path):
    model, _, train, _ = catalogue
    users = np.arange(model.n_users)
    flaky = CrashOnceModel(model, tmp_path / "failed", crash_user=1234, hard=False)
    written = recommend_to_files(flaky, users, train, k=10, out_dir=tmp_path / "out",
                                 block_size=250, scheduler=client)
    assert (tmp_path / "failed").exists()
    assert len(written) == 6
    assert not [p for p in os.listdir(tmp_path / "out") if p.startswith(".tmp-")]
    got_users, ids, scores = read_candidates(tmp_path / "out")
    np.testing.assert_array_equal(got_users, users)
    ref_ids, ref_scores = topk_reference(model.users.decode(), model.items.decode(), users,
                                         train.toarray(), 10)
    np.testing.assert_array_equal(ids, ref_ids)


@pytest.fixture(scope="module")
def external_cluster(request, tmp_path_factory):
    """The address of a scheduler and 2 workers started with the ``dask`` command line, each in
    a process of its own; this test process holds no Dask client."""
    pytest.importorskip("distributed")
    cluster = DaskProcesses(tmp_path_factory.mktemp("dask-processes"), n_workers=2)
    request.addfinalizer(cluster.close)
    return cluster.address


@pytest.fixture(scope="module")
def catalogue_files(catalogue, tmp_path_factory):
    model, _, train, test = catalogue
    d = tmp_path_factory.mktemp("catalogue")
    model.save(d / "model.npz")
    sp.save_npz(d / "train.npz", train)
    sp.save_npz(d / "test.npz", test)
    return d


def test_cli_evaluate_on_a_separate_scheduler_equals_the_in_process_run(
        external_cluster, catalogue_files, catalogue, capsys):
    d = catalogue_files
    common = ["evaluate", d / "model.npz", "--train", d / "train.npz", "--test", d / "test.npz",
              "--k", "5", "10"]
    remote = run_cli(*common, "--scheduler", external_cluster, "--json", d / "remote.json")
    assert remote.returncode == 0, remote.stderr
    assert cli.main([str(a) for a in common] + ["--json", str(d / "local.json")]) == 0
    local_stdout = capsys.readouterr().out
    assert remote.stdout == local_stdout
    remote_json = json.loads((d / "remote.json").read_text())
    assert remote_json == json.loads((d / "local.json").read_text())
    model, _, train, test = catalogue
    assert remote_json["n_users"] == int(np.count_nonzero(np.diff(test.indptr)))
    # recall@10 of a few users against brute force over the factors
    ids, _ = topk_reference(model.users.decode(), model.items.decode(), np.arange(model.n_users),
                            train.toarray(), 10)
    recalls = []
    for u in range(model.n_users):
        relevant = set(test.indices[test.indptr[u]:test.indptr[u + 1]].tolist())
        if relevant:
            recalls.append(user_metrics_reference(ids[u], relevant, 10, test.shape[1])["recall"])
    assert remote_json["metrics"]["recall@10"] == pytest.approx(np.mean(recalls), rel=1e-6)


def test_cli_recommend_on_a_separate_scheduler_equals_the_in_process_run(
        external_cluster, catalogue_files, catalogue):
    d = catalogue_files
    common = ["recommend", d / "model.npz", "--train", d / "train.npz", "--all-users", "--k", "7"]
    remote = run_cli(*common, "--scheduler", external_cluster, "--out", d / "remote")
    assert remote.returncode == 0, remote.stderr
    local = run_cli(*common, "--out", d / "local")
    assert local.returncode == 0, local.stderr
    assert sorted(os.listdir(d / "remote")) == sorted(os.listdir(d / "local"))
    got = read_candidates(d / "remote")
    for a, b in zip(got, read_candidates(d / "local")):
        np.testing.assert_array_equal(a, b)
    model, _, train, _ = catalogue
    np.testing.assert_array_equal(got[0], np.arange(model.n_users))
    ref_ids, ref_scores = topk_reference(model.users.decode(), model.items.decode(), got[0],
                                         train.toarray(), 7)
    np.testing.assert_array_equal(got[1], ref_ids)
    np.testing.assert_array_equal(got[2], ref_scores)
    # --no-filter ranks every item, on the cluster as in process
    remote = run_cli("recommend", d / "model.npz", "--all-users", "--no-filter", "--k", "3",
                     "--scheduler", external_cluster, "--out", d / "unfiltered")
    assert remote.returncode == 0, remote.stderr
    np.testing.assert_array_equal(read_candidates(d / "unfiltered")[1],
                                  model.recommend(got[0], None, k=3, filter_seen=False)[0])


def test_missing_dask_names_the_extra_to_install(monkeypatch, catalogue, tmp_path):
    model, _, train, test = catalogue
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'cfprune\[dask\]'") as info:
        evaluate_distributed(model, train, test, ks=(10,), scheduler="tcp://127.0.0.1:1")
    assert isinstance(info.value, ImportError)
    with pytest.raises(MissingDependencyError, match="dask"):
        recommend_to_files(model, [0, 1], train, out_dir=tmp_path / "x",
                           scheduler="tcp://127.0.0.1:1")
    # without a scheduler nothing needs dask
    assert len(recommend_to_files(model, [0, 1], train, out_dir=tmp_path / "y")) == 1


def test_bad_arguments_are_named(catalogue, tmp_path):
    model, _, train, _ = catalogue
    with pytest.raises(DataError, match="--out"):
        recommend_to_files(model, [0], train)
    with pytest.raises(DataError, match="shape"):
        recommend_to_files(model, [0], train[:10], out_dir=tmp_path)
    # no train and the seen filter on: the error FactorModel.recommend gives, not a silent
    # unfiltered list
    with pytest.raises(ShapeError, match="filter_seen=True needs"):
        model.recommend([0], None)
    with pytest.raises(ShapeError, match="filter_seen=True needs"):
        recommend_to_files(model, [0], None, out_dir=tmp_path / "none")
    assert not (tmp_path / "none").exists()
    written = recommend_to_files(model, [0], None, out_dir=tmp_path / "none", filter_seen=False)
    assert read_candidates(tmp_path / "none")[1].tolist() == \
        model.recommend([0], None, filter_seen=False)[0].tolist() and len(written) == 1
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(DataError, match="manifest"):
        read_candidates(tmp_path)


@pytest.mark.realdata
def test_ml100k_on_the_cluster_equals_in_process(client, monkeypatch, tmp_path):
    real_archive("ml-100k.zip")
    monkeypatch.setenv("CFPRUNE_DATA", str(DATA_HOME))
    from cfprune.datasets import load_movielens
    from cfprune.models import train_als
    from cfprune.splits import random_split
    data = load_movielens("ml-100k", implicit=True, download=False)
    train, test = random_split(data, test_fraction=0.2, seed=0)
    model = train_als(train, factors=16, iterations=3, num_threads=1, seed=0,
                      show_progress=False)
    expected = evaluate(model, train, test, ks=(10, 20), batch_size=128, num_threads=1,
                        keep_ranked=True)
    actual = evaluate_distributed(model, train, test, ks=(10, 20), scheduler=client,
                                  block_size=128, keep_ranked=True)
    assert_same_result(actual, expected)
    assert expected.n_users > 500 and 0.05 < expected.metrics["recall@20"] < 0.6
    users = np.arange(model.n_users)
    recommend_to_files(model, users, train, k=20, out_dir=tmp_path, scheduler=client)
    got_users, ids, scores = read_candidates(tmp_path)
    ref_ids, ref_scores = model.recommend(users, train.matrix, k=20)
    np.testing.assert_array_equal(got_users, users)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_array_equal(scores, ref_scores)


def run_killing_a_worker(arguments, tmp_path, kill_when):
    """stdout of ``cfprune ARGUMENTS --scheduler ADDRESS`` run as a user would, against a
    scheduler and two workers started in processes of their own; worker 0 (with its nanny) is
    SIGKILLed as soon as ``kill_when(the stderr lines so far)`` holds. Fails when the command
    fails or ends before the kill."""
    import signal
    import subprocess

    from .processes import CLI, process_env
    cluster = DaskProcesses(tmp_path, n_workers=2)
    try:
        proc = subprocess.Popen(CLI + [str(a) for a in arguments] + ["--scheduler",
                                                                     cluster.address],
                                stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                env=process_env())
        lines, killed = [], False
        for line in proc.stderr:
            lines.append(line)
            if not killed and kill_when(lines):
                victim = cluster.procs[1]           # worker0: the nanny's process group
                os.killpg(victim.pid, signal.SIGKILL)
                victim.wait(timeout=30)
                killed = True
        out = proc.stdout.read()
        assert proc.wait(timeout=600) == 0, "".join(lines[-20:])
    finally:
        cluster.close()
    assert killed, "the command finished before a worker could be killed"
    return out


@pytest.fixture(scope="module")
def search_files(tmp_path_factory):
    """A generated log (synthetic), its training part and a factor model of it with no training
    record (so the search validates it as given: no retraining in either process)."""
    from cfprune.datasets import synthetic_log
    from cfprune.models import train_als
    from cfprune.splits import random_split
    data = synthetic_log(1500, 300, 24000, n_topics=15, seed=5)
    train, _ = random_split(data, test_fraction=0.2, seed=1)
    als = train_als(train, factors=8, regularization=1.0, iterations=5, num_threads=1, seed=0)
    d = tmp_path_factory.mktemp("search")
    FactorModel(als.user_factors, als.item_factors).save(d / "model.npz")
    sp.save_npz(d / "train.npz", train.matrix)
    return d


SEARCH = ["--target", "recall@10>=0.95,coverage@10>=0.8", "--sample-users", "600"]


def search_record(path):
    """The search record without its timings."""
    record = json.loads(Path(path).read_text())
    for c in record["candidates"] + [record["pick"]]:
        c.pop("seconds_fit"), c.pop("seconds_evaluate")
    record.pop("seconds")
    return record


def test_cli_search_on_a_cluster_with_a_worker_killed_equals_in_process(search_files,
                                                                         tmp_path):
    """``compress --target --scheduler``: a scheduler and two workers in processes of their own;
    one worker (with its nanny) is killed after the third candidate; the search finishes with the
    in-process candidates, figures and pick."""
    pytest.importorskip("distributed")
    d = search_files
    common = ["compress", d / "model.npz", "--train", d / "train.npz", *SEARCH, "--side", "both"]
    local = run_cli(*common, "--out", d / "local.npz")
    assert local.returncode == 0, local.stderr
    out = run_killing_a_worker([*common, "--out", d / "remote.npz"], tmp_path,
                               lambda lines: sum(" B  " in x for x in lines) >= 3)
    assert search_record(d / "remote.search.json") == search_record(d / "local.search.json")
    assert out.split("; validation")[0] == local.stdout.split("; validation")[0]
    assert "whole model, users included" in out
    remote, here = FactorModel.load(d / "remote.npz"), FactorModel.load(d / "local.npz")
    np.testing.assert_array_equal(remote.items.decode(), here.items.decode())
    np.testing.assert_array_equal(remote.users.decode(), here.users.decode())


@pytest.fixture(scope="module")
def report_log(tmp_path_factory):
    """A generated log (synthetic) as a ratings CSV of raw ids, for ``cfprune report``."""
    from cfprune.datasets import synthetic_log
    data = synthetic_log(500, 150, 9000, n_topics=10, seed=3)
    coo = data.matrix.tocoo()
    path = tmp_path_factory.mktemp("report-log") / "log.csv"
    path.write_text("user,item\n" + "".join(f"u{u},i{i}\n" for u, i in zip(coo.row, coo.col)))
    return path


REPORT_METHODS = ["fp16:table=both", "int8:table=both", "int4:table=both", "pq:m=4,table=both",
                  "prune-rows:keep=0.5,by=popularity", "lowrank:rank=8|int8"]


def report_figures(path):
    """report.json without its timings (seconds, throughput) and the cache path."""
    def strip(obj):
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items()
                    if not k.startswith(("seconds", "users_per_second"))}
        if isinstance(obj, list):
            return [strip(v) for v in obj]
        return obj
    return strip(json.loads(Path(path).read_text()))


def test_cli_report_on_a_cluster_with_a_worker_killed_equals_in_process(report_log, tmp_path):
    """``report --scheduler``: a scheduler and two workers in processes of their own, one worker
    (with its nanny) killed after the first sweep row; the report finishes with the figures of
    the in-process run (every metric, interval and decision; timings aside)."""
    pytest.importorskip("distributed")
    common = ["report", "--ratings", report_log, "--quick", "--seed", "2", "--threads", "1",
              "--methods", *REPORT_METHODS]
    local = run_cli(*common, "--out", tmp_path / "local", timeout=600)
    assert local.returncode == 0, local.stderr
    out = run_killing_a_worker([*common, "--out", tmp_path / "remote"], tmp_path,
                               lambda lines: lines[-1].startswith("report: sweep 1/"))
    remote = report_figures(tmp_path / "remote" / "report.json")
    assert remote == report_figures(tmp_path / "local" / "report.json")
    assert [row["spec"] for row in remote["rows"]] == REPORT_METHODS
    assert out.split("\n")[:3] == local.stdout.split("\n")[:3]
