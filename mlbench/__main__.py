"""``python -m mlbench …``: the same command as ``mlbench`` (see `mlbench.cli`)."""

import sys

from mlbench.cli import main

sys.exit(main())
