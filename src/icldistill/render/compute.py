"""Section: compute. What each stage and each condition of the run cost (from
``results/tables/compute.csv``, :mod:`icldistill.compute`).

Template partial: ``report/templates/sections/compute.md.j2``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from icldistill import compute
from icldistill.render.common import MISSING, Inputs, decimal1, model_order
from icldistill.render.overview import summary_table


def duration(seconds: float | None) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``; ``—`` without a record."""
    if seconds is None or pd.isna(seconds):
        return MISSING
    s = round(float(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def memory(mib: float | None) -> str:
    if mib is None or pd.isna(mib):
        return MISSING
    return f"{mib / 1024:.1f} GiB" if mib >= 1024 else f"{mib:.0f} MiB"


def count(value: float | None, digits: int = 0) -> str:
    if value is None or pd.isna(value):
        return MISSING
    return f"{value:,.{digits}f}"


def compute_context(
    rows: Sequence[Mapping],
    focus_model: str,
    conditions: Sequence[str],
    labels: Mapping[str, str],
    summary: pd.DataFrame,
) -> dict | None:
    """Per-stage table (jobs, wall time, longest job, peak memory, model loading, tokens,
    tokens/s) and, for the focus model, per-condition costs next to the condition's average
    score; None without a compute table."""
    if not rows:
        return None
    stages = compute.stage_summary(list(rows))
    stage_table = [
        [
            s["stage"],
            f"{s['jobs']}" if s["timed"] == s["jobs"] else f"{s['jobs']} ({s['timed']} timed)",
            duration(s["seconds"]),
            duration(s["longest"]),
            memory(s["max_rss_mib"]),
            duration(s["load_seconds"]) if s["load_seconds"] else MISSING,
            count(s["tokens"]),
            count(s["tokens_per_s"], 1),
        ]
        for s in stages
    ]
    costs = compute.condition_costs(list(rows), focus_model, list(conditions))
    condition_table = [
        [
            labels.get(c["condition"], c["condition"]),
            "0" if c["teacher"] == 0 else duration(c["teacher"]),
            "0" if c["training"] == 0 else duration(c["training"]),
            duration(c["evaluation"]),
            duration(c["total"]),
            decimal1(summary.at[focus_model, c["condition"]])
            if c["condition"] in summary.columns and not pd.isna(summary.at[focus_model, c["condition"]])
            else MISSING,
        ]
        for c in costs
    ]
    total = sum(s["seconds"] for s in stages)
    return {
        "stages": {
            "header": [
                "Stage",
                "Jobs",
                "Wall time (sum)",
                "Longest job",
                "Peak memory",
                "Model loading",
                "Tokens",
                "Tokens/s",
            ],
            "rows": stage_table,
            "notes": False,
        },
        "conditions": {
            "header": ["Condition", "Teacher", "Training", "Evaluation", "Total", "Avg Score"],
            "rows": condition_table,
            "notes": False,
        },
        "total": duration(total),
        "untimed": sum(s["jobs"] - s["timed"] for s in stages),
    }


def context(inputs: Inputs) -> dict:
    """Template key ``compute``; the Avg Score column is the Summary's (:func:`overview.summary_table`)."""
    summary = summary_table(inputs.cells, model_order(inputs.cells), inputs.shown)
    return {"compute": compute_context(inputs.compute or [], inputs.focus_model, inputs.shown, inputs.labels, summary)}
