"""The command line end to end on a small synthetic ratings file, against NumPy references."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from cfprune import cli
from cfprune.models import FactorModel
from tests.reference_data import DATA_HOME, real_archive
from tests.reference_metrics import topk_reference, user_metrics_reference

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    users = rng.integers(0, 80, 3000)
    items = (rng.pareto(1.2, 3000) * 10).astype(int) % 120
    ratings = rng.integers(1, 6, 3000)
    lines = ["user,item,rating"] + [f"u{u},m{i},{r}" for u, i, r in zip(users, items, ratings)]
    (tmp / "ratings.csv").write_text("\n".join(lines) + "\n")
    data = ["--ratings", str(tmp / "ratings.csv"), "--threshold", "3", "--seed", "1"]
    assert cli.main(["train", *data, "--factors", "8", "--iterations", "5", "--out",
                     str(tmp / "als.npz"), "--save-split", str(tmp / "split"), "--threads",
                     "1"]) == 0
    return tmp, data


def test_recommend_json_equals_brute_force(workdir):
    tmp, _ = workdir
    model = FactorModel.load(tmp / "als.npz")
    train = sp.load_npz(tmp / "split/train.npz").toarray()
    ids, scores = topk_reference(model.user_factors, model.item_factors, [0, 3, 5], train, 7)
    raw_users = [str(u) for u in model.user_ids[[0, 3, 5]]]    # "u..." ids of ratings.csv
    out = tmp / "rec.json"
    assert cli.main(["recommend", str(tmp / "als.npz"), "--train", str(tmp / "split/train.npz"),
                     "--users", *raw_users, "--k", "7", "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["users"] == raw_users
    assert got["items"] == model.item_ids[ids].tolist()
    np.testing.assert_allclose(got["scores"], scores, rtol=1e-5)
    out = tmp / "rec-internal.json"
    assert cli.main(["recommend", str(tmp / "als.npz"), "--train", str(tmp / "split/train.npz"),
                     "--users", "0", "3", "5", "--k", "7", "--internal-ids",
                     "--json", str(out)]) == 0
    got = json.loads(out.read_text())
    assert got["users"] == [0, 3, 5] and got["items"] == ids.tolist()


def test_evaluate_json_equals_reference(workdir):
    tmp, _ = workdir
    out = tmp / "eval.json"
    assert cli.main(["evaluate", str(tmp / "als.npz"), "--train", str(tmp / "split/train.npz"),
                     "--test", str(tmp / "split/test.npz"), "--k", "5", "10",
                     "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    model = FactorModel.load(tmp / "als.npz")
    train = sp.load_npz(tmp / "split/train.npz").toarray()
    test = sp.load_npz(tmp / "split/test.npz").tocsr()
    users = [u for u in range(test.shape[0]) if test[u].nnz]
    ids, _ = topk_reference(model.user_factors, model.item_factors, users, train, 10)
    for k in (5, 10):
        per_user = [user_metrics_reference(ids[n], set(test[u].indices.tolist()), k,
                                           test.shape[1]) for n, u in enumerate(users)]
        for name in ("recall", "ndcg", "precision"):
            assert report["metrics"][f"{name}@{k}"] == pytest.approx(
                np.mean([m[name] for m in per_user]), abs=1e-9)
    assert report["n_users"] == len(users)


def test_compress_then_evaluate_against_baseline(workdir, capsys):
    tmp, data = workdir
    small = tmp / "small.npz"
    assert cli.main(["compress", str(tmp / "als.npz"), *data, "--method",
                     "prune-rows:keep=0.5,by=popularity|int8", "--out", str(small)]) == 0
    model = FactorModel.load(small)
    assert model.spec == "prune-rows:keep=0.5,by=popularity|int8"
    assert model.items.storage == "pruned" and model.items.inner.storage == "int8"
    capsys.readouterr()
    assert cli.main(["evaluate", str(small), *data, "--baseline", str(tmp / "als.npz"),
                     "--k", "10"]) == 0
    printed = capsys.readouterr().out
    assert "overlap@10" in printed
    assert "recall@10 " in printed and " vs " in printed and "[" in printed


def test_strong_generalisation_folds_users_in(workdir, capsys):
    _, data = workdir
    capsys.readouterr()
    assert cli.main(["train", *data, "--split", "strong", "--test-fraction", "0.25",
                     "--factors", "8", "--iterations", "5", "--k", "10"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    n_scored = int(first.split(": ")[1].split()[0])
    # only the held-out quarter of the 80 users is scored (a random split scores nearly all)
    assert 10 <= n_scored <= 25
    assert cli.main(["train", *data, "--split", "strong", "--algorithm", "bpr"]) == 2


# the command line as a user runs it: a subprocess, raw ids, early argument checks -----------
HEAVY = ("sklearn", "implicit", "pandas", "numba", "matplotlib", "scipy.linalg")


def run_cli(*args, cwd, importtime=False):
    """(exit code, stdout, stderr lines that are not -X importtime's, modules imported)."""
    env = dict(os.environ, CFPRUNE_DATA=str(DATA_HOME),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    flags = ["-X", "importtime"] if importtime else []
    proc = subprocess.run([sys.executable, *flags, "-m", "cfprune.cli", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    lines = proc.stderr.splitlines()
    imported = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
    errors = [line for line in lines if not line.startswith("import time:")]
    return proc.returncode, proc.stdout, errors, imported


@pytest.mark.parametrize("args", [
    ("compress", "m.npz", "--dataset", "ml-100k", "--method", "pq:bits=3", "--out", "o.npz"),
    ("compress", "m.npz", "--dataset", "ml-100k", "--method", "int9", "--out", "o.npz"),
    ("evaluate", "m.npz", "--dataset", "ml-100k", "--k", "0"),
    ("evaluate", "missing.npz", "--dataset", "ml-100k"),
    ("train", "--dataset", "ml-100k", "--test-fraction", "1.5"),
    ("train", "--dataset", "ml-100k", "--threshold", "nan"),
    ("report", "--dataset", "ml-100k", "--out", "r", "--methods", "lowrank:rank=0"),
    ("recommend", "m.npz", "--users", "1"),
])
def test_argument_mistakes_fail_at_once_without_heavy_imports(args, tmp_path):
    rng = np.random.default_rng(0)
    FactorModel(rng.standard_normal((5, 4)).astype(np.float32),
                rng.standard_normal((7, 4)).astype(np.float32)).save(tmp_path / "m.npz")
    code, out, errors, imported = run_cli(*args, cwd=tmp_path, importtime=True)
    assert code == 2 and out == ""
    assert len(errors) == 1 and errors[0].startswith(f"cfprune {args[0]}: error: "), errors
    assert not imported & set(HEAVY), imported & set(HEAVY)
    assert "cfprune" in imported and not (tmp_path / "o.npz").exists()   # importtime worked


def read_zip_table(member, sep, encoding="utf-8"):
    """Rows of a tab/pipe-separated member of the shared ml-100k.zip, split into fields."""
    with zipfile.ZipFile(DATA_HOME / "ml-100k.zip") as z:
        text = z.read(member).decode(encoding)
    return [line.split(sep) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def movielens(tmp_path_factory):
    real_archive("ml-100k.zip")
    tmp = tmp_path_factory.mktemp("ml100k")
    code, _, errors, _ = run_cli("train", "--dataset", "ml-100k", "--factors", "16",
                                 "--iterations", "3", "--threads", "1", "--out", "als.npz",
                                 "--save-split", "split", cwd=tmp)
    assert code == 0, errors
    events = read_zip_table("ml-100k/u.data", "\t")
    # raw ids of the rows and columns: the sorted distinct ids of u.data (the matrix keeps them
    # all after binarising)
    user_ids = np.unique([int(e[0]) for e in events])
    item_ids = np.unique([int(e[1]) for e in events])
    movies = {int(row[0]): row[1] for row in read_zip_table("ml-100k/u.item", "|", "latin-1")}
    return tmp, user_ids, item_ids, movies


def test_recommend_shows_raw_movielens_ids_and_skips_training_items(movielens):
    tmp, user_ids, item_ids, movies = movielens
    users = [1, 2, 943]
    code, out, errors, _ = run_cli("recommend", "als.npz", "--dataset", "ml-100k", "--users",
                                   *users, "--k", "20", "--json", "rec.json", cwd=tmp)
    assert code == 0, errors
    got = json.loads((tmp / "rec.json").read_text())
    assert got["users"] == users and got["ids"] == "raw"
    model = FactorModel.load(tmp / "als.npz")
    train = sp.load_npz(tmp / "split/train.npz").tocsr()
    rows = [int(np.searchsorted(user_ids, u)) for u in users]
    ref_ids, ref_scores = topk_reference(model.user_factors, model.item_factors, rows,
                                         train.toarray(), 20)
    assert got["items"] == item_ids[ref_ids].tolist()
    np.testing.assert_allclose(got["scores"], ref_scores, rtol=1e-5)
    for row, items in zip(rows, got["items"]):
        seen = set(item_ids[train[row].indices].tolist())
        assert seen and not seen & set(items)
        assert all(i in movies for i in items)         # ids of u.item, e.g. 69 Forrest Gump
    # the text output shows the same raw ids; --internal-ids shows rows (movie id - 1 here)
    code, out, _, _ = run_cli("recommend", "als.npz", "--dataset", "ml-100k", "--users", "1",
                              "--k", "20", cwd=tmp)
    first = out.splitlines()[1]
    assert first.startswith("1: ")
    assert [int(p.split(":")[0]) for p in first[3:].split()] == got["items"][0]
    code, out, _, _ = run_cli("recommend", "als.npz", "--dataset", "ml-100k", "--users", "0",
                              "--internal-ids", "--k", "20", cwd=tmp)
    assert [int(p.split(":")[0]) for p in out.splitlines()[1][3:].split()] == ref_ids[0].tolist()


def test_recommend_matches_imported_id_maps_by_raw_id(movielens):
    """Factors imported in another row order with --user-ids/--item-ids recommend the same raw
    items, with the same scores, as the model they came from."""
    tmp, user_ids, item_ids, _ = movielens
    model = FactorModel.load(tmp / "als.npz")
    rng = np.random.default_rng(1)
    users, items = rng.permutation(model.n_users), rng.permutation(model.n_items)
    np.save(tmp / "U.npy", model.user_factors[users])
    np.save(tmp / "V.npy", model.item_factors[items])
    (tmp / "users.txt").write_text("\n".join(map(str, user_ids[users])) + "\n")
    (tmp / "items.txt").write_text("\n".join(map(str, item_ids[items])) + "\n")
    code, _, errors, _ = run_cli("import", "--user-factors", "U.npy", "--item-factors", "V.npy",
                                 "--user-ids", "users.txt", "--item-ids", "items.txt",
                                 "--out", "perm.npz", cwd=tmp)
    assert code == 0, errors
    got = {}
    for name in ("als.npz", "perm.npz"):
        code, _, errors, _ = run_cli("recommend", name, "--dataset", "ml-100k", "--users", "1",
                                     "943", "--k", "20", "--json", f"{name}.json", cwd=tmp)
        assert code == 0, errors
        got[name] = json.loads((tmp / f"{name}.json").read_text())
    assert got["perm.npz"]["items"] == got["als.npz"]["items"]
    np.testing.assert_allclose(got["perm.npz"]["scores"], got["als.npz"]["scores"], rtol=1e-6)


def test_recommend_unknown_raw_id_is_one_line_naming_it(movielens):
    tmp = movielens[0]
    code, out, errors, _ = run_cli("recommend", "als.npz", "--dataset", "ml-100k", "--users",
                                   "1", "944", cwd=tmp)
    assert code == 2 and len(errors) == 1 and "user id 944" in errors[0]
    code, out, errors, _ = run_cli("recommend", "als.npz", "--users", "1", cwd=tmp)
    assert code == 2 and len(errors) == 1 and "--no-filter" in errors[0]
    code, out, errors, _ = run_cli("recommend", "als.npz", "--users", "1", "--no-filter",
                                   "--k", "3", cwd=tmp)
    assert code == 0 and out.splitlines()[1].startswith("1: ")


def test_train_help_states_the_python_defaults(capsys):
    """`cfprune train --help` shows the keyword defaults train_als and train_bpr really use."""
    import inspect

    from cfprune.models import train_als, train_bpr
    als = inspect.signature(train_als).parameters
    bpr = inspect.signature(train_bpr).parameters
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"--factors FACTORS default {als['factors'].default}" in text
    assert bpr["factors"].default == als["factors"].default
    assert (f"default: ALS {als['regularization'].default:g}, BPR "
            f"{bpr['regularization'].default:g}") in text
    assert f"1 + alpha), default {als['alpha'].default:g}" in text
    assert f"BPR step size, default {bpr['learning_rate'].default:g}" in text
    assert (f"default: ALS {als['iterations'].default}, BPR "
            f"{bpr['iterations'].default}") in text
