"""Section: dynamic λ. Per task the gap to Fine-Tuned of fixed-λ, best-λ and dynamic-λ
conditions (table and figure) and the effective λ each strategy applied per training step.

Template partial: ``report/templates/sections/dynamic.md.j2``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from icldistill.render.common import (
    DISTILLED,
    MISSING,
    REFERENCE_CONDITION,
    Inputs,
    canonical_then_rest,
    condition_lambda,
    conditions_with_role,
    fmt,
    fmt_lambda,
    is_number,
    lambda_text,
    round1,
    table,
    task_title,
)
from icldistill.render.contracts import MULTITASK_SCOPE
from icldistill.render.gaps import fmt_gap, paired_test
from icldistill.render.plotting import (
    CONDITION_COLORS,
    condition_colors,
    figure_labels,
    gap_bars,
    reference_line,
    save_figure,
    scope_panels,
)
from icldistill.tasks import TASKS

#: Where the workflow writes every training run's per-step log (named in the Dynamic λ section).
TRAINING_TABLE = "results/tables/training.csv"


def dynamic_gap_table(overview: pd.DataFrame, conditions: pd.DataFrame | None) -> pd.DataFrame:
    """Per-task Fine-Tuned average and the gaps of Distilled, best-λ and dynamic-λ conditions to it.

    ``overview`` is :func:`common.task_condition_table`. Columns: ``finetuned`` (its task average),
    then the gaps (pp) of ``distilled``, of each ``best`` condition and of each ``dynamic`` one
    present, in overview order. Like :func:`gaps.gaps_to_finetuned`, a gap is the difference of the
    printed one-decimal averages. No columns when Fine-Tuned or every dynamic condition is absent.
    """
    dynamic = conditions_with_role(overview.columns, conditions, "dynamic")
    if REFERENCE_CONDITION not in overview.columns or not dynamic:
        return pd.DataFrame(index=overview.index)
    best = conditions_with_role(overview.columns, conditions, "best")
    compared = ([DISTILLED] if DISTILLED in overview.columns else []) + best + dynamic
    reference = overview[REFERENCE_CONDITION].map(round1)
    gaps = pd.DataFrame({c: overview[c].map(round1) - reference for c in compared})
    gaps.insert(0, REFERENCE_CONDITION, overview[REFERENCE_CONDITION])
    return gaps


def dynamic_gap_average(overview: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """The ``Avg`` row of a :func:`dynamic_gap_table` with ``columns``.

    Each condition's mean of its task averages over the tasks Fine-Tuned has (NaN when it lacks
    one of them), computed before rounding; its gap is then the difference of the rounded means.
    """
    scored = overview[overview[REFERENCE_CONDITION].notna()]
    means = scored[list(dict.fromkeys([REFERENCE_CONDITION, *columns]))].mean(skipna=False)
    reference = round1(means[REFERENCE_CONDITION])
    return pd.Series(
        {c: means[c] if c == REFERENCE_CONDITION else round1(means[c]) - reference for c in columns},
        dtype=float,
    )


def best_of(gaps: pd.Series, candidates: Sequence[str]) -> list[str]:
    """The ``candidates`` with the highest printed gap in ``gaps`` (all of them on a tie; [] if none has one)."""
    printed = {c: round1(gaps[c]) for c in candidates if is_number(gaps[c])}
    if not printed:
        return []
    top = max(printed.values())
    return [c for c, value in printed.items() if value == top]


def scope_order(scopes: Iterable[str], tasks: Sequence[str] = ()) -> list[str]:
    """Training scopes present: tasks in ``tasks`` then vocabulary order, others (``multitask``) after."""
    return canonical_then_rest(scopes, [*tasks, *TASKS])


def lambda_eff_traces(
    training: pd.DataFrame | None,
    model: str,
    strategies: Sequence[str],
    tasks: Sequence[str] = (),
) -> pd.DataFrame:
    """Per-step effective λ of one model's ``strategies``: columns scope, condition, step, lambda_eff.

    Several rows of one (scope, condition, step) are averaged. Rows are sorted by scope (see
    :func:`scope_order`), then by the order of ``strategies``, then by step.
    """
    columns = ["scope", "condition", "step", "lambda_eff"]
    if training is None:
        return pd.DataFrame(columns=columns)
    own = training[(training["model"] == model) & training["condition"].isin(strategies)]
    own = own.dropna(subset=["step", "lambda_eff"])
    if own.empty:
        return pd.DataFrame(columns=columns)
    traces = own.groupby(["scope", "condition", "step"], as_index=False)["lambda_eff"].mean()
    scopes = scope_order(traces["scope"], tasks)
    traces["scope_rank"] = traces["scope"].map(scopes.index)
    traces["condition_rank"] = traces["condition"].map(list(strategies).index)
    traces = traces.sort_values(["scope_rank", "condition_rank", "step"], kind="stable")
    return traces[columns].reset_index(drop=True)


def dynamic_context(
    overview: pd.DataFrame,
    conditions: pd.DataFrame | None,
    labels: Mapping[str, str],
    tests: Mapping | None = None,
) -> dict | None:
    """The Dynamic λ table: per task (and Avg) each compared condition's gap to Fine-Tuned.

    None without a dynamic condition or without Fine-Tuned.
    """
    gaps = dynamic_gap_table(overview, conditions)
    if gaps.columns.empty:
        return None
    compared = [c for c in gaps.columns if c != REFERENCE_CONDITION]
    strategies = conditions_with_role(compared, conditions, "dynamic")
    fixed = condition_lambda(conditions, DISTILLED)

    def gap_header(condition: str) -> str:
        if condition == DISTILLED and not pd.isna(fixed):
            return f"{labels[condition]} (λ={fmt_lambda(fixed)})−FT"
        return f"{labels[condition]}−FT"

    def row(name: str, values: pd.Series, task: str | None = None) -> list[str]:
        winners = best_of(values, strategies)
        # the Avg row over tasks has no paired test of its own: plain under the evidence rule
        return [
            name,
            fmt(values[REFERENCE_CONDITION]),
            *(fmt_gap(values[c], *paired_test(tests, task, c)) for c in compared),
            " / ".join(labels[c] for c in winners) or MISSING,
        ]

    average = dynamic_gap_average(overview, gaps.columns)
    rows = [row(task_title(task), gaps.loc[task], task) for task in gaps.index] + [row("Avg", average)]
    header = ["Task", labels[REFERENCE_CONDITION], *(gap_header(c) for c in compared), "Best of these"]
    return {
        "table": table(header, rows, notes=True),
        "strategies": [labels[c] for c in strategies],
        "training_table": TRAINING_TABLE,
    }


#: above this λ_eff a panel switches to a symlog axis, so small traces stay visible
SYMLOG_ABOVE = 10.0


def lambda_eff_lines(
    traces: pd.DataFrame,
    reference: float,
    focus_model: str,
    path: str | PathLike,
    labels: Mapping[str, str] | None = None,
    colors: Mapping[str, str] | None = None,
) -> Path:
    """One panel per training scope (task, or ``multitask``): effective λ per step of each strategy.

    ``traces`` is :func:`lambda_eff_traces`; ``reference`` is the fixed λ of Distilled,
    drawn dashed (NaN draws none).
    """
    scopes = list(dict.fromkeys(traces["scope"]))
    strategies = list(dict.fromkeys(traces["condition"]))
    names = figure_labels([*strategies, DISTILLED], labels)
    colors = colors or condition_colors([DISTILLED, *strategies])
    figure, flat = scope_panels(scopes)
    for axes, scope in zip(flat, scopes, strict=False):
        own = traces[traces["scope"] == scope]
        for strategy in strategies:
            line = own[own["condition"] == strategy]
            if not line.empty:
                axes.plot(
                    line["step"], line["lambda_eff"], color=colors[strategy], linewidth=1.4, label=names[strategy]
                )
        reference_line(
            axes,
            reference,
            "--",
            colors.get(DISTILLED, CONDITION_COLORS["distilled"]),
            f"{names[DISTILLED]} (fixed λ = {lambda_text(reference)})",
        )
        title = "Multitask (all tasks)" if scope == MULTITASK_SCOPE else task_title(scope)
        axes.set_title(title, fontsize=10, fontweight="bold")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("step")
        axes.set_ylabel("λ_eff (step mean)")
        if own["lambda_eff"].max() > SYMLOG_ABOVE:
            # loss_ratio can reach λ in the thousands next to strategies near 0.5
            axes.set_yscale("symlog", linthresh=1.0)
            axes.set_ylabel("λ_eff (step mean, symlog)")
        sns.despine(ax=axes)
    for axes in flat[len(scopes) :]:
        axes.set_visible(False)
    legend = {}
    for axes in flat[: len(scopes)]:
        for handle, text in zip(*axes.get_legend_handles_labels(), strict=True):
            legend.setdefault(text, handle)
    figure.legend(list(legend.values()), list(legend), loc="lower center", ncol=min(len(legend), 4), frameon=False)
    figure.suptitle(f"{focus_model} — effective λ per training step", fontsize=12, fontweight="bold")
    figure.tight_layout(rect=(0, 0.06 * math.ceil(len(legend) / 4), 1, 0.96))
    return save_figure(figure, path)


def dynamic_gap_figure(inputs: Inputs, path: Path) -> Path | None:
    """``dynamic_gap.png`` when a dynamic-λ condition of the focus model has a gap to Fine-Tuned."""
    gaps = dynamic_gap_table(inputs.overview, inputs.conditions)
    gaps = gaps.drop(columns=REFERENCE_CONDITION, errors="ignore")
    if not gaps.notna().any().any():
        return None
    fixed = condition_lambda(inputs.conditions, DISTILLED)
    labels = dict(inputs.labels)
    if DISTILLED in labels and not math.isnan(fixed):
        labels[DISTILLED] = f"{labels[DISTILLED]} (λ = {lambda_text(fixed)})"
    subtitle = "fixed λ, best λ on dev and dynamic-λ strategies"
    return gap_bars(gaps, inputs.focus_model, path, subtitle, labels, condition_colors(inputs.shown))


def lambda_eff_figure(inputs: Inputs, path: Path) -> Path | None:
    """``lambda_eff.png`` when the training log has steps of a dynamic-λ condition of the focus model."""
    strategies = conditions_with_role(inputs.shown, inputs.conditions, "dynamic")
    traces = lambda_eff_traces(inputs.training, inputs.focus_model, strategies, list(inputs.overview.index))
    if traces.empty:
        return None
    fixed = condition_lambda(inputs.conditions, DISTILLED)
    colors = condition_colors(inputs.shown)
    return lambda_eff_lines(traces, fixed, inputs.focus_model, path, inputs.labels, colors)


def context(inputs: Inputs) -> dict:
    """Template key ``dynamic``."""
    return {"dynamic": dynamic_context(inputs.overview, inputs.conditions, inputs.labels, inputs.tests)}
