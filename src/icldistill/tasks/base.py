"""The task interface: everything the workflow knows about a task is declared on its class."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

Row = dict[str, Any]


class RowError(ValueError):
    """A data row that does not match its task's schema."""


@dataclass(frozen=True)
class HFSource:
    """Where a split of a task lives on the Hugging Face Hub.

    ``config`` may hold ``{lang}`` (language id) or ``{lang_name}`` (English language name,
    as the ``udpos`` configs use). ``filter_language`` keeps rows whose ``language`` field
    equals the language id (XNLI ships every language in one config).
    """

    dataset: str
    config: str | None
    split: str
    filter_language: bool = False


class Task:
    """A benchmark task: data schema, prompt, answer format, parser and metric.

    Subclasses declare the class attributes and implement :meth:`user_message`,
    :meth:`answer`, :meth:`parse` and :meth:`check_row`; the runner never branches on
    task ids.
    """

    id: ClassVar[str]
    dataset: ClassVar[str]
    languages: ClassVar[tuple[str, ...]]
    #: "label" (one label word), "span" (answer span) or "tags" (one tag per input token)
    answer_format: ClassVar[str]
    #: task type the ``task_prior`` λ strategy keys on: classification, extractive_qa or
    #: sequence_labelling
    family: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]
    #: system message of every prompt of the task
    instruction: ClassVar[str]
    #: default generation budget (tokens); tag tasks scale it with the input length
    max_new_tokens: ClassVar[int]
    #: Hugging Face sources per local split name ("train", "dev", "test")
    hf_sources: ClassVar[dict[str, HFSource]] = {}
    #: label vocabulary (label words or tag inventory); empty for span answers
    labels: ClassVar[tuple[str, ...]] = ()
    #: whether ``scoring: loglik`` is available (label tasks)
    supports_loglik: ClassVar[bool] = False
    #: fields of a row in the local layout (Hugging Face ``google/xtreme`` names)
    fields: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        return f"<Task {self.id}>"

    # -- data -----------------------------------------------------------------------------
    def check_row(self, row: Row) -> None:
        """Raise :class:`RowError` when ``row`` does not match the task's local schema."""
        for name in self.fields:
            if name not in row:
                raise RowError(f"missing field {name!r}")

    def from_hf(self, row: Row, features: Any = None) -> Row:
        """Map a Hugging Face ``google/xtreme`` row to the local layout (identity by default)."""
        return {k: row[k] for k in self.fields}

    # -- prompts --------------------------------------------------------------------------
    def user_message(self, row: Row) -> str:
        raise NotImplementedError

    def answer(self, row: Row) -> str:
        """The gold answer text, exactly as the model should produce it."""
        raise NotImplementedError

    def generation_budget(self, row: Row, default: int | None = None) -> int:
        """Max new tokens for this example (``default`` overrides the task's budget)."""
        return default if default is not None else self.max_new_tokens

    # -- scoring --------------------------------------------------------------------------
    def choices(self) -> tuple[str, ...]:
        """Verbalizers scored by ``scoring: loglik`` (label tasks only)."""
        return ()

    def parse(self, output: str, row: Row) -> Any:
        """Parse a raw model output; ``None`` means the output does not parse."""
        raise NotImplementedError


def first_label(output: str, labels: tuple[str, ...]) -> str | None:
    """The label word occurring first (as a whole word, case-insensitive) in ``output``."""
    text = output.lower()
    best: tuple[int, str] | None = None
    for label in labels:
        m = re.search(rf"(?<![\w-]){re.escape(label.lower())}(?![\w-])", text)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), label)
    return best[1] if best else None
