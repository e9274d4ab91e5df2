"""Section: parse failures and over-long inputs. The cells where too many outputs did not parse
(marked in the per-condition tables, listed in their own section) and the cells whose inputs
were cut to fit the model's context.

Template partial: ``report/templates/sections/parse_failures.md.j2``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from icldistill.render.common import (
    Inputs,
    condition_order,
    decimal1,
    language_order,
    model_language_grid,
    model_order,
    table,
    task_order,
)
from icldistill.render.contracts import OVER_LENGTH, PARSE_FAILURE_RATE
from icldistill.vocab import language_label

#: A cell where more than this fraction of outputs did not parse is marked and listed in the report.
PARSE_FAILURE_THRESHOLD = 0.2

#: Follows a per-condition table value when more than ``PARSE_FAILURE_THRESHOLD`` of the
#: cell's outputs did not parse.
PARSE_FAILURE_MARK = "†"


def too_many_parse_failures(rates: pd.Series | pd.DataFrame) -> pd.Series | pd.DataFrame:
    """Whether each rate exceeds :data:`PARSE_FAILURE_THRESHOLD` (False where unknown)."""
    return rates.astype(float) > PARSE_FAILURE_THRESHOLD


def parse_failure_flags(
    cells: pd.DataFrame,
    condition: str,
    task: str,
    metric: str,
    models: Sequence[str],
    languages: Sequence[str],
) -> pd.DataFrame:
    """Model × language booleans beside :func:`common.language_table`: whether more than
    :data:`PARSE_FAILURE_THRESHOLD` of the cell's outputs did not parse."""
    rates = model_language_grid(cells, condition, task, metric, models, languages, PARSE_FAILURE_RATE)
    return too_many_parse_failures(rates)


def _flagged_cells(cells: pd.DataFrame, conditions: pd.DataFrame | None, flag: pd.Series, column: str) -> pd.DataFrame:
    """The cells where ``flag`` holds, one row per (model, task, condition, language) with
    ``column``, in report order; the single-seed runs of a condition trained with several seeds
    left out (the condition itself is listed)."""
    cell = ["model", "task", "condition", "language"]
    if conditions is not None and "role" in conditions:
        keep = ~cells["condition"].isin(set(conditions.loc[conditions["role"] == "seed", "condition"]))
        cells, flag = cells[keep], flag[keep]
    flagged = cells[flag].drop_duplicates(subset=cell)
    orders = {
        "model": model_order(cells),
        "task": task_order(cells),
        "condition": condition_order(cells, conditions),
        "language": language_order(cells),
    }
    flagged = flagged.sort_values(cell, key=lambda column: column.map(orders[column.name].index), kind="stable")
    return flagged[[*cell, column]].reset_index(drop=True)


def parse_failure_cells(cells: pd.DataFrame, conditions: pd.DataFrame | None = None) -> pd.DataFrame:
    """The cells where more than :data:`PARSE_FAILURE_THRESHOLD` of outputs did not parse.

    One row per (model, task, condition, language) — the rate is the cell's, shared by its
    metrics — with columns model, task, condition, language and :data:`contracts.PARSE_FAILURE_RATE`,
    in report order (models, tasks, conditions as :func:`common.condition_order`, languages). Sweep
    members count; the single-seed runs of a condition trained with several seeds do not (the
    condition itself is listed with its mean rate, as the report shows the mean elsewhere).
    """
    flag = too_many_parse_failures(cells[PARSE_FAILURE_RATE])
    return _flagged_cells(cells, conditions, flag, PARSE_FAILURE_RATE)


def over_length_cells(cells: pd.DataFrame, conditions: pd.DataFrame | None = None) -> pd.DataFrame:
    """The cells with at least one input cut to fit the model's context (:data:`contracts.OVER_LENGTH`
    > 0), as :func:`parse_failure_cells` lists them."""
    counts = cells[OVER_LENGTH] if OVER_LENGTH in cells else pd.Series(math.nan, index=cells.index)
    return _flagged_cells(cells.assign(**{OVER_LENGTH: counts}), conditions, counts.fillna(0) > 0, OVER_LENGTH)


def percent(fraction: float) -> str:
    """A fraction as a one-decimal percentage (``0.875`` → ``87.5 %``)."""
    return f"{decimal1(100 * fraction)} %"


def parse_failure_context(cells: pd.DataFrame, conditions: pd.DataFrame | None, labels: Mapping[str, str]) -> dict:
    """The Parse Failures section: the threshold, the mark, and a Model | Task | Condition |
    Language | Not parsed table of :func:`parse_failure_cells` (None when no cell exceeds
    the threshold)."""
    flagged = parse_failure_cells(cells, conditions)
    rows = [
        [row.model, row.task.upper(), labels[row.condition], language_label(row.language), percent(row.rate)]
        for row in flagged.rename(columns={PARSE_FAILURE_RATE: "rate"}).itertuples()
    ]
    return {
        "threshold": f"{100 * PARSE_FAILURE_THRESHOLD:g} %",
        "mark": PARSE_FAILURE_MARK,
        "table": table(["Model", "Task", "Condition", "Language", "Not parsed"], rows) if rows else None,
    }


def over_length_context(cells: pd.DataFrame, conditions: pd.DataFrame | None, labels: Mapping[str, str]) -> dict:
    """The over-long inputs paragraph: a Model | Task | Condition | Language | Cut table of
    :func:`over_length_cells` (None when no input was cut) and the total count."""
    flagged = over_length_cells(cells, conditions)
    rows = [
        [row.model, row.task.upper(), labels[row.condition], language_label(row.language), f"{row.count:g}"]
        for row in flagged.rename(columns={OVER_LENGTH: "count"}).itertuples()
    ]
    return {
        "table": table(["Model", "Task", "Condition", "Language", "Inputs cut"], rows) if rows else None,
        "total": f"{flagged[OVER_LENGTH].sum():g}",
    }


def context(inputs: Inputs) -> dict:
    """Template keys ``parse_failures`` and ``over_length``."""
    return {
        "parse_failures": parse_failure_context(inputs.cells, inputs.conditions, inputs.labels),
        "over_length": over_length_context(inputs.cells, inputs.conditions, inputs.labels),
    }
