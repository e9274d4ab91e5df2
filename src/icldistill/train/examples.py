"""Training sequences: a row's evaluation prompt followed by its gold answer ids.

The student's sequence for a row is token for token the Base (zero-shot) evaluation prompt of
that row plus the answer; the Distilled teacher's is the Few-Shot prompt of that row plus the
same answer; Control's teacher reads the student's own sequence. All of them are built by
:func:`icldistill.prompts.build_prompts` and :func:`~icldistill.prompts.encode_prompts`, the
functions that build and encode evaluation prompts, from the same demonstrations file
(:mod:`icldistill.demos`), so they cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..demos import Demonstrations
from ..prompts import answer_ids, build_prompts, encode_prompts
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


def build_sequences(
    tokenizer: Any,
    task_id: str,
    rows: list[Row],
    demos: Demonstrations | None = None,
    template_kwargs: dict[str, Any] | None = None,
) -> tuple[list[int], list[TrainExample]]:
    """The shared prefix ids and one sequence per row: the row's whole prompt (``demos``
    demonstrations, none for the student) followed by its answer ids. Every example's
    ``prompt_ids`` start with the prefix ids (the teacher encodes the prefix once)."""
    task = get_task(task_id)
    prompts = build_prompts(tokenizer, task, rows, demos, template_kwargs)
    prefix, suffixes = encode_prompts(tokenizer, prompts)
    examples = [
        TrainExample(
            row["id"],
            prefix + suffix,
            answer_ids(tokenizer, task, row, text, prompts.chat_template, template_kwargs),
        )
        for row, suffix, text in zip(rows, suffixes, prompts.suffixes, strict=True)
    ]
    return prefix, examples


def tokenizer_hash(tokenizer: Any) -> str:
    """A fingerprint of the vocabulary and special tokens (a cache made with another
    tokenizer cannot be used)."""
    vocab = sorted(tokenizer.get_vocab().items())
    payload = json.dumps([vocab, tokenizer.all_special_tokens], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def sequences_hash(examples: list[TrainExample]) -> str:
    """A fingerprint of training sequences (ids and tokens): a checkpoint or teacher cache made
    from other rows, demonstrations or prompts does not match."""
    payload = json.dumps([[e.id, e.prompt_ids, e.answer_ids] for e in examples])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
