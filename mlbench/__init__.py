"""mlbench: the shared core of the multi-label text classification benchmark suite.

Data flows one way: a dataset loader builds a `Corpus`, a `LabelSpace` turns label
names into multi-hot rows, each `Track` (baselines/, transformers_track/) fits and
scores, `evaluate` turns scores into metrics, and the `RunRecord` feeds the report.
"""

__version__ = "0.1.0"
