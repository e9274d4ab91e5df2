"""What every report section shares: number formatting, the order of models, tasks, conditions
and languages, condition labels and roles, Markdown tables for the template, and :class:`Inputs`,
the one object each section's ``context`` and figure functions take.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cached_property

import pandas as pd

from icldistill.render.contracts import paired_lookup
from icldistill.tasks import TASKS
from icldistill.vocab import CONDITION_LABELS, LANGUAGES

#: What the report shows for a cell without a result.
MISSING = "—"

#: Condition every gap is measured against.
REFERENCE_CONDITION = "finetuned"

#: The fixed-λ KD condition that the dynamic strategies and the best λ are set beside.
DISTILLED = "distilled"

#: A gap smaller than this (in percentage points) is "near-parity" and is not bolded.
PARITY_PP = 1.0

#: Roles kept out of the Summary, Overview and per-condition sections: λ sweep members (their own
#: section) and the single-seed runs of a condition trained with several seeds (it shows their mean).
MEMBER_ROLES = frozenset({"sweep", "seed"})

#: Conditions that involve no training; any other condition (user-defined ones too) trains.
INFERENCE_ONLY_CONDITIONS = frozenset({"base", "fewshot"})


def canonical_then_rest(present: Iterable[str], canonical: Iterable[str]) -> list[str]:
    """Ids of ``present`` in ``canonical`` order, then unknown ids in order of first appearance."""
    seen = list(dict.fromkeys(present))
    known = [item for item in dict.fromkeys(canonical) if item in seen]
    return known + [item for item in seen if item not in known]


def model_order(cells: pd.DataFrame) -> list[str]:
    """Models in order of first appearance in the cells table."""
    return list(dict.fromkeys(cells["model"]))


def condition_order(cells: pd.DataFrame, conditions: pd.DataFrame | None = None) -> list[str]:
    """Conditions present, known ones in vocabulary order, user-defined ones after them.

    User-defined conditions follow the row order of the ``conditions`` table when it is given
    (the config order), then their order of first appearance in the cells.
    """
    extra = [] if conditions is None else list(conditions["condition"])
    return canonical_then_rest(cells["condition"], [*CONDITION_LABELS, *extra])


def task_order(cells: pd.DataFrame) -> list[str]:
    """Tasks present, known ones in vocabulary order, unknown ones after them."""
    return canonical_then_rest(cells["task"], tuple(TASKS))


def language_order(cells: pd.DataFrame) -> list[str]:
    """Languages present, known ones in vocabulary order, unknown ones after them."""
    return canonical_then_rest(cells["language"], LANGUAGES)


def primary_metric(cells: pd.DataFrame, task: str) -> str:
    """The task's primary metric; for a task the registry lacks, its first metric in the table."""
    if task in TASKS:
        return TASKS[task].primary_metric
    return str(cells.loc[cells["task"] == task, "metric"].iloc[0])


def primary_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The rows carrying each task's primary metric (the numbers summaries average)."""
    metrics = {task: primary_metric(cells, task) for task in task_order(cells)}
    return cells[cells["metric"] == cells["task"].map(metrics)]


def decimal1(value: float) -> str:
    """``value`` with one decimal, halves rounded up (``5.65`` → ``5.7``); ``—`` for NaN.

    The value is first snapped to 9 decimals so binary noise (33.9 / 6 = 5.6499999…) does not
    turn a printed half into a round-down.
    """
    if not is_number(value):
        return MISSING
    snapped = Decimal(repr(round(float(value), 9)))
    text = str(snapped.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
    return "0.0" if text == "-0.0" else text


def round1(value: float) -> float:
    """``value`` rounded to one decimal exactly as the report prints it (NaN stays NaN)."""
    return float(decimal1(value)) if is_number(value) else math.nan


def is_number(value: object) -> bool:
    """Whether ``value`` is a number to print (not None, not NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def signed(value: float, minus: str = "-") -> str:
    """``value`` with one decimal and an explicit sign (``+3.7``, ``-0.6``); ``—`` for NaN."""
    if not is_number(value):
        return MISSING
    text = decimal1(value)
    return text.replace("-", minus) if text.startswith("-") else f"+{text}"


def fmt(value: float, suffix: str = "") -> str:
    """One-decimal number (with ``suffix``), or ``—`` for a cell without a result."""
    return MISSING if pd.isna(value) else f"{decimal1(value)}{suffix}"


def bold(text: str) -> str:
    """Markdown bold."""
    return f"**{text}**"


def cell_text(text: str) -> str:
    """Text made safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], notes: bool = False) -> dict:
    """A table for the template: header, rows of strings, and whether the last column is prose."""
    return {
        "header": [cell_text(h) for h in header],
        "rows": [[cell_text(c) for c in row] for row in rows],
        "notes": notes,
    }


def task_title(task: str) -> str:
    """Display title of a task (its id in upper case when the registry lacks it)."""
    return TASKS[task].title if task in TASKS else task.upper()


def lambda_text(value: float) -> str:
    """A λ as the report writes it (``0.1``, ``1``, ``0``)."""
    return f"{value:g}"


def fmt_lambda(value: float) -> str:
    """A λ as the report writes it (``0``, ``0.1``, ``1``), or ``—``."""
    return MISSING if pd.isna(value) else lambda_text(value)


def condition_roles(conditions: pd.DataFrame | None) -> dict[str, str]:
    """Role of each condition of the conditions table (empty without one)."""
    return {} if conditions is None else dict(zip(conditions["condition"], conditions["role"], strict=True))


def shown_conditions(cells: pd.DataFrame, conditions: pd.DataFrame | None = None) -> list[str]:
    """Conditions of the Summary, Overview and per-condition sections: all present but sweep
    members and seed runs (:data:`MEMBER_ROLES`)."""
    roles = condition_roles(conditions)
    return [c for c in condition_order(cells, conditions) if roles.get(c) not in MEMBER_ROLES]


def conditions_with_role(order: Sequence[str], conditions: pd.DataFrame | None, role: str) -> list[str]:
    """The conditions of ``order`` that have ``role`` in the conditions table, in ``order``."""
    roles = condition_roles(conditions)
    return [c for c in order if roles.get(c) == role]


def condition_labels(order: Sequence[str], conditions: pd.DataFrame | None = None) -> dict[str, str]:
    """Display label per condition: the conditions table's ``label`` when set, else the vocabulary's."""
    table = {} if conditions is None else dict(zip(conditions["condition"], conditions["label"], strict=True))
    return {c: table.get(c) or CONDITION_LABELS.get(c, c) for c in order}


def grid_labels(cells: pd.DataFrame, conditions: pd.DataFrame | None = None) -> dict[str, str]:
    """:func:`condition_labels` of every condition the cells or the conditions table name
    (including the ``sweep_of`` and ``reuses`` targets)."""
    named = list(condition_order(cells, conditions))
    if conditions is not None:
        named += [c for column in ("condition", "sweep_of", "reuses") for c in conditions[column] if c]
    return condition_labels(list(dict.fromkeys(named)), conditions)


def condition_lambda(conditions: pd.DataFrame | None, condition: str) -> float:
    """The fixed λ of a condition in the conditions table (NaN when it has none or is not listed)."""
    if conditions is None:
        return math.nan
    row = conditions.loc[conditions["condition"] == condition, "lambda"]
    return float(row.iloc[0]) if len(row) else math.nan


def is_trained(condition: str, roles: Mapping[str, str]) -> bool:
    """Whether a condition trains: its role when the conditions table has one, else its id."""
    return roles[condition] != "infer" if condition in roles else condition not in INFERENCE_ONLY_CONDITIONS


def language_table(
    cells: pd.DataFrame,
    condition: str,
    task: str,
    metric: str,
    models: Sequence[str],
    languages: Sequence[str],
) -> pd.DataFrame:
    """Model × language values of one condition, task and metric, plus an ``Avg`` column.

    Rows follow ``models`` and columns ``languages``; a cell without a result is NaN. ``Avg`` is
    the mean of the row's available languages (NaN when it has none).
    """
    grid = model_language_grid(cells, condition, task, metric, models, languages, "value")
    grid["Avg"] = grid.mean(axis=1, skipna=True)
    return grid


def model_language_grid(
    cells: pd.DataFrame,
    condition: str,
    task: str,
    metric: str,
    models: Sequence[str],
    languages: Sequence[str],
    column: str,
) -> pd.DataFrame:
    """Model × language floats of ``column`` for one condition, task and metric (NaN where absent)."""
    selected = cells[(cells["condition"] == condition) & (cells["task"] == task) & (cells["metric"] == metric)]
    grid = selected.set_index(["model", "language"])[column].unstack()
    grid = grid.reindex(index=list(models), columns=list(languages)).astype(float)
    grid.index.name, grid.columns.name = "model", None
    return grid


def task_condition_table(
    cells: pd.DataFrame,
    model: str,
    tasks: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Task × condition average of one model's primary metric over the languages with a value."""
    tasks = task_order(cells) if tasks is None else list(tasks)
    conditions = condition_order(cells) if conditions is None else list(conditions)
    own = primary_cells(cells)
    own = own[own["model"] == model]
    means = own.groupby(["task", "condition"])["value"].mean().unstack()
    return means.reindex(index=tasks, columns=conditions).astype(float)


@dataclass(frozen=True, eq=False)
class Inputs:
    """One render's tidy tables and choices, and the facts several sections derive from them.

    The tables are the tidy forms of :mod:`icldistill.render.contracts`; ``run_record``,
    ``reference`` and ``compute`` are as :func:`icldistill.render.report.render_report` takes them.
    """

    cells: pd.DataFrame
    focus_model: str
    heatmap_condition: str
    conditions: pd.DataFrame | None = None
    selection: pd.DataFrame | None = None
    training: pd.DataFrame | None = None
    paired: pd.DataFrame | None = None
    run_record: Mapping | None = None
    reference: Mapping | None = None
    compute: Sequence[Mapping] | None = None

    @cached_property
    def shown(self) -> list[str]:
        """Conditions of the Summary, Overview and per-condition sections (:func:`shown_conditions`)."""
        return shown_conditions(self.cells, self.conditions)

    @cached_property
    def labels(self) -> dict[str, str]:
        """Display label of every condition the grid names (:func:`grid_labels`)."""
        return grid_labels(self.cells, self.conditions)

    @cached_property
    def roles(self) -> dict[str, str]:
        """Role of each condition of the conditions table (empty without one)."""
        return condition_roles(self.conditions)

    @cached_property
    def tests(self) -> dict | None:
        """The focus model's task-average paired tests (:func:`contracts.paired_lookup`), None without ``paired``."""
        return None if self.paired is None else paired_lookup(self.paired, self.focus_model)

    @cached_property
    def overview(self) -> pd.DataFrame:
        """Task × shown-condition averages of the focus model (:func:`task_condition_table`)."""
        return task_condition_table(self.cells, self.focus_model, conditions=self.shown)
