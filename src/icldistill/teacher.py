"""The teacher job: the teacher-logit cache computed once per (model, task, teacher shots), read
by every KD run (its file format: :mod:`icldistill.train.teacher_cache`).

For each training example the frozen base model reads the teacher prompt (k demonstrations,
or none for Control) followed by the gold answer, once; the cache keeps the top-K logits of
every answer token and their ids (layout and checks: :mod:`icldistill.train.teacher_cache`).
The job's tokens and timings go to a JSON file beside the cache, which stays byte-reproducible.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from .train.examples import TrainExample
from .train.teacher_cache import FORMAT_VERSION, TeacherCacheError, save_teacher_cache

log = logging.getLogger(__name__)
VALUE_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def compute_teacher_cache(
    backend: Any, prefix: list[int], examples: list[TrainExample], top_k: int, value_dtype: str = "bfloat16"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Top-K teacher logits (and the full-vocabulary entropy, where the backend has it) at
    every answer token of ``examples`` (teacher prompts + answers; every prompt starts with
    ``prefix``).

    ``backend`` is an HF or vLLM backend (``answer_topk``): the HF backend encodes the shared
    prefix (system message and demonstrations) once and reuses its KV cache; vLLM returns
    the raw logits of the prompt positions (``logprobs_mode="raw_logits"``).
    """
    for e in examples:
        if e.prompt_ids[: len(prefix)] != prefix:
            raise ValueError(f"teacher sequence {e.id} does not start with the shared prefix")
    seqs = [e.input_ids[len(prefix) :] for e in examples]
    n_last = [len(e.answer_ids) for e in examples]
    per_example: list[tuple | None] = [None] * len(examples)
    for i, values, ids, entropy in backend.answer_topk(prefix, seqs, n_last, top_k):
        if not torch.isfinite(values).all():
            raise TeacherCacheError(f"teacher logits of example {examples[i].id} are not finite")
        per_example[i] = (values.to(VALUE_DTYPES[value_dtype]).cpu(), ids.to(torch.int32).cpu(), entropy)
    lengths = torch.tensor([0] + n_last, dtype=torch.int64)
    tensors = {
        "values": torch.cat([p[0] for p in per_example]).contiguous(),
        "ids": torch.cat([p[1] for p in per_example]).contiguous(),
        "offsets": lengths.cumsum(0),
        "answer_ids": torch.tensor([t for e in examples for t in e.answer_ids], dtype=torch.int32),
    }
    if all(p[2] is not None for p in per_example):
        tensors["entropy"] = torch.cat([p[2].float().cpu() for p in per_example]).contiguous()
    header = {
        "format_version": FORMAT_VERSION,
        "top_k": int(tensors["ids"].shape[1]),
        "value_dtype": value_dtype,
        "quantity": "logits",
        "entropy": "entropy" in tensors,
    }
    return tensors, header


def build_teacher_cache(
    model_path: str,
    task_id: str,
    rows_file: str,
    demos_file: str | None,
    out_file: str,
    top_k: int,
    settings: dict[str, Any],
    model_name: str,
    template_kwargs: dict[str, Any] | None = None,
    stats_file: str | None = None,
) -> dict[str, Any]:
    """The teacher rule: build the teacher sequences of the training rows (``rows_file``) —
    each row's prompt with the demonstrations of ``demos_file`` (the Few-Shot prompt; none for
    Control's zero-shot teacher) followed by its answer — run the frozen base model once over
    them and write the cache."""
    from .data import read_jsonl
    from .demos import read_demonstrations
    from .inference import close_backend, make_backend
    from .train.examples import build_sequences, sequences_hash, tokenizer_hash

    began = time.perf_counter()
    backend = make_backend(model_path, settings | {"top_k": top_k}, purpose="teacher")
    loaded = time.perf_counter()
    rows = read_jsonl(rows_file)
    demos = read_demonstrations(demos_file) if demos_file else None
    prefix, examples = build_sequences(backend.tokenizer, task_id, rows, demos, template_kwargs)
    start = time.perf_counter()
    try:
        tensors, header = compute_teacher_cache(
            backend, prefix, examples, top_k, settings.get("value_dtype", "bfloat16")
        )
    finally:
        close_backend(backend)
    seconds = time.perf_counter() - start
    header |= {
        "model": model_name,
        "task": task_id,
        "shots": demos.shots if demos else 0,
        "tokenizer_hash": tokenizer_hash(backend.tokenizer),
        "backend": settings.get("backend", "hf"),
        "example_ids": [e.id for e in examples],
        "prefix_tokens": len(prefix),
        "sequences_hash": sequences_hash(examples),
    }
    save_teacher_cache(out_file, tensors, header)
    if stats_file:
        # for the Compute section: the tokens the model read (the prefix once) and the time. Not
        # in the cache's header: a rebuilt cache is byte-identical, timings are not
        tokens = len(prefix) + sum(len(e.input_ids) for e in examples)
        from .data import write_json

        write_json(
            stats_file, {"tokens": tokens, "seconds": round(seconds, 2), "load_seconds": round(loaded - began, 2)}
        )
    n_tokens = tensors["values"].shape[0]
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    stats = {
        "examples": len(examples),
        "answer_tokens": n_tokens,
        "bytes": size,
        "bytes_per_answer_token": size / n_tokens,
        "seconds": seconds,
    }
    log.info("teacher cache %s: %s", out_file, stats)
    return stats
