"""Extractive question answering: MLQA (evaluation) and SQuAD v1.1 (English training)."""

from __future__ import annotations

from typing import Any

from .base import HFSource, Row, RowError, Task


class QA(Task):
    id = "qa"
    dataset = "MLQA"
    title = "QA (F1 %)"
    languages = ("en", "hi", "es", "de", "zh")
    answer_format = "span"
    scoring = "span"
    family = "extractive_qa"
    metrics = ("f1", "exact_match")
    primary_metric = "f1"
    secondary_tables = (("exact_match", "QA Exact Match (%)"),)
    max_new_tokens = 32
    fields = ("id", "context", "question", "answers")
    instruction = (
        "You answer questions about a passage. Reply with the shortest span copied exactly "
        "from the passage that answers the question, and nothing else."
    )
    hf_sources = {
        "test": HFSource("google/xtreme", "MLQA.{lang}.{lang}", "test"),
        "dev": HFSource("google/xtreme", "MLQA.{lang}.{lang}", "validation"),
        "train": HFSource("google/xtreme", "SQuAD", "train"),
    }

    def check_row(self, row: Row) -> None:
        super().check_row(row)
        for name in ("id", "context", "question"):
            if not isinstance(row[name], str) or not row[name].strip():
                raise RowError(f"field {name!r} must be a non-empty string")
        answers = row["answers"]
        if not isinstance(answers, dict) or not isinstance(answers.get("text"), list) or not answers["text"]:
            raise RowError("field 'answers' needs a non-empty 'text' list")
        texts, starts = answers["text"], answers.get("answer_start", [])
        if not isinstance(starts, list) or len(texts) != len(starts):
            raise RowError("answers 'answer_start' must be a list as long as 'text'")
        for text, start in zip(texts, starts, strict=True):
            # an empty text would match at any offset, even one outside the context
            if not isinstance(text, str) or not text:
                raise RowError(f"answer {text!r} is not a non-empty string")
            if (
                not isinstance(start, int)
                or isinstance(start, bool)
                or start < 0
                or row["context"][start : start + len(text)] != text
            ):
                raise RowError(f"answer {text!r} is not at offset {start} of the context")

    def from_hf(self, row: Row, features: Any = None) -> Row:
        answers = row["answers"]
        return {
            "id": row["id"],
            "title": row.get("title", ""),
            "context": row["context"],
            "question": row["question"],
            "answers": {"text": list(answers["text"]), "answer_start": [int(s) for s in answers["answer_start"]]},
        }

    def user_message(self, row: Row) -> str:
        return f"Passage: {row['context']}\nQuestion: {row['question']}\nAnswer:"

    def answer(self, row: Row) -> str:
        return row["answers"]["text"][0]

    def parse_answer(self, answer: str, row: Row) -> str | None:
        lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
        if not lines:
            return None
        span = lines[0]
        if span.lower().startswith("answer:"):
            span = span[len("answer:") :].strip()
        return span.strip("\"'“”«»") or None
