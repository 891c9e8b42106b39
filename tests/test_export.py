"""export_faiss: the item table as a faiss index with the same codes; faiss's own search is the
peer that must return cfprune's unfiltered top-k."""

import numpy as np
import pytest

import cfprune
from cfprune.cli import main
from cfprune.export import ExportError
from cfprune.models import FactorModel
from cfprune.tables import PQTable

faiss = pytest.importorskip("faiss")

K = 10


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(3)
    return FactorModel(rng.normal(size=(80, 16)).astype(np.float32),
                       rng.normal(size=(600, 16)).astype(np.float32))


def assert_same_topk(index, model):
    """faiss's top-k equals cfprune's unfiltered top-k (positions inside a float32 near-tie of
    the two decoders may swap), and both equal the brute-force scores of the decoded table."""
    users = model.users.decode()
    dist, found = index.search(users, K)
    # one more than shown, to see a tie between the last item shown and the first left out
    ids, scores = model.recommend(np.arange(model.n_users), None, k=K + 1, filter_seen=False)
    np.testing.assert_allclose(dist, scores[:, :K], rtol=1e-5, atol=1e-5)
    brute = users.astype(np.float64) @ model.items.decode().T.astype(np.float64)
    np.testing.assert_allclose(np.take_along_axis(brute, found, 1), scores[:, :K], rtol=1e-5,
                               atol=1e-5)
    gaps = np.abs(np.diff(scores, axis=1))
    clear = np.ones_like(found, bool)
    clear &= gaps > 1e-5
    clear[:, 1:] &= gaps[:, :-1] > 1e-5
    np.testing.assert_array_equal(found[clear], ids[:, :K][clear])


@pytest.mark.parametrize("spec", ["", "fp16", "int8:axis=dim", "int8:axis=dim,symmetric=true",
                                  "int4:axis=dim", "pq:m=4", "pq:m=8,rotation=opq,rounds=2",
                                  "pq:m=8,nbits=4", "pq:m=4,nbits=4,rotation=opq,rounds=2",
                                  "lowrank:rank=8", "prune-rows:keep=0.5,fallback=mean"])
def test_faiss_search_equals_cfprune(model, spec, tmp_path):
    compressed = cfprune.compress(model, spec)
    path = tmp_path / "index.faiss"
    cfprune.export_faiss(compressed, path)
    index = faiss.read_index(str(path))
    assert index.ntotal == compressed.n_items
    assert_same_topk(index, compressed)


@pytest.mark.parametrize("spec", ["fp16", "int8:axis=dim", "int8:axis=dim,symmetric=true",
                                  "int4:axis=dim", "pq:m=4", "pq:m=8,nbits=4"])
def test_same_codes_and_decode(model, spec):
    """The index stores the table's own codes and faiss decodes them to cfprune's values."""
    compressed = cfprune.compress(model, spec)
    table = compressed.items
    index = cfprune.export_faiss(compressed)
    codes = faiss.vector_to_array(index.codes).reshape(table.n_rows, -1)
    expected = {"fp16": lambda: table.data.view(np.uint8),
                "int8": lambda: (table.codes.astype(np.int16) + 128).astype(np.uint8),
                "int4": lambda: table.codes, "pq": lambda: table.codes}[table.storage]()
    np.testing.assert_array_equal(codes, expected)
    np.testing.assert_allclose(index.reconstruct_n(0, table.n_rows), table.decode(),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("spec, why, nearest", [
    ("int8", "per-row int8 scales", "int8:axis=dim"),
    ("int4:axis=row", "per-row int4 scales", "int4:axis=dim"),
    ("pq:m=5", "unequal width", "pq:m=4"),
    ("prune-rows:keep=0.5", "leave the catalogue", "prune-rows:keep=0.5,fallback=mean"),
    ("prune-rows:keep=0.5|int8:axis=dim", "leave the catalogue", "int8:axis=dim"),
    ("magnitude", "CSR", "fp16"),
    ("int2", "no 2-bit codes", "int4:axis=dim"),
    ("int2:axis=dim,table=both", "no 2-bit codes", "int4:axis=dim,table=both"),
    ("pq:m=4,rerank=int8", "re-ranks", "pq:m=4"),
])
def test_inexpressible_storage_names_the_nearest_spec(model, spec, why, nearest):
    with pytest.raises(ExportError, match=why) as err:
        cfprune.export_faiss(cfprune.compress(model, spec))
    assert str(err.value).endswith(f"nearest spec that exports: {nearest!r}")
    assert "\n" not in str(err.value)


def test_four_bit_pq_codes_are_faiss_codes(model):
    """faiss reads packed 4-bit codes as cfprune does: sub-space 2j in the low nibble of byte j
    (faiss's own unpacking, ``pq.decode``, of a row whose sub-space s holds code s)."""
    index = cfprune.export_faiss(cfprune.compress(model, "pq:m=8,nbits=4"))
    assert index.pq.code_size == 4
    decoded = index.pq.decode(PQTable.pack4(np.arange(8, dtype=np.uint8)[None]))
    centroids = faiss.vector_to_array(index.pq.centroids).reshape(8, 16, 2)
    np.testing.assert_array_equal(decoded[0], np.concatenate([centroids[s, s] for s in range(8)]))


def test_cli_export(model, tmp_path, capsys):
    good, bad = tmp_path / "pq.npz", tmp_path / "int8.npz"
    cfprune.compress(model, "pq:m=4,rotation=opq,rounds=1").save(good)
    cfprune.compress(model, "int8").save(bad)
    out = tmp_path / "index.faiss"
    assert main(["export", str(good), "--format", "faiss", "--out", str(out)]) == 0
    assert_same_topk(faiss.read_index(str(out)), cfprune.load(good))
    assert main(["export", str(bad), "--format", "faiss", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "int8:axis=dim" in err
    assert not (tmp_path / "x").exists()
