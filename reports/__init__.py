"""Run reports: figures, one self-contained HTML page, and Chromium screenshots.

Input is a run's `mlbench.record.RunRecord` (read with `RunRecord.load`) and its run folder.
"""

from .figures import write_figures
from .html import render_html, write_report
from .chromium import screenshot

__all__ = ["write_figures", "write_report", "render_html", "screenshot"]
