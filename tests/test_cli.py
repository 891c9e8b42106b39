"""The command line end to end on a small synthetic ratings file, against NumPy references."""

import json

import numpy as np
import pytest
import scipy.sparse as sp

from cfprune import cli
from cfprune.models import FactorModel
from tests.reference_metrics import topk_reference, user_metrics_reference


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
