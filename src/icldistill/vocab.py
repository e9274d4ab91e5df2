"""Canonical identifiers, display order and display labels of the grid's languages and
conditions (a task's own names, title and metrics are declared on its class, :mod:`icldistill.tasks`).

Everything that names a task, language or condition in files (``cells.csv``, paths) uses
the ids below; everything a person reads uses the labels.
"""

from __future__ import annotations

#: Language ids in report order.
LANGUAGES: tuple[str, ...] = ("en", "hi", "es", "de", "fr", "zh")

#: Conditions the benchmark knows, in report order, with their labels and legend lines.
CONDITION_LABELS: dict[str, str] = {
    "base": "Base",
    "fewshot": "Few-Shot",
    "finetuned": "Fine-Tuned",
    "distilled": "Distilled",
    "control": "Control",
}

CONDITION_LEGEND: dict[str, str] = {
    "base": "zero-shot inference, no fine-tuning",
    "fewshot": "5-shot in-context learning, no fine-tuning",
    "finetuned": "SFT on English training data (CE loss only)",
    "distilled": "SFT + few-shot teacher logit KD (CE + λ·MSE, few-shot teacher)",
    "control": "SFT + zero-shot teacher logit KD (CE + λ·MSE, zero-shot teacher)",
}


def language_label(lang: str) -> str:
    """Upper-case display label of a language id (``"en"`` → ``"EN"``)."""
    return lang.upper()


def condition_label(condition: str) -> str:
    """Display label of a condition id; unknown (user-defined) conditions show their id."""
    return CONDITION_LABELS.get(condition, condition)


#: Columns of a training run's per-step log (``train_log.csv``; ``results/tables/training.csv``
#: adds model, model_id, scope and condition in front).
TRAIN_LOG_COLUMNS: tuple[str, ...] = (
    "step",
    "task",
    "ce",
    "kd",
    "lambda",
    "lambda_eff",
    "loss",
    "lr",
    "grad_norm",
    "tokens",
    "tokens_per_s",
    "cos",
    "meta_grad",
)


#: The leading columns of every ``cells.csv`` (the report reads these; more may follow).
CELL_COLUMNS: tuple[str, ...] = ("model", "task", "condition", "language", "metric", "value", "n")
