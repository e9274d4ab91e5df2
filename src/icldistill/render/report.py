"""Assemble the results report: numbers from :mod:`tables`, figures, Jinja template → RESULTS.md.

:func:`build_context` turns the tables into ready-to-print strings; the template only lays
them out. :func:`render_report` is the entry point the workflow and the CLI call.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from icldistill.render import figures, tables
from icldistill.render import reference as references
from icldistill.render.compute import compute_context
from icldistill.tasks import TASKS
from icldistill.vocab import CONDITION_LEGEND, condition_label, language_label

#: The template used when none is given: ``report/templates/results.md.j2`` of the repository.
DEFAULT_TEMPLATE = Path(__file__).resolve().parents[3] / "report" / "templates" / "results.md.j2"

#: Conditions that involve no training; any other condition (user-defined ones too) trains.
INFERENCE_ONLY_CONDITIONS = frozenset({"base", "fewshot"})


#: Column headers of the gaps to Fine-Tuned: (overview header, analysis header).
GAP_HEADERS: dict[str, tuple[str, str]] = {
    "distilled": ("Dist−FT", "Distilled−FT"),
    "control": ("Ctrl−FT", "Control−FT"),
}

REPORT_NAME = "RESULTS.md"
FIGURES_DIR = "figures"

#: Where the workflow writes every training run's per-step log (named in the Dynamic λ section).
TRAINING_TABLE = "results/tables/training.csv"

#: Marks the λ chosen on the dev split in the λ Sweep tables.
CHOSEN_MARK = "✓"

#: Follows a per-condition table value when more than ``tables.PARSE_FAILURE_THRESHOLD`` of the
#: cell's outputs did not parse.
PARSE_FAILURE_MARK = "†"


def fmt(value: float, suffix: str = "") -> str:
    """One-decimal number (with ``suffix``), or ``—`` for a cell without a result."""
    return tables.MISSING if pd.isna(value) else f"{tables.decimal1(value)}{suffix}"


def percent(fraction: float) -> str:
    """A fraction as a one-decimal percentage (``0.875`` → ``87.5 %``)."""
    return f"{tables.decimal1(100 * fraction)} %"


def marked(value: float, flagged: bool) -> str:
    """:func:`fmt` of a cell's value, followed by :data:`PARSE_FAILURE_MARK` when ``flagged``."""
    text = fmt(value)
    return f"{text}{PARSE_FAILURE_MARK}" if flagged and not pd.isna(value) else text


def bold(text: str) -> str:
    """Markdown bold."""
    return f"**{text}**"


def fmt_gap(gap: float, test: Mapping | None = None, interval: bool = False) -> str:
    """Signed gap. Without a paired ``test`` it is bolded when it reaches the near-parity
    threshold (``|gap| ≥ PARITY_PP``, the seed's rule); with one (a ``paired.csv`` row) only
    when the test's 95 % interval excludes 0, and ``interval`` appends that interval."""
    text = tables.signed(gap)
    if test is None:
        return bold(text) if not pd.isna(gap) and abs(gap) >= tables.PARITY_PP else text
    if interval:
        text = f"{text} [{tables.signed(test['ci_low'])}, {tables.signed(test['ci_high'])}]"
    return bold(text) if test["significant"] else text


#: the legend of the gap tables' bolding, by whether paired tests are available
BOLD_RULES = {
    False: "bold when |Δ| ≥ {parity}",
    True: "[95 % paired bootstrap interval of the difference]; bold only when it excludes 0 — "
    "bold marks evidence, not size; every test is in `results/tables/paired.csv`",
}


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
    """Model × language table (values, bold Avg) of one condition, task and metric; a value whose
    cell has too many unparsed outputs (:func:`tables.parse_failure_flags`) carries :data:`PARSE_FAILURE_MARK`."""
    grid = tables.language_table(cells, condition, task, metric, models, languages)
    flags = tables.parse_failure_flags(cells, condition, task, metric, models, languages)
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
    models, languages = tables.model_order(cells), tables.language_order(cells)
    conditions = tables.condition_order(cells) if conditions is None else conditions
    labels = tables.condition_labels(conditions) if labels is None else labels
    sections = []
    for condition in conditions:
        blocks = []
        for task in tables.task_order(cells):
            metric = tables.primary_metric(cells, task)
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


def interval_text(row: Mapping) -> str:
    """A cell with its uncertainty: ``value [low, high]``, with ``±SD`` over training seeds
    before the interval when the cell is the mean of several seeds."""
    text = fmt(row["value"])
    if pd.isna(row["value"]):
        return text
    if not pd.isna(row["seeds"]) and row["seeds"] > 1 and not pd.isna(row["seed_sd"]):
        text = f"{text} ±{tables.decimal1(row['seed_sd'])}"
    if not pd.isna(row["ci_low"]):
        text = f"{text} [{tables.decimal1(row['ci_low'])}, {tables.decimal1(row['ci_high'])}]"
    return text


def interval_context(
    cells: pd.DataFrame, focus_model: str, conditions: Sequence[str], labels: Mapping[str, str]
) -> dict | None:
    """Condition × language tables of the focus model's primary-metric cells with their 95 %
    intervals (:func:`interval_text`), one per task; None when the cells carry no intervals."""
    own = cells[(cells["model"] == focus_model) & cells["ci_low"].notna()]
    if own.empty:
        return None
    languages = tables.language_order(cells)
    blocks = []
    for task in tables.task_order(own):
        metric = tables.primary_metric(cells, task)
        rows = own[(own["task"] == task) & (own["metric"] == metric)].set_index(["condition", "language"])
        present = set(rows.index.get_level_values("condition"))
        body = [
            [
                labels[condition],
                *(
                    interval_text(rows.loc[(condition, lang)]) if (condition, lang) in rows.index else tables.MISSING
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


def parse_failure_context(cells: pd.DataFrame, conditions: pd.DataFrame | None, labels: Mapping[str, str]) -> dict:
    """The Parse Failures section: the threshold, the mark, and a Model | Task | Condition |
    Language | Not parsed table of :func:`tables.parse_failure_cells` (None when no cell exceeds
    the threshold)."""
    flagged = tables.parse_failure_cells(cells, conditions)
    rows = [
        [row.model, row.task.upper(), labels[row.condition], language_label(row.language), percent(row.rate)]
        for row in flagged.rename(columns={tables.PARSE_FAILURE_RATE: "rate"}).itertuples()
    ]
    return {
        "threshold": f"{100 * tables.PARSE_FAILURE_THRESHOLD:g} %",
        "mark": PARSE_FAILURE_MARK,
        "table": table(["Model", "Task", "Condition", "Language", "Not parsed"], rows) if rows else None,
    }


def over_length_context(cells: pd.DataFrame, conditions: pd.DataFrame | None, labels: Mapping[str, str]) -> dict:
    """The over-long inputs paragraph: a Model | Task | Condition | Language | Cut table of
    :func:`tables.over_length_cells` (None when no input was cut) and the total count."""
    flagged = tables.over_length_cells(cells, conditions)
    rows = [
        [row.model, row.task.upper(), labels[row.condition], language_label(row.language), f"{row.count:g}"]
        for row in flagged.rename(columns={tables.OVER_LENGTH: "count"}).itertuples()
    ]
    return {
        "table": table(["Model", "Task", "Condition", "Language", "Inputs cut"], rows) if rows else None,
        "total": f"{flagged[tables.OVER_LENGTH].sum():g}",
    }


def reference_context(
    cells: pd.DataFrame,
    reference: pd.DataFrame | None,
    reference_model: str | None,
    source: str | None,
    conditions: pd.DataFrame | None,
    labels: Mapping[str, str],
) -> dict | None:
    """The Reference section (:mod:`reference`): per model, task and condition this run's mean
    over languages, the reference's, their difference and in how many languages the reference
    lies inside the run's 95 % interval; a note instead of a table when nothing matches. None
    without a reference."""
    if reference is None:
        return None
    compared = references.compare(cells, reference, reference_model)
    base = {"source": source or "the reference table", "model": reference_model}
    if compared.empty:
        if reference_model is None:
            note = (
                f"No model of this run ({', '.join(tables.model_order(cells))}) has numbers in the reference "
                f"(its models: {', '.join(dict.fromkeys(reference['model']))}); `report.reference.model` "
                "compares every model of the run with one of them."
            )
        else:
            note = f"The reference has no {reference_model} numbers for this run's tasks, conditions and languages."
        return base | {"table": None, "note": note}
    summary = references.summarize(compared, conditions)
    rows = [
        [
            row.model,
            row.reference_model,
            row.task.upper(),
            labels.get(row.condition, row.condition),
            fmt(row.value),
            fmt(row.reference),
            tables.signed(row.difference),
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


def count_phrase(held: int, total: int) -> str:
    """``in every task`` when a relation holds in all compared tasks, else ``in N/M tasks``."""
    return "in every task" if held == total else f"in {held}/{total} tasks"


def ordering_context(overview: pd.DataFrame, labels: Mapping[str, str] | None = None) -> dict | None:
    """The ordering section's generated lines, or None unless FT, Distilled and Control exist."""
    counts = tables.ordering_counts(overview)
    if "ft_ge_dist_ge_ctrl" not in counts or counts["ft_ge_dist_ge_ctrl"][1] == 0:
        return None
    held, total = counts["ft_ge_dist_ge_ctrl"]
    chain = " ≥ ".join((labels or {}).get(c) or condition_label(c) for c in ("finetuned", "distilled", "control"))
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


def gap_table_context(overview: pd.DataFrame, tests: Mapping | None = None) -> dict | None:
    """Task | gap columns | Observation table, or None when there is no gap to Fine-Tuned.
    ``tests`` (:func:`tables.paired_lookup`) adds each gap's interval and bolds by evidence."""
    gaps = tables.gaps_to_finetuned(overview)
    if gaps.columns.empty:
        return None
    observations = tables.gap_observations(gaps)
    header = ["Task", *(GAP_HEADERS[c][1] for c in gaps.columns), "Observation"]
    rows = [
        [
            task_title(task),
            *(fmt_gap(gaps.at[task, c], *_test(tests, task, c), interval=True) for c in gaps.columns),
            observations[task],
        ]
        for task in gaps.index
    ]
    return table(header, rows, notes=True)


def _test(tests: Mapping | None, task: str, condition: str, reference: str = "finetuned") -> tuple:
    """``(test,)`` for :func:`fmt_gap` when paired tests exist, else ``()`` (the magnitude rule);
    a comparison without a test (a missing cell) is shown plain."""
    if tests is None:
        return ()
    return (tests.get((task, condition, reference), {"significant": False, "ci_low": math.nan, "ci_high": math.nan}),)


def overview_table(
    overview: pd.DataFrame, labels: Mapping[str, str] | None = None, tests: Mapping | None = None
) -> dict:
    """Per-task × condition averages of the focus model with the gap-to-Fine-Tuned columns."""
    gaps = tables.gaps_to_finetuned(overview)
    labels = tables.condition_labels(overview.columns) if labels is None else labels
    header = [
        "Task",
        *(labels[c] for c in overview.columns),
        *(GAP_HEADERS[c][0] for c in gaps.columns),
    ]
    rows = [
        [
            task_title(task),
            *(fmt(overview.at[task, c]) for c in overview.columns),
            *(fmt_gap(gaps.at[task, c], *_test(tests, task, c)) for c in gaps.columns),
        ]
        for task in overview.index
    ]
    return table(header, rows)


def is_trained(condition: str, roles: Mapping[str, str]) -> bool:
    """Whether a condition trains: its role when the conditions table has one, else its id."""
    return roles[condition] != "infer" if condition in roles else condition not in INFERENCE_ONLY_CONDITIONS


def cross_lingual_context(
    cells: pd.DataFrame,
    model: str,
    condition: str,
    labels: Mapping[str, str] | None = None,
    roles: Mapping[str, str] | None = None,
) -> dict | None:
    """English / non-English averages and gap of the heatmap condition, or None if a side is empty."""
    stats = tables.cross_lingual(cells, model, condition)
    if not stats["n_en"] or not stats["n_non_en"]:
        return None
    drop = tables.largest_transfer_drop(cells, model, condition)
    return {
        "label": (labels or {}).get(condition) or condition_label(condition),
        "trained": is_trained(condition, roles or {}),
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


def fmt_lambda(value: float) -> str:
    """A λ as the report writes it (``0``, ``0.1``, ``1``), or ``—``."""
    return tables.MISSING if pd.isna(value) else figures.lambda_text(value)


def sweep_legend_line(sweep_of: str, conditions: pd.DataFrame, labels: Mapping[str, str]) -> tuple[str, str]:
    """Legend entry of one λ sweep: its λ values, and which values reuse another condition's run."""
    members = tables.sweep_members(conditions, sweep_of)
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


def legend(shown: Sequence[str], conditions: pd.DataFrame | None, labels: Mapping[str, str]) -> list[tuple[str, str]]:
    """(label, text) per shown condition, each swept one followed by its sweep's line.

    The conditions table's ``description`` wins over the vocabulary's legend; a sweep whose
    condition is not shown gets its line at the end.
    """
    described = {} if conditions is None else dict(zip(conditions["condition"], conditions["description"], strict=True))
    swept = tables.swept_conditions(conditions)
    lines = []
    for condition in shown:
        text = described.get(condition) or CONDITION_LEGEND.get(condition, "user-defined condition")
        lines.append((labels[condition], text))
        if condition in swept:
            lines.append(sweep_legend_line(condition, conditions, labels))
    lines += [sweep_legend_line(c, conditions, labels) for c in swept if c not in shown]
    return lines


def sweep_row_label(lam: float, reuses: str, chosen: bool, labels: Mapping[str, str]) -> str:
    """``λ = 0.1``, with ``(= Fine-Tuned)`` when the run is reused and ``✓`` when chosen on dev."""
    text = f"λ = {fmt_lambda(lam)}"
    if reuses:
        text += f" (= {labels[reuses]})"
    return f"{text} {CHOSEN_MARK}" if chosen else text


def sweep_task_table(sweep: pd.DataFrame, labels: Mapping[str, str]) -> dict:
    """λ × language table of one task's sweep (:func:`tables.sweep_table`) with Avg, Dev and Δ vs FT."""
    languages = [c for c in sweep.columns if c not in ("lambda", "reuses", "Avg", "Dev", "Gap", "chosen")]
    rows = [
        [
            sweep_row_label(row["lambda"], row["reuses"], row["chosen"], labels),
            *(fmt(row[lang]) for lang in languages),
            bold(fmt(row["Avg"])),
            fmt(row["Dev"]),
            tables.signed(row["Gap"]),
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
    delta = "" if pd.isna(gap) else f" (Δ vs FT {tables.signed(gap, minus='−')})"
    return f"Chosen on {split}: λ = {fmt_lambda(choice['lambda'])} (dev {fmt(choice['dev_score'])}); test Avg {test}{delta}."


def best_lambda_block(per_task: dict[str, pd.DataFrame], heading: str) -> dict | None:
    """Task | λ | Dev | Test Avg | Δ vs FT of the λ chosen on dev per task, or None without a choice."""
    best = tables.best_lambda_table(per_task)
    if best.empty:
        return None
    rows = [
        [task_title(task), fmt_lambda(row["lambda"]), fmt(row["Dev"]), fmt(row["Avg"]), tables.signed(row["Gap"])]
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
    sweeps = tables.sweep_tables(cells, conditions, selection, focus_model)
    if not sweeps:
        return None
    blocks, best = [], []
    for sweep_of, per_task in sweeps.items():
        name = f"{labels[sweep_of]} λ sweep"
        for task, sweep in per_task.items():
            choice = tables.chosen_selection(selection, focus_model, task, sweep_of)
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


def dynamic_context(
    overview: pd.DataFrame,
    conditions: pd.DataFrame | None,
    labels: Mapping[str, str],
    tests: Mapping | None = None,
) -> dict | None:
    """The Dynamic λ table: per task (and Avg) each compared condition's gap to Fine-Tuned.

    None without a dynamic condition or without Fine-Tuned.
    """
    gaps = tables.dynamic_gap_table(overview, conditions)
    if gaps.columns.empty:
        return None
    compared = [c for c in gaps.columns if c != tables.REFERENCE_CONDITION]
    strategies = tables.conditions_with_role(compared, conditions, "dynamic")
    fixed = tables.condition_lambda(conditions, tables.DISTILLED)

    def gap_header(condition: str) -> str:
        if condition == tables.DISTILLED and not pd.isna(fixed):
            return f"{labels[condition]} (λ={fmt_lambda(fixed)})−FT"
        return f"{labels[condition]}−FT"

    def row(name: str, values: pd.Series, task: str | None = None) -> list[str]:
        winners = tables.best_of(values, strategies)
        # the Avg row over tasks has no paired test of its own: plain under the evidence rule
        return [
            name,
            fmt(values[tables.REFERENCE_CONDITION]),
            *(fmt_gap(values[c], *_test(tests, task, c)) for c in compared),
            " / ".join(labels[c] for c in winners) or tables.MISSING,
        ]

    average = tables.dynamic_gap_average(overview, gaps.columns)
    rows = [row(task_title(task), gaps.loc[task], task) for task in gaps.index] + [row("Avg", average)]
    header = ["Task", labels[tables.REFERENCE_CONDITION], *(gap_header(c) for c in compared), "Best of these"]
    return {
        "table": table(header, rows, notes=True),
        "strategies": [labels[c] for c in strategies],
        "training_table": TRAINING_TABLE,
    }


#: Where the workflow writes the run record the appendix summarises (:mod:`icldistill.runrecord`).
RUN_RECORD_FILE = "results/run.json"

#: Hex digits of a SHA-256 the appendix prints (run.json holds the whole hash).
HASH_DIGITS = 12


def short_hash(digest: str | None) -> str:
    """The first :data:`HASH_DIGITS` hex digits of a hash as code, or ``—``."""
    return f"`{digest[:HASH_DIGITS]}`" if digest else tables.MISSING


def size_text(size: int | None) -> str:
    """A file size in MB (``98.4 MB``), or nothing when unknown."""
    return "" if size is None else f", {size / 1e6:.1f} MB"


def model_source_text(entry: Mapping) -> str:
    """Where a run-record model came from, in words."""
    source = entry.get("source")
    if source == "gguf":
        version = entry.get("package_version") or "not installed"
        what = f"`{entry['file']}`" if entry.get("file") else f"built by `{entry.get('assemble')}`"
        text = f"GGUF {what} of {entry['package']} {version}{size_text(entry.get('size'))}"
        return f"{text} (not hashed: {entry['error']})" if entry.get("error") else text
    if source == "local":
        return f"local folder `{entry['path']}`, {len(entry.get('files') or {})} files (combined hash)"
    revision = entry.get("revision")
    pinned = f"revision `{revision}`" if revision else "no revision pinned"
    return f"hub id `{entry.get('id')}`, {pinned}"


def run_record_context(record: Mapping | None) -> dict | None:
    """The Run Record appendix: commit and dirty flag, package versions, config hash and a
    table of model and data hashes (the data as a file count and one combined hash); None
    without a record."""
    if record is None:
        return None
    git = record.get("git") or {}
    if git.get("commit"):
        state = {True: "uncommitted changes", False: "clean", None: "state unknown"}[git.get("dirty")]
        commit = f"`{git['commit'][:HASH_DIGITS]}` ({state})"
    else:
        commit = f"none — {git.get('note') or 'not a git checkout'}"
    versions = " · ".join(f"{name} {version or tables.MISSING}" for name, version in record.get("versions", {}).items())
    rows = [
        [f"model `{name}`", model_source_text(entry), short_hash(entry.get("sha256") or entry.get("revision"))]
        for name, entry in (record.get("models") or {}).items()
    ]
    data = record.get("data") or {}
    if data.get("source") == "local":
        rows.append(["data", f"`{data['path']}`, {data['count']} files (combined hash)", short_hash(data["sha256"])])
    else:
        rows.append(["data", data.get("note") or f"source {data.get('source')}", tables.MISSING])
    return {
        "file": RUN_RECORD_FILE,
        "written_at": record.get("written_at") or tables.MISSING,
        "commit": commit,
        "versions": versions,
        "python": record.get("python") or tables.MISSING,
        "config_hash": short_hash(record.get("config_hash")),
        "digits": HASH_DIGITS,
        "table": table(["Input", "Source", "SHA-256"], rows),
    }


def build_context(
    cells: pd.DataFrame,
    focus_model: str,
    heatmap_condition: str,
    figure_links: dict[str, str],
    conditions_table: pd.DataFrame | None = None,
    selection: pd.DataFrame | None = None,
    paired: pd.DataFrame | None = None,
    run_record: Mapping | None = None,
    reference: Mapping | None = None,
    compute: Sequence[Mapping] | None = None,
) -> dict:
    """Everything the template prints, as strings and lists of strings.

    ``figure_links`` maps a figure role (``task_bar``, ``gap``, ``heatmap``, ``lambda_sweep``,
    ``dynamic_gap``, ``lambda_eff``) to its link relative to RESULTS.md; a role missing from it
    is not shown. ``conditions_table`` and ``selection`` (tidy, see :mod:`tables`) add the λ
    Sweep and Dynamic λ sections; without them ``sweep`` and ``dynamic`` are None. A
    ``run_record`` (``results/run.json``) adds the Run Record appendix; ``reference``
    (``{"table": DataFrame, "model": str | None, "source": str}``) the Reference section.
    """
    models, conditions = tables.model_order(cells), tables.shown_conditions(cells, conditions_table)
    tasks, languages = tables.task_order(cells), tables.language_order(cells)
    roles = tables.condition_roles(conditions_table)
    tests = None if paired is None else tables.paired_lookup(paired, focus_model)
    labels = tables.grid_labels(cells, conditions_table)
    summary = tables.summary_table(cells, models, conditions)
    overview = tables.task_condition_table(cells, focus_model, tasks, conditions)
    return {
        "title": "XTREME Benchmark — ICL Distillation Results",
        "models": models,
        "focus_model": focus_model,
        "tasks_line": ", ".join(
            f"{task.upper()} ({TASKS[task].dataset})" if task in TASKS else task.upper() for task in tasks
        ),
        "languages_line": " · ".join(language_label(lang) for lang in languages),
        "trained": any(is_trained(c, roles) for c in conditions),
        "legend": legend(conditions, conditions_table, labels),
        "figures": figure_links,
        "heatmap_label": labels[heatmap_condition],
        "summary": table(
            ["Model", *(labels[c] for c in conditions)],
            [[model, *(fmt(summary.at[model, c]) for c in conditions)] for model in models],
        ),
        "overview": overview_table(overview, labels, tests),
        "sections": condition_sections(cells, conditions, labels),
        "overall": table(
            ["Condition", "Avg Score"],
            [
                [labels[c], bold(fmt(summary.at[focus_model, c], "%"))]
                if not pd.isna(summary.at[focus_model, c])
                else [labels[c], tables.MISSING]
                for c in conditions
            ],
        ),
        "ordering": ordering_context(overview, labels),
        "gaps": gap_table_context(overview, tests),
        "bold_rule": BOLD_RULES[tests is not None].format(parity=fmt(tables.PARITY_PP)),
        "gap_labels": [GAP_HEADERS[c][1] for c in tables.gaps_to_finetuned(overview).columns],
        "thresholds": {
            "parity": fmt(tables.PARITY_PP),
            "large": fmt(tables.LARGE_GAP_PP),
        },
        "cross_lingual": cross_lingual_context(cells, focus_model, heatmap_condition, labels, roles),
        "sweep": sweep_context(cells, conditions_table, selection, focus_model, labels),
        "dynamic": dynamic_context(overview, conditions_table, labels, tests),
        "intervals": interval_context(cells, focus_model, conditions, labels),
        "parse_failures": parse_failure_context(cells, conditions_table, labels),
        "over_length": over_length_context(cells, conditions_table, labels),
        "reference": reference_context(
            cells,
            (reference or {}).get("table"),
            (reference or {}).get("model"),
            (reference or {}).get("source"),
            conditions_table,
            labels,
        ),
        "run_record": run_record_context(run_record),
        "compute": compute_context(compute or [], focus_model, conditions, labels, summary),
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


def resolve_choices(
    cells: pd.DataFrame,
    focus_model: str | None,
    heatmap_condition: str | None,
    conditions_table: pd.DataFrame | None = None,
) -> tuple[str, str]:
    """The focus model and heatmap condition to use, defaulted and checked against the cells.

    The default heatmap condition is never a sweep member (see :func:`tables.shown_conditions`).
    """
    models, conditions = tables.model_order(cells), tables.condition_order(cells, conditions_table)
    if focus_model is None:
        focus_model = tables.default_focus_model(cells)
    elif focus_model not in models:
        raise ValueError(f"focus model {focus_model!r} not in cells; models: {', '.join(models)}")
    if heatmap_condition is None:
        heatmap_condition = tables.default_heatmap_condition(tables.shown_conditions(cells, conditions_table))
    elif heatmap_condition not in conditions:
        raise ValueError(f"heatmap condition {heatmap_condition!r} not in cells; conditions: {', '.join(conditions)}")
    return focus_model, heatmap_condition


def render_report(
    cells: pd.DataFrame,
    out_dir: str | PathLike,
    focus_model: str | None = None,
    heatmap_condition: str | None = None,
    template: str | PathLike | None = None,
    conditions: pd.DataFrame | None = None,
    selection: pd.DataFrame | None = None,
    training: pd.DataFrame | None = None,
    paired: pd.DataFrame | None = None,
    run_record: Mapping | None = None,
    reference: Mapping | None = None,
    compute: Sequence[Mapping] | None = None,
) -> Path:
    """Write ``out_dir/RESULTS.md`` and its figures under ``out_dir/figures``; return the report path.

    ``cells`` is the ``cells.csv`` table (extra columns ignored). The focus model defaults to the
    model with the most results, the heatmap condition to ``distilled`` (else the last present).
    The optional ``conditions`` (labels, roles, λ, sweeps), ``selection`` (the dev choice of λ)
    and ``training`` (per-step logs) tables add the λ Sweep and Dynamic λ sections and figures;
    ``paired`` (``paired.csv``) bolds gaps by the evidence of paired bootstrap tests and prints
    their intervals; ``run_record`` (``results/run.json``, :mod:`icldistill.runrecord`) adds
    the Run Record appendix; ``reference`` (``{"table": <reference cells>, "model": <reference
    model or None>, "source": <its name>}``, :mod:`icldistill.render.reference`) the Reference
    section; ``compute`` (rows of ``compute.csv``, :func:`icldistill.compute.read_compute`) the
    Compute section. Without them the report is the seed layout.
    """
    cells = tables.tidy_cells(cells)
    if cells.empty:
        raise ValueError("cells table has no rows")
    conditions = None if conditions is None else tables.tidy_conditions(conditions)
    selection = None if selection is None else tables.tidy_selection(selection)
    training = None if training is None else tables.tidy_training(training)
    paired = None if paired is None else tables.tidy_paired(paired)
    focus_model, heatmap_condition = resolve_choices(cells, focus_model, heatmap_condition, conditions)
    out_dir = Path(out_dir)
    written = figures.write_figures(
        cells, out_dir / FIGURES_DIR, focus_model, heatmap_condition, conditions, selection, training, paired
    )
    names = figures.figure_names(heatmap_condition)
    written_names = {path.name for path in written}
    links = {role: f"{FIGURES_DIR}/{name}" for role, name in names.items() if name in written_names}
    context = build_context(
        cells, focus_model, heatmap_condition, links, conditions, selection, paired, run_record, reference, compute
    )
    report = out_dir / REPORT_NAME
    report.write_text(render_markdown(context, template), encoding="utf-8")
    return report
