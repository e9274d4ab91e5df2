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

CONDITION_KINDS = ("infer", "train")
LOSSES = ("ce", "kd")
KD_LOSSES = ("mse", "kl")
#: path segments the workflow uses itself; a model id may not shadow them
RESERVED_MODEL_IDS = ("data", "models", "tables", "figures", "logs", "benchmarks")
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


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
        if kind == "train":
            _check_train_condition(name, cond)
    training = config.get("training") or {}
    if training.get("mode", "per_task") not in ("per_task", "multitask"):
        _fail("training.mode", f"unknown mode {training['mode']!r}; expected per_task or multitask")
    if training.get("method", "lora") not in ("lora", "full"):
        _fail("training.method", f"unknown method {training['method']!r}; expected lora or full")
    for key in ("max_steps", "batch_size", "grad_accum"):
        if training.get(key) is not None and training[key] < 1:
            _fail(f"training.{key}", f"must be >= 1, got {training[key]}")
    if any(c.get("kind") == "train" for c in conditions.values()) and not (
        training.get("max_steps") or training.get("epochs")
    ):
        _fail("training.max_steps", "give max_steps or epochs for the training conditions")
    if (config.get("teacher") or {}).get("top_k", 1) < 1:
        _fail("teacher.top_k", f"must be >= 1, got {config['teacher']['top_k']}")
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
    for key in ("max_new_tokens", "stop"):
        for task in config.get("generation", {}).get(key) or {}:
            if task not in TASKS:
                _fail(f"generation.{key}.{task}", f"unknown task {task!r}")
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


def _check_train_condition(name: str, cond: dict[str, Any]) -> None:
    loss = cond.get("loss", "ce")
    if loss not in LOSSES:
        _fail(f"conditions.{name}.loss", f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    if cond.get("few_shot"):
        _fail(f"conditions.{name}.few_shot", "trained conditions are evaluated zero-shot")
    if loss == "kd":
        lam = cond.get("lambda", 0.5)
        if not isinstance(lam, (int, float)) or lam < 0:
            _fail(f"conditions.{name}.lambda", f"must be a number >= 0, got {lam!r}")
        if cond.get("kd_loss", "mse") not in KD_LOSSES:
            _fail(f"conditions.{name}.kd_loss", f"unknown KD loss {cond['kd_loss']!r}; expected mse or kl")
        if cond.get("temperature", 1.0) <= 0:
            _fail(f"conditions.{name}.temperature", "must be > 0")


def is_trained(config: dict[str, Any], condition: str) -> bool:
    return config["conditions"][condition].get("kind") == "train"


def uses_teacher(config: dict[str, Any], condition: str) -> bool:
    return is_trained(config, condition) and config["conditions"][condition].get("loss", "ce") == "kd"


def teacher_shots(config: dict[str, Any], condition: str, task: str) -> int:
    """Demonstrations in the teacher prompts of a KD condition (few-shot k, or 0 for a
    zero-shot teacher)."""
    if not config["conditions"][condition].get("teacher_few_shot", True):
        return 0
    return few_shot_k(config, task)


def few_shot_k(config: dict[str, Any], task: str) -> int:
    few_shot = config.get("few_shot", {})
    return int((few_shot.get("k_per_task") or {}).get(task, few_shot.get("k", 5)))


def train_settings(config: dict[str, Any], condition: str) -> dict[str, Any]:
    """The trainer's settings for ``condition`` (``TrainSettings`` fields): exactly what its
    training run depends on, so that a change reruns only this condition."""
    training = config.get("training") or {}
    lora = training.get("lora") or {}
    cond = config["conditions"][condition]
    settings = {
        "method": training.get("method", "lora"),
        "lora_r": lora.get("r", 8),
        "lora_alpha": lora.get("alpha", 16),
        "lora_dropout": lora.get("dropout", 0.05),
        "target_modules": list(lora.get("target_modules", DEFAULT_TARGETS)),
        "max_steps": training.get("max_steps"),
        "epochs": training.get("epochs"),
        "batch_size": training.get("batch_size", 8),
        "grad_accum": training.get("grad_accum", 1),
        "lr": training.get("lr", 2e-4),
        "weight_decay": training.get("weight_decay", 0.0),
        "warmup_steps": training.get("warmup_steps", 0),
        "max_grad_norm": training.get("max_grad_norm", 1.0),
        "bf16": training.get("bf16", True),
        "seed": training.get("seed", 0),
        "checkpoint_every": training.get("checkpoint_every", 0),
        "loss": cond.get("loss", "ce"),
    }
    if settings["loss"] == "kd":
        settings |= {
            "lam": cond.get("lambda", 0.5),
            "kd_loss": cond.get("kd_loss", training.get("kd_loss", "mse")),
            "temperature": cond.get("temperature", training.get("temperature", 1.0)),
        }
    return settings


def train_data_settings(config: dict[str, Any], task: str) -> dict[str, Any]:
    """Which English rows are trained on: the train split minus the task's demonstrations."""
    return {
        "demo_shots": few_shot_k(config, task),
        "seed": config.get("few_shot", {}).get("seed", 1234),
        "max_examples": (config.get("training") or {}).get("max_examples"),
    }


def shots(config: dict[str, Any], condition: str, task: str) -> int:
    """Number of demonstrations in the prompts of ``condition`` for ``task``."""
    if not config["conditions"][condition].get("few_shot", False):
        return 0
    return few_shot_k(config, task)


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
