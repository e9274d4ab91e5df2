"""Render the results report (RESULTS.md and its figures) from the tidy ``cells.csv`` table.

Use :func:`render_report` from Python or ``python -m icldistill.render`` from the shell.
"""

from icldistill.render.report import render_report
from icldistill.render.tables import read_cells, read_conditions, read_paired, read_selection, read_training

__all__ = ["read_cells", "read_conditions", "read_paired", "read_selection", "read_training", "render_report"]
