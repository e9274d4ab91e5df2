"""The CSV contracts of the report: which columns each input table carries and how it is read.

``cells.csv`` (one row per cell and metric), the conditions table (labels, roles, λ, sweeps),
the selection table (the dev-split choice of λ), the training log (per-step quantities) and
``paired.csv`` (paired bootstrap tests). Each has a ``tidy_*`` function that checks and
normalises a DataFrame and a ``read_*`` function for the file; the sections only ever see the
tidy tables. (The Reference section's cells-shaped table is read by
:func:`icldistill.render.reference.read_reference`.)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from os import PathLike

import pandas as pd

from icldistill import vocab
from icldistill.vocab import TRAIN_LOG_COLUMNS

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


#: What a condition of the grid is (column ``role`` of the conditions table).
ROLES: tuple[str, ...] = ("infer", "train", "sweep", "best", "dynamic", "seed")

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
