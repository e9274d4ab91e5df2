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

from icldistill import vocab
from icldistill.tasks import TASKS
from icldistill.vocab import CONDITION_LABELS, LANGUAGES, TRAIN_LOG_COLUMNS

#: Columns every ``cells.csv`` carries; columns after them are ignored.
CELL_COLUMNS: tuple[str, ...] = vocab.CELL_COLUMNS
#: Optional numeric columns of ``cells.csv``: the 95 % bootstrap interval and, for conditions
#: trained with several seeds, their number and the standard deviation over them.
CELL_UNCERTAINTY: tuple[str, ...] = ("ci_low", "ci_high", "seeds", "seed_sd")

#: Optional ``cells.csv`` column: the fraction (0–1) of a cell's outputs that did not parse.
PARSE_FAILURE_RATE = "parse_failure_rate"
#: examples of a cell whose input was cut to fit the model's context (``cells.csv``)
OVER_LENGTH = "over_length"

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

#: A cell where more than this fraction of outputs did not parse is marked and listed in the report.
PARSE_FAILURE_THRESHOLD = 0.2

#: What the report shows for a cell without a result.
MISSING = "—"


def read_cells(path: str | PathLike) -> pd.DataFrame:
    """Read a ``cells.csv`` file and return its tidy form (see :func:`tidy_cells`)."""
    ids = {column: str for column in CELL_KEY}
    raw = pd.read_csv(path, dtype=ids, keep_default_na=False, na_values={"value": [""], "n": [""]})
    return tidy_cells(raw)


def tidy_cells(raw: pd.DataFrame) -> pd.DataFrame:
    """Return the seven ``cells.csv`` columns with ids as stripped strings and numeric values,
    then the :data:`CELL_UNCERTAINTY` columns (NaN where absent or empty) and
    :data:`PARSE_FAILURE_RATE` (see :func:`parse_failure_rates`) and :data:`OVER_LENGTH` (NaN
    where absent).

    Other columns are dropped. An empty or non-numeric ``value`` becomes NaN: the cell is in the
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
    for column in CELL_UNCERTAINTY:
        cells[column] = _numbers(raw, column)
    cells[PARSE_FAILURE_RATE] = parse_failure_rates(raw)
    cells[OVER_LENGTH] = _numbers(raw, OVER_LENGTH)
    cells = cells.drop_duplicates(subset=list(CELL_KEY), keep="last")
    return cells.reset_index(drop=True)


def _numbers(raw: pd.DataFrame, column: str) -> pd.Series:
    """A column as numbers: NaN where absent, empty or not numeric."""
    values = raw[column] if column in raw.columns else pd.Series(math.nan, index=raw.index)
    return pd.to_numeric(values, errors="coerce")


def parse_failure_rates(raw: pd.DataFrame) -> pd.Series:
    """Each row's fraction of outputs that did not parse: the :data:`PARSE_FAILURE_RATE` column,
    else (tables written before it) ``parse_failures / n``; NaN where neither is known, which the
    report treats as no failures."""
    n = _numbers(raw, "n")
    return _numbers(raw, PARSE_FAILURE_RATE).fillna(_numbers(raw, "parse_failures") / n.where(n > 0))


def too_many_parse_failures(rates: pd.Series | pd.DataFrame) -> pd.Series | pd.DataFrame:
    """Whether each rate exceeds :data:`PARSE_FAILURE_THRESHOLD` (False where unknown)."""
    return rates.astype(float) > PARSE_FAILURE_THRESHOLD


def _canonical_then_rest(present: Iterable[str], canonical: Iterable[str]) -> list[str]:
    """Ids of ``present`` in ``canonical`` order, then unknown ids in order of first appearance."""
    seen = list(dict.fromkeys(present))
    known = [item for item in dict.fromkeys(canonical) if item in seen]
    return known + [item for item in seen if item not in known]


def model_order(cells: pd.DataFrame) -> list[str]:
    """Models in order of first appearance in the cells table."""
    return list(dict.fromkeys(cells["model"]))


def condition_order(cells: pd.DataFrame, conditions: pd.DataFrame | None = None) -> list[str]:
    """Conditions present, known ones in vocabulary order, user-defined ones after them.

    User-defined conditions follow the row order of the ``conditions`` table when it is given
    (the config order), then their order of first appearance in the cells.
    """
    extra = [] if conditions is None else list(conditions["condition"])
    return _canonical_then_rest(cells["condition"], [*CONDITION_LABELS, *extra])


def task_order(cells: pd.DataFrame) -> list[str]:
    """Tasks present, known ones in vocabulary order, unknown ones after them."""
    return _canonical_then_rest(cells["task"], tuple(TASKS))


def language_order(cells: pd.DataFrame) -> list[str]:
    """Languages present, known ones in vocabulary order, unknown ones after them."""
    return _canonical_then_rest(cells["language"], LANGUAGES)


def primary_metric(cells: pd.DataFrame, task: str) -> str:
    """The task's primary metric; for a task the registry lacks, its first metric in the table."""
    if task in TASKS:
        return TASKS[task].primary_metric
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
    grid = _model_language_grid(cells, condition, task, metric, models, languages, "value")
    grid["Avg"] = grid.mean(axis=1, skipna=True)
    return grid


def parse_failure_flags(
    cells: pd.DataFrame,
    condition: str,
    task: str,
    metric: str,
    models: Sequence[str],
    languages: Sequence[str],
) -> pd.DataFrame:
    """Model × language booleans beside :func:`language_table`: whether more than
    :data:`PARSE_FAILURE_THRESHOLD` of the cell's outputs did not parse."""
    rates = _model_language_grid(cells, condition, task, metric, models, languages, PARSE_FAILURE_RATE)
    return too_many_parse_failures(rates)


def _model_language_grid(
    cells: pd.DataFrame,
    condition: str,
    task: str,
    metric: str,
    models: Sequence[str],
    languages: Sequence[str],
    column: str,
) -> pd.DataFrame:
    """Model × language floats of ``column`` for one condition, task and metric (NaN where absent)."""
    selected = cells[(cells["condition"] == condition) & (cells["task"] == task) & (cells["metric"] == metric)]
    grid = selected.set_index(["model", "language"])[column].unstack()
    grid = grid.reindex(index=list(models), columns=list(languages)).astype(float)
    grid.index.name, grid.columns.name = "model", None
    return grid


def _flagged_cells(cells: pd.DataFrame, conditions: pd.DataFrame | None, flag: pd.Series, column: str) -> pd.DataFrame:
    """The cells where ``flag`` holds, one row per (model, task, condition, language) with
    ``column``, in report order; the single-seed runs of a condition trained with several seeds
    left out (the condition itself is listed)."""
    cell = ["model", "task", "condition", "language"]
    if conditions is not None and "role" in conditions:
        keep = ~cells["condition"].isin(set(conditions.loc[conditions["role"] == "seed", "condition"]))
        cells, flag = cells[keep], flag[keep]
    flagged = cells[flag].drop_duplicates(subset=cell)
    orders = {
        "model": model_order(cells),
        "task": task_order(cells),
        "condition": condition_order(cells, conditions),
        "language": language_order(cells),
    }
    flagged = flagged.sort_values(cell, key=lambda column: column.map(orders[column.name].index), kind="stable")
    return flagged[[*cell, column]].reset_index(drop=True)


def parse_failure_cells(cells: pd.DataFrame, conditions: pd.DataFrame | None = None) -> pd.DataFrame:
    """The cells where more than :data:`PARSE_FAILURE_THRESHOLD` of outputs did not parse.

    One row per (model, task, condition, language) — the rate is the cell's, shared by its
    metrics — with columns model, task, condition, language and :data:`PARSE_FAILURE_RATE`,
    in report order (models, tasks, conditions as :func:`condition_order`, languages). Sweep
    members count; the single-seed runs of a condition trained with several seeds do not (the
    condition itself is listed with its mean rate, as the report shows the mean elsewhere).
    """
    flag = too_many_parse_failures(cells[PARSE_FAILURE_RATE])
    return _flagged_cells(cells, conditions, flag, PARSE_FAILURE_RATE)


def over_length_cells(cells: pd.DataFrame, conditions: pd.DataFrame | None = None) -> pd.DataFrame:
    """The cells with at least one input cut to fit the model's context (:data:`OVER_LENGTH`
    > 0), as :func:`parse_failure_cells` lists them."""
    counts = cells[OVER_LENGTH] if OVER_LENGTH in cells else pd.Series(math.nan, index=cells.index)
    return _flagged_cells(cells.assign(**{OVER_LENGTH: counts}), conditions, counts.fillna(0) > 0, OVER_LENGTH)


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


# --- the grid's conditions table, λ sweeps and dynamic λ ---------------------------------------

#: What a condition of the grid is (column ``role`` of the conditions table).
ROLES: tuple[str, ...] = ("infer", "train", "sweep", "best", "dynamic", "seed")

#: Roles kept out of the Summary, Overview and per-condition sections: λ sweep members (their own
#: section) and the single-seed runs of a condition trained with several seeds (it shows their mean).
MEMBER_ROLES = frozenset({"sweep", "seed"})

#: Roles of the conditions drawn in the task bar figure; dynamic strategies have their own.
TASK_BAR_ROLES = frozenset({"infer", "train", "best"})

#: The fixed-λ KD condition that the dynamic strategies and the best λ are set beside.
DISTILLED = "distilled"

#: Columns of the conditions table: required ones, then optional text columns (empty when absent).
CONDITION_TABLE_REQUIRED: tuple[str, ...] = ("condition", "label", "role")
CONDITION_TABLE_TEXT: tuple[str, ...] = ("loss", "strategy", "sweep_of", "description", "reuses", "seed_of")

#: Columns of the selection table (the dev-split choice of λ).
SELECTION_REQUIRED: tuple[str, ...] = ("model", "task", "sweep_of", "candidate", "lambda", "dev_score", "chosen")
SELECTION_TEXT: tuple[str, ...] = ("model_id", "best_condition", "dev_languages")

#: Columns of the training log; only those the report reads are required.
TRAINING_REQUIRED: tuple[str, ...] = ("model", "scope", "condition", "step", "lambda_eff")
TRAINING_TEXT: tuple[str, ...] = ("model_id", "task")
TRAINING_NUMBERS: tuple[str, ...] = tuple(c for c in TRAIN_LOG_COLUMNS if c != "task")

#: The ``scope`` of a run trained on all tasks at once.
MULTITASK_SCOPE = "multitask"


def _require(raw: pd.DataFrame, columns: Iterable[str], name: str) -> None:
    missing = [column for column in columns if column not in raw.columns]
    if missing:
        raise ValueError(f"{name} table lacks column(s) {', '.join(missing)}")


def _text(raw: pd.DataFrame, column: str) -> pd.Series:
    """A column as stripped strings, empty where absent or NaN (CSV empties and DataFrame NaNs alike)."""
    if column not in raw.columns:
        return pd.Series("", index=raw.index, dtype=object)
    return raw[column].map(lambda value: "" if pd.isna(value) else str(value).strip())


def _read_text_table(path: str | PathLike, columns: Sequence[str]) -> pd.DataFrame:
    """A CSV file with every column as text; a file without any column is an empty table of ``columns``."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        # The workflow writes an empty frame (a lone newline) when, e.g., no run was trained.
        return pd.DataFrame(columns=list(columns), dtype=str)


def _flag(value: object) -> bool:
    """``True``/``true``/``1``/``yes`` (as a bool or as text) → True; anything else → False."""
    return str(value).strip().lower() in {"true", "1", "1.0", "yes"}


def tidy_conditions(raw: pd.DataFrame) -> pd.DataFrame:
    """The conditions table with text columns as stripped strings ("" when empty) and ``lambda`` numeric.

    Row order is kept (it is the config order). Raises ValueError on an unknown ``role``, on a
    sweep member without ``sweep_of``, or on a condition listed twice.
    """
    _require(raw, CONDITION_TABLE_REQUIRED, "conditions")
    tidy = pd.DataFrame({column: _text(raw, column) for column in (*CONDITION_TABLE_REQUIRED, *CONDITION_TABLE_TEXT)})
    lam = raw["lambda"] if "lambda" in raw.columns else pd.Series(math.nan, index=raw.index)
    tidy.insert(4, "lambda", pd.to_numeric(lam, errors="coerce"))
    unknown = sorted(set(tidy["role"]) - set(ROLES))
    if unknown:
        raise ValueError(f"conditions table: unknown role(s) {', '.join(unknown)}; known: {', '.join(ROLES)}")
    unswept = tidy.loc[(tidy["role"] == "sweep") & (tidy["sweep_of"] == ""), "condition"]
    if len(unswept):
        raise ValueError(f"conditions table: {', '.join(unswept)} lack(s) sweep_of")
    twice = tidy.loc[tidy["condition"].duplicated(), "condition"]
    if len(twice):
        raise ValueError(f"conditions table lists {', '.join(twice)} twice")
    return tidy.reset_index(drop=True)


def read_conditions(path: str | PathLike) -> pd.DataFrame:
    """Read a conditions CSV file and return its tidy form (see :func:`tidy_conditions`)."""
    return tidy_conditions(_read_text_table(path, CONDITION_TABLE_REQUIRED))


def tidy_selection(raw: pd.DataFrame) -> pd.DataFrame:
    """The selection table with ids as stripped strings, ``lambda``/``dev_score`` numeric, ``chosen`` bool.

    Raises ValueError when a (model, task, sweep_of) has more than one chosen candidate.
    """
    _require(raw, SELECTION_REQUIRED, "selection")
    text = ("model", "task", "sweep_of", "candidate", *SELECTION_TEXT)
    tidy = pd.DataFrame({column: _text(raw, column) for column in text})
    tidy["lambda"] = pd.to_numeric(raw["lambda"], errors="coerce")
    tidy["dev_score"] = pd.to_numeric(raw["dev_score"], errors="coerce")
    tidy["chosen"] = raw["chosen"].map(_flag).astype(bool)
    counts = tidy[tidy["chosen"]].groupby(["model", "task", "sweep_of"]).size()
    if (counts > 1).any():
        twice = ", ".join("/".join(key) for key in counts[counts > 1].index)
        raise ValueError(f"selection table: more than one chosen candidate for {twice}")
    return tidy.reset_index(drop=True)


def read_selection(path: str | PathLike) -> pd.DataFrame:
    """Read a selection CSV file and return its tidy form (see :func:`tidy_selection`)."""
    return tidy_selection(_read_text_table(path, SELECTION_REQUIRED))


def tidy_training(raw: pd.DataFrame) -> pd.DataFrame:
    """The training log with ids as stripped strings and the logged quantities numeric (NaN when empty)."""
    _require(raw, TRAINING_REQUIRED, "training")
    tidy = pd.DataFrame({column: _text(raw, column) for column in ("model", "scope", "condition", *TRAINING_TEXT)})
    for column in TRAINING_NUMBERS:
        values = raw[column] if column in raw.columns else pd.Series(math.nan, index=raw.index)
        tidy[column] = pd.to_numeric(values, errors="coerce")
    return tidy.reset_index(drop=True)


def read_training(path: str | PathLike) -> pd.DataFrame:
    """Read a training-log CSV file and return its tidy form (see :func:`tidy_training`)."""
    return tidy_training(_read_text_table(path, TRAINING_REQUIRED))


def condition_roles(conditions: pd.DataFrame | None) -> dict[str, str]:
    """Role of each condition of the conditions table (empty without one)."""
    return {} if conditions is None else dict(zip(conditions["condition"], conditions["role"], strict=True))


def shown_conditions(cells: pd.DataFrame, conditions: pd.DataFrame | None = None) -> list[str]:
    """Conditions of the Summary, Overview and per-condition sections: all present but sweep
    members and seed runs (:data:`MEMBER_ROLES`)."""
    roles = condition_roles(conditions)
    return [c for c in condition_order(cells, conditions) if roles.get(c) not in MEMBER_ROLES]


def task_bar_conditions(shown: Sequence[str], conditions: pd.DataFrame | None = None) -> list[str]:
    """The ``shown`` conditions drawn in the task bar figure: roles infer, train, best, or no role known."""
    roles = condition_roles(conditions)
    return [c for c in shown if roles.get(c, "train") in TASK_BAR_ROLES]


def conditions_with_role(order: Sequence[str], conditions: pd.DataFrame | None, role: str) -> list[str]:
    """The conditions of ``order`` that have ``role`` in the conditions table, in ``order``."""
    roles = condition_roles(conditions)
    return [c for c in order if roles.get(c) == role]


def condition_labels(order: Sequence[str], conditions: pd.DataFrame | None = None) -> dict[str, str]:
    """Display label per condition: the conditions table's ``label`` when set, else the vocabulary's."""
    table = {} if conditions is None else dict(zip(conditions["condition"], conditions["label"], strict=True))
    return {c: table.get(c) or CONDITION_LABELS.get(c, c) for c in order}


def grid_labels(cells: pd.DataFrame, conditions: pd.DataFrame | None = None) -> dict[str, str]:
    """:func:`condition_labels` of every condition the cells or the conditions table name
    (including the ``sweep_of`` and ``reuses`` targets)."""
    named = list(condition_order(cells, conditions))
    if conditions is not None:
        named += [c for column in ("condition", "sweep_of", "reuses") for c in conditions[column] if c]
    return condition_labels(list(dict.fromkeys(named)), conditions)


def condition_lambda(conditions: pd.DataFrame | None, condition: str) -> float:
    """The fixed λ of a condition in the conditions table (NaN when it has none or is not listed)."""
    if conditions is None:
        return math.nan
    row = conditions.loc[conditions["condition"] == condition, "lambda"]
    return float(row.iloc[0]) if len(row) else math.nan


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


def task_condition_bounds(
    cells: pd.DataFrame,
    model: str,
    tasks: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Task × condition means over languages of one model's primary-metric ``ci_low`` and
    ``ci_high``, aligned with :func:`task_condition_table`: the error bars of the task bars.
    Averaging the bounds is the interval of the average when the languages' errors are perfectly
    correlated (XTREME's test sets are translations of each other), and wider otherwise: it
    never overstates precision."""
    tasks = task_order(cells) if tasks is None else list(tasks)
    conditions = condition_order(cells) if conditions is None else list(conditions)
    own = primary_cells(cells)
    own = own[(own["model"] == model) & own["value"].notna()]
    grouped = own.groupby(["task", "condition"])
    return tuple(
        grouped[column].mean().unstack().reindex(index=tasks, columns=conditions).astype(float)
        for column in ("ci_low", "ci_high")
    )


def summary_bounds(
    cells: pd.DataFrame,
    models: Sequence[str] | None = None,
    conditions: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Model × condition means of the primary-metric ``ci_low`` and ``ci_high`` over the cells
    :func:`summary_table` averages (as :func:`task_condition_bounds`, the conservative bounds)."""
    models = model_order(cells) if models is None else list(models)
    conditions = condition_order(cells) if conditions is None else list(conditions)
    own = primary_cells(cells)
    grouped = own[own["value"].notna()].groupby(["model", "condition"])
    return tuple(
        grouped[column].mean().unstack().reindex(index=models, columns=conditions).astype(float)
        for column in ("ci_low", "ci_high")
    )


def chance_levels(tasks: Sequence[str]) -> dict[str, float]:
    """Chance accuracy (%) of each label task (uniform over its label words); tasks without a
    fixed label set (spans, tag sequences) have none."""
    from icldistill.tasks import get_task

    levels = {}
    for task in tasks:
        try:
            choices = get_task(task).choices()
        except (KeyError, ValueError):
            continue
        if choices:
            levels[task] = 100.0 / len(choices)
    return levels


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


def dynamic_gap_table(overview: pd.DataFrame, conditions: pd.DataFrame | None) -> pd.DataFrame:
    """Per-task Fine-Tuned average and the gaps of Distilled, best-λ and dynamic-λ conditions to it.

    ``overview`` is :func:`task_condition_table`. Columns: ``finetuned`` (its task average),
    then the gaps (pp) of ``distilled``, of each ``best`` condition and of each ``dynamic`` one
    present, in overview order. Like :func:`gaps_to_finetuned`, a gap is the difference of the
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
    printed = {c: round1(gaps[c]) for c in candidates if _is_number(gaps[c])}
    if not printed:
        return []
    top = max(printed.values())
    return [c for c, value in printed.items() if value == top]


def scope_order(scopes: Iterable[str], tasks: Sequence[str] = ()) -> list[str]:
    """Training scopes present: tasks in ``tasks`` then vocabulary order, others (``multitask``) after."""
    return _canonical_then_rest(scopes, [*tasks, *TASKS])


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


#: Columns of the paired tests table (``paired.csv``) the report reads.
PAIRED_REQUIRED: tuple[str, ...] = (
    "model",
    "task",
    "condition",
    "reference",
    "language",
    "ci_low",
    "ci_high",
    "significant",
)


def tidy_paired(raw: pd.DataFrame) -> pd.DataFrame:
    """The paired tests with ids as strings, numbers as floats and ``significant`` as bool."""
    missing = [column for column in PAIRED_REQUIRED if column not in raw.columns]
    if missing:
        raise ValueError(f"paired tests table lacks column(s) {', '.join(missing)}")
    paired = raw.copy()
    for column in ("model", "task", "condition", "reference", "language"):
        paired[column] = paired[column].astype(str).str.strip()
    for column in ("difference", "ci_low", "ci_high", "p_value"):
        if column in paired:
            paired[column] = pd.to_numeric(paired[column], errors="coerce")
    paired["significant"] = paired["significant"].map(_flag)
    return paired


def read_paired(path: str | PathLike) -> pd.DataFrame:
    """Read ``paired.csv`` (see :func:`tidy_paired`); an empty file gives an empty table."""
    try:
        raw = pd.read_csv(path, keep_default_na=False, na_values={"ci_low": [""], "ci_high": [""]})
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=list(PAIRED_REQUIRED))
    return tidy_paired(raw)


def paired_lookup(paired: pd.DataFrame, model: str) -> dict[tuple[str, str, str], dict]:
    """``(task, condition, reference)`` → the task-average test row of ``model``."""
    own = paired[(paired["model"] == model) & (paired["language"] == "avg")]
    return {(r["task"], r["condition"], r["reference"]): r for r in own.to_dict("records")}
