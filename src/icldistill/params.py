"""What the inference and teacher jobs' ``params`` carry, built from the validated config.

Each function returns exactly the settings a job's outputs depend on, so that a changed value
reruns only the jobs it affects (Snakemake compares ``params``); the rules call them with their
wildcards. Torch-free: the workflow builds every job's params while planning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def backend_settings(config: Mapping[str, Any], model: str, backend: str) -> dict[str, Any]:
    """Settings of ``backend`` for ``model``: the HF prefix reuse, or the vLLM engine options
    (``generation.vllm`` overridden per model by ``models.<model>.vllm``)."""
    generation = config["generation"]
    spec = config["models"][model]
    common = {"backend": backend, "dtype": spec["dtype"], "trust_remote_code": spec["trust_remote_code"]}
    if backend == "vllm":
        return common | {"vllm": (generation.get("vllm") or {}) | (spec.get("vllm") or {})}
    return common | {"reuse_prefix": generation["reuse_prefix"]}


def inference_settings(config: Mapping[str, Any], model: str, task: str) -> dict[str, Any]:
    """What the predictions of ``model`` on ``task`` depend on besides prompts, data and adapter."""
    generation = config["generation"]
    settings = backend_settings(config, model, generation["backend"])
    if settings["backend"] == "hf":
        settings["batch_size"] = generation["batch_size"]
    return settings | {
        # None: the task's own answer budget
        "max_new_tokens": generation["max_new_tokens"].get(task),
        "stop": generation["stop"].get(task, []),
        "scoring": config["scoring"].get(task, "generate"),
    }


def teacher_backend(config: Mapping[str, Any]) -> str:
    """The teacher caches' backend: ``teacher.backend``, else ``generation.backend``."""
    return config["teacher"]["backend"] or config["generation"]["backend"]


def teacher_settings(config: Mapping[str, Any], model: str) -> dict[str, Any]:
    """What a teacher cache of ``model`` depends on besides its prompts and data."""
    teacher = config["teacher"]
    settings = backend_settings(config, model, teacher_backend(config))
    if settings["backend"] == "hf":
        settings["batch_size"] = teacher["batch_size"]
    return settings | {"top_k": teacher["top_k"], "value_dtype": teacher["value_dtype"]}
