"""Training sequences: the zero-shot prompt followed by the gold answer and the end-of-turn token.

The answer is tokenised on its own and appended, so the student's sequence and the teacher's
(k-shot prompt + the same answer) end with identical answer ids and align position by position.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..data import stable_seed
from ..prompts import build_prompts, encode_prompts, end_of_turn_ids, sample_demonstrations
from ..tasks import Row, get_task


@dataclass(frozen=True)
class TrainExample:
    """One training sequence: ``prompt_ids + answer_ids``; the loss covers the answer only."""

    id: str
    prompt_ids: list[int]
    answer_ids: list[int]

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.answer_ids


def answer_ids(tokenizer: Any, task_id: str, row: Row, end: list[int]) -> list[int]:
    """Token ids of the gold answer followed by the end-of-turn ids."""
    return tokenizer(get_task(task_id).answer(row), add_special_tokens=False).input_ids + end


def training_rows(pool: list[Row], task_id: str, k: int, seed: int, cap: int | None) -> list[Row]:
    """The English training rows every condition trains on: the train split without the
    rows that serve as the task's k demonstrations (drawn as for English few-shot prompts),
    so no teacher ever sees the answer it is asked about; at most ``cap`` rows (seeded)."""
    demo_ids = {r["id"] for r in sample_demonstrations(pool, k, stable_seed(seed, task_id, "en"))} if k else set()
    rows = [r for r in pool if r["id"] not in demo_ids]
    if cap is not None and len(rows) > cap:
        import random

        keep = sorted(random.Random(stable_seed(seed, task_id, "train-cap")).sample(range(len(rows)), cap))
        rows = [rows[i] for i in keep]
    return rows


def build_sequences(
    tokenizer: Any, task_id: str, rows: list[Row], pool: list[Row], shots: int, seed: int
) -> tuple[list[int], list[TrainExample]]:
    """Shared prefix ids and one sequence per row: the ``shots``-shot prompt (0 for the
    student) + answer. Demonstrations are the task's English draw (excluded from ``rows``)."""
    task = get_task(task_id)
    prompts = build_prompts(tokenizer, task, rows, pool, shots, seed, "en")
    prefix, suffixes = encode_prompts(tokenizer, prompts)
    end = end_of_turn_ids(tokenizer)
    examples = [
        TrainExample(row["id"], suffix, answer_ids(tokenizer, task_id, row, end))
        for row, suffix in zip(rows, suffixes, strict=True)
    ]
    return prefix, examples


def tokenizer_hash(tokenizer: Any) -> str:
    """A fingerprint of the vocabulary and special tokens (a cache made with another
    tokenizer cannot be used)."""
    vocab = sorted(tokenizer.get_vocab().items())
    payload = json.dumps([vocab, tokenizer.all_special_tokens], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
