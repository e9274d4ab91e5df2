"""Figures of the results report, drawn with seaborn on matplotlib's Agg backend.

Figures are built as :class:`matplotlib.figure.Figure` objects on an Agg canvas rather than
through ``pyplot``, so rendering needs no display and leaves global pyplot state alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from icldistill.render import tables
from icldistill.vocab import TASK_TITLES, condition_label, language_label

DPI = 150

#: Fixed colours of the known conditions, so a condition looks the same in every figure.
CONDITION_COLORS: dict[str, str] = {
    "base": "#9E9E9E",
    "fewshot": "#2196F3",
    "finetuned": "#FF9800",
    "distilled": "#4CAF50",
    "control": "#E91E63",
}

#: Colours handed in turn to user-defined conditions.
EXTRA_COLORS: tuple[str, ...] = tuple(sns.color_palette("Dark2").as_hex())

MISSING_COLOR = "#E0E0E0"


def condition_colors(conditions: Sequence[str]) -> dict[str, str]:
    """Colour per condition: the fixed one when known, the next spare colour otherwise."""
    spare = iter(EXTRA_COLORS * (1 + len(conditions) // len(EXTRA_COLORS)))
    return {c: CONDITION_COLORS.get(c) or next(spare) for c in conditions}


def task_title(task: str) -> str:
    """Display title of a task (its id in upper case when the vocabulary lacks it)."""
    return TASK_TITLES.get(task, task.upper())


def _new_figure(width: float, height: float, style: str = "ticks") -> tuple[Figure, object]:
    with sns.axes_style(style, {"axes.grid": True, "grid.linestyle": "--", "grid.color": "#E6E6E6"}):
        figure = Figure(figsize=(width, height), dpi=DPI)
        FigureCanvasAgg(figure)
        axes = figure.subplots()
    axes.grid(axis="x", visible=False)
    axes.set_axisbelow(True)
    return figure, axes


def _save(figure: Figure, path: str | PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def _long(table: pd.DataFrame, row_name: str, column_name: str) -> pd.DataFrame:
    """Row × column table → long frame with one row per cell (NaN values kept)."""
    long = table.rename_axis(index=row_name, columns=column_name).stack(future_stack=True)
    return long.rename("value").reset_index()


def task_bar(overview: pd.DataFrame, focus_model: str, path: str | PathLike) -> Path:
    """Grouped bars of the focus model's average score per task × condition, values annotated.

    ``overview`` is :func:`tables.task_condition_table` (tasks × conditions).
    """
    conditions = list(overview.columns)
    colors = condition_colors(conditions)
    labelled = overview.rename(index=task_title, columns=condition_label)
    data = _long(labelled, "task", "condition")
    figure, axes = _new_figure(max(8.0, 2.4 * len(overview.index)), 5.2)
    sns.barplot(
        data=data,
        x="task",
        y="value",
        hue="condition",
        order=list(labelled.index),
        hue_order=list(labelled.columns),
        palette={condition_label(c): colors[c] for c in conditions},
        edgecolor="white",
        linewidth=0.8,
        ax=axes,
    )
    for container in axes.containers:
        labels = [tables.decimal1(v) if not math.isnan(v) else "" for v in container.datavalues]
        axes.bar_label(
            container,
            labels=labels,
            padding=2,
            fontsize=7,
            fontweight="bold",
            color="#333333",
        )
    top = data["value"].max()
    axes.set_ylim(0, max(100.0, 0.0 if math.isnan(top) else top) * 1.08)
    axes.set_xlabel("")
    axes.set_ylabel("Average score (%) across languages")
    axes.set_title(
        f"{focus_model} — Average Score per Task × Condition",
        fontsize=13,
        fontweight="bold",
        pad=12,
    )
    axes.tick_params(axis="x", labelsize=11)
    axes.legend(title=None, loc="upper left", frameon=True, fontsize=9)
    sns.despine(ax=axes)
    return _save(figure, path)


def gap_bars(gaps: pd.DataFrame, focus_model: str, path: str | PathLike, subtitle: str = "") -> Path:
    """Bars of Distilled − Fine-Tuned and Control − Fine-Tuned per task around a zero line.

    ``gaps`` is :func:`tables.gaps_to_finetuned` (tasks × gap conditions, in pp).
    """
    colors = condition_colors(list(gaps.columns))
    names = {c: f"{condition_label(c)} − {condition_label(tables.REFERENCE_CONDITION)}" for c in gaps.columns}
    labelled = gaps.rename(index=task_title, columns=names)
    data = _long(labelled, "task", "series")
    figure, axes = _new_figure(max(8.0, 2.2 * len(gaps.index)), 5.0)
    sns.barplot(
        data=data,
        x="task",
        y="value",
        hue="series",
        order=list(labelled.index),
        hue_order=list(labelled.columns),
        palette={names[c]: colors[c] for c in gaps.columns},
        edgecolor="white",
        linewidth=0.8,
        ax=axes,
    )
    low, high = data["value"].min(), data["value"].max()
    low = min(0.0, 0.0 if math.isnan(low) else low)
    high = max(0.0, 0.0 if math.isnan(high) else high)
    span = max(high - low, 1.0)
    offset = 0.02 * span
    for container in axes.containers:
        for bar, value in zip(container.patches, container.datavalues, strict=True):
            if math.isnan(value):
                continue
            x = bar.get_x() + bar.get_width() / 2
            above = value >= 0
            axes.text(
                x,
                value + (offset if above else -offset),
                tables.signed(value),
                ha="center",
                va="bottom" if above else "top",
                fontsize=9,
                fontweight="bold",
            )
    axes.set_ylim(low - 0.1 * span, high + 0.1 * span)
    axes.axhline(0, color="black", linewidth=1.2)
    axes.set_xlabel("")
    axes.set_ylabel(f"Δ score vs {condition_label(tables.REFERENCE_CONDITION)} (pp)")
    title = f"{focus_model} — Gain/Loss per Task relative to {condition_label(tables.REFERENCE_CONDITION)}"
    if subtitle:
        title = f"{title}\n{subtitle}"
    axes.set_title(title, fontsize=12, fontweight="bold", pad=10)
    axes.tick_params(axis="x", labelsize=11)
    axes.legend(title=None, loc="lower left", frameon=True, fontsize=9)
    sns.despine(ax=axes)
    return _save(figure, path)


def heatmap(grid: pd.DataFrame, focus_model: str, condition: str, path: str | PathLike) -> Path:
    """Annotated task × language heatmap of one condition; cells without a result are grey.

    ``grid`` holds tasks as rows and languages as columns (primary metric, in %).
    """
    labelled = grid.rename(index=task_title, columns=language_label).astype(float)
    width = 1.6 + 1.1 * len(labelled.columns)
    figure, axes = _new_figure(max(6.5, width), 0.75 * len(labelled.index) + 1.6, style="white")
    sns.heatmap(
        labelled,
        mask=labelled.isna(),
        cmap="RdYlGn",
        vmin=0,
        vmax=100,
        annot=labelled.map(lambda v: "" if math.isnan(v) else tables.decimal1(v)).to_numpy(),
        fmt="",
        annot_kws={"fontsize": 10},
        linewidths=1.5,
        linecolor="white",
        cbar_kws={"label": "Score (%)"},
        ax=axes,
    )
    axes.grid(False)
    axes.set_facecolor(MISSING_COLOR)
    for row, task in enumerate(labelled.index):
        for column, language in enumerate(labelled.columns):
            if math.isnan(labelled.at[task, language]):
                axes.text(
                    column + 0.5,
                    row + 0.5,
                    tables.MISSING,
                    ha="center",
                    va="center",
                    color="#757575",
                )
    axes.set_xlabel("")
    axes.set_ylabel("")
    axes.tick_params(axis="both", length=0, labelsize=10)
    axes.set_yticklabels(axes.get_yticklabels(), rotation=0)
    axes.set_title(
        f"{focus_model} — {condition_label(condition)}: score by task × language",
        fontsize=12,
        fontweight="bold",
        pad=10,
    )
    return _save(figure, path)


def task_language_grid(cells: pd.DataFrame, model: str, condition: str) -> pd.DataFrame:
    """Task × language primary-metric values of one model and condition (NaN where missing)."""
    tasks, languages = tables.task_order(cells), tables.language_order(cells)
    rows = {
        task: tables.language_table(
            cells,
            condition,
            task,
            tables.primary_metric(cells, task),
            [model],
            languages,
        ).loc[model, languages]
        for task in tasks
    }
    return pd.DataFrame(rows).T.reindex(index=tasks, columns=languages).astype(float)


def gap_subtitle(counts: dict[str, tuple[int, int]]) -> str:
    """Figure subtitle stating the computed Distilled > Control and FT > Distilled counts."""
    parts = []
    if "dist_gt_ctrl" in counts:
        held, total = counts["dist_gt_ctrl"]
        parts.append(f"Distilled > Control in {held}/{total} tasks")
    if "ft_gt_dist" in counts:
        held, total = counts["ft_gt_dist"]
        parts.append(f"Fine-Tuned > Distilled in {held}/{total} tasks")
    return "; ".join(parts)


def figure_names(heatmap_condition: str) -> dict[str, str]:
    """File name of each figure the report may show, keyed by its role."""
    return {
        "task_bar": "task_bar.png",
        "gap": "gap.png",
        "heatmap": f"heatmap_{heatmap_condition}.png",
    }


def write_figures(
    cells: pd.DataFrame,
    figures_dir: str | PathLike,
    focus_model: str,
    heatmap_condition: str,
) -> list[Path]:
    """Draw the report's figures for the focus model into ``figures_dir`` and return their paths.

    ``gap.png`` is skipped (no file) when the focus model has no gap to Fine-Tuned at all
    (Fine-Tuned absent, both Distilled and Control absent, or no task with both values).
    """
    figures_dir = Path(figures_dir)
    names = figure_names(heatmap_condition)
    overview = tables.task_condition_table(cells, focus_model)
    written = [task_bar(overview, focus_model, figures_dir / names["task_bar"])]
    gaps = tables.gaps_to_finetuned(overview)
    if gaps.notna().any().any():
        subtitle = gap_subtitle(tables.ordering_counts(overview))
        written.append(gap_bars(gaps, focus_model, figures_dir / names["gap"], subtitle))
    else:
        # A gap figure left from an earlier render would contradict this report.
        (figures_dir / names["gap"]).unlink(missing_ok=True)
    grid = task_language_grid(cells, focus_model, heatmap_condition)
    written.append(heatmap(grid, focus_model, heatmap_condition, figures_dir / names["heatmap"]))
    return written
