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
    :meth:`answer`, :meth:`parse_answer` and :meth:`check_row`; the runner never branches on
    task ids.
    """

    id: ClassVar[str]
    #: the data set's name in the report's headers
    dataset: ClassVar[str]
    #: the title of the task's primary-metric tables and figure panels
    title: ClassVar[str]
    languages: ClassVar[tuple[str, ...]]
    #: "label" (one label word), "span" (answer span) or "tags" (one tag per input token)
    answer_format: ClassVar[str]
    #: task type the ``task_prior`` λ strategy keys on: classification, extractive_qa or
    #: sequence_labelling
    family: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]
    #: how outputs are scored and resampled: "label" (accuracy), "span" (MLQA F1 / exact
    #: match), "entities" (seqeval entity F1, precision, recall) or "tokens" (token accuracy);
    #: the scorers are in :mod:`icldistill.metrics`, their resampling terms in :mod:`icldistill.stats`
    scoring: ClassVar[str]
    #: the metric averaged in summaries and shown in the main tables
    primary_metric: ClassVar[str]
    #: further metrics with a per-language table of their own in the report: (metric, heading)
    secondary_tables: ClassVar[tuple[tuple[str, str], ...]] = ()
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

    def keep_hf_row(self, row: Row) -> bool:
        """Whether a mapped Hugging Face row belongs to the task's data (all do by default)."""
        return True

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
        """Parse a raw model output; ``None`` means the output does not parse.

        A leading think block is dropped first (:func:`strip_think`): the answer after a closed
        one is parsed, and an output cut off inside one does not parse.
        """
        answer = strip_think(output)
        return None if answer is None else self.parse_answer(answer, row)

    def parse_answer(self, answer: str, row: Row) -> Any:
        """Parse the answer part of an output (no think block); ``None`` when it does not parse."""
        raise NotImplementedError

    def settled(self, output: str, row: Row) -> str | None:
        """The prefix of a generated ``output`` that already decides its parse (no later text
        can change it), or ``None`` while it does not. Generation of the row may stop there
        (the HF backend does), and every backend's output is cut to it, so all agree whether or
        not they stopped early. By default nothing is settled before the output ends."""
        answer = strip_think(output)
        if answer is None:
            return None
        head = self.settled_answer(answer, row)
        return None if head is None else output[: len(output) - len(answer) + len(head)]

    def settled_answer(self, answer: str, row: Row) -> str | None:
        """:meth:`settled` for the answer part (the text after any think block)."""
        return None


#: A reasoning block that opens an output (Qwen3 "thinking" models): ``<think>…</think>``, or
#: ``<think>…`` cut off by the generation budget (group ``closed`` is None then).
THINK_BLOCK = re.compile(r"\s*<think>.*?(?:(?P<closed></think>)|\Z)", re.DOTALL)


def starts_with_think(output: str) -> bool:
    """Whether ``output`` opens with a think block (closed or not; leading whitespace allowed)."""
    return THINK_BLOCK.match(output) is not None


def strip_think(output: str) -> str | None:
    """``output`` without its leading think block: the text after ``</think>``, ``None`` when the
    block is never closed (nothing is left to parse), ``output`` itself when it has none."""
    block = THINK_BLOCK.match(output)
    if block is None:
        return output
    return output[block.end() :] if block["closed"] else None


def first_label(output: str, labels: tuple[str, ...]) -> str | None:
    """The label word occurring first (as a whole word, case-insensitive) in ``output``."""
    text = output.lower()
    best: tuple[int, str] | None = None
    for label in labels:
        m = re.search(rf"(?<![\w-]){re.escape(label.lower())}(?![\w-])", text)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), label)
    return best[1] if best else None
