#!/usr/bin/env python
"""Train and evaluate every track on one dataset; write a run folder with a report.

    python run_all.py --dataset arxiv            # or reuters, or path/to/file.csv|.jsonl
    python run_all.py --dataset reuters --models mlp,svm --loss bce,focal,db --quick

The documented alias of ``mlbench run`` (`mlbench_cli`); it takes the same options.
"""

from __future__ import annotations

import sys

from mlbench_cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
