"""What the report's figures share: condition colours, the figure canvas and its saving, interval
bars, reference lines and the gap-to-Fine-Tuned bars (drawn by the gaps and dynamic λ sections).

Figures are built as :class:`matplotlib.figure.Figure` objects on an Agg canvas rather than
through ``pyplot``, so rendering needs no display and leaves global pyplot state alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from icldistill.render.common import REFERENCE_CONDITION, signed, task_title
from icldistill.vocab import condition_label

#: Resolution of every figure (dots per inch).
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


def condition_colors(conditions: Sequence[str]) -> dict[str, str]:
    """Colour per condition: the fixed one when known, the next spare colour otherwise."""
    spare = iter(EXTRA_COLORS * (1 + len(conditions) // len(EXTRA_COLORS)))
    return {c: CONDITION_COLORS.get(c) or next(spare) for c in conditions}


def figure_labels(conditions: Sequence[str], labels: Mapping[str, str] | None) -> dict[str, str]:
    """Display label per condition: from ``labels`` when given, else the vocabulary's."""
    return {c: (labels or {}).get(c) or condition_label(c) for c in conditions}


def new_figure(width: float, height: float, style: str = "ticks") -> tuple[Figure, object]:
    """A ``width`` × ``height`` inch figure of one panel on an Agg canvas, with the report's grid style."""
    with sns.axes_style(style, {"axes.grid": True, "grid.linestyle": "--", "grid.color": "#E6E6E6"}):
        figure = Figure(figsize=(width, height), dpi=DPI)
        FigureCanvasAgg(figure)
        axes = figure.subplots()
    axes.grid(axis="x", visible=False)
    axes.set_axisbelow(True)
    return figure, axes


def new_grid(rows: int, columns: int, width: float, height: float) -> tuple[Figure, list[list[object]]]:
    """A figure of ``rows`` × ``columns`` panels styled like :func:`new_figure`."""
    with sns.axes_style("ticks", {"axes.grid": True, "grid.linestyle": "--", "grid.color": "#E6E6E6"}):
        figure = Figure(figsize=(width, height), dpi=DPI)
        FigureCanvasAgg(figure)
        panels = figure.subplots(rows, columns, squeeze=False)
    for axes in panels.flat:
        axes.set_axisbelow(True)
    return figure, [list(row) for row in panels]


def scope_panels(scopes: Sequence[str]) -> tuple[Figure, list[object]]:
    """One panel per training scope, at most three to a row; the panels in reading order."""
    columns = min(len(scopes), 3)
    rows = math.ceil(len(scopes) / columns)
    figure, panels = new_grid(rows, columns, 0.6 + 4.0 * columns, 0.9 + 3.0 * rows)
    return figure, [axes for row in panels for axes in row]


def save_figure(figure: Figure, path: str | PathLike) -> Path:
    """Write ``figure`` as a PNG at ``path`` (its folder created), cropped, on white; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def long_form(table: pd.DataFrame, row_name: str, column_name: str) -> pd.DataFrame:
    """Row × column table → long frame with one row per cell (NaN values kept)."""
    long = table.rename_axis(index=row_name, columns=column_name).stack(future_stack=True)
    return long.rename("value").reset_index()


def interval_bars(axes, columns: Sequence[str], low: pd.DataFrame | None, high: pd.DataFrame | None) -> None:
    """Draw ``[low, high]`` error bars on the bars of a grouped seaborn bar plot: one container
    per column of ``columns`` (hue order), one bar per row of ``low``/``high`` (x order); bars
    without a value or an interval get none."""
    if low is None or high is None:
        return
    bars = [c for c in axes.containers if isinstance(c, BarContainer)]
    for column, container in zip(columns, bars, strict=False):
        for row, bar in enumerate(container.patches):
            lo, hi = low.iloc[row][column], high.iloc[row][column]
            value = bar.get_height()
            if any(math.isnan(v) for v in (lo, hi, value)):
                continue
            x = bar.get_x() + bar.get_width() / 2
            axes.errorbar(
                x,
                value,
                yerr=[[max(value - lo, 0.0)], [max(hi - value, 0.0)]],
                fmt="none",
                ecolor="#222222",
                elinewidth=0.9,
                capsize=2.5,
                zorder=3,
            )


def reference_line(axes, value: float, style: str, color: str, label: str) -> None:
    """A horizontal reference line (a condition's score or λ); nothing for NaN."""
    if not math.isnan(value):
        axes.axhline(value, linestyle=style, linewidth=1.5, color=color, label=label)


def gap_bars(
    gaps: pd.DataFrame,
    focus_model: str,
    path: str | PathLike,
    subtitle: str = "",
    labels: Mapping[str, str] | None = None,
    colors: Mapping[str, str] | None = None,
    bounds: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> Path:
    """Bars of each condition's gap to Fine-Tuned per task around a zero line.

    ``gaps`` holds tasks × conditions in pp (:func:`gaps.gaps_to_finetuned`: Distilled and
    Control; the Dynamic λ figure passes more); ``labels`` and ``colors`` as in :func:`overview.task_bar`;
    ``bounds`` (tasks × conditions, the paired bootstrap interval of each gap) draws interval bars.
    """
    colors = colors or condition_colors(list(gaps.columns))
    reference = figure_labels([REFERENCE_CONDITION], labels)[REFERENCE_CONDITION]
    names = {c: f"{label} − {reference}" for c, label in figure_labels(list(gaps.columns), labels).items()}
    labelled = gaps.rename(index=task_title, columns=names)
    data = long_form(labelled, "task", "series")
    # Two series per task fit the seed's width; more series widen each task's group.
    figure, axes = new_figure(max(8.0, 2.2 * len(gaps.index) * max(1.0, len(gaps.columns) / 3)), 5.0)
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
    if bounds is not None:
        bounds = tuple(b.reindex(index=gaps.index, columns=gaps.columns) for b in bounds)
        interval_bars(axes, list(gaps.columns), *bounds)
    low, high = data["value"].min(), data["value"].max()
    if bounds is not None and bounds[0].notna().any().any():
        low, high = min(low, float(bounds[0].min().min())), max(high, float(bounds[1].max().max()))
    low = min(0.0, 0.0 if math.isnan(low) else low)
    high = max(0.0, 0.0 if math.isnan(high) else high)
    span = max(high - low, 1.0)
    offset = 0.02 * span
    for container in [c for c in axes.containers if isinstance(c, BarContainer)]:
        for bar, value in zip(container.patches, container.datavalues, strict=True):
            if math.isnan(value):
                continue
            x = bar.get_x() + bar.get_width() / 2
            above = value >= 0
            axes.text(
                x,
                value + (offset if above else -offset),
                signed(value),
                ha="center",
                va="bottom" if above else "top",
                fontsize=9 if len(gaps.columns) <= 3 else 7,
                fontweight="bold",
            )
    axes.set_ylim(low - 0.1 * span, high + 0.1 * span)
    axes.axhline(0, color="black", linewidth=1.2)
    axes.set_xlabel("")
    axes.set_ylabel(f"Δ score vs {reference} (pp)")
    title = f"{focus_model} — Gain/Loss per Task relative to {reference}"
    if subtitle:
        title = f"{title}\n{subtitle}"
    axes.set_title(title, fontsize=12, fontweight="bold", pad=10)
    axes.tick_params(axis="x", labelsize=11)
    axes.legend(title=None, loc="lower left", frameon=True, fontsize=9)
    sns.despine(ax=axes)
    return save_figure(figure, path)
