"""Assemble the results report: numbers from :mod:`tables`, figures, Jinja template → RESULTS.md.

:func:`build_context` turns the tables into ready-to-print strings; the template only lays
them out. :func:`render_report` is the entry point the workflow and the CLI call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from icldistill.render import figures, tables
from icldistill.vocab import (
    CONDITION_LEGEND,
    TASK_DATASETS,
    condition_label,
    language_label,
)

#: The template used when none is given: ``report/templates/results.md.j2`` of the repository.
DEFAULT_TEMPLATE = Path(__file__).resolve().parents[3] / "report" / "templates" / "results.md.j2"

#: Conditions that involve no training; any other condition (user-defined ones too) trains.
INFERENCE_ONLY_CONDITIONS = frozenset({"base", "fewshot"})

#: Extra metric tables printed after a task's primary table: task → [(metric, heading)].
SECONDARY_TABLES: dict[str, list[tuple[str, str]]] = {"qa": [("exact_match", "QA Exact Match (%)")]}

#: Column headers of the gaps to Fine-Tuned: (overview header, analysis header).
GAP_HEADERS: dict[str, tuple[str, str]] = {
    "distilled": ("Dist−FT", "Distilled−FT"),
    "control": ("Ctrl−FT", "Control−FT"),
}

REPORT_NAME = "RESULTS.md"
FIGURES_DIR = "figures"


def fmt(value: float, suffix: str = "") -> str:
    """One-decimal number (with ``suffix``), or ``—`` for a cell without a result."""
    return tables.MISSING if pd.isna(value) else f"{tables.decimal1(value)}{suffix}"


def bold(text: str) -> str:
    """Markdown bold."""
    return f"**{text}**"


def fmt_gap(gap: float) -> str:
    """Signed gap, bolded when it reaches the near-parity threshold (``|gap| ≥ PARITY_PP``)."""
    text = tables.signed(gap)
    return bold(text) if not pd.isna(gap) and abs(gap) >= tables.PARITY_PP else text


def cell_text(text: str) -> str:
    """Text made safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|")


def task_title(task: str) -> str:
    """Report title of a task's primary-metric tables."""
    return figures.task_title(task)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], notes: bool = False) -> dict:
    """A table for the template: header, rows of strings, and whether the last column is prose."""
    return {
        "header": [cell_text(h) for h in header],
        "rows": [[cell_text(c) for c in row] for row in rows],
        "notes": notes,
    }


def language_section_table(
    cells: pd.DataFrame,
    condition: str,
    task: str,
    metric: str,
    models: list[str],
    languages: list[str],
) -> dict:
    """Model × language table (values, bold Avg) of one condition, task and metric."""
    grid = tables.language_table(cells, condition, task, metric, models, languages)
    rows = [
        [
            model,
            *(fmt(grid.at[model, lang]) for lang in languages),
            bold(fmt(grid.at[model, "Avg"])),
        ]
        for model in models
    ]
    return table(["Model", *(language_label(lang) for lang in languages), "Avg"], rows)


def condition_sections(cells: pd.DataFrame) -> list[dict]:
    """One section per condition: its task tables (and secondary-metric tables) in order."""
    models, languages = tables.model_order(cells), tables.language_order(cells)
    sections = []
    for condition in tables.condition_order(cells):
        blocks = []
        for task in tables.task_order(cells):
            metric = tables.primary_metric(cells, task)
            blocks.append(
                {
                    "heading": f"### {task_title(task)}",
                    "table": language_section_table(cells, condition, task, metric, models, languages),
                }
            )
            for extra_metric, heading in SECONDARY_TABLES.get(task, []):
                if ((cells["task"] == task) & (cells["metric"] == extra_metric)).any():
                    blocks.append(
                        {
                            "heading": f"#### {heading}",
                            "table": language_section_table(cells, condition, task, extra_metric, models, languages),
                        }
                    )
        sections.append({"label": condition_label(condition), "blocks": blocks})
    return sections


def count_phrase(held: int, total: int) -> str:
    """``in every task`` when a relation holds in all compared tasks, else ``in N/M tasks``."""
    return "in every task" if held == total else f"in {held}/{total} tasks"


def ordering_context(overview: pd.DataFrame) -> dict | None:
    """The ordering section's generated lines, or None unless FT, Distilled and Control exist."""
    counts = tables.ordering_counts(overview)
    if "ft_ge_dist_ge_ctrl" not in counts or counts["ft_ge_dist_ge_ctrl"][1] == 0:
        return None
    held, total = counts["ft_ge_dist_ge_ctrl"]
    chain = " ≥ ".join(condition_label(c) for c in ("finetuned", "distilled", "control"))
    bullets = []
    held_dc, total_dc = counts["dist_gt_ctrl"]
    if total_dc:
        verdict = (
            "the few-shot teacher signal beats a zero-shot teacher in each task."
            if held_dc == total_dc
            else f"Control matches or beats Distilled in {total_dc - held_dc}/{total_dc} tasks."
        )
        bullets.append(f"{bold(f'Distilled > Control {count_phrase(held_dc, total_dc)}')} — {verdict}")
    held_fd, total_fd = counts["ft_gt_dist"]
    if total_fd:
        verdict = (
            "distillation matches or beats pure SFT in every task."
            if held_fd == 0
            else "distillation does not fully close the gap to pure SFT"
            + (f" (Distilled ≥ Fine-Tuned in {total_fd - held_fd}/{total_fd} tasks)." if held_fd < total_fd else ".")
        )
        bullets.append(f"{bold(f'Fine-Tuned > Distilled {count_phrase(held_fd, total_fd)}')} — {verdict}")
    if held == total:
        lead = "A consistent hierarchy emerges across tasks:"
    elif 2 * held > total:
        lead = "A hierarchy emerges in most tasks:"
    else:
        lead = "The expected hierarchy holds in few tasks:"
    return {
        "heading": "### The FT ≥ Distilled ≥ Control Ordering",
        "lead": lead,
        "chain": f"{chain}   ({held} out of {total} tasks)",
        "bullets": bullets,
    }


def gap_table_context(overview: pd.DataFrame) -> dict | None:
    """Task | gap columns | Observation table, or None when there is no gap to Fine-Tuned."""
    gaps = tables.gaps_to_finetuned(overview)
    if gaps.columns.empty:
        return None
    observations = tables.gap_observations(gaps)
    header = ["Task", *(GAP_HEADERS[c][1] for c in gaps.columns), "Observation"]
    rows = [
        [
            task_title(task),
            *(fmt_gap(gaps.at[task, c]) for c in gaps.columns),
            observations[task],
        ]
        for task in gaps.index
    ]
    return table(header, rows, notes=True)


def overview_table(overview: pd.DataFrame) -> dict:
    """Per-task × condition averages of the focus model with the gap-to-Fine-Tuned columns."""
    gaps = tables.gaps_to_finetuned(overview)
    header = [
        "Task",
        *(condition_label(c) for c in overview.columns),
        *(GAP_HEADERS[c][0] for c in gaps.columns),
    ]
    rows = [
        [
            task_title(task),
            *(fmt(overview.at[task, c]) for c in overview.columns),
            *(fmt_gap(gaps.at[task, c]) for c in gaps.columns),
        ]
        for task in overview.index
    ]
    return table(header, rows)


def cross_lingual_context(cells: pd.DataFrame, model: str, condition: str) -> dict | None:
    """English / non-English averages and gap of the heatmap condition, or None if a side is empty."""
    stats = tables.cross_lingual(cells, model, condition)
    if not stats["n_en"] or not stats["n_non_en"]:
        return None
    drop = tables.largest_transfer_drop(cells, model, condition)
    return {
        "label": condition_label(condition),
        "trained": condition not in INFERENCE_ONLY_CONDITIONS,
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
            "amount": tables.signed(drop["drop"], minus="−"),
        },
    }


def build_context(
    cells: pd.DataFrame,
    focus_model: str,
    heatmap_condition: str,
    figure_links: dict[str, str],
) -> dict:
    """Everything the template prints, as strings and lists of strings.

    ``figure_links`` maps a figure role (``task_bar``, ``gap``, ``heatmap``) to its link relative
    to RESULTS.md; a role missing from it is not shown.
    """
    models, conditions = tables.model_order(cells), tables.condition_order(cells)
    tasks, languages = tables.task_order(cells), tables.language_order(cells)
    summary = tables.summary_table(cells, models, conditions)
    overview = tables.task_condition_table(cells, focus_model, tasks, conditions)
    return {
        "title": "XTREME Benchmark — ICL Distillation Results",
        "models": models,
        "focus_model": focus_model,
        "tasks_line": ", ".join(
            f"{task.upper()} ({TASK_DATASETS[task]})" if task in TASK_DATASETS else task.upper() for task in tasks
        ),
        "languages_line": " · ".join(language_label(lang) for lang in languages),
        "trained": any(c not in INFERENCE_ONLY_CONDITIONS for c in conditions),
        "legend": [(condition_label(c), CONDITION_LEGEND.get(c, "user-defined condition")) for c in conditions],
        "figures": figure_links,
        "heatmap_label": condition_label(heatmap_condition),
        "summary": table(
            ["Model", *(condition_label(c) for c in conditions)],
            [[model, *(fmt(summary.at[model, c]) for c in conditions)] for model in models],
        ),
        "overview": overview_table(overview),
        "sections": condition_sections(cells),
        "overall": table(
            ["Condition", "Avg Score"],
            [
                [condition_label(c), bold(fmt(summary.at[focus_model, c], "%"))]
                if not pd.isna(summary.at[focus_model, c])
                else [condition_label(c), tables.MISSING]
                for c in conditions
            ],
        ),
        "ordering": ordering_context(overview),
        "gaps": gap_table_context(overview),
        "gap_labels": [GAP_HEADERS[c][1] for c in tables.gaps_to_finetuned(overview).columns],
        "thresholds": {
            "parity": fmt(tables.PARITY_PP),
            "large": fmt(tables.LARGE_GAP_PP),
        },
        "cross_lingual": cross_lingual_context(cells, focus_model, heatmap_condition),
    }


def render_markdown(context: dict, template: str | PathLike | None = None) -> str:
    """Fill the Jinja template (default :data:`DEFAULT_TEMPLATE`) with ``context``."""
    path = Path(template) if template is not None else DEFAULT_TEMPLATE
    environment = Environment(
        loader=FileSystemLoader(str(path.parent)),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    text = environment.get_template(path.name).render(**context)
    # Optional blocks leave runs of blank lines; Markdown needs at most one.
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


def resolve_choices(cells: pd.DataFrame, focus_model: str | None, heatmap_condition: str | None) -> tuple[str, str]:
    """The focus model and heatmap condition to use, defaulted and checked against the cells."""
    models, conditions = tables.model_order(cells), tables.condition_order(cells)
    if focus_model is None:
        focus_model = tables.default_focus_model(cells)
    elif focus_model not in models:
        raise ValueError(f"focus model {focus_model!r} not in cells; models: {', '.join(models)}")
    if heatmap_condition is None:
        heatmap_condition = tables.default_heatmap_condition(conditions)
    elif heatmap_condition not in conditions:
        raise ValueError(f"heatmap condition {heatmap_condition!r} not in cells; conditions: {', '.join(conditions)}")
    return focus_model, heatmap_condition


def render_report(
    cells: pd.DataFrame,
    out_dir: str | PathLike,
    focus_model: str | None = None,
    heatmap_condition: str | None = None,
    template: str | PathLike | None = None,
) -> Path:
    """Write ``out_dir/RESULTS.md`` and its figures under ``out_dir/figures``; return the report path.

    ``cells`` is the ``cells.csv`` table (extra columns ignored). The focus model defaults to the
    model with the most results, the heatmap condition to ``distilled`` (else the last present).
    """
    cells = tables.tidy_cells(cells)
    if cells.empty:
        raise ValueError("cells table has no rows")
    focus_model, heatmap_condition = resolve_choices(cells, focus_model, heatmap_condition)
    out_dir = Path(out_dir)
    written = figures.write_figures(cells, out_dir / FIGURES_DIR, focus_model, heatmap_condition)
    names = figures.figure_names(heatmap_condition)
    written_names = {path.name for path in written}
    links = {role: f"{FIGURES_DIR}/{name}" for role, name in names.items() if name in written_names}
    context = build_context(cells, focus_model, heatmap_condition, links)
    report = out_dir / REPORT_NAME
    report.write_text(render_markdown(context, template), encoding="utf-8")
    return report
