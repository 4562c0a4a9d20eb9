"""``python -m mlbench …``: the same command as ``mlbench`` (see `mlbench_cli`)."""

import sys

from mlbench_cli import main

sys.exit(main())
