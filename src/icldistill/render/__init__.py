"""Render the results report (RESULTS.md and its figures) from the tidy ``cells.csv`` table.

Use :func:`render_report` from Python or ``python -m icldistill.render`` from the shell. One
module per report section (overview, conditions, gaps, crosslingual, sweep, dynamic,
intervals, parse_failures, training, reference, compute, run_record) owns its tables, context,
figures and template partial; :mod:`contracts` reads the input tables, :mod:`common` and
:mod:`plotting` hold what the sections share, :mod:`report` and :mod:`figures` assemble them.
"""

from icldistill.render.contracts import read_cells, read_conditions, read_paired, read_selection, read_training
from icldistill.render.report import render_report

__all__ = ["read_cells", "read_conditions", "read_paired", "read_selection", "read_training", "render_report"]
