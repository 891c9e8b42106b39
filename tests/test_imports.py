"""The package's imports point one way: down the layers below, and never in a circle.

Every module of ``cfprune`` is parsed with :mod:`ast` (nothing is imported): module-level imports
and imports inside functions, absolute and relative, ``from . import x`` read as the submodule
``x`` when there is one, and the names a module hands to ``import_module`` as strings (the
package's lazy ``_LAZY`` table, the method registry). From that graph the tests fail on

- a circle of imports (naming every module of it with the file:line of each arrow),
- an import of a higher layer (file:line, which layer to which),
- a module in no layer, and an import of a package module that does not exist.

Not seen: imports built from computed strings, and the implicit import of a package's
``__init__`` when a submodule of it is imported (it belongs to the same layer).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cfprune

PACKAGE = "cfprune"
PACKAGE_DIR = Path(cfprune.__file__).parent
REPO = PACKAGE_DIR.parent

# The layers, lowest first (docs/architecture.md, "Layers"): a module imports modules of its own
# layer or of a lower one. A name stands for that module and every module under it (the most
# specific name wins), except the root package ``cfprune`` (``cfprune/__init__.py``, the lazy
# public face, whose ``__version__`` the report reads), which stands for itself alone.
LAYERS = [
    ("base", ["cfprune.errors", "cfprune.arrays", "cfprune.io", "cfprune.metric_names",
              "cfprune.progress"]),
    ("kernels", ["cfprune.kernels"]),
    ("tables", ["cfprune.tables"]),
    ("data", ["cfprune.interactions", "cfprune.splits", "cfprune.datasets"]),
    ("retrieval", ["cfprune.retrieval", "cfprune.evaluation", "cfprune.uncertainty"]),
    ("distributed", ["cfprune.distributed"]),
    ("models", ["cfprune.models"]),
    ("compression", ["cfprune.compression"]),
    ("facade", ["cfprune.facade"]),
    ("interop", ["cfprune.export", "cfprune.implicit_adapter"]),
    ("applications", ["cfprune.report", "cfprune.cli", "cfprune"]),
]


# reading the package ---------------------------------------------------------------------------
def package_modules(package_dir, package):
    """dict dotted module name -> path of every ``.py`` file under ``package_dir``."""
    out = {}
    for path in sorted(Path(package_dir).rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def import_edges(modules, package):
    """dict module -> list of (imported package module, line) for every module of ``modules``
    (from :func:`package_modules`). A target that is no module of ``modules`` is kept as written
    (:func:`missing_modules` reports it)."""
    return {name: sorted(set(_imports_of(name, path, modules, package)), key=lambda e: e[::-1])
            for name, path in modules.items()}


def _imports_of(name, path, modules, package):
    """(target, line) for every import of a package module in module ``name`` at ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]

    def ours(target):
        return target == package or target.startswith(package + ".")

    names_import_module = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if ours(alias.name):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module
            names_import_module |= any(a.name == "import_module" for a in node.names)
            if not ours(base):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub if sub in modules else base), node.lineno
        elif isinstance(node, (ast.Attribute, ast.Name)) and \
                getattr(node, "attr", getattr(node, "id", None)) == "import_module":
            names_import_module = True
    if names_import_module:
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and node.value in modules and node.value != name:
                yield node.value, node.lineno


# the rules -------------------------------------------------------------------------------------
def layer_of(module, layers):
    """(rank, layer name) of ``module`` by its most specific entry in ``layers``, or None. A
    top-level name (the root package) stands for itself alone."""
    best = None
    for rank, (layer, names) in enumerate(layers):
        for n in names:
            if module == n or ("." in n and module.startswith(n + ".")):
                if best is None or len(n) > best[0]:
                    best = (len(n), rank, layer)
    return None if best is None else best[1:]


def circles(edges):
    """list of (circle, part), smallest part first, one for every set of modules that reach
    each other (a strongly connected part of more than one module): ``part`` is that set,
    ``circle`` a shortest circle through its first module by name, as a list of (module,
    imported module, line)."""
    graph = {m: sorted({t for t, _ in ts if t != m}) for m, ts in edges.items()}
    index, low, on_stack, stack, parts = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.add(w)
                if w == v:
                    break
            if len(part) > 1:
                parts.append(part)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    out = []
    for part in parts:
        start = min(part)
        came = {start: None}
        frontier, path = [start], None
        while frontier and path is None:
            nxt = []
            for v in frontier:
                for w in graph[v]:
                    if w == start:
                        path = [v]
                        while came[path[-1]] is not None:
                            path.append(came[path[-1]])
                        path.reverse()
                        break
                    if w in part and w not in came:
                        came[w] = v
                        nxt.append(w)
                if path is not None:
                    break
            frontier = nxt
        hops = list(zip(path, path[1:] + [start]))
        circle = [(a, b, min(line for t, line in edges[a] if t == b)) for a, b in hops]
        out.append((circle, part))
    return sorted(out, key=lambda c: (len(c[1]), min(c[1])))


def upward_imports(edges, layers):
    """list of (module, imported module, line, its layer, the imported module's layer) for every
    import of a higher layer."""
    out = []
    for module, targets in sorted(edges.items()):
        here = layer_of(module, layers)
        for target, line in targets:
            there = layer_of(target, layers)
            if here and there and there[0] > here[0]:
                out.append((module, target, line, here[1], there[1]))
    return out


def missing_modules(edges, modules):
    """list of (module, imported name, line) for imports of package modules that do not exist."""
    return [(m, t, line) for m, ts in sorted(edges.items()) for t, line in ts if t not in modules]


def describe_circle(circle, part, files):
    """One line: the circle with the file:line of each arrow, and the rest of its part."""
    text = "import circle: " + " -> ".join(f"{a} ({files(a)}:{line})" for a, _, line in circle) \
        + f" -> {circle[0][0]}"
    rest = sorted(part - {a for a, _, _ in circle})
    return text + (f"; these reach it and it reaches them too: {rest}" if rest else "")


# the package ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def package():
    modules = package_modules(PACKAGE_DIR, PACKAGE)
    return modules, import_edges(modules, PACKAGE)


def where(modules):
    return lambda m: modules[m].relative_to(REPO).as_posix() if m in modules else m


def test_every_module_has_a_layer(package):
    modules, _ = package
    unplaced = [m for m in modules if layer_of(m, LAYERS) is None]
    assert not unplaced, (f"modules in no layer: {unplaced}; add them to LAYERS in "
                          f"tests/test_imports.py and to docs/architecture.md")


def test_no_import_circle(package):
    modules, edges = package
    found = circles(edges)
    assert not found, "\n".join(describe_circle(c, part, where(modules)) for c, part in found)


def test_imports_point_down(package):
    modules, edges = package
    up = upward_imports(edges, LAYERS)
    assert not up, "imports of a higher layer:\n" + "\n".join(
        f"{where(modules)(m)}:{line}: {m} ({a}) imports {t} ({b})" for m, t, line, a, b in up)


def test_imports_name_existing_modules(package):
    modules, edges = package
    missing = missing_modules(edges, modules)
    assert not missing, "\n".join(f"{where(modules)(m)}:{line}: imports {t}, which is no "
                                  f"module of the package" for m, t, line in missing)


def test_the_known_breaks_are_gone(package):
    """The arrows issue 20 named: the model imported compression, io imported tables."""
    _, edges = package
    for module, below in [("cfprune.models", ("cfprune.compression", "cfprune.report")),
                          ("cfprune.io", ("cfprune.tables",)),
                          ("cfprune.tables", ("cfprune.models", "cfprune.retrieval",
                                              "cfprune.compression", "cfprune.report"))]:
        for m, targets in edges.items():
            if m == module or m.startswith(module + "."):
                bad = [(t, line) for t, line in targets if t.startswith(below)]
                assert not bad, f"{m} imports {bad}"


# the checker can fail --------------------------------------------------------------------------
def test_checker_reports_a_circle_and_an_upward_import():
    edges = {"p.a": [("p.b", 3)], "p.b": [("p.c", 7), ("p.low", 8)], "p.c": [("p.a", 2)],
             "p.low": [("p.high", 5)], "p.high": [("p.low", 9)]}
    layers = [("low", ["p.low"]), ("high", ["p.a", "p.b", "p.c", "p.high", "p"])]
    assert layer_of("p.low.x", layers) == (0, "low") and layer_of("p", layers) == (1, "high")
    assert layer_of("p.elsewhere", layers) is None
    found = circles(edges)
    assert [[(a, b) for a, b, _ in c] for c, _ in found] == [
        [("p.high", "p.low"), ("p.low", "p.high")],
        [("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a")]]
    assert describe_circle(*found[1], lambda m: m.replace(".", "/") + ".py") == \
        "import circle: p.a (p/a.py:3) -> p.b (p/b.py:7) -> p.c (p/c.py:2) -> p.a"
    assert upward_imports(edges, layers) == [("p.low", "p.high", 5, "low", "high")]
    assert circles({"p.a": [("p.b", 1)], "p.b": []}) == []


def test_reader_sees_every_kind_of_import(tmp_path):
    pkg = tmp_path / "pk"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "from importlib import import_module\n_LAZY = {'x': 'pk.sub.leaf'}\n")
    (pkg / "top.py").write_text("import os\nfrom . import low\n")
    (pkg / "low.py").write_text("import numpy\n\ndef f():\n    from .sub import leaf\n")
    (pkg / "sub" / "__init__.py").write_text("from .leaf import thing\n")
    (pkg / "sub" / "leaf.py").write_text(
        "import pk.top\nfrom pk import low as _low\nfrom .. import gone\n"
        "from ..missing import name\n\nclass C:\n    def m(self):\n        from .. import top\n")
    modules = package_modules(pkg, "pk")
    assert set(modules) == {"pk", "pk.top", "pk.low", "pk.sub", "pk.sub.leaf"}
    edges = import_edges(modules, "pk")
    assert edges["pk"] == [("pk.sub.leaf", 2)]
    assert edges["pk.top"] == [("pk.low", 2)]
    assert edges["pk.low"] == [("pk.sub.leaf", 4)]
    assert edges["pk.sub"] == [("pk.sub.leaf", 1)]
    assert sorted(edges["pk.sub.leaf"]) == [("pk", 3), ("pk.low", 2), ("pk.missing", 4),
                                            ("pk.top", 1), ("pk.top", 8)]
    assert missing_modules(edges, modules) == [("pk.sub.leaf", "pk.missing", 4)]
    (circle, part), = circles(edges)
    assert circle == [("pk", "pk.sub.leaf", 2), ("pk.sub.leaf", "pk", 3)]
    assert part == set(modules) - {"pk.sub"}
    assert describe_circle(circle, part, str).endswith("reach it and it reaches them too: "
                                                       "['pk.low', 'pk.top']")
