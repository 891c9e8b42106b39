"""Start-up cost of the Numba kernels: cold compile, warm load, against the Numba floor.

Every measurement runs in a fresh subprocess. "cold" uses a new empty ``NUMBA_CACHE_DIR`` (a
user's first run), "warm" the same directory again (every later run). Per command path the
subprocess imports cfprune, builds a small synthetic problem, then times the path's calls (the
compile or the cache load, plus the work, which is a few milliseconds at this size):

    evaluate-float32   FactorModel float32 -> evaluate() (tiled scorer + metric kernel)
    recommend-<spec>   compress(model, spec).recommend() for every storage the report sweeps
    pq-rerank          two-stage PQ -> int8 re-rank
    distill            compress(model, "distill:...") (the student SGD kernel)
    all                every path above in one process: the total a report run compiles

The floor is what no change to cfprune can remove: python start-up, ``import numpy,
scipy.sparse, numba`` and loading one cached trivial kernel (a subprocess's wall time, warm).
Whole commands: ``cfprune evaluate MODEL --dataset ml-100k`` and ``cfprune recommend MODEL
--dataset ml-100k --users 0 1 2`` wall time, cold and warm.

``--before PATH`` measures another checkout too (e.g. ``git worktree add /tmp/kern-before
<commit>``), in the same run, through ``PYTHONPATH``. ``--quick`` runs the paths only once each
and skips the whole-command rows.

    python benchmarks/bench_startup.py [--quick] [--before /tmp/kern-before] [--model als.npz]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

SETUP = """
import json, sys, time
import numpy as np
import scipy.sparse as sp
t_import = time.perf_counter()
import cfprune
from cfprune import compress, evaluate
from cfprune.models import FactorModel
t_import = time.perf_counter() - t_import
rng = np.random.default_rng(0)
n_users, n_items, dim = 300, 2000, 32
users = rng.standard_normal((n_users, dim)).astype(np.float32)
items = (rng.standard_normal((n_items, dim)) / (1 + np.arange(n_items))[:, None] ** 0.3
         ).astype(np.float32)
train = sp.random(n_users, n_items, density=0.02, random_state=1, format="csr",
                  dtype=np.float32)
train.data[:] = 1
test = sp.random(n_users, n_items, density=0.01, random_state=2, format="csr", dtype=np.float32)
test.data[:] = 1
base = FactorModel(users, items)
ids = np.arange(n_users)
"""

# path -> (untimed set-up: compression, which is not kernel work, timed calls)
PATHS = {
    "evaluate-float32": ("", "evaluate(base, train, test, ks=(10, 20, 50), show_progress=False)"),
    "recommend-fp16": ("m = compress(base, 'fp16:table=both')", "m.recommend(ids, train, k=10)"),
    "recommend-int8": ("m = compress(base, 'int8:axis=auto,table=both')",
                       "m.recommend(ids, train, k=10)"),
    "recommend-int4": ("m = compress(base, 'int4:table=both')", "m.recommend(ids, train, k=10)"),
    "recommend-sparse": ("m = compress(base, 'magnitude:sparsity=0.5,table=both')",
                         "m.recommend(ids, train, k=10)"),
    "recommend-pruned": ("m = compress(base, 'prune-rows:keep=0.5,by=popularity', train)",
                         "m.recommend(ids, train, k=10)"),
    "recommend-pq": ("m = compress(base, 'pq:m=8,table=both')",
                     "m.recommend(ids, train, k=10); m.recommend(ids[:3], train[:3], k=10)"),
    "pq-rerank": ("m = compress(base, 'pq:m=8,rerank=int8,candidates=100')",
                  "m.recommend(ids, train, k=10)"),
    "distill": ("", "compress(base, 'distill:rank=8,epochs=1', train)"),
}

FLOOR = """
import time
t0 = time.perf_counter()
import numpy, scipy.sparse
from numba import njit
@njit(cache=True)
def trivial(x):
    return x + 1
trivial(1)
"""


def run(code, cache_dir, pythonpath):
    """(seconds of the timed part, wall seconds) of ``code`` in a fresh interpreter."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), PYTHONPATH=str(pythonpath))
    script = Path(cache_dir).parent / "script.py"  # a file, so that Numba can cache its kernels
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(code)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"subprocess failed:\n{out.stderr[-2000:]}")
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    return (json.loads(lines[-1])["seconds"] if lines else wall), wall


def path_code(name):
    """A script timing the calls of one path (``all``: every path, set-ups untimed)."""
    lines = [SETUP, "total = 0.0"]
    for path in (PATHS if name == "all" else [name]):
        setup, calls = PATHS[path]
        lines += [setup, "t0 = time.perf_counter()", calls,
                  "total += time.perf_counter() - t0"]
    lines.append("print(json.dumps({'seconds': total}))")
    return "\n".join(lines) + "\n"


def floor(workdir, pythonpath, repeats):
    cache = Path(workdir) / "floor-cache"
    run(FLOOR, cache, pythonpath)
    return min(run(FLOOR, cache, pythonpath)[1] for _ in range(repeats))


def measure_paths(workdir, pythonpath, names, repeats):
    """{name: (cold seconds, warm seconds)} of the timed part of every path."""
    results = {}
    for name in names:
        cold, warm = [], []
        for r in range(repeats):
            cache = Path(workdir) / f"cache-{name}-{r}"
            shutil.rmtree(cache, ignore_errors=True)
            cold.append(run(path_code(name), cache, pythonpath)[0])
            warm.append(run(path_code(name), cache, pythonpath)[0])
        results[name] = (min(cold), min(warm))
    return results


def measure_commands(workdir, pythonpath, model, repeats):
    """{command: (cold wall, warm wall)} of whole CLI calls."""
    commands = {
        "cfprune evaluate": ["evaluate", model, "--dataset", "ml-100k"],
        "cfprune recommend": ["recommend", model, "--dataset", "ml-100k", "--users", "1", "2",
                              "3", "--k", "10"],
    }
    results = {}
    for label, args in commands.items():
        # a failing command (exit code != 0) raises in run(): only real work is timed
        code = ("import sys; from cfprune.cli import main; sys.argv = ['cfprune'] + "
                f"{args!r}\nsys.exit(main())\n")
        cold, warm = [], []
        for r in range(repeats):
            cache = Path(workdir) / f"cmd-{label.split()[1]}-{r}"
            shutil.rmtree(cache, ignore_errors=True)
            cold.append(run(code, cache, pythonpath)[1])
            warm.append(min(run(code, cache, pythonpath)[1] for _ in range(2)))
        results[label] = (min(cold), min(warm))
    return results


def make_model(workdir):
    path = Path(workdir) / "als.npz"
    args = ["train", "--dataset", "ml-100k", "--algorithm", "als", "--factors", "64", "--out",
            str(path)]
    subprocess.run([sys.executable, "-c", "import sys; from cfprune.cli import main; "
                    f"sys.argv = ['cfprune'] + {args!r}; main()"],
                   env=dict(os.environ, PYTHONPATH=str(HERE)), check=True, capture_output=True)
    return str(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per path, no commands")
    parser.add_argument("--before", help="another checkout to measure in the same run")
    parser.add_argument("--model", help="model file for the command rows (default: train one)")
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 2)
    trees = {"after": HERE}
    if args.before:
        trees = {"before": Path(args.before).resolve(), "after": HERE}
    names = list(PATHS) + ["all"]
    with tempfile.TemporaryDirectory(prefix="cfprune-startup-") as workdir:
        floor_seconds = floor(workdir, HERE, 5)
        paths = {label: measure_paths(Path(workdir) / label, tree, names, repeats)
                 for label, tree in trees.items()}
        commands = {}
        if not args.quick:
            model = args.model or make_model(workdir)
            commands = {label: measure_commands(Path(workdir) / label, tree, model, repeats)
                        for label, tree in trees.items()}
    labels = list(trees)
    print(f"Numba floor (python + numpy, scipy.sparse, numba + one cached kernel, best of 5): "
          f"{floor_seconds:.2f} s")
    header = "path".ljust(20) + "".join(f"{label + ' cold':>13}{label + ' warm':>13}"
                                        for label in labels)
    print(header)
    for name in names:
        cells = [f"{paths[label][name][0]:12.2f}s{paths[label][name][1]:12.2f}s"
                 for label in labels]
        print(name.ljust(20) + "".join(cells))
    for command in (commands.get(labels[0]) or {}):
        cells = []
        for label in labels:
            cold, warm = commands[label][command]
            cells.append(f"{cold:12.2f}s{warm:12.2f}s")
        print(command.ljust(20) + "".join(cells) +
              f"   {labels[-1]} warm/floor {commands[labels[-1]][command][1] / floor_seconds:.2f}")


if __name__ == "__main__":
    main()
