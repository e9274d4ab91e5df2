"""Figures of the results report, drawn with seaborn on matplotlib's Agg backend.

Figures are built as :class:`matplotlib.figure.Figure` objects on an Agg canvas rather than
through ``pyplot``, so rendering needs no display and leaves global pyplot state alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from icldistill.render import tables
from icldistill.tasks import TASKS
from icldistill.vocab import condition_label, language_label

DPI = 150

#: Fixed colours of the known conditions, so a condition looks the same in every figure.
CONDITION_COLORS: dict[str, str] = {
    "base": "#9E9E9E",
    "fewshot": "#2196F3",
    "finetuned": "#FF9800",
    "distilled": "#4CAF50",
    "control": "#E91E63",
}

#: Colours handed in turn to user-defined conditions.
EXTRA_COLORS: tuple[str, ...] = tuple(sns.color_palette("Dark2").as_hex())

MISSING_COLOR = "#E0E0E0"


def condition_colors(conditions: Sequence[str]) -> dict[str, str]:
    """Colour per condition: the fixed one when known, the next spare colour otherwise."""
    spare = iter(EXTRA_COLORS * (1 + len(conditions) // len(EXTRA_COLORS)))
    return {c: CONDITION_COLORS.get(c) or next(spare) for c in conditions}


def _labelled(conditions: Sequence[str], labels: Mapping[str, str] | None) -> dict[str, str]:
    """Display label per condition: from ``labels`` when given, else the vocabulary's."""
    return {c: (labels or {}).get(c) or condition_label(c) for c in conditions}


def task_title(task: str) -> str:
    """Display title of a task (its id in upper case when the registry lacks it)."""
    return TASKS[task].title if task in TASKS else task.upper()


def _new_figure(width: float, height: float, style: str = "ticks") -> tuple[Figure, object]:
    with sns.axes_style(style, {"axes.grid": True, "grid.linestyle": "--", "grid.color": "#E6E6E6"}):
        figure = Figure(figsize=(width, height), dpi=DPI)
        FigureCanvasAgg(figure)
        axes = figure.subplots()
    axes.grid(axis="x", visible=False)
    axes.set_axisbelow(True)
    return figure, axes


def _new_grid(rows: int, columns: int, width: float, height: float) -> tuple[Figure, list[list[object]]]:
    """A figure of ``rows`` × ``columns`` panels styled like :func:`_new_figure`."""
    with sns.axes_style("ticks", {"axes.grid": True, "grid.linestyle": "--", "grid.color": "#E6E6E6"}):
        figure = Figure(figsize=(width, height), dpi=DPI)
        FigureCanvasAgg(figure)
        panels = figure.subplots(rows, columns, squeeze=False)
    for axes in panels.flat:
        axes.set_axisbelow(True)
    return figure, [list(row) for row in panels]


def _save(figure: Figure, path: str | PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def _long(table: pd.DataFrame, row_name: str, column_name: str) -> pd.DataFrame:
    """Row × column table → long frame with one row per cell (NaN values kept)."""
    long = table.rename_axis(index=row_name, columns=column_name).stack(future_stack=True)
    return long.rename("value").reset_index()


def interval_bars(axes, columns: Sequence[str], low: pd.DataFrame | None, high: pd.DataFrame | None) -> None:
    """Draw ``[low, high]`` error bars on the bars of a grouped seaborn bar plot: one container
    per column of ``columns`` (hue order), one bar per row of ``low``/``high`` (x order); bars
    without a value or an interval get none."""
    if low is None or high is None:
        return
    bars = [c for c in axes.containers if isinstance(c, BarContainer)]
    for column, container in zip(columns, bars, strict=False):
        for row, bar in enumerate(container.patches):
            lo, hi = low.iloc[row][column], high.iloc[row][column]
            value = bar.get_height()
            if any(math.isnan(v) for v in (lo, hi, value)):
                continue
            x = bar.get_x() + bar.get_width() / 2
            axes.errorbar(
                x,
                value,
                yerr=[[max(value - lo, 0.0)], [max(hi - value, 0.0)]],
                fmt="none",
                ecolor="#222222",
                elinewidth=0.9,
                capsize=2.5,
                zorder=3,
            )


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
    names = _labelled(conditions, labels)
    data = _long(table.rename(columns=names), x_name, "condition")
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
        texts = [tables.decimal1(v) if not math.isnan(v) else "" for v in container.datavalues]
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

    ``overview`` is :func:`tables.task_condition_table` (tasks × conditions); ``labels`` and
    ``colors`` default to the vocabulary's labels and :func:`condition_colors`; ``bounds``
    (:func:`tables.task_condition_bounds`, aligned with ``overview``) draws interval bars and
    ``chance`` (task → %) a dashed chance line on label tasks.
    """
    figure, axes = _new_figure(max(8.0, 2.4 * len(overview.index)), 5.2)
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
    return _save(figure, path)


def gap_bars(
    gaps: pd.DataFrame,
    focus_model: str,
    path: str | PathLike,
    subtitle: str = "",
    labels: Mapping[str, str] | None = None,
    colors: Mapping[str, str] | None = None,
    bounds: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> Path:
    """Bars of each condition's gap to Fine-Tuned per task around a zero line.

    ``gaps`` holds tasks × conditions in pp (:func:`tables.gaps_to_finetuned`: Distilled and
    Control; the Dynamic λ figure passes more); ``labels`` and ``colors`` as in :func:`task_bar`;
    ``bounds`` (tasks × conditions, the paired bootstrap interval of each gap) draws interval bars.
    """
    colors = colors or condition_colors(list(gaps.columns))
    reference = _labelled([tables.REFERENCE_CONDITION], labels)[tables.REFERENCE_CONDITION]
    names = {c: f"{label} − {reference}" for c, label in _labelled(list(gaps.columns), labels).items()}
    labelled = gaps.rename(index=task_title, columns=names)
    data = _long(labelled, "task", "series")
    # Two series per task fit the seed's width; more series widen each task's group.
    figure, axes = _new_figure(max(8.0, 2.2 * len(gaps.index) * max(1.0, len(gaps.columns) / 3)), 5.0)
    sns.barplot(
        data=data,
        x="task",
        y="value",
        hue="series",
        order=list(labelled.index),
        hue_order=list(labelled.columns),
        palette={names[c]: colors[c] for c in gaps.columns},
        edgecolor="white",
        linewidth=0.8,
        ax=axes,
    )
    if bounds is not None:
        bounds = tuple(b.reindex(index=gaps.index, columns=gaps.columns) for b in bounds)
        interval_bars(axes, list(gaps.columns), *bounds)
    low, high = data["value"].min(), data["value"].max()
    if bounds is not None and bounds[0].notna().any().any():
        low, high = min(low, float(bounds[0].min().min())), max(high, float(bounds[1].max().max()))
    low = min(0.0, 0.0 if math.isnan(low) else low)
    high = max(0.0, 0.0 if math.isnan(high) else high)
    span = max(high - low, 1.0)
    offset = 0.02 * span
    for container in [c for c in axes.containers if isinstance(c, BarContainer)]:
        for bar, value in zip(container.patches, container.datavalues, strict=True):
            if math.isnan(value):
                continue
            x = bar.get_x() + bar.get_width() / 2
            above = value >= 0
            axes.text(
                x,
                value + (offset if above else -offset),
                tables.signed(value),
                ha="center",
                va="bottom" if above else "top",
                fontsize=9 if len(gaps.columns) <= 3 else 7,
                fontweight="bold",
            )
    axes.set_ylim(low - 0.1 * span, high + 0.1 * span)
    axes.axhline(0, color="black", linewidth=1.2)
    axes.set_xlabel("")
    axes.set_ylabel(f"Δ score vs {reference} (pp)")
    title = f"{focus_model} — Gain/Loss per Task relative to {reference}"
    if subtitle:
        title = f"{title}\n{subtitle}"
    axes.set_title(title, fontsize=12, fontweight="bold", pad=10)
    axes.tick_params(axis="x", labelsize=11)
    axes.legend(title=None, loc="lower left", frameon=True, fontsize=9)
    sns.despine(ax=axes)
    return _save(figure, path)


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
    figure, axes = _new_figure(max(6.5, width), 0.75 * len(labelled.index) + 1.6, style="white")
    sns.heatmap(
        labelled,
        mask=labelled.isna(),
        cmap="RdYlGn",
        vmin=0,
        vmax=100,
        annot=labelled.map(lambda v: "" if math.isnan(v) else tables.decimal1(v)).to_numpy(),
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
                    tables.MISSING,
                    ha="center",
                    va="center",
                    color="#757575",
                )
    axes.set_xlabel("")
    axes.set_ylabel("")
    axes.tick_params(axis="both", length=0, labelsize=10)
    axes.set_yticklabels(axes.get_yticklabels(), rotation=0)
    axes.set_title(
        f"{focus_model} — {_labelled([condition], labels)[condition]}: score by task × language",
        fontsize=12,
        fontweight="bold",
        pad=10,
    )
    return _save(figure, path)


def task_language_grid(cells: pd.DataFrame, model: str, condition: str) -> pd.DataFrame:
    """Task × language primary-metric values of one model and condition (NaN where missing)."""
    tasks, languages = tables.task_order(cells), tables.language_order(cells)
    rows = {
        task: tables.language_table(
            cells,
            condition,
            task,
            tables.primary_metric(cells, task),
            [model],
            languages,
        ).loc[model, languages]
        for task in tasks
    }
    return pd.DataFrame(rows).T.reindex(index=tasks, columns=languages).astype(float)


def gap_subtitle(counts: dict[str, tuple[int, int]]) -> str:
    """Figure subtitle stating the computed Distilled > Control and FT > Distilled counts."""
    parts = []
    if "dist_gt_ctrl" in counts:
        held, total = counts["dist_gt_ctrl"]
        parts.append(f"Distilled > Control in {held}/{total} tasks")
    if "ft_gt_dist" in counts:
        held, total = counts["ft_gt_dist"]
        parts.append(f"Fine-Tuned > Distilled in {held}/{total} tasks")
    return "; ".join(parts)


def lambda_text(value: float) -> str:
    """A λ as the report writes it (``0.1``, ``1``, ``0``)."""
    return f"{value:g}"


def reference_line(axes, value: float, style: str, color: str, label: str) -> None:
    """A horizontal reference line (a condition's score or λ); nothing for NaN."""
    if not math.isnan(value):
        axes.axhline(value, linestyle=style, linewidth=1.5, color=color, label=label)


def lambda_sweep(
    sweeps: Mapping[str, Mapping[str, pd.DataFrame]],
    references: Mapping[str, float],
    focus_model: str,
    path: str | PathLike,
    labels: Mapping[str, str] | None = None,
    colors: Mapping[str, str] | None = None,
) -> Path:
    """One panel per task (a row of panels per swept condition): test Avg and dev score per λ.

    ``sweeps`` is :func:`tables.sweep_tables` of the focus model, ``references`` Fine-Tuned's
    test Avg per task (a dotted line; NaN draws none). λ values sit at evenly spaced positions
    so that 0, 0.1 and 1 are all readable; a star marks the λ chosen on dev.
    """
    columns = max(len(per_task) for per_task in sweeps.values())
    figure, panels = _new_grid(len(sweeps), columns, 0.6 + 3.4 * columns, 0.9 + 3.1 * len(sweeps))
    names = _labelled([*sweeps, tables.REFERENCE_CONDITION], labels)
    colors = colors or condition_colors([*sweeps, tables.REFERENCE_CONDITION])
    for row, (sweep_of, per_task) in enumerate(sweeps.items()):
        color = colors.get(sweep_of, EXTRA_COLORS[0])
        for column, (task, table) in enumerate(per_task.items()):
            axes = panels[row][column]
            positions = list(range(len(table)))
            axes.plot(positions, table["Avg"], marker="o", color=color, label=f"{names[sweep_of]}: test Avg")
            axes.plot(
                positions,
                table["Dev"],
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
                colors.get(tables.REFERENCE_CONDITION, CONDITION_COLORS["finetuned"]),
                f"{names[tables.REFERENCE_CONDITION]}: test Avg",
            )
            chosen = [position for position, picked in zip(positions, table["chosen"], strict=True) if picked]
            if chosen:
                axes.plot(
                    chosen,
                    table["Avg"].iloc[chosen],
                    linestyle="none",
                    marker="*",
                    markersize=16,
                    color="#FFC107",
                    markeredgecolor="#333333",
                    label="λ chosen on dev",
                    zorder=5,
                )
            axes.set_xticks(positions, [lambda_text(value) for value in table["lambda"]])
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
    return _save(figure, path)


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

    ``traces`` is :func:`tables.lambda_eff_traces`; ``reference`` is the fixed λ of Distilled,
    drawn dashed (NaN draws none).
    """
    scopes = list(dict.fromkeys(traces["scope"]))
    strategies = list(dict.fromkeys(traces["condition"]))
    names = _labelled([*strategies, tables.DISTILLED], labels)
    colors = colors or condition_colors([tables.DISTILLED, *strategies])
    columns = min(len(scopes), 3)
    rows = math.ceil(len(scopes) / columns)
    figure, panels = _new_grid(rows, columns, 0.6 + 4.0 * columns, 0.9 + 3.0 * rows)
    flat = [axes for row in panels for axes in row]
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
            colors.get(tables.DISTILLED, CONDITION_COLORS["distilled"]),
            f"{names[tables.DISTILLED]} (fixed λ = {lambda_text(reference)})",
        )
        title = "Multitask (all tasks)" if scope == tables.MULTITASK_SCOPE else task_title(scope)
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
    return _save(figure, path)


def model_bars(
    summary: pd.DataFrame,
    path: str | PathLike,
    labels: Mapping[str, str] | None = None,
    colors: Mapping[str, str] | None = None,
    bounds: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> Path:
    """Grouped bars of every model's average score per condition (:func:`tables.summary_table`,
    models × conditions), with the conservative interval bars of :func:`tables.summary_bounds`."""
    figure, axes = _new_figure(max(8.0, 2.6 * len(summary.index)), 5.0)
    grouped_bars(axes, summary, "model", labels, colors, bounds)
    axes.set_ylabel("Average score (%) over tasks and languages")
    axes.set_title("Average Score per Model × Condition", fontsize=13, fontweight="bold", pad=12)
    sns.despine(ax=axes)
    return _save(figure, path)


def training_curves(
    training: pd.DataFrame,
    focus_model: str,
    path: str | PathLike,
    labels: Mapping[str, str] | None = None,
    colors: Mapping[str, str] | None = None,
) -> Path:
    """One panel per training scope: the cross-entropy of each trained condition of
    ``focus_model`` per step (seed 0 of replicated runs; a run shared by two conditions is
    drawn once, under the first)."""
    own = training[training["model"] == focus_model].dropna(subset=["ce"])
    if "seed" in own and own["seed"].notna().any():
        own = own[own["seed"] == own["seed"].min()]
    scopes = list(dict.fromkeys(own["scope"]))
    conditions = list(dict.fromkeys(own["condition"]))
    names = _labelled(conditions, labels)
    colors = colors or condition_colors(conditions)
    columns = min(len(scopes), 3)
    rows = math.ceil(len(scopes) / columns)
    figure, panels = _new_grid(rows, columns, 0.6 + 4.0 * columns, 0.9 + 3.0 * rows)
    flat = [axes for row in panels for axes in row]
    for axes, scope in zip(flat, scopes, strict=False):
        part = own[own["scope"] == scope]
        for condition in conditions:
            line = part[part["condition"] == condition].groupby("step")["ce"].mean()
            if not line.empty:
                axes.plot(line.index, line.values, color=colors.get(condition), linewidth=1.4, label=names[condition])
        title = "Multitask (all tasks)" if scope == tables.MULTITASK_SCOPE else task_title(scope)
        axes.set_title(title, fontsize=10, fontweight="bold")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("step")
        axes.set_ylabel("cross-entropy (nats/token)")
        sns.despine(ax=axes)
    for axes in flat[len(scopes) :]:
        axes.set_visible(False)
    handles, texts = flat[0].get_legend_handles_labels()
    figure.legend(handles, texts, loc="lower center", ncol=min(len(texts), 5), frameon=False, fontsize=9)
    figure.suptitle(f"{focus_model} — training cross-entropy per step", fontsize=12, fontweight="bold")
    figure.tight_layout(rect=(0, 0.08, 1, 0.95))
    return _save(figure, path)


def figure_names(heatmap_condition: str) -> dict[str, str]:
    """File name of each figure the report may show, keyed by its role."""
    return {
        "task_bar": "task_bar.png",
        "gap": "gap.png",
        "heatmap": f"heatmap_{heatmap_condition}.png",
        "lambda_sweep": "lambda_sweep.png",
        "lambda_eff": "lambda_eff.png",
        "dynamic_gap": "dynamic_gap.png",
        "models": "models.png",
        "training": "training_curves.png",
    }


def figure_files(conditions: pd.DataFrame | None, heatmap_condition: str | None = None, models: int = 1) -> list[str]:
    """File names a render writes for the grid of the ``conditions`` table, once all its cells have results.

    Only the ``condition`` and ``role`` columns are read, so no result file is needed.
    ``gap.png`` needs Fine-Tuned and Distilled or Control, ``lambda_sweep.png`` a sweep,
    ``lambda_eff.png`` a dynamic condition, ``dynamic_gap.png`` a dynamic condition and
    Fine-Tuned, ``training_curves.png`` a trained condition, ``models.png`` more than one of
    ``models`` (the grid's model count). ``heatmap_condition`` defaults as in the report (Distilled, else the last
    condition that is not a sweep member). Without a conditions table the grid is unknown:
    the names are those of the report without the new inputs (``gap.png`` included), and
    ``heatmap_condition`` is required.
    """
    if conditions is None:
        if heatmap_condition is None:
            raise ValueError("figure_files needs a heatmap condition or a conditions table")
        names = figure_names(heatmap_condition)
        return [names["task_bar"], names["gap"], names["heatmap"]]
    # Only ids and roles matter here, so a workflow can pass the two columns it builds from config.
    grid = pd.DataFrame({column: conditions[column].astype(str).str.strip() for column in ("condition", "role")})
    shown = tables.shown_conditions(grid, grid)
    names = figure_names(heatmap_condition or tables.default_heatmap_condition(shown))
    ids, roles = set(grid["condition"]), set(grid["role"])
    has_reference = tables.REFERENCE_CONDITION in ids
    wanted = {
        "task_bar": True,
        "gap": has_reference and bool(set(tables.GAP_CONDITIONS) & ids),
        "heatmap": True,
        "lambda_sweep": "sweep" in roles,
        "lambda_eff": "dynamic" in roles,
        "dynamic_gap": "dynamic" in roles and has_reference,
        "models": models > 1,
        "training": bool(roles - {"infer"}),
    }
    return [names[role] for role, wanted_here in wanted.items() if wanted_here]


def gap_bounds(paired: pd.DataFrame | None, focus_model: str, gaps: pd.DataFrame) -> tuple | None:
    """Tasks × conditions low and high bounds of each gap's paired bootstrap interval (the
    task-average test against Fine-Tuned in ``paired.csv``), aligned with ``gaps``."""
    if paired is None:
        return None
    tests = tables.paired_lookup(paired, focus_model)
    bounds = []
    for column in ("ci_low", "ci_high"):
        frame = pd.DataFrame(math.nan, index=gaps.index, columns=gaps.columns)
        for task in gaps.index:
            for condition in gaps.columns:
                test = tests.get((task, condition, tables.REFERENCE_CONDITION))
                if test is not None:
                    frame.loc[task, condition] = test[column]
        bounds.append(frame)
    return tuple(bounds)


def _gap_figure(
    overview: pd.DataFrame, path: Path, focus_model: str, grid: dict, paired: pd.DataFrame | None = None
) -> Path | None:
    """``gap.png`` when the focus model has a Distilled or Control gap to Fine-Tuned in some task."""
    gaps = tables.gaps_to_finetuned(overview)
    if not gaps.notna().any().any():
        return None
    subtitle = gap_subtitle(tables.ordering_counts(overview))
    bounds = gap_bounds(paired, focus_model, gaps)
    return gap_bars(gaps, focus_model, path, subtitle, grid["labels"], grid["colors"], bounds)


def _models_figure(cells: pd.DataFrame, path: Path, grid: dict) -> Path | None:
    """``models.png`` when the cells hold more than one model."""
    models = tables.model_order(cells)
    if len(models) < 2:
        return None
    conditions = tables.task_bar_conditions(grid["shown"], grid["conditions"])
    summary = tables.summary_table(cells, models, conditions)
    bounds = tables.summary_bounds(cells, models, conditions)
    return model_bars(summary, path, grid["labels"], grid["colors"], bounds)


def _training_figure(training: pd.DataFrame | None, path: Path, focus_model: str, grid: dict) -> Path | None:
    """``training_curves.png`` when the training log has steps of the focus model."""
    if training is None or "ce" not in training or training[training["model"] == focus_model]["ce"].isna().all():
        return None
    return training_curves(training, focus_model, path, grid["labels"], grid["colors"])


def _sweep_figure(
    cells: pd.DataFrame,
    overview: pd.DataFrame,
    path: Path,
    focus_model: str,
    grid: dict,
) -> Path | None:
    """``lambda_sweep.png`` when the focus model has a λ sweep with a result or a dev choice."""
    sweeps = tables.sweep_tables(cells, grid["conditions"], grid["selection"], focus_model)
    if not sweeps:
        return None
    references = {
        task: tables.task_average(cells, focus_model, task, tables.REFERENCE_CONDITION) for task in overview.index
    }
    colors = condition_colors(list(dict.fromkeys([*grid["shown"], *sweeps])))
    return lambda_sweep(sweeps, references, focus_model, path, grid["labels"], colors)


def _dynamic_gap_figure(overview: pd.DataFrame, path: Path, focus_model: str, grid: dict) -> Path | None:
    """``dynamic_gap.png`` when a dynamic-λ condition of the focus model has a gap to Fine-Tuned."""
    gaps = tables.dynamic_gap_table(overview, grid["conditions"])
    gaps = gaps.drop(columns=tables.REFERENCE_CONDITION, errors="ignore")
    if not gaps.notna().any().any():
        return None
    fixed = tables.condition_lambda(grid["conditions"], tables.DISTILLED)
    labels = dict(grid["labels"])
    if tables.DISTILLED in labels and not math.isnan(fixed):
        labels[tables.DISTILLED] = f"{labels[tables.DISTILLED]} (λ = {lambda_text(fixed)})"
    subtitle = "fixed λ, best λ on dev and dynamic-λ strategies"
    return gap_bars(gaps, focus_model, path, subtitle, labels, grid["colors"])


def _lambda_eff_figure(
    training: pd.DataFrame | None,
    tasks: Sequence[str],
    path: Path,
    focus_model: str,
    grid: dict,
) -> Path | None:
    """``lambda_eff.png`` when the training log has steps of a dynamic-λ condition of the focus model."""
    strategies = tables.conditions_with_role(grid["shown"], grid["conditions"], "dynamic")
    traces = tables.lambda_eff_traces(training, focus_model, strategies, tasks)
    if traces.empty:
        return None
    fixed = tables.condition_lambda(grid["conditions"], tables.DISTILLED)
    return lambda_eff_lines(traces, fixed, focus_model, path, grid["labels"], grid["colors"])


def write_figures(
    cells: pd.DataFrame,
    figures_dir: str | PathLike,
    focus_model: str,
    heatmap_condition: str,
    conditions: pd.DataFrame | None = None,
    selection: pd.DataFrame | None = None,
    training: pd.DataFrame | None = None,
    paired: pd.DataFrame | None = None,
) -> list[Path]:
    """Draw the report's figures for the focus model into ``figures_dir`` and return their paths.

    Bars carry 95 % interval bars (task bars: :func:`tables.task_condition_bounds`; gaps: the
    paired tests of ``paired``, when given) and label tasks a chance line.

    ``gap.png`` is skipped (no file) when the focus model has no gap to Fine-Tuned at all
    (Fine-Tuned absent, both Distilled and Control absent, or no task with both values).
    ``lambda_sweep.png`` needs a λ sweep with a result or a dev choice, ``dynamic_gap.png`` a
    dynamic-λ gap to Fine-Tuned, ``lambda_eff.png`` a dynamic condition's training log (all
    three need the tidy ``conditions`` table). A skipped figure's file is removed.
    """
    figures_dir = Path(figures_dir)
    names = figure_names(heatmap_condition)
    shown = tables.shown_conditions(cells, conditions)
    grid = {
        "conditions": conditions,
        "selection": selection,
        "shown": shown,
        "labels": tables.grid_labels(cells, conditions),
        "colors": condition_colors(shown),
    }
    overview = tables.task_condition_table(cells, focus_model, conditions=shown)
    bars = overview[tables.task_bar_conditions(shown, conditions)]
    path = {role: figures_dir / name for role, name in names.items()}
    bounds = tables.task_condition_bounds(cells, focus_model, list(bars.index), list(bars.columns))
    chance = tables.chance_levels(list(bars.index))
    drawn = {
        "task_bar": task_bar(bars, focus_model, path["task_bar"], grid["labels"], grid["colors"], bounds, chance),
        "gap": _gap_figure(overview, path["gap"], focus_model, grid, paired),
        "heatmap": heatmap(
            task_language_grid(cells, focus_model, heatmap_condition),
            focus_model,
            heatmap_condition,
            path["heatmap"],
            grid["labels"],
        ),
        "lambda_sweep": _sweep_figure(cells, overview, path["lambda_sweep"], focus_model, grid),
        "dynamic_gap": _dynamic_gap_figure(overview, path["dynamic_gap"], focus_model, grid),
        "lambda_eff": _lambda_eff_figure(training, list(overview.index), path["lambda_eff"], focus_model, grid),
        "models": _models_figure(cells, path["models"], grid),
        "training": _training_figure(training, path["training"], focus_model, grid),
    }
    for role, drawn_path in drawn.items():
        if drawn_path is None:
            # A figure left from an earlier render would contradict this report.
            path[role].unlink(missing_ok=True)
    return [drawn_path for drawn_path in drawn.values() if drawn_path is not None]
