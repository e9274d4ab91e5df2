"""Section: the overview. The report's header, the Main Result task bars, the Summary table
(and the cross-model bars), the focus model's Per-Task × Condition Overview and the Overall
Results of the Analysis.

Template partial: ``report/templates/sections/overview.md.j2``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

import pandas as pd
import seaborn as sns

from icldistill.render.common import (
    MISSING,
    Inputs,
    bold,
    condition_labels,
    condition_order,
    condition_roles,
    decimal1,
    fmt,
    is_trained,
    language_order,
    model_order,
    primary_cells,
    table,
    task_order,
    task_title,
)
from icldistill.render.gaps import GAP_HEADERS, fmt_gap, gaps_to_finetuned, paired_test
from icldistill.render.plotting import (
    condition_colors,
    figure_labels,
    interval_bars,
    long_form,
    new_figure,
    save_figure,
)
from icldistill.tasks import TASKS
from icldistill.vocab import language_label

#: Roles of the conditions drawn in the task bar figure; dynamic strategies have their own.
TASK_BAR_ROLES = frozenset({"infer", "train", "best"})


def summary_table(
    cells: pd.DataFrame,
    models: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Model × condition mean of the primary metric over all (task, language) cells with a value.

    This is a mean over cells, not over task means: a task with more languages weighs more.
    """
    models = model_order(cells) if models is None else list(models)
    conditions = condition_order(cells) if conditions is None else list(conditions)
    means = primary_cells(cells).groupby(["model", "condition"])["value"].mean().unstack()
    return means.reindex(index=models, columns=conditions).astype(float)


def summary_bounds(
    cells: pd.DataFrame,
    models: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Model × condition means of the primary-metric ``ci_low`` and ``ci_high`` over the cells
    :func:`summary_table` averages (as :func:`task_condition_bounds`, the conservative bounds)."""
    models = model_order(cells) if models is None else list(models)
    conditions = condition_order(cells) if conditions is None else list(conditions)
    own = primary_cells(cells)
    grouped = own[own["value"].notna()].groupby(["model", "condition"])
    return tuple(
        grouped[column].mean().unstack().reindex(index=models, columns=conditions).astype(float)
        for column in ("ci_low", "ci_high")
    )


def task_condition_bounds(
    cells: pd.DataFrame,
    model: str,
    tasks: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Task × condition means over languages of one model's primary-metric ``ci_low`` and
    ``ci_high``, aligned with :func:`common.task_condition_table`: the error bars of the task bars.
    Averaging the bounds is the interval of the average when the languages' errors are perfectly
    correlated (XTREME's test sets are translations of each other), and wider otherwise: it
    never overstates precision."""
    tasks = task_order(cells) if tasks is None else list(tasks)
    conditions = condition_order(cells) if conditions is None else list(conditions)
    own = primary_cells(cells)
    own = own[(own["model"] == model) & own["value"].notna()]
    grouped = own.groupby(["task", "condition"])
    return tuple(
        grouped[column].mean().unstack().reindex(index=tasks, columns=conditions).astype(float)
        for column in ("ci_low", "ci_high")
    )


def chance_levels(tasks: Sequence[str]) -> dict[str, float]:
    """Chance accuracy (%) of each label task (uniform over its label words); tasks without a
    fixed label set (spans, tag sequences) have none."""
    from icldistill.tasks import get_task

    levels = {}
    for task in tasks:
        try:
            choices = get_task(task).choices()
        except (KeyError, ValueError):
            continue
        if choices:
            levels[task] = 100.0 / len(choices)
    return levels


def task_bar_conditions(shown: Sequence[str], conditions: pd.DataFrame | None = None) -> list[str]:
    """The ``shown`` conditions drawn in the task bar figure: roles infer, train, best, or no role known."""
    roles = condition_roles(conditions)
    return [c for c in shown if roles.get(c, "train") in TASK_BAR_ROLES]


def overview_table(
    overview: pd.DataFrame, labels: Mapping[str, str] | None = None, tests: Mapping | None = None
) -> dict:
    """Per-task × condition averages of the focus model with the gap-to-Fine-Tuned columns."""
    gaps = gaps_to_finetuned(overview)
    labels = condition_labels(overview.columns) if labels is None else labels
    header = [
        "Task",
        *(labels[c] for c in overview.columns),
        *(GAP_HEADERS[c][0] for c in gaps.columns),
    ]
    rows = [
        [
            task_title(task),
            *(fmt(overview.at[task, c]) for c in overview.columns),
            *(fmt_gap(gaps.at[task, c], *paired_test(tests, task, c)) for c in gaps.columns),
        ]
        for task in overview.index
    ]
    return table(header, rows)


def chance_lines(axes, tasks: Sequence[str], chance: Mapping[str, float] | None) -> None:
    """A dashed line at chance level across each label task's group of bars (x = its index)."""
    drawn = False
    for index, task in enumerate(tasks):
        level = (chance or {}).get(task)
        if level is None:
            continue
        axes.hlines(
            level,
            index - 0.45,
            index + 0.45,
            colors="#555555",
            linestyles="--",
            linewidth=1.1,
            zorder=4,
            label=None if drawn else "chance",
        )
        drawn = True


def grouped_bars(
    axes,
    table: pd.DataFrame,
    x_name: str,
    labels: Mapping[str, str] | None = None,
    colors: Mapping[str, str] | None = None,
    bounds: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> None:
    """Rows × conditions ``table`` as grouped bars on ``axes`` (one group per row, one bar per
    condition column), each value annotated, with ``bounds`` (aligned by position with
    ``table``) as interval bars, and the y axis from 0 to at least 100."""
    conditions = list(table.columns)
    colors = colors or condition_colors(conditions)
    names = figure_labels(conditions, labels)
    data = long_form(table.rename(columns=names), x_name, "condition")
    sns.barplot(
        data=data,
        x=x_name,
        y="value",
        hue="condition",
        order=list(table.index),
        hue_order=[names[c] for c in conditions],
        palette={names[c]: colors[c] for c in conditions},
        edgecolor="white",
        linewidth=0.8,
        ax=axes,
    )
    for container in list(axes.containers):
        texts = [decimal1(v) if not math.isnan(v) else "" for v in container.datavalues]
        axes.bar_label(container, labels=texts, padding=2, fontsize=7, fontweight="bold", color="#333333")
    top = data["value"].max()
    if bounds is not None:
        low, high = (b.reindex(columns=conditions).set_axis(table.index, axis=0) for b in bounds)
        interval_bars(axes, conditions, low, high)
        if high.notna().any().any():
            top = max(top, float(high.max().max()))
    axes.set_ylim(0, max(100.0, 0.0 if math.isnan(top) else top) * 1.08)
    axes.set_xlabel("")
    axes.legend(title=None, loc="upper left", frameon=True, fontsize=9)


def task_bar(
    overview: pd.DataFrame,
    focus_model: str,
    path: str | PathLike,
    labels: Mapping[str, str] | None = None,
    colors: Mapping[str, str] | None = None,
    bounds: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    chance: Mapping[str, float] | None = None,
) -> Path:
    """Grouped bars of the focus model's average score per task × condition, values annotated.

    ``overview`` is :func:`common.task_condition_table` (tasks × conditions); ``labels`` and
    ``colors`` default to the vocabulary's labels and :func:`plotting.condition_colors`; ``bounds``
    (:func:`task_condition_bounds`, aligned with ``overview``) draws interval bars and
    ``chance`` (task → %) a dashed chance line on label tasks.
    """
    figure, axes = new_figure(max(8.0, 2.4 * len(overview.index)), 5.2)
    grouped_bars(axes, overview.rename(index=task_title), "task", labels, colors, bounds)
    chance_lines(axes, list(overview.index), chance)
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
    return save_figure(figure, path)


def model_bars(
    summary: pd.DataFrame,
    path: str | PathLike,
    labels: Mapping[str, str] | None = None,
    colors: Mapping[str, str] | None = None,
    bounds: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> Path:
    """Grouped bars of every model's average score per condition (:func:`summary_table`,
    models × conditions), with the conservative interval bars of :func:`summary_bounds`."""
    figure, axes = new_figure(max(8.0, 2.6 * len(summary.index)), 5.0)
    grouped_bars(axes, summary, "model", labels, colors, bounds)
    axes.set_ylabel("Average score (%) over tasks and languages")
    axes.set_title("Average Score per Model × Condition", fontsize=13, fontweight="bold", pad=12)
    sns.despine(ax=axes)
    return save_figure(figure, path)


def task_bar_figure(inputs: Inputs, path: Path) -> Path:
    """``task_bar.png``: the task bars of the conditions :func:`task_bar_conditions` keeps."""
    bars = inputs.overview[task_bar_conditions(inputs.shown, inputs.conditions)]
    bounds = task_condition_bounds(inputs.cells, inputs.focus_model, list(bars.index), list(bars.columns))
    chance = chance_levels(list(bars.index))
    colors = condition_colors(inputs.shown)
    return task_bar(bars, inputs.focus_model, path, inputs.labels, colors, bounds, chance)


def models_figure(inputs: Inputs, path: Path) -> Path | None:
    """``models.png`` when the cells hold more than one model."""
    models = model_order(inputs.cells)
    if len(models) < 2:
        return None
    conditions = task_bar_conditions(inputs.shown, inputs.conditions)
    summary = summary_table(inputs.cells, models, conditions)
    bounds = summary_bounds(inputs.cells, models, conditions)
    return model_bars(summary, path, inputs.labels, condition_colors(inputs.shown), bounds)


def context(inputs: Inputs) -> dict:
    """Template keys ``title``, ``models``, ``focus_model``, ``tasks_line``, ``languages_line``,
    ``trained``, ``summary``, ``overview`` and ``overall``."""
    cells, focus_model, conditions, labels = inputs.cells, inputs.focus_model, inputs.shown, inputs.labels
    models, tasks, languages = model_order(cells), task_order(cells), language_order(cells)
    summary = summary_table(cells, models, conditions)
    return {
        "title": "XTREME Benchmark — ICL Distillation Results",
        "models": models,
        "focus_model": focus_model,
        "tasks_line": ", ".join(
            f"{task.upper()} ({TASKS[task].dataset})" if task in TASKS else task.upper() for task in tasks
        ),
        "languages_line": " · ".join(language_label(lang) for lang in languages),
        "trained": any(is_trained(c, inputs.roles) for c in conditions),
        "summary": table(
            ["Model", *(labels[c] for c in conditions)],
            [[model, *(fmt(summary.at[model, c]) for c in conditions)] for model in models],
        ),
        "overview": overview_table(inputs.overview, labels, inputs.tests),
        "overall": table(
            ["Condition", "Avg Score"],
            [
                [labels[c], bold(fmt(summary.at[focus_model, c], "%"))]
                if not pd.isna(summary.at[focus_model, c])
                else [labels[c], MISSING]
                for c in conditions
            ],
        ),
    }
