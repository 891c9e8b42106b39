"""A new storage is one file: bfloat16 is defined below (a Table subclass and a Compressor for
it), with no edit under cfprune/, and serves compress, recommend, evaluate, save/load,
add_items, the byte plan and a clean export error through the Table protocol's defaults."""

import numpy as np
import pytest
import scipy.sparse as sp

import cfprune
from cfprune.compression.base import TableCompressor
from cfprune.compression.search.bytes import planned_item_bytes
from cfprune.compression.spec import parse_spec
from cfprune.models import FactorModel
from cfprune.tables import Table
from cfprune.tables.base import check_matrix, hold, row_index

from .reference_kernels import assert_topk_matches

NAME = "bf16-protocol-test"


class BFloat16Table(Table):
    """bfloat16: the top 16 bits of each float32 (round to nearest even). Arrays: ``bits``
    uint16 [n, d]. Only the required methods: the rest is the Table protocol's defaults."""

    storage = NAME

    def __init__(self, bits):
        self.bits = hold(check_matrix(bits, "bits", np.uint16), bits)

    @classmethod
    def encode(cls, x):
        u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
        return cls(((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16))

    @classmethod
    def nbytes_for(cls, n_rows, dim):
        return 2 * int(n_rows) * int(dim)

    @property
    def n_rows(self):
        return self.bits.shape[0]

    @property
    def dim(self):
        return self.bits.shape[1]

    def decode(self, rows=None):
        bits = self.bits[row_index(rows, self.n_rows)].astype(np.uint32) << 16
        return np.ascontiguousarray(bits.view(np.float32))

    def arrays(self):
        return {"bits": self.bits}

    @classmethod
    def from_arrays(cls, arrays, **params):
        return cls(arrays["bits"])


class BFloat16(TableCompressor):
    """bfloat16 tables (defined in this test only)."""

    name = NAME
    schema = dict(TableCompressor.schema)

    def compress_table(self, table, ctx):
        return BFloat16Table.encode(table.decode()), {}

    def item_state(self, before, after, info):
        return {}, {}

    @classmethod
    def encode_rows(cls, table, params, arrays):
        return BFloat16Table.encode(table.decode())

    def plan_rows(self, plan):
        return BFloat16Table.plan(plan.n_rows, plan.dim)


def bf16_reference(x):
    """float64 [n, d]: float32 ``x`` rounded to 8 mantissa bits (nearest, ties to even), by
    frexp rather than bit twiddling."""
    mantissa, exponent = np.frexp(np.asarray(x, np.float64))
    return np.ldexp(np.round(mantissa * 256) / 256, exponent)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    model = FactorModel(rng.normal(size=(60, 12)).astype(np.float32),
                        rng.normal(size=(300, 12)).astype(np.float32))
    train = sp.random(60, 300, density=0.05, format="csr", random_state=1, dtype=np.float32)
    train.data[:] = 1
    test = sp.random(60, 300, density=0.03, format="csr", random_state=2, dtype=np.float32)
    test.data[:] = 1
    return model, train, test


SPECS = [NAME, f"{NAME}:table=both", f"prune-rows:keep=0.5,fallback=mean|{NAME}",
         f"{NAME}|prune-rows:keep=0.5"]


@pytest.mark.parametrize("spec", SPECS)
def test_compress_and_recommend_equal_brute_force(data, spec):
    model, train, _ = data
    c = cfprune.compress(model, spec)
    assert c.items.stored.storage == NAME
    kept = model.items.decode()[c.items.stored_ids()]
    np.testing.assert_array_equal(c.items.stored.decode(), bf16_reference(kept))
    users = np.arange(model.n_users)
    for k in (1, 10):
        for batch_size in (3, 4096):        # batches of a few users and one large one
            ids, scores = c.recommend(users, train, k=k, batch_size=batch_size)
            exact = c.users.decode().astype(np.float64) @ c.items.decode().T.astype(np.float64)
            seen = [set(train[u].indices) for u in users]
            assert_topk_matches(ids, scores, exact, k, seen, c.items.valid_rows())


def test_evaluate_save_load_and_plan(data, tmp_path):
    model, train, test = data
    c = cfprune.compress(model, NAME)
    metrics = cfprune.evaluate(c, train, test, ks=(10,))
    assert 0 <= metrics["recall@10"] <= 1
    path = tmp_path / "bf16.npz"
    c.save(path)
    loaded = cfprune.load(path)
    assert type(loaded.items) is BFloat16Table
    np.testing.assert_array_equal(loaded.items.bits, c.items.bits)
    users = np.arange(model.n_users)
    np.testing.assert_array_equal(loaded.recommend(users, train)[0], c.recommend(users, train)[0])
    assert BFloat16Table.plan(*c.items.shape).nbytes == c.items.nbytes == 2 * 300 * 12


def test_the_search_byte_model_asks_the_new_storage(data):
    """The target search's estimate, before fitting, of pipelines ending in the new storage
    equals the bytes of the fitted tables (2 bytes a weight, plus the pruned row map)."""
    model, train, _ = data
    for spec in (NAME, f"prune-rows:keep=0.5,by=popularity|{NAME}"):
        steps = parse_spec(spec)
        built = cfprune.compress(model, spec, train).items.nbytes
        assert planned_item_bytes(steps, model.n_items, model.dim, model.n_users) == built
    assert built == 2 * 150 * 12 + 300 // 8 + 1   # the kept rows as a 300-bit map


def add_items(model, vectors):
    """The model with ``vectors`` appended as new items (the add_items of this tree)."""
    adder = getattr(cfprune, "add_items", None)
    return adder(model, vectors) if adder is not None else model.add_items(vectors)


def test_add_items_appends_encoded_rows(data):
    model, _, _ = data
    c = cfprune.compress(model, NAME)
    new = np.random.default_rng(4).normal(size=(7, 12)).astype(np.float32)
    grown = add_items(c, new)
    assert type(grown.items) is BFloat16Table and grown.n_items == 307
    np.testing.assert_array_equal(grown.items.decode(), np.concatenate(
        [c.items.decode(), bf16_reference(new).astype(np.float32)]))


def test_export_names_the_reason_and_the_nearest_spec(data):
    pytest.importorskip("faiss")
    from cfprune.export import ExportError
    model, _, _ = data
    with pytest.raises(ExportError) as err:
        cfprune.export_faiss(cfprune.compress(model, NAME))
    message = str(err.value)
    assert "\n" not in message and f"{NAME!r} storage has no faiss index" in message
    assert message.endswith("nearest spec that exports: 'fp16'")
