"""The argument parser of ``cfprune``: its subcommands, their arguments and help texts.

Building it imports no model or data module: the help shows the training defaults from the one
record in :mod:`cfprune.models.training` (numpy and threadpoolctl only)."""

from __future__ import annotations

import argparse

from ..models.training import TRAINING_DEFAULTS
from . import commands as c

DESCRIPTION = "The ``cfprune`` command line: argparse subcommands that call the Python API."
SPLITS = ("random", "temporal", "strong")


def add_data_args(p, required=False):
    g = p.add_argument_group("data (a MovieLens dataset or your own ratings file)")
    src = g.add_mutually_exclusive_group(required=required)
    src.add_argument("--dataset", help="MovieLens dataset name (see `cfprune datasets`)")
    src.add_argument("--ratings", metavar="PATH",
                     help="your own interactions file (CSV/TSV/'::'/Parquet, or a .zip member)")
    g.add_argument("--member", help="member of a .zip given to --ratings")
    g.add_argument("--sep", help="field separator of --ratings (guessed when left out)")
    g.add_argument("--columns", help="user,item[,rating[,timestamp]] as names or 0-based positions")
    g.add_argument("--no-header", action="store_true", help="--ratings has no header line")
    g.add_argument("--skip-bad-lines", action="store_true",
                   help="skip and count malformed lines of --ratings instead of stopping")
    g.add_argument("--id-type", choices=("auto", "int", "str"), default="auto",
                   help="user and item ids of --ratings: integers, text, or auto (integers when "
                        "every id is one; a few non-integer ids among integers are an error)")
    g.add_argument("--threshold", type=float, default=4.0,
                   help="ratings >= this are positives (default 4; a negative value keeps all)")
    g.add_argument("--min-user", type=int, default=0, help="minimum interactions per user")
    g.add_argument("--min-item", type=int, default=0, help="minimum interactions per item")
    s = p.add_argument_group("split")
    s.add_argument("--split", choices=SPLITS, default="random",
                   help="random per-user hold-out, temporal leave-last-k, or strong "
                        "generalisation (held-out users folded in)")
    s.add_argument("--test-fraction", type=float, default=0.2)
    s.add_argument("--leave-last", type=int, default=1, help="k of the temporal split")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--save-split", metavar="DIR",
                   help="also write the split as DIR/train.npz and DIR/test.npz (save_npz)")


def add_model_args(p):
    g = p.add_argument_group("model (a cfprune model file, or a pair of factor files)")
    g.add_argument("model", nargs="?", help="cfprune model file (.npz)")
    g.add_argument("--user-factors", metavar="U.npy")
    g.add_argument("--item-factors", metavar="V.npy")


def add_threads(p, scheduler=False, extra=""):
    if scheduler:
        extra = "; with --scheduler, Numba threads per Dask task (0: 1)"
    p.add_argument("--threads", type=int, default=0, metavar="N",
                   help=f"threads: 0 (the default) uses every core, N > 0 uses N{extra}")


def add_generate_arguments(p):
    """The arguments of ``cfprune generate`` (:func:`cfprune.datasets.write_synthetic_log`)."""
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--items", type=int, required=True)
    p.add_argument("--interactions", type=int, required=True,
                   help="interactions to draw (repeated pairs merged: slightly fewer are written)")
    p.add_argument("--topics", type=int, default=300)
    p.add_argument("--topics-per-user", type=int, default=3)
    p.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent of item popularity")
    p.add_argument("--ratings", action="store_true", help="add 1..5 star ratings")
    p.add_argument("--timestamps", action="store_true", help="add Unix times")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, metavar="CSV", help="the CSV file to write")


def build_parser():
    """The argparse parser of every subcommand (each sets ``func``, its command)."""
    parser = argparse.ArgumentParser(prog="cfprune", description=DESCRIPTION)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datasets", help="list the MovieLens datasets and whether they are present")
    p.set_defaults(func=c.cmd_datasets)

    p = sub.add_parser("generate", help="write a SYNTHETIC interaction log (CSV) for scale tests",
                       description="Write a SYNTHETIC implicit-feedback log (topics, Zipf "
                                   "popularity, skewed activity; made-up data, never a real "
                                   "dataset) as CSV user,item[,rating][,timestamp].")
    add_generate_arguments(p)
    p.set_defaults(func=c.cmd_generate)

    p = sub.add_parser("train", help="train ALS or BPR and print its test metrics")
    add_data_args(p, required=True)
    p.add_argument("--algorithm", choices=("als", "bpr"), default="als")
    als, bpr = TRAINING_DEFAULTS["als"], TRAINING_DEFAULTS["bpr"]
    p.add_argument("--factors", type=int,
                   help=f"default {als['factors']} (BPR adds a bias column)")
    p.add_argument("--regularization", type=float,
                   help=f"default: ALS {als['regularization']:g}, BPR {bpr['regularization']:g}")
    p.add_argument("--alpha", type=float,
                   help=f"ALS confidence scale (a positive counts 1 + alpha), default "
                        f"{als['alpha']:g}")
    p.add_argument("--learning-rate", type=float,
                   help=f"BPR step size, default {bpr['learning_rate']:g}")
    p.add_argument("--iterations", type=int,
                   help=f"default: ALS {als['iterations']}, BPR {bpr['iterations']}")
    p.add_argument("--k", type=int, nargs="+", default=[10, 20])
    p.add_argument("--out", help="save the model here (.npz)")
    add_threads(p, extra="; BPR gives the same model for the same seed only with 1")
    p.set_defaults(func=c.cmd_train)

    p = sub.add_parser("evaluate", help="ranking metrics of a model on a test split")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--train", help="training interactions (scipy.sparse .npz): items skipped")
    p.add_argument("--test", help="test interactions (scipy.sparse .npz)")
    p.add_argument("--k", type=int, nargs="+", default=[10, 20, 50])
    p.add_argument("--baseline", metavar="BASE", help="model file to compare with (overlap@k, "
                                                      "paired confidence intervals)")
    p.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler")
    add_threads(p, scheduler=True)
    p.set_defaults(func=c.cmd_evaluate)

    p = sub.add_parser("recommend", help="top-k items for users, by raw id",
                       description="Top-k items for users. Users are given and items printed by "
                                   "their raw ids (the ids of the data file, or the id maps "
                                   "stored in the model); --internal-ids uses row indices. The "
                                   "items each user has in the training part of the data (or "
                                   "--train) are skipped; --no-filter ranks every item.")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--train", help="training interactions (scipy.sparse .npz, rows and columns "
                                   "of the model): items skipped")
    p.add_argument("--no-filter", action="store_true",
                   help="rank every item, including those the user already has")
    p.add_argument("--users", nargs="+", metavar="ID", help="raw user ids (default: all users)")
    p.add_argument("--all-users", action="store_true")
    p.add_argument("--internal-ids", action="store_true",
                   help="--users and the printed items are row indices, not raw ids")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", metavar="PATH", help="write users, items and scores as JSON")
    p.add_argument("--out", metavar="DIR", help="write partitioned .npz candidate files here "
                                                "(row indices)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler")
    add_threads(p, scheduler=True)
    p.set_defaults(func=c.cmd_recommend)

    p = sub.add_parser("compress", help="compress a model with a method spec")
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--method", metavar="SPEC",
                   help="e.g. 'prune-rows:keep=0.9,by=popularity|lowrank:rank=32|pq:m=8'")
    p.add_argument("--help-methods", action="store_true",
                   help="list every method and its parameters")
    p.add_argument("--train", help="training interactions (scipy.sparse .npz) for methods that "
                                   "need them")
    p.add_argument("--target", metavar="TARGETS",
                   help="search for the smallest pipeline keeping e.g. "
                        "'recall@20>=0.97,coverage@20>=0.90' relative to the model, on a "
                        "validation part carved from --train; the candidates go to "
                        "OUT.search.json")
    p.add_argument("--budget-bytes", type=int, metavar="BYTES",
                   help="search for the best first --target metric within this many bytes")
    p.add_argument("--side", choices=("items", "both"), default="items",
                   help="search: compress the item table (default), or the user table too, "
                        "minimising the whole model's bytes")
    p.add_argument("--sample-users", type=int, default=32768, metavar="N",
                   help="search: evaluate at most N validation users, a seeded sample "
                        "(0: all; default 32768)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="search: evaluate the candidates on this Dask scheduler")
    add_threads(p, scheduler=True)
    p.add_argument("--out", help="compressed model file (.npz)")
    p.set_defaults(func=c.cmd_compress)

    p = sub.add_parser("export", help="write the item table as a faiss index (same codes)")
    add_model_args(p)
    p.add_argument("--format", choices=("faiss",), default="faiss")
    p.add_argument("--out", required=True, metavar="INDEX", help="faiss index file to write")
    p.set_defaults(func=c.cmd_export)

    p = sub.add_parser("import", help="make a cfprune model file from factors made elsewhere")
    p.add_argument("--user-factors", metavar="U.npy")
    p.add_argument("--item-factors", metavar="V.npy")
    p.add_argument("--implicit-file", metavar="F.npz", help="a file written by implicit's save")
    p.add_argument("--user-ids", metavar="FILE", help="raw user id of each row (.npy, or text: "
                                                      "one per line)")
    p.add_argument("--item-ids", metavar="FILE", help="raw item id of each row (.npy or text)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=c.cmd_import)

    p = sub.add_parser("report", help="compression report: every method side by side")
    add_data_args(p, required=True)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--methods", nargs="+", metavar="SPEC",
                   help="custom sweep: spec strings, e.g. int8 'lowrank:rank=32|int8' "
                        "(default: every method at several budgets)")
    p.add_argument("--k", type=int, nargs="+", default=[10, 20, 50],
                   help="cut-offs evaluated (10, 20 and 50 are always included)")
    p.add_argument("--quick", action="store_true",
                   help="a smaller tuning grid and sweep for a smoke run")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="evaluate the baselines, the sweep and the target search's candidates "
                        "on this Dask scheduler (training and timings stay in this process)")
    add_threads(p)
    p.set_defaults(func=c.cmd_report)
    return parser
