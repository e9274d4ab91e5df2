"""Section: cross-lingual transfer. The heatmap of the heatmap condition (task × language) and
the Analysis paragraph comparing English, the training language, with the other languages.

Template partial: ``report/templates/sections/crosslingual.md.j2``.
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
    decimal1,
    fmt,
    is_trained,
    language_order,
    language_table,
    primary_cells,
    primary_metric,
    signed,
    task_order,
    task_title,
)
from icldistill.render.plotting import figure_labels, new_figure, save_figure
from icldistill.vocab import condition_label, language_label

#: Training happens on English only, so cross-lingual transfer is measured from this language.
SOURCE_LANGUAGE = "en"


def cross_lingual(cells: pd.DataFrame, model: str, condition: str) -> dict[str, float | int]:
    """English versus non-English primary-metric means of one model and condition.

    Returns ``en_avg`` and ``non_en_avg`` (means over all cells with a value), their counts
    ``n_en``/``n_non_en``, and ``gap`` = ``en_avg − non_en_avg`` (NaN when a side is empty).
    """
    own = primary_cells(cells)
    own = own[(own["model"] == model) & (own["condition"] == condition)].dropna(subset=["value"])
    english = own.loc[own["language"] == SOURCE_LANGUAGE, "value"]
    others = own.loc[own["language"] != SOURCE_LANGUAGE, "value"]
    en_avg = float(english.mean()) if len(english) else math.nan
    non_en_avg = float(others.mean()) if len(others) else math.nan
    return {
        "en_avg": en_avg,
        "non_en_avg": non_en_avg,
        "gap": en_avg - non_en_avg,
        "n_en": len(english),
        "n_non_en": len(others),
    }


def largest_transfer_drop(cells: pd.DataFrame, model: str, condition: str) -> dict | None:
    """The (task, language) cell furthest below the same task's English score.

    Returns ``{"task", "language", "drop"}`` with ``drop`` = cell − English (negative), or None
    when no task has both an English and a non-English value below English.
    """
    own = primary_cells(cells)
    own = own[(own["model"] == model) & (own["condition"] == condition)].dropna(subset=["value"])
    english = own[own["language"] == SOURCE_LANGUAGE].set_index("task")["value"]
    others = own[(own["language"] != SOURCE_LANGUAGE) & own["task"].isin(english.index)]
    if others.empty:
        return None
    drops = others["value"] - others["task"].map(english)
    worst = drops.idxmin()
    if drops[worst] >= 0:
        return None
    return {
        "task": others.at[worst, "task"],
        "language": others.at[worst, "language"],
        "drop": float(drops[worst]),
    }


def default_heatmap_condition(conditions: Sequence[str]) -> str:
    """``distilled`` when present, otherwise the last condition present."""
    if not conditions:
        raise ValueError("no conditions to choose a heatmap condition from")
    return "distilled" if "distilled" in conditions else conditions[-1]


def cross_lingual_context(
    cells: pd.DataFrame,
    model: str,
    condition: str,
    labels: Mapping[str, str] | None = None,
    roles: Mapping[str, str] | None = None,
) -> dict | None:
    """English / non-English averages and gap of the heatmap condition, or None if a side is empty."""
    stats = cross_lingual(cells, model, condition)
    if not stats["n_en"] or not stats["n_non_en"]:
        return None
    drop = largest_transfer_drop(cells, model, condition)
    return {
        "label": (labels or {}).get(condition) or condition_label(condition),
        "trained": is_trained(condition, roles or {}),
        "en": fmt(stats["en_avg"], "%"),
        "non_en": fmt(stats["non_en_avg"], "%"),
        "n_en": stats["n_en"],
        "n_non_en": stats["n_non_en"],
        "gap": fmt(stats["gap"]),
        "drop": None
        if drop is None
        else {
            "task": task_title(drop["task"]),
            "language": language_label(drop["language"]),
            "amount": signed(drop["drop"], minus="−"),
        },
    }


MISSING_COLOR = "#E0E0E0"


def task_language_grid(cells: pd.DataFrame, model: str, condition: str) -> pd.DataFrame:
    """Task × language primary-metric values of one model and condition (NaN where missing)."""
    tasks, languages = task_order(cells), language_order(cells)
    rows = {
        task: language_table(
            cells,
            condition,
            task,
            primary_metric(cells, task),
            [model],
            languages,
        ).loc[model, languages]
        for task in tasks
    }
    return pd.DataFrame(rows).T.reindex(index=tasks, columns=languages).astype(float)


def heatmap(
    grid: pd.DataFrame,
    focus_model: str,
    condition: str,
    path: str | PathLike,
    labels: Mapping[str, str] | None = None,
) -> Path:
    """Annotated task × language heatmap of one condition; cells without a result are grey.

    ``grid`` holds tasks as rows and languages as columns (primary metric, in %).
    """
    labelled = grid.rename(index=task_title, columns=language_label).astype(float)
    width = 1.6 + 1.1 * len(labelled.columns)
    figure, axes = new_figure(max(6.5, width), 0.75 * len(labelled.index) + 1.6, style="white")
    sns.heatmap(
        labelled,
        mask=labelled.isna(),
        cmap="RdYlGn",
        vmin=0,
        vmax=100,
        annot=labelled.map(lambda v: "" if math.isnan(v) else decimal1(v)).to_numpy(),
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
                    MISSING,
                    ha="center",
                    va="center",
                    color="#757575",
                )
    axes.set_xlabel("")
    axes.set_ylabel("")
    axes.tick_params(axis="both", length=0, labelsize=10)
    axes.set_yticklabels(axes.get_yticklabels(), rotation=0)
    axes.set_title(
        f"{focus_model} — {figure_labels([condition], labels)[condition]}: score by task × language",
        fontsize=12,
        fontweight="bold",
        pad=10,
    )
    return save_figure(figure, path)


def heatmap_figure(inputs: Inputs, path: Path) -> Path:
    """``heatmap_<condition>.png``: the focus model's heatmap of the heatmap condition."""
    grid = task_language_grid(inputs.cells, inputs.focus_model, inputs.heatmap_condition)
    return heatmap(grid, inputs.focus_model, inputs.heatmap_condition, path, inputs.labels)


def context(inputs: Inputs) -> dict:
    """Template keys ``heatmap_label`` and ``cross_lingual``."""
    return {
        "heatmap_label": inputs.labels[inputs.heatmap_condition],
        "cross_lingual": cross_lingual_context(
            inputs.cells, inputs.focus_model, inputs.heatmap_condition, inputs.labels, inputs.roles
        ),
    }
