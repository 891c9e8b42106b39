"""The ``cfprune`` command line: argparse subcommands that call the Python API.

One idea per module: :mod:`.parser` (the subcommands and their arguments), :mod:`.checks`
(every argument checked by :func:`~.checks.check_args` before any data or model is read and before
the heavy libraries (scikit-learn, implicit, pandas, numba, matplotlib) are imported: a mistake costs
a fraction of a second), :mod:`.loading` (the model and the interactions the arguments name),
:mod:`.raw_ids` (raw ids in and out) and :mod:`.commands` (each subcommand, importing what it needs
when it runs).

Ids on screen are the raw ids of the data (MovieLens user and movie ids, the ids of your ratings
file, or the id maps stored in a model file); ``recommend --internal-ids`` shows row indices.

Every :class:`~cfprune.errors.CfpruneError` becomes one line on stderr and exit code 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import sys

from ..errors import CfpruneError
from .checks import check_args
from .loading import load_data, save_split
from .parser import build_parser

__all__ = ["build_parser", "load_data", "main", "save_split"]


def main(argv=None):
    """Run ``cfprune`` with ``argv`` (default: the process's arguments); the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
        return args.func(args)
    except CfpruneError as e:
        if args.debug:
            raise
        print(f"cfprune {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cfprune: interrupted", file=sys.stderr)
        return 130
