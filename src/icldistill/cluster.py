"""Cluster resources per (model, stage): what each SLURM job asks for, scaled on retries.

The GPU stages (``infer``, ``teacher``, ``train``) take their requests from ``cluster.stages``
overridden per model by ``models.<name>.cluster``, so a 8B model and a 135M model do not ask for
the same thing. Memory and runtime grow with Snakemake's ``attempt`` (``cluster.retry_scale``),
so a job killed for memory or time is resubmitted with more. Local runs ignore all of this.
"""

from __future__ import annotations

import math
from typing import Any

GPU_STAGES = ("infer", "teacher", "train")
STAGES = (*GPU_STAGES, "model")

#: requests of a 1–2B model on one GPU; ``runtime`` in minutes, ``mem_mb`` host memory
DEFAULT_STAGES: dict[str, dict[str, Any]] = {
    "infer": {"gpu": 1, "cpus_per_task": 4, "mem_mb": 16000, "runtime": 60},
    "teacher": {"gpu": 1, "cpus_per_task": 4, "mem_mb": 16000, "runtime": 60},
    "train": {"gpu": 1, "cpus_per_task": 4, "mem_mb": 32000, "runtime": 240},
    "model": {"gpu": 0, "cpus_per_task": 2, "mem_mb": 8000, "runtime": 30},
}
SCALED = ("mem_mb", "runtime")


def vllm_gpus(config: dict[str, Any], model: str, stage: str) -> int | None:
    """The GPUs a vLLM engine of ``stage`` spans for ``model``: its ``tensor_parallel_size``
    (``models.<model>.vllm`` over ``generation.vllm``), or None when the stage does not run
    vLLM (training never does; teacher jobs use ``teacher.backend``, else the generation one)."""
    generation = config.get("generation") or {}
    backends = {"infer": generation.get("backend"), "teacher": (config.get("teacher") or {}).get("backend")}
    backend = backends.get(stage) or (generation.get("backend") if stage == "teacher" else None)
    if backend != "vllm":
        return None
    options = (generation.get("vllm") or {}) | ((config["models"][model].get("vllm") or {}) if model else {})
    return options.get("tensor_parallel_size")


def stage_request(config: dict[str, Any], model: str, stage: str) -> dict[str, Any]:
    """The first-attempt request of ``stage`` for ``model`` (defaults < cluster.stages < model).

    A vLLM job asks for as many GPUs as its engine spans (:func:`vllm_gpus`) unless ``gpu`` is
    set; a ``gpu`` set below it is an error (the engine would not start)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    cluster = config.get("cluster") or {}
    model_cluster = (config["models"][model].get("cluster") or {}) if model else {}
    request = dict(DEFAULT_STAGES[stage])
    set_here = [(cluster.get("stages") or {}).get(stage) or {}, model_cluster.get(stage) or {}]
    for level in set_here:
        request |= level
    if stage in GPU_STAGES and model_cluster.get("gpu_model"):
        request.setdefault("gpu_model", model_cluster["gpu_model"])
    tensor_parallel = vllm_gpus(config, model, stage)
    if tensor_parallel:
        if not any("gpu" in level for level in set_here):
            request["gpu"] = tensor_parallel
        elif request["gpu"] < tensor_parallel:
            raise ValueError(
                f"models.{model}: the {stage} jobs ask for gpu={request['gpu']} (cluster) but vLLM's "
                f"tensor_parallel_size is {tensor_parallel}; ask for at least {tensor_parallel} GPUs"
            )
    return request


def job_resource(config: dict[str, Any], model: str, stage: str, key: str, attempt: int = 1) -> Any:
    """One resource of a job at ``attempt`` (1-based): memory and runtime multiplied by
    ``retry_scale ** (attempt - 1)`` (default 2), everything else as requested."""
    value = stage_request(config, model, stage).get(key, _slurm_default(config, stage, key))
    if key in SCALED and value:
        scale = float((config.get("cluster") or {}).get("retry_scale", 2.0))
        value = int(math.ceil(value * scale ** (max(1, attempt) - 1)))
    return value


def _slurm_default(config: dict[str, Any], stage: str, key: str) -> Any:
    cluster = config.get("cluster") or {}
    gpu = stage in GPU_STAGES
    if key == "slurm_partition":
        return (cluster.get("gpu_partition") if gpu else None) or cluster.get("partition") or ""
    if key == "slurm_account":
        return cluster.get("account") or ""
    if key == "slurm_extra":
        return cluster.get("gpu_extra" if gpu else "extra") or cluster.get("extra") or ""
    return 0 if key == "gpu" else ""


def declared_keys(config: dict[str, Any], stage: str) -> list[str]:
    """The resource keys a rule of ``stage`` declares. SLURM account, partition and extra
    arguments only where the config sets them, so a profile's ``default-resources`` still apply
    otherwise; ``gpu_model`` only where some model names one."""
    cluster = config.get("cluster") or {}
    keys = ["mem_mb", "runtime", "cpus_per_task"]
    if stage in GPU_STAGES:
        keys.append("gpu")
        if any(
            (spec.get("cluster") or {}).get("gpu_model")
            or ((spec.get("cluster") or {}).get(stage) or {}).get("gpu_model")
            or ((cluster.get("stages") or {}).get(stage) or {}).get("gpu_model")
            for spec in config["models"].values()
        ):
            keys.append("gpu_model")
    if cluster.get("account"):
        keys.append("slurm_account")
    if cluster.get("partition") or (stage in GPU_STAGES and cluster.get("gpu_partition")):
        keys.append("slurm_partition")
    if cluster.get("extra") or (stage in GPU_STAGES and cluster.get("gpu_extra")):
        keys.append("slurm_extra")
    return keys
