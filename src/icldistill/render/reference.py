"""Section: this run against a reference table of published numbers (``report.reference``).

The reference is a ``cells.csv``-shaped table (``model,task,condition,language,metric,value``;
the seed study's numbers ship as ``resources/reference/seed_cells.csv``). Each cell of the run
(primary metric) is paired with the reference cell of the same task, condition, language and
metric, of the same model (matched by display name) or, with ``reference_model``, of that one
model whatever the run's model is (a different model: a comparison of patterns, not a
reproduction). Cells the reference lacks or leaves empty are left out.

Template partial: ``report/templates/sections/reference.md.j2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike

import pandas as pd

from icldistill.render.common import Inputs, condition_order, fmt, model_order, primary_cells, signed, table, task_order
from icldistill.render.contracts import CELL_KEY

KEY = ["task", "condition", "language", "metric"]

#: :func:`compare`'s columns
COLUMNS = [
    "model",
    "reference_model",
    *KEY,
    "value",
    "ci_low",
    "ci_high",
    "reference",
    "difference",
    "inside",
]


def read_reference(path: str | PathLike) -> pd.DataFrame:
    """A reference table: the ``cells.csv`` columns, ids as strings, values numeric (empty: none)."""
    raw = pd.read_csv(path, dtype={c: str for c in CELL_KEY}, keep_default_na=False, na_values={"value": [""]})
    missing = [c for c in ("model", *KEY, "value") if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: reference table lacks column(s) {', '.join(missing)}")
    raw["value"] = pd.to_numeric(raw["value"], errors="coerce")
    return raw


def compare(cells: pd.DataFrame, reference: pd.DataFrame, reference_model: str | None = None) -> pd.DataFrame:
    """One row per run cell (primary metric, with a value) that has a reference value: the run's
    value and 95 % interval, the reference value, ``difference`` (run − reference) and
    ``inside`` (the reference lies in the run's interval; NA without an interval)."""
    primary = primary_cells(cells).dropna(subset=["value"])
    ref = reference.dropna(subset=["value"])
    if reference_model is not None:
        ref = ref[ref["model"] == reference_model]
        merged = primary.merge(ref.drop(columns="model")[[*KEY, "value"]], on=KEY, suffixes=("", "_ref"))
        merged["reference_model"] = reference_model
    else:
        merged = primary.merge(ref[["model", *KEY, "value"]], on=["model", *KEY], suffixes=("", "_ref"))
        merged["reference_model"] = merged["model"]
    merged = merged.rename(columns={"value_ref": "reference"})
    merged["difference"] = merged["value"] - merged["reference"]
    has_interval = merged["ci_low"].notna() & merged["ci_high"].notna()
    within = (merged["ci_low"] <= merged["reference"]) & (merged["reference"] <= merged["ci_high"])
    merged["inside"] = within.where(has_interval).astype("boolean")
    return merged[COLUMNS].reset_index(drop=True)


def summarize(compared: pd.DataFrame, conditions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (model, task, condition), in report order: the means over the compared languages of
    the run's value, the reference and their difference, the number of languages compared and
    how many of them have the reference inside the run's interval (``inside``, NA without
    intervals)."""
    keys = ["model", "reference_model", "task", "condition"]
    grouped = compared.groupby(keys, sort=False)
    out = grouped.agg(
        value=("value", "mean"),
        reference=("reference", "mean"),
        difference=("difference", "mean"),
        languages=("language", "size"),
        inside=("inside", lambda s: s.sum() if s.notna().any() else pd.NA),
    ).reset_index()
    orders = {
        "model": list(dict.fromkeys(compared["model"])),
        "reference_model": list(dict.fromkeys(compared["reference_model"])),
        "task": task_order(compared),
        "condition": condition_order(compared, conditions),
    }
    out = out.sort_values(keys, key=lambda column: column.map(orders[column.name].index), kind="stable")
    return out.reset_index(drop=True)


def reference_context(
    cells: pd.DataFrame,
    reference: pd.DataFrame | None,
    reference_model: str | None,
    source: str | None,
    conditions: pd.DataFrame | None,
    labels: Mapping[str, str],
) -> dict | None:
    """The Reference section : per model, task and condition this run's mean
    over languages, the reference's, their difference and in how many languages the reference
    lies inside the run's 95 % interval; a note instead of a table when nothing matches. None
    without a reference."""
    if reference is None:
        return None
    compared = compare(cells, reference, reference_model)
    base = {"source": source or "the reference table", "model": reference_model}
    if compared.empty:
        if reference_model is None:
            note = (
                f"No model of this run ({', '.join(model_order(cells))}) has numbers in the reference "
                f"(its models: {', '.join(dict.fromkeys(reference['model']))}); `report.reference.model` "
                "compares every model of the run with one of them."
            )
        else:
            note = f"The reference has no {reference_model} numbers for this run's tasks, conditions and languages."
        return base | {"table": None, "note": note}
    summary = summarize(compared, conditions)
    rows = [
        [
            row.model,
            row.reference_model,
            row.task.upper(),
            labels.get(row.condition, row.condition),
            fmt(row.value),
            fmt(row.reference),
            signed(row.difference),
            "—" if pd.isna(row.inside) else f"{int(row.inside)}/{row.languages}",
        ]
        for row in summary.itertuples()
    ]
    header = ["Model", "Reference model", "Task", "Condition", "This run", "Reference", "Δ", "Inside interval"]
    inside = compared["inside"].dropna()
    different = (compared["model"] != compared["reference_model"]).any()
    return base | {
        "table": table(header, rows),
        "cells": len(compared),
        "inside": f"{int(inside.sum())}/{len(inside)}" if len(inside) else None,
        "mean_abs": fmt(compared["difference"].abs().mean()),
        "different_model": bool(different),
        "note": None,
    }


def context(inputs: Inputs) -> dict:
    """Template key ``reference``."""
    reference = inputs.reference or {}
    return {
        "reference": reference_context(
            inputs.cells,
            reference.get("table"),
            reference.get("model"),
            reference.get("source"),
            inputs.conditions,
            inputs.labels,
        )
    }
