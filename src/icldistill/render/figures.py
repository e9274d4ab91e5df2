"""The report's figures: which files a render writes, and drawing them with each section's figure function.

Each figure belongs to a section module, which draws it from the render's
:class:`~icldistill.render.common.Inputs`; this module only names the files and calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from pathlib import Path

import pandas as pd

from icldistill.render import crosslingual, dynamic, gaps, overview, sweep, training
from icldistill.render.common import REFERENCE_CONDITION, Inputs, shown_conditions

#: Every figure, in drawing order: its role, its file name (``{condition}``: the heatmap
#: condition) and the section function that draws it (returning None when it has nothing to draw).
FIGURES: tuple[tuple[str, str, Callable[[Inputs, Path], Path | None]], ...] = (
    ("task_bar", "task_bar.png", overview.task_bar_figure),
    ("gap", "gap.png", gaps.gap_figure),
    ("heatmap", "heatmap_{condition}.png", crosslingual.heatmap_figure),
    ("lambda_sweep", "lambda_sweep.png", sweep.sweep_figure),
    ("dynamic_gap", "dynamic_gap.png", dynamic.dynamic_gap_figure),
    ("lambda_eff", "lambda_eff.png", dynamic.lambda_eff_figure),
    ("models", "models.png", overview.models_figure),
    ("training", "training_curves.png", training.training_figure),
)


def figure_names(heatmap_condition: str) -> dict[str, str]:
    """File name of each figure the report may show, keyed by its role."""
    return {role: name.format(condition=heatmap_condition) for role, name, _ in FIGURES}


def figure_files(conditions: pd.DataFrame | None, heatmap_condition: str | None = None, models: int = 1) -> list[str]:
    """File names a render writes for the grid of the ``conditions`` table, once all its cells have results.

    Only the ``condition`` and ``role`` columns are read, so no result file is needed.
    ``gap.png`` needs Fine-Tuned and Distilled or Control, ``lambda_sweep.png`` a sweep,
    ``lambda_eff.png`` a dynamic condition, ``dynamic_gap.png`` a dynamic condition and
    Fine-Tuned, ``training_curves.png`` a trained condition, ``models.png`` more than one of
    ``models`` (the grid's model count). ``heatmap_condition`` defaults as in the report (Distilled, else the last
    condition that is not a sweep member). Without a conditions table the grid is unknown:
    the names are those of the report without the new inputs (``gap.png`` included), and
    ``heatmap_condition`` is required.
    """
    if conditions is None:
        if heatmap_condition is None:
            raise ValueError("figure_files needs a heatmap condition or a conditions table")
        names = figure_names(heatmap_condition)
        return [names["task_bar"], names["gap"], names["heatmap"]]
    # Only ids and roles matter here, so a workflow can pass the two columns it builds from config.
    grid = pd.DataFrame({column: conditions[column].astype(str).str.strip() for column in ("condition", "role")})
    shown = shown_conditions(grid, grid)
    names = figure_names(heatmap_condition or crosslingual.default_heatmap_condition(shown))
    ids, roles = set(grid["condition"]), set(grid["role"])
    has_reference = REFERENCE_CONDITION in ids
    wanted = {
        "task_bar": True,
        "gap": has_reference and bool(set(gaps.GAP_CONDITIONS) & ids),
        "heatmap": True,
        "lambda_sweep": "sweep" in roles,
        "lambda_eff": "dynamic" in roles,
        "dynamic_gap": "dynamic" in roles and has_reference,
        "models": models > 1,
        "training": bool(roles - {"infer"}),
    }
    return [names[role] for role, wanted_here in wanted.items() if wanted_here]


def draw_figures(inputs: Inputs, figures_dir: str | PathLike) -> list[Path]:
    """Draw every figure of :data:`FIGURES` that has something to show into ``figures_dir`` and
    return their paths; a skipped figure's file is removed."""
    figures_dir = Path(figures_dir)
    written = []
    for _role, name, draw in FIGURES:
        path = figures_dir / name.format(condition=inputs.heatmap_condition)
        drawn = draw(inputs, path)
        if drawn is None:
            # A figure left from an earlier render would contradict this report.
            path.unlink(missing_ok=True)
        else:
            written.append(drawn)
    return written


def write_figures(
    cells: pd.DataFrame,
    figures_dir: str | PathLike,
    focus_model: str,
    heatmap_condition: str,
    conditions: pd.DataFrame | None = None,
    selection: pd.DataFrame | None = None,
    training: pd.DataFrame | None = None,
    paired: pd.DataFrame | None = None,
) -> list[Path]:
    """Draw the report's figures for the focus model into ``figures_dir`` and return their paths.

    The tables are tidy (:mod:`icldistill.render.contracts`). Bars carry 95 % interval bars
    (task bars: :func:`overview.task_condition_bounds`; gaps: the paired tests of ``paired``,
    when given) and label tasks a chance line.

    ``gap.png`` is skipped (no file) when the focus model has no gap to Fine-Tuned at all
    (Fine-Tuned absent, both Distilled and Control absent, or no task with both values).
    ``lambda_sweep.png`` needs a λ sweep with a result or a dev choice, ``dynamic_gap.png`` a
    dynamic-λ gap to Fine-Tuned, ``lambda_eff.png`` a dynamic condition's training log (all
    three need the tidy ``conditions`` table). A skipped figure's file is removed.
    """
    inputs = Inputs(cells, focus_model, heatmap_condition, conditions, selection, training, paired)
    return draw_figures(inputs, figures_dir)
