"""``python -m cfprune.cli``: the ``cfprune`` command."""

import sys

from . import main

sys.exit(main())
