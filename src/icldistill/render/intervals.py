"""Section: 95 % intervals per cell. The focus model's primary-metric cells with their bootstrap
intervals and, for conditions trained with several seeds, the standard deviation over seeds.
(The paired tests of gaps are shown by :mod:`icldistill.render.gaps`.)

Template partial: ``report/templates/sections/intervals.md.j2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from icldistill.render.common import (
    MISSING,
    Inputs,
    decimal1,
    fmt,
    language_order,
    primary_metric,
    table,
    task_order,
    task_title,
)
from icldistill.vocab import language_label


def interval_text(row: Mapping) -> str:
    """A cell with its uncertainty: ``value [low, high]``, with ``±SD`` over training seeds
    before the interval when the cell is the mean of several seeds."""
    text = fmt(row["value"])
    if pd.isna(row["value"]):
        return text
    if not pd.isna(row["seeds"]) and row["seeds"] > 1 and not pd.isna(row["seed_sd"]):
        text = f"{text} ±{decimal1(row['seed_sd'])}"
    if not pd.isna(row["ci_low"]):
        text = f"{text} [{decimal1(row['ci_low'])}, {decimal1(row['ci_high'])}]"
    return text


def interval_context(
    cells: pd.DataFrame, focus_model: str, conditions: Sequence[str], labels: Mapping[str, str]
) -> dict | None:
    """Condition × language tables of the focus model's primary-metric cells with their 95 %
    intervals (:func:`interval_text`), one per task; None when the cells carry no intervals."""
    own = cells[(cells["model"] == focus_model) & cells["ci_low"].notna()]
    if own.empty:
        return None
    languages = language_order(cells)
    blocks = []
    for task in task_order(own):
        metric = primary_metric(cells, task)
        rows = own[(own["task"] == task) & (own["metric"] == metric)].set_index(["condition", "language"])
        present = set(rows.index.get_level_values("condition"))
        body = [
            [
                labels[condition],
                *(
                    interval_text(rows.loc[(condition, lang)]) if (condition, lang) in rows.index else MISSING
                    for lang in languages
                ),
            ]
            for condition in conditions
            if condition in present
        ]
        header = ["Condition", *(language_label(lang) for lang in languages)]
        blocks.append({"heading": f"### {task_title(task)}", "table": table(header, body)})
    seeds = own.loc[own["condition"].isin(conditions), "seeds"].max()
    return {"model": focus_model, "blocks": blocks, "seeds": 1 if pd.isna(seeds) else int(seeds)}


def context(inputs: Inputs) -> dict:
    """Template key ``intervals``."""
    return {"intervals": interval_context(inputs.cells, inputs.focus_model, inputs.shown, inputs.labels)}
