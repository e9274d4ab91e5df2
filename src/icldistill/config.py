"""Semantic checks of the workflow config and the grid it describes.

The JSON schema (``config/schema/config.schema.yaml``) checks types and shapes; this module
checks what a schema cannot (ids that must exist, values that depend on each other) and
expands the grid. It imports nothing heavy, so a bad config fails in well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .tasks import TASKS, get_task
from .vocab import LANGUAGES

CONDITION_KINDS = ("infer",)
#: path segments the workflow uses itself; a model id may not shadow them
RESERVED_MODEL_IDS = ("data", "models", "tables", "figures", "logs", "benchmarks")


class ConfigError(ValueError):
    """An invalid config value; the message starts with the offending key."""


@dataclass(frozen=True)
class Cell:
    model: str
    task: str
    condition: str
    language: str


def _fail(key: str, message: str) -> None:
    raise ConfigError(f"config key '{key}': {message}")


def check_config(config: dict[str, Any], root: str | Path = ".") -> None:
    """Raise :class:`ConfigError` naming the first invalid key of ``config``."""
    models = config.get("models") or {}
    if not models:
        _fail("models", "at least one model is required")
    for mid, spec in models.items():
        if mid in RESERVED_MODEL_IDS:
            _fail(f"models.{mid}", f"model id may not be one of {', '.join(RESERVED_MODEL_IDS)}")
        if not isinstance(spec, dict) or ("path" in spec) == ("gguf" in spec):
            _fail(f"models.{mid}", "give exactly one of 'path' (Hugging Face id or folder) or 'gguf'")
    for i, task in enumerate(config.get("tasks") or []):
        if task not in TASKS:
            _fail(f"tasks[{i}]", f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if not config.get("tasks"):
        _fail("tasks", "at least one task is required")
    for i, lang in enumerate(config.get("languages") or []):
        if lang not in LANGUAGES:
            _fail(f"languages[{i}]", f"unknown language {lang!r}; known: {', '.join(LANGUAGES)}")
    if not config.get("languages"):
        _fail("languages", "at least one language is required")
    conditions = config.get("conditions") or {}
    if not conditions:
        _fail("conditions", "at least one condition is required")
    for name, cond in conditions.items():
        kind = (cond or {}).get("kind")
        if kind not in CONDITION_KINDS:
            _fail(f"conditions.{name}.kind", f"unknown condition kind {kind!r}; known: {', '.join(CONDITION_KINDS)}")
    few_shot = config.get("few_shot", {})
    if few_shot.get("k", 0) < 0:
        _fail("few_shot.k", f"must be >= 0, got {few_shot['k']}")
    for task, k in (few_shot.get("k_per_task") or {}).items():
        if task not in TASKS:
            _fail(f"few_shot.k_per_task.{task}", f"unknown task {task!r}")
        if k < 0:
            _fail(f"few_shot.k_per_task.{task}", f"must be >= 0, got {k}")
    for task in config.get("scoring") or {}:
        if task not in TASKS:
            _fail(f"scoring.{task}", f"unknown task {task!r}")
        if config["scoring"][task] == "loglik" and not get_task(task).supports_loglik:
            _fail(f"scoring.{task}", "loglik scoring needs a label task (nli, pa)")
    for task in config.get("generation", {}).get("max_new_tokens") or {}:
        if task not in TASKS:
            _fail(f"generation.max_new_tokens.{task}", f"unknown task {task!r}")
    data = config.get("data", {})
    if data.get("source") == "local":
        path = Path(root) / data.get("path", "")
        if not path.is_dir():
            _fail("data.path", f"{path} is not a folder")
    report = config.get("report") or {}
    if report.get("focus_model") and report["focus_model"] not in models:
        _fail("report.focus_model", f"{report['focus_model']!r} is not a model of 'models'")
    if report.get("heatmap_condition") and report["heatmap_condition"] not in conditions:
        _fail("report.heatmap_condition", f"{report['heatmap_condition']!r} is not a condition of 'conditions'")


def shots(config: dict[str, Any], condition: str, task: str) -> int:
    """Number of demonstrations in the prompts of ``condition`` for ``task``."""
    if not config["conditions"][condition].get("few_shot", False):
        return 0
    few_shot = config.get("few_shot", {})
    return int((few_shot.get("k_per_task") or {}).get(task, few_shot.get("k", 5)))


def cells(config: dict[str, Any]) -> list[Cell]:
    """Every valid cell of the grid, in report order; invalid (task, language) pairs are skipped."""
    return [
        Cell(model, task, condition, lang)
        for model in config["models"]
        for task in config["tasks"]
        for condition in config["conditions"]
        for lang in config["languages"]
        if lang in get_task(task).languages
    ]


def task_languages(config: dict[str, Any], task: str) -> list[str]:
    """Configured languages that exist for ``task``."""
    return [lang for lang in config["languages"] if lang in get_task(task).languages]


def display_name(config: dict[str, Any], model: str) -> str:
    return config["models"][model].get("display_name", model)
