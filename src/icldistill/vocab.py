"""Canonical identifiers, display order and display labels of the grid's axes.

Everything that names a task, language or condition in files (``cells.csv``, paths) uses
the ids below; everything a person reads uses the labels.
"""

from __future__ import annotations

#: Language ids in report order.
LANGUAGES: tuple[str, ...] = ("en", "hi", "es", "de", "fr", "zh")

#: Task ids in report order.
TASKS: tuple[str, ...] = ("nli", "pa", "qa", "ner", "pos")

#: Report title of each task's primary-metric tables.
TASK_TITLES: dict[str, str] = {
    "nli": "NLI (Acc %)",
    "pa": "PA (Acc %)",
    "qa": "QA (F1 %)",
    "ner": "NER (F1 %)",
    "pos": "POS (Acc %)",
}

#: Dataset name shown in report headers.
TASK_DATASETS: dict[str, str] = {
    "nli": "XNLI",
    "pa": "PAWS-X",
    "qa": "MLQA",
    "ner": "WikiANN/PAN-X",
    "pos": "UDPOS",
}

#: Primary metric per task: the value averaged in summaries and shown in the main tables.
PRIMARY_METRIC: dict[str, str] = {
    "nli": "accuracy",
    "pa": "accuracy",
    "qa": "f1",
    "ner": "f1",
    "pos": "accuracy",
}

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
