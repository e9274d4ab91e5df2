"""The numbers of the results report, computed from the tidy ``cells.csv`` table.

Every function here is small and pure: it takes the tidy cells (see :func:`tidy_cells`) or a
table derived from them and returns a DataFrame, a dict or a string. Nothing here formats
Markdown tables or draws figures; :mod:`icldistill.render.report` and
:mod:`icldistill.render.figures` do that with what these functions return.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from os import PathLike

import pandas as pd

from icldistill.vocab import CONDITION_LABELS, LANGUAGES, PRIMARY_METRIC, TASKS

#: Columns every ``cells.csv`` carries; columns after them are ignored.
CELL_COLUMNS: tuple[str, ...] = (
    "model",
    "task",
    "condition",
    "language",
    "metric",
    "value",
    "n",
)

#: The columns naming one cell of one metric.
CELL_KEY: tuple[str, ...] = ("model", "task", "condition", "language", "metric")

#: Training happens on English only, so cross-lingual transfer is measured from this language.
SOURCE_LANGUAGE = "en"

#: Condition every gap is measured against, and the conditions whose gap to it is reported.
REFERENCE_CONDITION = "finetuned"
GAP_CONDITIONS: tuple[str, ...] = ("distilled", "control")

#: A gap smaller than this (in percentage points) is "near-parity" and is not bolded.
PARITY_PP = 1.0

#: A regression at least this large (in percentage points) is called "large".
LARGE_GAP_PP = 5.0

#: What the report shows for a cell without a result.
MISSING = "—"


def read_cells(path: str | PathLike) -> pd.DataFrame:
    """Read a ``cells.csv`` file and return its tidy form (see :func:`tidy_cells`)."""
    ids = {column: str for column in CELL_KEY}
    raw = pd.read_csv(path, dtype=ids, keep_default_na=False, na_values={"value": [""], "n": [""]})
    return tidy_cells(raw)


def tidy_cells(raw: pd.DataFrame) -> pd.DataFrame:
    """Return the seven ``cells.csv`` columns with ids as stripped strings and numeric values.

    Extra columns are dropped. An empty or non-numeric ``value`` becomes NaN: the cell is in the
    grid but has no result. When a cell/metric appears twice, the last row wins.
    """
    missing = [column for column in CELL_COLUMNS if column not in raw.columns]
    if missing:
        raise ValueError(f"cells table lacks column(s) {', '.join(missing)}")
    cells = raw.loc[:, list(CELL_COLUMNS)].copy()
    for column in CELL_KEY:
        cells[column] = cells[column].astype(str).str.strip()
    cells["value"] = pd.to_numeric(cells["value"], errors="coerce")
    cells["n"] = pd.to_numeric(cells["n"], errors="coerce")
    cells = cells.drop_duplicates(subset=list(CELL_KEY), keep="last")
    return cells.reset_index(drop=True)


def _canonical_then_rest(present: Iterable[str], canonical: Iterable[str]) -> list[str]:
    """Ids of ``present`` in ``canonical`` order, then unknown ids in order of first appearance."""
    seen = list(dict.fromkeys(present))
    known = [item for item in canonical if item in seen]
    return known + [item for item in seen if item not in known]


def model_order(cells: pd.DataFrame) -> list[str]:
    """Models in order of first appearance in the cells table."""
    return list(dict.fromkeys(cells["model"]))


def condition_order(cells: pd.DataFrame) -> list[str]:
    """Conditions present, known ones in vocabulary order, user-defined ones after them."""
    return _canonical_then_rest(cells["condition"], CONDITION_LABELS)


def task_order(cells: pd.DataFrame) -> list[str]:
    """Tasks present, known ones in vocabulary order, unknown ones after them."""
    return _canonical_then_rest(cells["task"], TASKS)


def language_order(cells: pd.DataFrame) -> list[str]:
    """Languages present, known ones in vocabulary order, unknown ones after them."""
    return _canonical_then_rest(cells["language"], LANGUAGES)


def primary_metric(cells: pd.DataFrame, task: str) -> str:
    """The task's primary metric; for a task the vocabulary lacks, its first metric in the table."""
    if task in PRIMARY_METRIC:
        return PRIMARY_METRIC[task]
    return str(cells.loc[cells["task"] == task, "metric"].iloc[0])


def primary_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The rows carrying each task's primary metric (the numbers summaries average)."""
    metrics = {task: primary_metric(cells, task) for task in task_order(cells)}
    return cells[cells["metric"] == cells["task"].map(metrics)]


def decimal1(value: float) -> str:
    """``value`` with one decimal, halves rounded up (``5.65`` → ``5.7``); ``—`` for NaN.

    The value is first snapped to 9 decimals so binary noise (33.9 / 6 = 5.6499999…) does not
    turn a printed half into a round-down.
    """
    if not _is_number(value):
        return MISSING
    snapped = Decimal(repr(round(float(value), 9)))
    text = str(snapped.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
    return "0.0" if text == "-0.0" else text


def round1(value: float) -> float:
    """``value`` rounded to one decimal exactly as the report prints it (NaN stays NaN)."""
    return float(decimal1(value)) if _is_number(value) else math.nan


def _is_number(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def language_table(
    cells: pd.DataFrame,
    condition: str,
    task: str,
    metric: str,
    models: Sequence[str],
    languages: Sequence[str],
) -> pd.DataFrame:
    """Model × language values of one condition, task and metric, plus an ``Avg`` column.

    Rows follow ``models`` and columns ``languages``; a cell without a result is NaN. ``Avg`` is
    the mean of the row's available languages (NaN when it has none).
    """
    selected = cells[(cells["condition"] == condition) & (cells["task"] == task) & (cells["metric"] == metric)]
    grid = selected.set_index(["model", "language"])["value"].unstack()
    grid = grid.reindex(index=list(models), columns=list(languages)).astype(float)
    grid["Avg"] = grid.mean(axis=1, skipna=True)
    grid.index.name, grid.columns.name = "model", None
    return grid


def summary_table(
    cells: pd.DataFrame,
    models: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Model × condition mean of the primary metric over all (task, language) cells with a value.

    This is a mean over cells, not over task means: a task with more languages weighs more.
    """
    models = model_order(cells) if models is None else list(models)
    conditions = condition_order(cells) if conditions is None else list(conditions)
    means = primary_cells(cells).groupby(["model", "condition"])["value"].mean().unstack()
    return means.reindex(index=models, columns=conditions).astype(float)


def task_condition_table(
    cells: pd.DataFrame,
    model: str,
    tasks: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Task × condition average of one model's primary metric over the languages with a value."""
    tasks = task_order(cells) if tasks is None else list(tasks)
    conditions = condition_order(cells) if conditions is None else list(conditions)
    own = primary_cells(cells)
    own = own[own["model"] == model]
    means = own.groupby(["task", "condition"])["value"].mean().unstack()
    return means.reindex(index=tasks, columns=conditions).astype(float)


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


def signed(value: float, minus: str = "-") -> str:
    """``value`` with one decimal and an explicit sign (``+3.7``, ``-0.6``); ``—`` for NaN."""
    if not _is_number(value):
        return MISSING
    text = decimal1(value)
    return text.replace("-", minus) if text.startswith("-") else f"+{text}"


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
        if not _is_number(gap):
            notes[task] = MISSING
            continue
        text = describe_gap(gap, CONDITION_LABELS[subject], largest=gap == worst)
        if subject == "distilled" and "control" in gaps.columns:
            control_note = describe_control(gap, gaps.at[task, "control"])
            if control_note:
                text = f"{text}; {control_note}"
        notes[task] = text
    return pd.Series(notes, dtype=object)


def cross_lingual(cells: pd.DataFrame, model: str, condition: str) -> dict[str, float | int]:
    """English versus non-English primary-metric means of one model and condition.

    Returns ``en_avg`` and ``non_en_avg`` (means over all cells with a value), their counts
    ``n_en``/``n_non_en``, and ``gap`` = ``en_avg − non_en_avg`` (NaN when a side is empty).
    """
    own = primary_cells(cells)
    own = own[(own["model"] == model) & (own["condition"] == condition)].dropna(subset=["value"])
    english = own.loc[own["language"] == SOURCE_LANGUAGE, "value"]
    others = own.loc[own["language"] != SOURCE_LANGUAGE, "value"]
    en_avg = float(english.mean()) if len(english) else math.nan
    non_en_avg = float(others.mean()) if len(others) else math.nan
    return {
        "en_avg": en_avg,
        "non_en_avg": non_en_avg,
        "gap": en_avg - non_en_avg,
        "n_en": len(english),
        "n_non_en": len(others),
    }


def largest_transfer_drop(cells: pd.DataFrame, model: str, condition: str) -> dict | None:
    """The (task, language) cell furthest below the same task's English score.

    Returns ``{"task", "language", "drop"}`` with ``drop`` = cell − English (negative), or None
    when no task has both an English and a non-English value below English.
    """
    own = primary_cells(cells)
    own = own[(own["model"] == model) & (own["condition"] == condition)].dropna(subset=["value"])
    english = own[own["language"] == SOURCE_LANGUAGE].set_index("task")["value"]
    others = own[(own["language"] != SOURCE_LANGUAGE) & own["task"].isin(english.index)]
    if others.empty:
        return None
    drops = others["value"] - others["task"].map(english)
    worst = drops.idxmin()
    if drops[worst] >= 0:
        return None
    return {
        "task": others.at[worst, "task"],
        "language": others.at[worst, "language"],
        "drop": float(drops[worst]),
    }


def default_focus_model(cells: pd.DataFrame) -> str:
    """The model with the most primary-metric cells that have a value (ties: first listed)."""
    models = model_order(cells)
    if not models:
        raise ValueError("cells table has no rows")
    counts = primary_cells(cells).dropna(subset=["value"]).groupby("model").size()
    return max(models, key=lambda model: (int(counts.get(model, 0)), -models.index(model)))


def default_heatmap_condition(conditions: Sequence[str]) -> str:
    """``distilled`` when present, otherwise the last condition present."""
    if not conditions:
        raise ValueError("no conditions to choose a heatmap condition from")
    return "distilled" if "distilled" in conditions else conditions[-1]
