"""Command line: ``python -m icldistill.render --cells CELLS.csv --out DIR [options]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from icldistill.render.contracts import read_cells, read_conditions, read_selection, read_training
from icldistill.render.reference import read_reference
from icldistill.render.report import render_report
from icldistill.runrecord import read_record


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m icldistill.render",
        description="Write DIR/RESULTS.md and DIR/figures/*.png from a tidy cells.csv table.",
    )
    parser.add_argument("--cells", required=True, type=Path, help="tidy cells.csv table")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--focus-model",
        default=None,
        help="model analysed in detail (default: the one with the most results)",
    )
    parser.add_argument(
        "--heatmap-condition",
        default=None,
        help="condition id of the heatmap and transfer analysis (default: distilled, else the last)",
    )
    parser.add_argument(
        "--template",
        default=None,
        type=Path,
        help="Jinja template (default: report/templates/results.md.j2)",
    )
    parser.add_argument(
        "--conditions",
        default=None,
        type=Path,
        help="conditions table (labels, roles, λ, sweeps); adds the λ Sweep and Dynamic λ sections",
    )
    parser.add_argument(
        "--selection",
        default=None,
        type=Path,
        help="dev-split choice of λ per model, task and sweep candidate",
    )
    parser.add_argument(
        "--training",
        default=None,
        type=Path,
        help="per-step training log of every run (for the λ_eff figure)",
    )
    parser.add_argument(
        "--run-record",
        default=None,
        type=Path,
        help="run record (results/run.json); adds the Run Record appendix",
    )
    parser.add_argument(
        "--reference",
        default=None,
        type=Path,
        help="published numbers as a cells.csv-shaped table (e.g. resources/reference/seed_cells.csv); "
        "adds the Reference section",
    )
    parser.add_argument(
        "--reference-model",
        default=None,
        help="compare every model with this model of the reference (default: each with its own name)",
    )
    return parser.parse_args(argv)


def read_optional(path: Path | None, reader):
    """``reader(path)``, or None when no path was given."""
    return None if path is None else reader(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Render the report and print its path."""
    args = parse_args(argv)
    try:
        report = render_report(
            read_cells(args.cells),
            args.out,
            focus_model=args.focus_model,
            heatmap_condition=args.heatmap_condition,
            template=args.template,
            conditions=read_optional(args.conditions, read_conditions),
            selection=read_optional(args.selection, read_selection),
            training=read_optional(args.training, read_training),
            run_record=read_optional(args.run_record, read_record),
            reference=None
            if args.reference is None
            else {
                "table": read_reference(args.reference),
                "model": args.reference_model,
                "source": args.reference.name,
            },
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
