"""Task registry: one class per task, registered once; the workflow iterates over it."""

from __future__ import annotations

from .base import HFSource, Row, RowError, Task, starts_with_think, strip_think
from .classification import NLI, PA
from .qa import QA
from .tagging import NER, NO_MATCH, POS

TASKS: dict[str, Task] = {t.id: t for t in (NLI(), PA(), QA(), NER(), POS())}


def get_task(task_id: str) -> Task:
    """The registered task ``task_id``; a clear error names the known ones."""
    try:
        return TASKS[task_id]
    except KeyError:
        raise KeyError(f"unknown task {task_id!r}; known tasks: {', '.join(TASKS)}") from None


def valid_pairs(tasks, languages) -> list[tuple[str, str]]:
    """The (task, language) pairs that exist in the benchmark, in the given orders."""
    return [(t, lang) for t in tasks for lang in languages if lang in get_task(t).languages]


__all__ = [
    "HFSource",
    "NO_MATCH",
    "Row",
    "RowError",
    "TASKS",
    "Task",
    "get_task",
    "starts_with_think",
    "strip_think",
    "valid_pairs",
]
