"""Section: the conditions. The legend of the report's header (one line per shown condition,
each swept one followed by its sweep's line) and one section per condition with a model ×
language table per task (and per secondary metric).

Template partial: ``report/templates/sections/conditions.md.j2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from icldistill.render.common import (
    Inputs,
    bold,
    condition_labels,
    condition_order,
    fmt,
    language_order,
    language_table,
    model_order,
    primary_metric,
    table,
    task_order,
    task_title,
)
from icldistill.render.parse_failures import PARSE_FAILURE_MARK, parse_failure_flags
from icldistill.render.sweep import sweep_legend_line, swept_conditions
from icldistill.tasks import TASKS
from icldistill.vocab import CONDITION_LEGEND, language_label


def legend(shown: Sequence[str], conditions: pd.DataFrame | None, labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """(label, text) per shown condition, each swept one followed by its sweep's line.

    The conditions table's ``description`` wins over the vocabulary's legend; a sweep whose
    condition is not shown gets its line at the end.
    """
    described = {} if conditions is None else dict(zip(conditions["condition"], conditions["description"], strict=True))
    swept = swept_conditions(conditions)
    lines = []
    for condition in shown:
        text = described.get(condition) or CONDITION_LEGEND.get(condition, "user-defined condition")
        lines.append((labels[condition], text))
        if condition in swept:
            lines.append(sweep_legend_line(condition, conditions, labels))
    lines += [sweep_legend_line(c, conditions, labels) for c in swept if c not in shown]
    return lines


def marked(value: float, flagged: bool) -> str:
    """:func:`common.fmt` of a cell's value, followed by :data:`parse_failures.PARSE_FAILURE_MARK` when ``flagged``."""
    text = fmt(value)
    return f"{text}{PARSE_FAILURE_MARK}" if flagged and not pd.isna(value) else text


def language_section_table(
    cells: pd.DataFrame,
    condition: str,
    task: str,
    metric: str,
    models: list[str],
    languages: list[str],
) -> dict:
    """Model × language table (values, bold Avg) of one condition, task and metric; a value whose
    cell has too many unparsed outputs (:func:`parse_failures.parse_failure_flags`) carries :data:`parse_failures.PARSE_FAILURE_MARK`."""
    grid = language_table(cells, condition, task, metric, models, languages)
    flags = parse_failure_flags(cells, condition, task, metric, models, languages)
    rows = [
        [
            model,
            *(marked(grid.at[model, lang], flags.at[model, lang]) for lang in languages),
            bold(fmt(grid.at[model, "Avg"])),
        ]
        for model in models
    ]
    return table(["Model", *(language_label(lang) for lang in languages), "Avg"], rows)


def condition_sections(
    cells: pd.DataFrame,
    conditions: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> list[dict]:
    """One section per condition (default: all present): its task tables (and secondary-metric tables)."""
    models, languages = model_order(cells), language_order(cells)
    conditions = condition_order(cells) if conditions is None else conditions
    labels = condition_labels(conditions) if labels is None else labels
    sections = []
    for condition in conditions:
        blocks = []
        for task in task_order(cells):
            metric = primary_metric(cells, task)
            blocks.append(
                {
                    "heading": f"### {task_title(task)}",
                    "table": language_section_table(cells, condition, task, metric, models, languages),
                }
            )
            for extra_metric, heading in TASKS[task].secondary_tables if task in TASKS else ():
                if ((cells["task"] == task) & (cells["metric"] == extra_metric)).any():
                    blocks.append(
                        {
                            "heading": f"#### {heading}",
                            "table": language_section_table(cells, condition, task, extra_metric, models, languages),
                        }
                    )
        sections.append({"label": labels[condition], "blocks": blocks})
    return sections


def context(inputs: Inputs) -> dict:
    """Template keys ``legend`` and ``sections``."""
    return {
        "legend": legend(inputs.shown, inputs.conditions, inputs.labels),
        "sections": condition_sections(inputs.cells, inputs.shown, inputs.labels),
    }
