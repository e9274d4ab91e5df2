"""Inference stage: one job per (model, task, condition), every language, model loaded once."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from .data import read_jsonl, write_jsonl
from .prompts import PromptSet
from .tasks import get_task

log = logging.getLogger(__name__)


def make_backend(model_path: str | Path, settings: dict[str, Any], adapter: str | Path | None = None) -> Any:
    """The configured backend (``settings['backend']``) for ``model_path``."""
    name = settings.get("backend", "hf")
    if name == "hf":
        from .backends.hf import HFBackend

        return HFBackend(
            model_path,
            dtype=settings.get("dtype", "auto"),
            batch_size=settings.get("batch_size", 16),
            reuse_prefix=settings.get("reuse_prefix", True),
            trust_remote_code=settings.get("trust_remote_code", False),
            adapter=adapter,
        )
    raise ValueError(f"generation.backend: unknown backend {name!r}")


def predict_cell(
    backend: Any, task_id: str, prompts: PromptSet, rows: list[dict], settings: dict[str, Any]
) -> list[dict]:
    """Prediction rows ``{"id", "output"}`` (plus ``"scores"`` under loglik scoring)."""
    task = get_task(task_id)
    if [r["id"] for r in rows] != prompts.ids:
        raise ValueError(f"{task_id}: prompt ids do not match the evaluation data")
    if settings.get("scoring", "generate") == "loglik":
        choices = list(task.choices())
        scores = backend.loglik(prompts, choices)
        return [
            {"id": i, "output": choices[max(range(len(choices)), key=s.__getitem__)], "scores": s}
            for i, s in zip(prompts.ids, scores, strict=True)
        ]
    budgets = [task.generation_budget(r, settings.get("max_new_tokens")) for r in rows]
    outputs = backend.generate(prompts, budgets)
    return [{"id": i, "output": o} for i, o in zip(prompts.ids, outputs, strict=True)]


def run_inference(
    model_path: str | Path,
    task_id: str,
    prompt_files: list[str],
    data_files: list[str],
    out_files: list[str],
    settings: dict[str, Any],
    adapter: str | Path | None = None,
) -> None:
    """Predict every language of one (model, task, condition); files are aligned by position."""
    if adapter is not None and not (Path(adapter) / "adapter_config.json").exists():
        model_path, adapter = adapter, None  # a full fine-tune is a model folder of its own
    backend = make_backend(model_path, settings, adapter)
    for prompt_file, data_file, out_file in zip(prompt_files, data_files, out_files, strict=True):
        prompts = PromptSet.from_json(json.loads(Path(prompt_file).read_text(encoding="utf-8")))
        rows = read_jsonl(data_file)
        start = time.perf_counter()
        predictions = predict_cell(backend, task_id, prompts, rows, settings)
        seconds = time.perf_counter() - start
        log.info("%s: %d examples in %.1f s (%.2f ex/s)", out_file, len(rows), seconds, len(rows) / max(seconds, 1e-9))
        write_jsonl(out_file, predictions)
