"""What a new user meets first: the README's Python example and every public name of cfprune."""

import importlib
import re
from pathlib import Path

import numpy as np

import cfprune
from tests.reference_data import DATA_HOME, real_archive

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_python_blocks():
    """Every ```python block of the README, verbatim, in order (the later ones continue the
    first: the "## Python" example, then "## Fitting in")."""
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) >= 2, "the README's Python sections have no ```python block"
    return "".join(blocks)


def test_readme_python_block_runs_twice_in_one_process(tmp_path, monkeypatch):
    real_archive("ml-100k.zip")
    monkeypatch.setenv("CFPRUNE_DATA", str(DATA_HOME))
    monkeypatch.chdir(tmp_path)
    code = compile(readme_python_blocks(), str(README), "exec")
    for _ in range(2):
        namespace = {}
        exec(code, namespace)
        assert (tmp_path / "small.npz").is_file()
        model, small, result = namespace["model"], namespace["small"], namespace["result"]
        # the example's claim: compression costs recall (here a little), never "improves" it
        base = cfprune.evaluate(model, namespace["train"], namespace["test"], ks=(20,))
        assert result.metrics["recall@20"] <= base.metrics["recall@20"]
        assert small.nbytes < model.nbytes
        loaded = cfprune.load("small.npz")
        np.testing.assert_array_equal(loaded.item_factors, small.item_factors)
        bigger = namespace["bigger"]
        assert bigger.n_items == small.n_items + 2
        np.testing.assert_array_equal(bigger.item_factors[:small.n_items], small.item_factors)


def test_every_name_the_readme_mentions_resolves():
    text = README.read_text(encoding="utf-8")
    names = set(re.findall(r"\bcfprune((?:\.[A-Za-z_]\w*)+)", text))
    names |= {"." + n for n in re.findall(r"`(\w+)\(\)`", text)}   # `load_ml1m_no_timestamps()`
    assert ".compress" in names and ".load_ml1m_no_timestamps" in names
    for dotted in names:
        obj, path = cfprune, "cfprune"
        for part in dotted.strip(".").split("."):
            path += "." + part
            obj = getattr(obj, part) if hasattr(obj, part) else importlib.import_module(path)


def test_every_public_name_resolves_and_compress_works_twice():
    for name in cfprune.__all__:
        assert getattr(cfprune, name) is not None, name
    namespace = {}
    exec("from cfprune import *", namespace)
    assert set(cfprune.__all__) <= set(namespace)
    rng = np.random.default_rng(0)
    model = cfprune.FactorModel(rng.standard_normal((6, 8)).astype(np.float32),
                                rng.standard_normal((10, 8)).astype(np.float32))
    for _ in range(2):
        small = cfprune.compress(model, "int8")
        assert small.spec == "int8" and small.nbytes < model.nbytes
        # the attribute stays the function even after the subpackage is imported
        importlib.import_module("cfprune.compression")
        assert callable(cfprune.compress)
    assert "pq" in cfprune.describe_methods()
