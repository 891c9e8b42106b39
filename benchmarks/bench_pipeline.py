"""The whole pipeline on generated logs at the size users outgrow MovieLens.

Per size, a **synthetic** seeded log (``cfprune generate``: topics, Zipf
popularity, skewed activity; never a real dataset), then every step as a subprocess of the CLI:

    generate   the log as CSV
    train      cfprune train --ratings LOG --algorithm als --out model.npz --save-split split/
    compress   cfprune compress model.npz --train split/train.npz --target TARGET --out pick.npz
    evaluate   cfprune evaluate pick.npz --train ... --test ... --json pick.json (and the float32
               model the same way, for the shares)
    report     cfprune report --ratings LOG (--quick at 1m; --skip-report leaves it out)

with its wall time, CPU time and peak memory (the child's, from ``os.wait4``), then
a table and the pick with its test recall@20 and coverage@20 as shares of the float32 model's.

Sizes: ``200k`` = 200,000 users x 35,425 items, ~6.4M interactions (the full report); ``1m`` =
1,000,000 users x 100,000 items, ~30M interactions (``report --quick``). ``--scheduler ADDRESS``
is passed to every step whose command takes ``--scheduler`` (asked from its ``--help``). The
logs and models go to ``--work`` (default a directory under /tmp); a log already there for the
same size and seed is reused.

    python benchmarks/bench_pipeline.py [--sizes 200k,1m] [--skip-report] [--scheduler ADDR]
                                        [--seed 0] [--threads 0] [--work DIR] [--json PATH]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
SIZES = {"200k": {"users": 200_000, "items": 35_425, "interactions": 6_400_000,
                  "report": []},
         "1m": {"users": 1_000_000, "items": 100_000, "interactions": 30_000_000,
                "report": ["--quick"]}}
TARGET = "recall@20>=0.97,coverage@20>=0.90"
SHARES = ("recall@20", "coverage@20")


def run_step(name, argv, log_path):
    """(wall seconds, CPU seconds, peak RSS in bytes, return code) of ``argv`` as a child
    process, its stdout and stderr appended to ``log_path``. The CPU seconds (user + system)
    are what the step costs however loaded the machine is: on a quiet machine of ``c`` cores the
    wall time is at least CPU / c."""
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"\n$ {' '.join(map(str, argv))}\n")
        log.flush()
        start = time.perf_counter()
        child = subprocess.Popen([str(a) for a in argv], stdout=log, stderr=log, cwd=HERE,
                                 env={**os.environ, "PYTHONPATH": str(HERE)})
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
    peak = usage.ru_maxrss * 1024   # kilobytes on Linux
    cpu = usage.ru_utime + usage.ru_stime
    print(f"  {name:<18} {seconds:8.1f} s wall {cpu:8.1f} s CPU  {peak / 2**30:6.2f} GB  "
          f"exit {child.returncode}", flush=True)
    return seconds, cpu, peak, child.returncode


_TAKES_SCHEDULER = {}


def takes_scheduler(command):
    """Whether ``cfprune COMMAND`` has a ``--scheduler`` option (from its --help)."""
    cache = _TAKES_SCHEDULER
    if command not in cache:
        text = subprocess.run([sys.executable, "-m", "cfprune.cli", command, "--help"],
                              capture_output=True, text=True, cwd=HERE,
                              env={**os.environ, "PYTHONPATH": str(HERE)}).stdout
        cache[command] = "--scheduler" in text
    return cache[command]


def cli(command, *args, scheduler=None, threads=0):
    argv = [sys.executable, "-m", "cfprune.cli", command, *args]
    if command in ("train", "evaluate", "report", "recommend"):
        argv += ["--threads", threads]
    if scheduler and takes_scheduler(command):
        argv += ["--scheduler", scheduler]
    return argv


def bench_size(label, size, work, seed, skip_report, scheduler, threads):
    """The rows of one size and its pick."""
    d = work / label
    d.mkdir(parents=True, exist_ok=True)
    log_path = d / "steps.log"
    ratings = d / f"log-{label}-seed{seed}.csv"
    rows = []
    print(f"{label}: {size['users']:,} users x {size['items']:,} items, ~"
          f"{size['interactions']:,} interactions (synthetic, seed {seed}); output in {d}",
          flush=True)

    def step(name, argv):
        seconds, cpu, peak, code = run_step(name, argv, log_path)
        rows.append({"size": label, "step": name, "seconds": seconds, "cpu_seconds": cpu,
                     "peak_bytes": peak, "exit": code})
        if code != 0:
            raise SystemExit(f"{label} {name} failed (exit {code}); see {log_path}")

    if ratings.exists():
        print(f"  generate           reused {ratings}", flush=True)
    else:
        step("generate", [sys.executable, "-m", "cfprune.cli", "generate",
                          "--users", size["users"], "--items", size["items"],
                          "--interactions", size["interactions"], "--seed", seed,
                          "--out", ratings])
    split, model, pick = d / "split", d / "als.npz", d / "pick.npz"
    step("train", cli("train", "--ratings", ratings, "--algorithm", "als", "--seed", seed,
                      "--out", model, "--save-split", split, scheduler=scheduler,
                      threads=threads))
    train, test = split / "train.npz", split / "test.npz"
    step("compress --target", cli("compress", model, "--train", train, "--target", TARGET,
                                  "--seed", seed, "--out", pick, scheduler=scheduler))
    figures = {}
    for name, path in (("evaluate pick", pick), ("evaluate float32", model)):
        out = d / f"{path.stem}.metrics.json"
        step(name, cli("evaluate", path, "--train", train, "--test", test, "--k", 20,
                       "--json", out, scheduler=scheduler, threads=threads))
        figures[name] = json.loads(out.read_text())["metrics"]
    if not skip_report:
        step("report" + (" --quick" if size["report"] else ""),
             cli("report", "--ratings", ratings, "--seed", seed, "--out", d / "report",
                 *size["report"], scheduler=scheduler, threads=threads))
    record = json.loads((d / "pick.search.json").read_text())
    base, got = figures["evaluate float32"], figures["evaluate pick"]
    found = {"size": label, "spec": record["pick"]["spec"], "item_ratio": record["ratio"],
             "test": {k: got[k] for k in SHARES},
             "test_share": {k: got[k] / base[k] if base[k] else None for k in SHARES},
             "model_bytes": model_bytes(model), "pick_bytes": model_bytes(pick)}
    return rows, found


def model_bytes(path):
    """The bytes of a model file's tables (users, items, any re-rank table)."""
    sys.path.insert(0, str(HERE))
    from cfprune.models import FactorModel
    return int(FactorModel.load(path).nbytes)


def print_table(rows, picks):
    print()
    print("| size | step | wall (s) | CPU (s) | peak memory (GB) |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']} | `{r['step']}` | {r['seconds']:.0f} | {r['cpu_seconds']:.0f} | "
              f"{r['peak_bytes'] / 2**30:.2f} |")
    print()
    for p in picks:
        shares = ", ".join(f"{k} {p['test'][k]:.4f} ({100 * p['test_share'][k]:.1f}% of "
                           f"float32)" for k in SHARES)
        print(f"{p['size']}: pick {p['spec']}, item side {p['item_ratio']:.1f}x smaller "
              f"(whole model {p['model_bytes']:,} -> {p['pick_bytes']:,} bytes, "
              f"{p['model_bytes'] / p['pick_bytes']:.2f}x); test {shares}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200k,1m",
                        help=f"comma-separated, of {', '.join(SIZES)} (default: both)")
    parser.add_argument("--skip-report", action="store_true")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="Dask scheduler, passed to the steps whose command takes it")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/cfprune-bench-pipeline"))
    parser.add_argument("--json", type=Path, help="write the rows and picks here")
    args = parser.parse_args(argv)
    labels = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in labels if s not in SIZES]
    if unknown or not labels:
        parser.error(f"--sizes {args.sizes}: choose among {', '.join(SIZES)}")
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start "
          f"(a loaded machine inflates the wall times)", flush=True)
    rows, picks = [], []
    for label in labels:
        size_rows, pick = bench_size(label, SIZES[label], args.work, args.seed,
                                     args.skip_report, args.scheduler, args.threads)
        rows += size_rows
        picks.append(pick)
    print_table(rows, picks)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "picks": picks}, indent=1))


if __name__ == "__main__":
    main()
