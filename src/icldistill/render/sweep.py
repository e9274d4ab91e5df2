"""Section: the λ sweep. Per sweep and task the test score of every λ with the dev choice, the
best λ per task (chosen on dev, never on test), the sweep's legend line and the λ-sweep figure.

Template partial: ``report/templates/sections/sweep.md.j2``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import pandas as pd
import seaborn as sns

from icldistill.render.common import (
    REFERENCE_CONDITION,
    Inputs,
    bold,
    fmt,
    fmt_lambda,
    lambda_text,
    language_order,
    primary_metric,
    round1,
    signed,
    table,
    task_order,
    task_title,
)
from icldistill.render.plotting import (
    CONDITION_COLORS,
    EXTRA_COLORS,
    condition_colors,
    figure_labels,
    new_grid,
    reference_line,
    save_figure,
)
from icldistill.vocab import language_label


def swept_conditions(conditions: pd.DataFrame | None) -> list[str]:
    """Conditions that a λ sweep varies (the ``sweep_of`` of the sweep members), in table order."""
    if conditions is None:
        return []
    return list(dict.fromkeys(conditions.loc[conditions["role"] == "sweep", "sweep_of"]))


def sweep_members(conditions: pd.DataFrame, sweep_of: str) -> pd.DataFrame:
    """The members of one λ sweep by ascending λ: index condition id, columns ``lambda`` and ``reuses``."""
    members = conditions[(conditions["role"] == "sweep") & (conditions["sweep_of"] == sweep_of)]
    return members.sort_values("lambda", kind="stable").set_index("condition")[["lambda", "reuses"]]


def task_languages(cells: pd.DataFrame, task: str) -> list[str]:
    """Languages the task has in the cells table, in report order."""
    return language_order(cells[cells["task"] == task])


def task_average(cells: pd.DataFrame, model: str, task: str, condition: str) -> float:
    """A model's primary-metric average of one task and condition over the languages with a value."""
    metric = primary_metric(cells, task)
    values = cells.loc[
        (cells["model"] == model)
        & (cells["task"] == task)
        & (cells["condition"] == condition)
        & (cells["metric"] == metric),
        "value",
    ]
    return float(values.mean()) if values.notna().any() else math.nan


def _model_selection(selection: pd.DataFrame | None, model: str, task: str, sweep_of: str) -> pd.DataFrame:
    """The selection rows of one model, task and sweep, indexed by candidate."""
    if selection is None:
        return pd.DataFrame(columns=["lambda", "dev_score", "chosen", "dev_languages"])
    own = selection[(selection["model"] == model) & (selection["task"] == task) & (selection["sweep_of"] == sweep_of)]
    return own.set_index("candidate")


def sweep_table(
    cells: pd.DataFrame,
    conditions: pd.DataFrame,
    selection: pd.DataFrame | None,
    model: str,
    task: str,
    sweep_of: str,
) -> pd.DataFrame:
    """One row per member of a λ sweep (ascending λ) for one model and task, primary metric.

    Columns: ``lambda`` and ``reuses`` (from the conditions table), the task's languages, ``Avg``
    (mean over the languages with a value), ``Dev`` (dev score from ``selection``, NaN when
    missing), ``Gap`` (Avg − Fine-Tuned's Avg as printed, one decimal each; NaN without
    Fine-Tuned) and ``chosen`` (the candidate picked on dev).
    """
    members = sweep_members(conditions, sweep_of)
    languages = task_languages(cells, task)
    own = cells[(cells["model"] == model) & (cells["task"] == task) & (cells["metric"] == primary_metric(cells, task))]
    own = own[own["condition"].isin(members.index)]
    grid = pd.DataFrame(math.nan, index=members.index, columns=languages)
    if not own.empty:
        grid = own.set_index(["condition", "language"])["value"].unstack().reindex_like(grid)
    grid = grid.astype(float)
    grid["Avg"] = grid.mean(axis=1, skipna=True)
    reference = round1(task_average(cells, model, task, REFERENCE_CONDITION))
    picked = _model_selection(selection, model, task, sweep_of)
    table = members.join(grid)
    table["Dev"] = picked["dev_score"].reindex(members.index).astype(float)
    table["Gap"] = table["Avg"].map(round1) - reference
    table["chosen"] = picked["chosen"].reindex(members.index, fill_value=False).astype(bool)
    table.index.name = "condition"
    return table


def chosen_selection(selection: pd.DataFrame | None, model: str, task: str, sweep_of: str) -> dict | None:
    """The dev-split choice of one model, task and sweep, or None when nothing is chosen.

    Returns ``{"candidate", "lambda", "dev_score", "dev_languages"}`` with the languages as a list.
    """
    picked = _model_selection(selection, model, task, sweep_of)
    picked = picked[picked["chosen"].astype(bool)]
    if picked.empty:
        return None
    row = picked.iloc[0]
    return {
        "candidate": picked.index[0],
        "lambda": float(row["lambda"]),
        "dev_score": float(row["dev_score"]),
        "dev_languages": str(row["dev_languages"]).split(),
    }


def sweep_tables(
    cells: pd.DataFrame,
    conditions: pd.DataFrame | None,
    selection: pd.DataFrame | None,
    model: str,
) -> dict[str, dict[str, pd.DataFrame]]:
    """Every :func:`sweep_table` of one model: ``{sweep_of: {task: table}}`` in report order.

    A task whose sweep has neither a result nor a dev choice is left out, and a sweep without
    any task; no conditions table (or no sweep in it) gives ``{}``.
    """
    found: dict[str, dict[str, pd.DataFrame]] = {}
    for sweep_of in swept_conditions(conditions):
        per_task = {}
        for task in task_order(cells):
            table = sweep_table(cells, conditions, selection, model, task, sweep_of)
            if table["Avg"].notna().any() or table["chosen"].any():
                per_task[task] = table
        if per_task:
            found[sweep_of] = per_task
    return found


def best_lambda_table(per_task: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The row chosen on dev of each task's :func:`sweep_table`: index task, columns ``condition``,
    ``lambda``, ``Dev``, ``Avg`` (test) and ``Gap`` (vs Fine-Tuned). Tasks without a choice are left out.
    """
    rows = {
        task: table[table["chosen"]].reset_index().iloc[0] for task, table in per_task.items() if table["chosen"].any()
    }
    columns = ["condition", "lambda", "Dev", "Avg", "Gap"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns) if rows else pd.DataFrame(columns=columns)


#: Marks the λ chosen on the dev split in the λ Sweep tables.
CHOSEN_MARK = "✓"


def sweep_legend_line(sweep_of: str, conditions: pd.DataFrame, labels: Mapping[str, str]) -> tuple[str, str]:
    """Legend entry of one λ sweep: its λ values, and which values reuse another condition's run."""
    members = sweep_members(conditions, sweep_of)
    values = ", ".join(fmt_lambda(value) for value in members["lambda"])
    parts = [f"λ ∈ {{{values}}}", "one run per value"]
    losses = set(conditions.loc[conditions["condition"].isin([sweep_of, *members.index]), "loss"])
    if "kd" in losses:
        parts[-1] += ", sharing the teacher cache"
    parts += [
        f"λ = {fmt_lambda(member['lambda'])} is {labels[member['reuses']]} (reused)"
        for _, member in members.iterrows()
        if member["reuses"]
    ]
    return f"{labels[sweep_of]} λ sweep", "; ".join(parts)


def sweep_row_label(lam: float, reuses: str, chosen: bool, labels: Mapping[str, str]) -> str:
    """``λ = 0.1``, with ``(= Fine-Tuned)`` when the run is reused and ``✓`` when chosen on dev."""
    text = f"λ = {fmt_lambda(lam)}"
    if reuses:
        text += f" (= {labels[reuses]})"
    return f"{text} {CHOSEN_MARK}" if chosen else text


def sweep_task_table(sweep: pd.DataFrame, labels: Mapping[str, str]) -> dict:
    """λ × language table of one task's sweep (:func:`sweep_table`) with Avg, Dev and Δ vs FT."""
    languages = [c for c in sweep.columns if c not in ("lambda", "reuses", "Avg", "Dev", "Gap", "chosen")]
    rows = [
        [
            sweep_row_label(row["lambda"], row["reuses"], row["chosen"], labels),
            *(fmt(row[lang]) for lang in languages),
            bold(fmt(row["Avg"])),
            fmt(row["Dev"]),
            signed(row["Gap"]),
        ]
        for _, row in sweep.iterrows()
    ]
    return table(["λ", *(language_label(lang) for lang in languages), "Avg", "Dev", "Δ vs FT"], rows)


def chosen_line(choice: dict | None, sweep: pd.DataFrame) -> str | None:
    """The sentence stating the λ chosen on dev and its test result, or None without a choice."""
    if choice is None:
        return None
    where = ", ".join(language_label(lang) for lang in choice["dev_languages"])
    split = f"the dev split ({where})" if where else "the dev split"
    picked = sweep.loc[choice["candidate"]] if choice["candidate"] in sweep.index else None
    test = fmt(math.nan if picked is None else picked["Avg"])
    gap = math.nan if picked is None else picked["Gap"]
    delta = "" if pd.isna(gap) else f" (Δ vs FT {signed(gap, minus='−')})"
    return f"Chosen on {split}: λ = {fmt_lambda(choice['lambda'])} (dev {fmt(choice['dev_score'])}); test Avg {test}{delta}."


def best_lambda_block(per_task: dict[str, pd.DataFrame], heading: str) -> dict | None:
    """Task | λ | Dev | Test Avg | Δ vs FT of the λ chosen on dev per task, or None without a choice."""
    best = best_lambda_table(per_task)
    if best.empty:
        return None
    rows = [
        [task_title(task), fmt_lambda(row["lambda"]), fmt(row["Dev"]), fmt(row["Avg"]), signed(row["Gap"])]
        for task, row in best.iterrows()
    ]
    return {"heading": heading, "table": table(["Task", "λ", "Dev", "Test Avg", "Δ vs FT"], rows)}


def sweep_context(
    cells: pd.DataFrame,
    conditions: pd.DataFrame | None,
    selection: pd.DataFrame | None,
    focus_model: str,
    labels: Mapping[str, str],
) -> dict | None:
    """The λ Sweep section: per sweep and task a table and the dev choice, then the best λ per task.

    None when no sweep has a result or a dev choice for the focus model.
    """
    sweeps = sweep_tables(cells, conditions, selection, focus_model)
    if not sweeps:
        return None
    blocks, best = [], []
    for sweep_of, per_task in sweeps.items():
        name = f"{labels[sweep_of]} λ sweep"
        for task, sweep in per_task.items():
            choice = chosen_selection(selection, focus_model, task, sweep_of)
            blocks.append(
                {
                    "heading": f"### {task_title(task)} — {name}",
                    "table": sweep_task_table(sweep, labels),
                    "chosen": chosen_line(choice, sweep),
                }
            )
        heading = "### Best λ per task (chosen on dev, never on test)"
        block = best_lambda_block(per_task, heading if len(sweeps) == 1 else f"{heading} — {name}")
        if block:
            best.append(block)
    return {"model": focus_model, "blocks": blocks, "best": best}


def lambda_sweep(
    sweeps: Mapping[str, Mapping[str, pd.DataFrame]],
    references: Mapping[str, float],
    focus_model: str,
    path: str | PathLike,
    labels: Mapping[str, str] | None = None,
    colors: Mapping[str, str] | None = None,
) -> Path:
    """One panel per task (a row of panels per swept condition): test Avg and dev score per λ.

    ``sweeps`` is :func:`sweep_tables` of the focus model, ``references`` Fine-Tuned's
    test Avg per task (a dotted line; NaN draws none). λ values sit at evenly spaced positions
    so that 0, 0.1 and 1 are all readable; a star marks the λ chosen on dev.
    """
    columns = max(len(per_task) for per_task in sweeps.values())
    figure, panels = new_grid(len(sweeps), columns, 0.6 + 3.4 * columns, 0.9 + 3.1 * len(sweeps))
    names = figure_labels([*sweeps, REFERENCE_CONDITION], labels)
    colors = colors or condition_colors([*sweeps, REFERENCE_CONDITION])
    for row, (sweep_of, per_task) in enumerate(sweeps.items()):
        color = colors.get(sweep_of, EXTRA_COLORS[0])
        for column, (task, rows) in enumerate(per_task.items()):
            axes = panels[row][column]
            positions = list(range(len(rows)))
            axes.plot(positions, rows["Avg"], marker="o", color=color, label=f"{names[sweep_of]}: test Avg")
            axes.plot(
                positions,
                rows["Dev"],
                marker="o",
                markerfacecolor="white",
                linestyle="--",
                color=color,
                label="dev score (selects λ)",
            )
            reference = references.get(task, math.nan)
            reference_line(
                axes,
                reference,
                ":",
                colors.get(REFERENCE_CONDITION, CONDITION_COLORS["finetuned"]),
                f"{names[REFERENCE_CONDITION]}: test Avg",
            )
            chosen = [position for position, picked in zip(positions, rows["chosen"], strict=True) if picked]
            if chosen:
                axes.plot(
                    chosen,
                    rows["Avg"].iloc[chosen],
                    linestyle="none",
                    marker="*",
                    markersize=16,
                    color="#FFC107",
                    markeredgecolor="#333333",
                    label="λ chosen on dev",
                    zorder=5,
                )
            axes.set_xticks(positions, [lambda_text(value) for value in rows["lambda"]])
            axes.set_xlim(-0.5, len(positions) - 0.5)
            axes.set_xlabel("λ")
            axes.set_ylabel("score (%)" if column == 0 else "")
            axes.set_title(f"{task_title(task)} — {names[sweep_of]}", fontsize=10, fontweight="bold")
            axes.grid(axis="x", visible=False)
            sns.despine(ax=axes)
        for column in range(len(per_task), columns):
            panels[row][column].set_visible(False)
    handles, texts = panels[0][0].get_legend_handles_labels()
    figure.legend(handles, texts, loc="lower center", ncol=len(texts), frameon=False, fontsize=9)
    figure.suptitle(f"{focus_model} — λ sweep: test Avg and dev score per λ", fontsize=12, fontweight="bold")
    figure.tight_layout(rect=(0, 0.07, 1, 0.96))
    return save_figure(figure, path)


def sweep_figure(inputs: Inputs, path: Path) -> Path | None:
    """``lambda_sweep.png`` when the focus model has a λ sweep with a result or a dev choice."""
    sweeps = sweep_tables(inputs.cells, inputs.conditions, inputs.selection, inputs.focus_model)
    if not sweeps:
        return None
    references = {
        task: task_average(inputs.cells, inputs.focus_model, task, REFERENCE_CONDITION)
        for task in inputs.overview.index
    }
    colors = condition_colors(list(dict.fromkeys([*inputs.shown, *sweeps])))
    return lambda_sweep(sweeps, references, inputs.focus_model, path, inputs.labels, colors)


def context(inputs: Inputs) -> dict:
    """Template key ``sweep``."""
    return {
        "sweep": sweep_context(inputs.cells, inputs.conditions, inputs.selection, inputs.focus_model, inputs.labels)
    }
