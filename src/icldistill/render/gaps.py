"""Section: the gap to Fine-Tuned. Each task's Distilled and Control gap (a column of the
Per-Task × Condition Overview, the Distillation Gap figure, the Analysis gap table with its
observations) and the FT ≥ Distilled ≥ Control ordering; how a gap is printed, bolded by
magnitude or, with ``paired.csv``, by the evidence of its paired test (also used by the
Dynamic λ section).

Template partial: ``report/templates/sections/gaps.md.j2``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from icldistill.render.common import (
    MISSING,
    PARITY_PP,
    REFERENCE_CONDITION,
    Inputs,
    bold,
    fmt,
    is_number,
    round1,
    signed,
    table,
    task_title,
)
from icldistill.render.contracts import paired_lookup
from icldistill.render.plotting import condition_colors, gap_bars
from icldistill.vocab import CONDITION_LABELS, condition_label

#: The conditions whose gap to Fine-Tuned is reported.
GAP_CONDITIONS: tuple[str, ...] = ("distilled", "control")

#: A regression at least this large (in percentage points) is called "large".
LARGE_GAP_PP = 5.0

#: Column headers of the gaps to Fine-Tuned: (overview header, analysis header).
GAP_HEADERS: dict[str, tuple[str, str]] = {
    "distilled": ("Dist−FT", "Distilled−FT"),
    "control": ("Ctrl−FT", "Control−FT"),
}

#: the legend of the gap tables' bolding, by whether paired tests are available
BOLD_RULES = {
    False: "bold when |Δ| ≥ {parity}",
    True: "[95 % paired bootstrap interval of the difference]; bold only when it excludes 0 — "
    "bold marks evidence, not size; every test is in `results/tables/paired.csv`",
}


def gaps_to_finetuned(overview: pd.DataFrame) -> pd.DataFrame:
    """Per-task gap of Distilled and Control to Fine-Tuned, from a task × condition table.

    Gaps are differences of the one-decimal averages the report prints, so each printed gap is
    exactly the difference of the printed columns. Columns are the gap conditions present
    (``distilled``, ``control``); the frame has no columns when ``finetuned`` is absent.
    """
    present = [c for c in GAP_CONDITIONS if c in overview.columns]
    if REFERENCE_CONDITION not in overview.columns or not present:
        return pd.DataFrame(index=overview.index)
    reference = overview[REFERENCE_CONDITION].map(round1)
    return pd.DataFrame({c: overview[c].map(round1) - reference for c in present})


def _count_holding(frame: pd.DataFrame, relation) -> tuple[int, int]:
    """(tasks where ``relation`` holds, tasks where all its columns have a value)."""
    complete = frame.dropna()
    return int(relation(complete).sum()), len(complete)


def ordering_counts(overview: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """How often the Fine-Tuned ≥ Distilled ≥ Control ordering holds across tasks.

    Returns ``{name: (tasks where it holds, tasks compared)}`` for ``ft_ge_dist_ge_ctrl``,
    ``dist_gt_ctrl`` and ``ft_gt_dist``, each only when its conditions are present. Compared
    are the printed one-decimal task averages; a task lacking one of them is not compared.
    """
    rounded = overview.apply(lambda column: column.map(round1))
    ft, dist, ctrl = REFERENCE_CONDITION, "distilled", "control"
    has = set(rounded.columns)
    counts: dict[str, tuple[int, int]] = {}
    if {ft, dist, ctrl} <= has:
        counts["ft_ge_dist_ge_ctrl"] = _count_holding(
            rounded[[ft, dist, ctrl]],
            lambda f: (f[ft] >= f[dist]) & (f[dist] >= f[ctrl]),
        )
    if {dist, ctrl} <= has:
        counts["dist_gt_ctrl"] = _count_holding(rounded[[dist, ctrl]], lambda f: f[dist] > f[ctrl])
    if {ft, dist} <= has:
        counts["ft_gt_dist"] = _count_holding(rounded[[ft, dist]], lambda f: f[ft] > f[dist])
    return counts


def describe_gap(gap: float, subject: str = "Distilled", largest: bool = False) -> str:
    """One phrase classifying a gap to Fine-Tuned (in pp) by the report's thresholds.

    ``gap ≥ +PARITY_PP``: "<subject> **beats** FT"; ``|gap| < PARITY_PP``: "Near-parity";
    ``-LARGE_GAP_PP < gap ≤ -PARITY_PP``: "Small regression"; ``gap ≤ -LARGE_GAP_PP``: "Large
    regression", or "Largest regression" when ``largest`` (the most negative gap of the table).
    """
    amount = f"({signed(gap, minus='−')} pp)"
    if gap >= PARITY_PP:
        return f"{subject} **beats** FT {amount}"
    if gap > -PARITY_PP:
        return f"Near-parity {amount}"
    if gap > -LARGE_GAP_PP:
        return f"Small regression {amount}"
    return f"{'Largest' if largest else 'Large'} regression {amount}"


def describe_control(distilled_gap: float, control_gap: float) -> str:
    """Phrase comparing Control with Distilled when it departs from "Control well below".

    ``|Control − Distilled| < PARITY_PP``: "Control ≈ Distilled"; Control ahead by at least
    ``PARITY_PP``: "Control beats Distilled (+x pp)"; otherwise (the expected order) "".
    """
    difference = control_gap - distilled_gap
    if abs(difference) < PARITY_PP:
        return "Control ≈ Distilled"
    if difference >= PARITY_PP:
        return f"Control beats Distilled ({signed(difference, minus='−')} pp)"
    return ""


def gap_observations(gaps: pd.DataFrame) -> pd.Series:
    """Generated Observation text per task for a :func:`gaps_to_finetuned` table.

    The main phrase describes Distilled's gap (Control's when Distilled is absent); a Control
    phrase from :func:`describe_control` is appended when both are present. Tasks lacking the
    gap get ``—``.
    """
    subject = "distilled" if "distilled" in gaps.columns else "control"
    main = gaps[subject] if subject in gaps.columns else pd.Series(math.nan, index=gaps.index)
    worst = main.min() if main.notna().sum() > 1 else math.nan
    notes = {}
    for task, gap in main.items():
        if not is_number(gap):
            notes[task] = MISSING
            continue
        text = describe_gap(gap, CONDITION_LABELS[subject], largest=gap == worst)
        if subject == "distilled" and "control" in gaps.columns:
            control_note = describe_control(gap, gaps.at[task, "control"])
            if control_note:
                text = f"{text}; {control_note}"
        notes[task] = text
    return pd.Series(notes, dtype=object)


def fmt_gap(gap: float, test: Mapping | None = None, interval: bool = False) -> str:
    """Signed gap. Without a paired ``test`` it is bolded when it reaches the near-parity
    threshold (``|gap| ≥ PARITY_PP``, the seed's rule); with one (a ``paired.csv`` row) only
    when the test's 95 % interval excludes 0, and ``interval`` appends that interval."""
    text = signed(gap)
    if test is None:
        return bold(text) if not pd.isna(gap) and abs(gap) >= PARITY_PP else text
    if interval:
        text = f"{text} [{signed(test['ci_low'])}, {signed(test['ci_high'])}]"
    return bold(text) if test["significant"] else text


def paired_test(tests: Mapping | None, task: str, condition: str, reference: str = "finetuned") -> tuple:
    """``(test,)`` for :func:`fmt_gap` when paired tests exist, else ``()`` (the magnitude rule);
    a comparison without a test (a missing cell) is shown plain."""
    if tests is None:
        return ()
    return (tests.get((task, condition, reference), {"significant": False, "ci_low": math.nan, "ci_high": math.nan}),)


def count_phrase(held: int, total: int) -> str:
    """``in every task`` when a relation holds in all compared tasks, else ``in N/M tasks``."""
    return "in every task" if held == total else f"in {held}/{total} tasks"


def ordering_context(overview: pd.DataFrame, labels: Mapping[str, str] | None = None) -> dict | None:
    """The ordering section's generated lines, or None unless FT, Distilled and Control exist."""
    counts = ordering_counts(overview)
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
    ``tests`` (:func:`contracts.paired_lookup`) adds each gap's interval and bolds by evidence."""
    gaps = gaps_to_finetuned(overview)
    if gaps.columns.empty:
        return None
    observations = gap_observations(gaps)
    header = ["Task", *(GAP_HEADERS[c][1] for c in gaps.columns), "Observation"]
    rows = [
        [
            task_title(task),
            *(fmt_gap(gaps.at[task, c], *paired_test(tests, task, c), interval=True) for c in gaps.columns),
            observations[task],
        ]
        for task in gaps.index
    ]
    return table(header, rows, notes=True)


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


def gap_bounds(paired: pd.DataFrame | None, focus_model: str, gaps: pd.DataFrame) -> tuple | None:
    """Tasks × conditions low and high bounds of each gap's paired bootstrap interval (the
    task-average test against Fine-Tuned in ``paired.csv``), aligned with ``gaps``."""
    if paired is None:
        return None
    tests = paired_lookup(paired, focus_model)
    bounds = []
    for column in ("ci_low", "ci_high"):
        frame = pd.DataFrame(math.nan, index=gaps.index, columns=gaps.columns)
        for task in gaps.index:
            for condition in gaps.columns:
                test = tests.get((task, condition, REFERENCE_CONDITION))
                if test is not None:
                    frame.loc[task, condition] = test[column]
        bounds.append(frame)
    return tuple(bounds)


def gap_figure(inputs: Inputs, path: Path) -> Path | None:
    """``gap.png`` when the focus model has a Distilled or Control gap to Fine-Tuned in some task."""
    gaps = gaps_to_finetuned(inputs.overview)
    if not gaps.notna().any().any():
        return None
    subtitle = gap_subtitle(ordering_counts(inputs.overview))
    bounds = gap_bounds(inputs.paired, inputs.focus_model, gaps)
    colors = condition_colors(inputs.shown)
    return gap_bars(gaps, inputs.focus_model, path, subtitle, inputs.labels, colors, bounds)


def context(inputs: Inputs) -> dict:
    """Template keys ``ordering``, ``gaps``, ``bold_rule``, ``gap_labels`` and ``thresholds``."""
    overview, tests = inputs.overview, inputs.tests
    return {
        "ordering": ordering_context(overview, inputs.labels),
        "gaps": gap_table_context(overview, tests),
        "bold_rule": BOLD_RULES[tests is not None].format(parity=fmt(PARITY_PP)),
        "gap_labels": [GAP_HEADERS[c][1] for c in gaps_to_finetuned(overview).columns],
        "thresholds": {
            "parity": fmt(PARITY_PP),
            "large": fmt(LARGE_GAP_PP),
        },
    }
