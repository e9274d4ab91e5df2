"""Inference stage: one job per (split, model, task, condition), every language, model loaded once."""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from .backends.base import choice_text
from .data import read_jsonl, write_jsonl
from .prompts import PLAIN_STOP, PromptSet, encode_prompts
from .tasks import get_task

log = logging.getLogger(__name__)


def make_backend(
    model_path: str | Path, settings: dict[str, Any], adapter: str | Path | None = None, purpose: str = "infer"
) -> Any:
    """The configured backend (``settings['backend']``, ``hf`` or ``vllm``) for ``model_path``.

    ``purpose`` is ``infer`` (generation, label log-likelihoods) or ``teacher`` (top-K logits).
    """
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
    if name == "vllm":
        try:
            from .backends.vllm import VLLMBackend
        except ImportError as err:
            raise ImportError(
                f"generation.backend is 'vllm' but vLLM cannot be imported ({err}); install it with "
                "pip install -e '.[vllm]' (CUDA) or bash scripts/install-vllm.sh (CPU), or use envs/vllm.yaml"
            ) from err
        teacher = purpose == "teacher"
        return VLLMBackend(
            model_path,
            dtype=settings.get("dtype", "auto"),
            trust_remote_code=settings.get("trust_remote_code", False),
            adapter=adapter,
            options=settings.get("vllm") or {},
            logprobs_mode="raw_logits" if teacher else "raw_logprobs",
            max_logprobs=settings.get("top_k", 20) if teacher else 20,
            merge_adapter=settings.get("scoring") == "loglik",
        )
    raise ValueError(f"generation.backend: unknown backend {name!r} (expected hf or vllm)")


def close_backend(backend: Any) -> None:
    """Stop a backend's engine processes (vLLM) before the interpreter shuts down."""
    close = getattr(backend, "close", None)
    if close is not None:
        close()


#: label scorings: ``loglik`` sums the log-probabilities of a label's tokens; ``loglik_norm``
#: divides that sum by the label's length in characters (as it follows the prompt, leading
#: space included), as lm-evaluation-harness's ``acc_norm`` does, so that longer label words
#: are not penalised for their extra tokens
LOGLIK_SCORINGS = ("loglik", "loglik_norm")


def checked_scores(task_id: str, prompts: PromptSet, scores: list[list[float]]) -> list[list[float]]:
    """``scores`` unchanged, or an error naming the example when one is not finite (a NaN score
    would otherwise pick the first label silently)."""
    for example_id, row in zip(prompts.ids, scores, strict=True):
        if not all(math.isfinite(v) for v in row):
            raise ValueError(f"{task_id} example {example_id}: label log-likelihoods are not finite ({row})")
    return scores


def _check_ids(task_id: str, prompts: PromptSet, rows: list[dict]) -> None:
    if [r["id"] for r in rows] != prompts.ids:
        raise ValueError(f"{task_id}: prompt ids do not match the evaluation data")


def predict_cells(
    backend: Any, task_id: str, cells: list[tuple[PromptSet, list[dict]]], settings: dict[str, Any]
) -> list[list[dict]]:
    """Prediction rows ``{"id", "output"}`` (plus ``"scores"`` under loglik scoring) for each
    ``(prompts, rows)`` cell. Generation goes to the backend in one call over all cells when
    it offers ``generate_many`` (vLLM schedules them together)."""
    task = get_task(task_id)
    for prompts, rows in cells:
        _check_ids(task_id, prompts, rows)
    scoring = settings.get("scoring", "generate")
    if scoring in LOGLIK_SCORINGS:
        choices = list(task.choices())
        result = []
        for prompts, _ in cells:
            scores = checked_scores(task_id, prompts, backend.loglik(prompts, choices))
            if scoring == "loglik_norm":
                lengths = [len(choice_text(c, prompts.chat_template)) for c in choices]
                scores = [[v / n for v, n in zip(row, lengths, strict=True)] for row in scores]
            result.append(
                [
                    {"id": i, "output": choices[max(range(len(choices)), key=s.__getitem__)], "scores": s}
                    for i, s in zip(prompts.ids, scores, strict=True)
                ]
            )
        return result
    requests = [
        (prompts, [task.generation_budget(r, settings.get("max_new_tokens")) for r in rows]) for prompts, rows in cells
    ]
    stop = settings.get("stop") or None
    if any(not prompts.chat_template for prompts, _ in cells):
        # plain-text prompts separate demonstrations by a blank line: an answer ends there
        stop = list(stop or []) + [s for s in PLAIN_STOP if s not in (stop or [])]
    settled = [[functools.partial(task.settled, row=r) for r in rows] for _, rows in cells]
    if hasattr(backend, "generate_many"):
        outputs = backend.generate_many(requests, stop)
    else:
        outputs = [
            backend.generate(prompts, budgets, stop, done)
            for (prompts, budgets), done in zip(requests, settled, strict=True)
        ]
    # every output cut to the prefix that decides its parse: identical whether or not the
    # backend stopped the row there (HF does, vLLM runs to the budget)
    return [
        [{"id": i, "output": d(o) or o} for i, o, d in zip(prompts.ids, texts, done, strict=True)]
        for (prompts, _), texts, done in zip(cells, outputs, settled, strict=True)
    ]


def predict_cell(
    backend: Any, task_id: str, prompts: PromptSet, rows: list[dict], settings: dict[str, Any]
) -> list[dict]:
    """Prediction rows of one cell (see :func:`predict_cells`)."""
    return predict_cells(backend, task_id, [(prompts, rows)], settings)[0]


def infer(
    model_path: str | Path,
    task_id: str,
    prompt_files: list[str],
    data_files: list[str],
    out_files: list[str],
    settings: dict[str, Any],
    adapter: str | Path | None = None,
    stats_file: str | Path | None = None,
) -> None:
    """Predict every language of one (model, task, condition); files are aligned by position.
    ``stats_file`` receives the job's figures for the Compute section (tokens, seconds)."""
    if adapter is not None and not (Path(adapter) / "adapter_config.json").exists():
        model_path, adapter = adapter, None  # a full fine-tune is a model folder of its own
    cells = [
        (PromptSet.from_json(json.loads(Path(p).read_text(encoding="utf-8"))), read_jsonl(d))
        for p, d in zip(prompt_files, data_files, strict=True)
    ]
    began = time.perf_counter()
    backend = make_backend(model_path, settings, adapter)
    start = time.perf_counter()
    try:
        predictions = predict_cells(backend, task_id, cells, settings)
        stats = job_tokens(backend, cells, predictions) if stats_file is not None else {}
    finally:
        close_backend(backend)
    seconds = time.perf_counter() - start
    n = sum(len(rows) for _, rows in cells)
    log.info("%d cells, %d examples in %.1f s (%.2f ex/s)", len(cells), n, seconds, n / max(seconds, 1e-9))
    for out_file, (prompts, _), rows in zip(out_files, cells, predictions, strict=True):
        # an example cut to fit the context keeps the count of cut characters with its output
        marked = [r | {"cut_chars": c} if c else r for r, c in zip(rows, prompts.cut or [0] * len(rows), strict=True)]
        write_jsonl(out_file, marked)
    if stats_file is not None:
        stats |= {"examples": n, "load_seconds": round(start - began, 2), "seconds": round(seconds, 2)}
        Path(stats_file).write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")


def job_tokens(backend: Any, cells: list[tuple[PromptSet, list[dict]]], predictions: list[list[dict]]) -> dict:
    """Tokens an inference job processed: each cell's shared prefix once and every suffix (what
    the model reads with prefix reuse), and the outputs as the tokenizer reads them."""
    tokenizer = getattr(backend, "tokenizer", None)
    if tokenizer is None:
        return {}
    prompt = 0
    for prompts, _ in cells:
        prefix, suffixes = encode_prompts(tokenizer, prompts)
        prompt += len(prefix) + sum(map(len, suffixes))
    texts = [r["output"] for rows in predictions for r in rows]
    output = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False).input_ids) if texts else 0
    return {"prompt_tokens": prompt, "output_tokens": output}
