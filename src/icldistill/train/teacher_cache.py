"""The teacher-logit cache's file format: written by the teacher job (:mod:`icldistill.teacher`),
read and checked by every KD run (:mod:`icldistill.train.run`). Neither imports the other.

For each training example the frozen base model reads the teacher prompt (k demonstrations,
or none for Control) followed by the gold answer; for every answer token the cache keeps the
top-K logits and their token ids. Layout (safetensors, no pickle):

- ``values`` [N, K] bf16/fp16 — top-K logits, N = answer tokens over all examples
- ``ids`` [N, K] int32 — their token ids
- ``offsets`` [E + 1] int64 — example e owns rows ``offsets[e]:offsets[e + 1]``
- ``answer_ids`` [N] int32 — the answer tokens themselves (checked against the training data)
- ``entropy`` [N] float32 — the entropy (nats) of the teacher's full-vocabulary distribution at
  each answer token (the entropy-λ strategy's H; absent when the backend cannot see the full
  logits, i.e. vLLM)

and a JSON header in the safetensors metadata (model, task, shots, K, tokenizer hash,
example ids, a hash of the teacher's sequences). Bytes per answer token: K·(2 + 4) + 4 + 4
(1544 for K = 256).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .examples import TrainExample

FORMAT_VERSION = 2


class TeacherCacheError(ValueError):
    """A cache that does not belong to the training data or tokenizer, or is damaged."""


@dataclass
class TeacherCache:
    values: torch.Tensor
    ids: torch.Tensor
    offsets: torch.Tensor
    answer_ids: torch.Tensor
    header: dict[str, Any]
    #: full-vocabulary entropy per answer token [N] (None when the cache has none)
    entropy: torch.Tensor | None = None

    def example(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-K values and ids [answer tokens, K] of the ``index``-th example."""
        a, b = int(self.offsets[index]), int(self.offsets[index + 1])
        return self.values[a:b], self.ids[a:b]

    def example_entropy(self, index: int) -> torch.Tensor | None:
        """Full-vocabulary teacher entropy [answer tokens] of the ``index``-th example."""
        if self.entropy is None:
            return None
        return self.entropy[int(self.offsets[index]) : int(self.offsets[index + 1])]

    def bytes_per_answer_token(self) -> float:
        tensors = [self.values, self.ids, self.answer_ids] + ([self.entropy] if self.entropy is not None else [])
        total = sum(t.numel() * t.element_size() for t in tensors)
        return total / max(1, self.values.shape[0])


def save_teacher_cache(path: str | Path, tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> None:
    """Write the cache atomically (a partly written file never carries the final name)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        save_file(tensors, str(tmp), metadata={"header": json.dumps(header, ensure_ascii=False)})
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def load_teacher_cache(path: str | Path, examples: list[TrainExample], tokenizer_hash: str) -> TeacherCache:
    """Load a cache and check it belongs to ``examples`` and the tokenizer; clear errors otherwise."""
    from safetensors import safe_open

    path = Path(path)
    # a file cut short, overwritten or not safetensors at all: whatever the reader raises
    try:
        with safe_open(str(path), framework="pt") as f:
            header = json.loads((f.metadata() or {})["header"])
            tensors = {name: f.get_tensor(name) for name in ("values", "ids", "offsets", "answer_ids")}
            if "entropy" in f.keys():  # noqa: SIM118 (safe_open has no __contains__)
                tensors["entropy"] = f.get_tensor("entropy")
    except Exception as err:
        raise TeacherCacheError(f"{path}: not a readable teacher cache ({type(err).__name__}: {err})") from None
    if not isinstance(header, dict):
        raise TeacherCacheError(f"{path}: not a readable teacher cache (its header is not a JSON object)")
    cache = TeacherCache(header=header, **tensors)
    if header.get("format_version") != FORMAT_VERSION:
        raise TeacherCacheError(
            f"{path}: format version {header.get('format_version')}, this version reads {FORMAT_VERSION} (rebuild the cache)"
        )
    if header.get("quantity", "logits") != "logits":
        raise TeacherCacheError(f"{path}: holds {header['quantity']}, the KD loss reads logits (rebuild the cache)")
    if header.get("tokenizer_hash") != tokenizer_hash:
        raise TeacherCacheError(
            f"{path}: made with another tokenizer ({header.get('tokenizer_hash')} != {tokenizer_hash})"
        )
    if header.get("example_ids") != [e.id for e in examples]:
        raise TeacherCacheError(f"{path}: its examples are not the training data's (rebuild the cache)")
    expected = torch.tensor([0] + [len(e.answer_ids) for e in examples], dtype=torch.int64).cumsum(0)
    n = int(expected[-1])
    if cache.values.dim() != 2 or cache.ids.shape != cache.values.shape or cache.answer_ids.dim() != 1:
        raise TeacherCacheError(
            f"{path}: misshapen (values {list(cache.values.shape)}, ids {list(cache.ids.shape)}, "
            f"answer_ids {list(cache.answer_ids.shape)}); rebuild the cache"
        )
    if not torch.equal(cache.offsets, expected) or cache.values.shape[0] != n:
        raise TeacherCacheError(f"{path}: truncated or misaligned ({cache.values.shape[0]} rows for {n} answer tokens)")
    answers = torch.tensor([t for e in examples for t in e.answer_ids], dtype=torch.int32)
    if not torch.equal(cache.answer_ids, answers):
        raise TeacherCacheError(f"{path}: answer tokens differ from the training data's")
    for name in ("values", "entropy"):
        tensor = tensors.get(name)
        if tensor is not None and not torch.isfinite(tensor.float()).all():
            raise TeacherCacheError(f"{path}: {name} hold non-finite numbers (NaN or inf); rebuild the cache")
    if cache.entropy is not None and cache.entropy.shape[0] != n:
        raise TeacherCacheError(f"{path}: truncated or misaligned entropy ({cache.entropy.shape[0]} rows for {n})")
    return cache
