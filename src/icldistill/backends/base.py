"""The inference backend interface shared by the Hugging Face and vLLM backends."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..prompts import PromptSet


def cut_at_stop(text: str, stop: list[str] | None) -> str:
    """``text`` up to the first occurrence of any stop string (the stop string excluded).

    Both backends stop generating at a stop string and then cut with this, so they return the
    same text whichever token the stop string ended in."""
    cut = min((i for i in (text.find(s) for s in stop or ()) if i >= 0), default=len(text))
    return text[:cut]


def choice_text(choice: str, chat_template: bool) -> str:
    """A label word as it follows the prompt: itself after a chat template's assistant header,
    after one space in the plain-text layout (as the demonstrations show it after ``Answer:``)."""
    return choice if chat_template else " " + choice


class Backend(Protocol):
    """Greedy generation and label scoring over the prompts of one cell."""

    def generate(
        self,
        prompts: PromptSet,
        max_new_tokens: list[int],
        stop: list[str] | None = None,
        settled: list[Callable[[str], str | None]] | None = None,
    ) -> list[str]:
        """One greedy completion per prompt, each at most ``max_new_tokens[i]`` tokens and cut
        before the first of the ``stop`` strings. A backend may stop row i early once
        ``settled[i]`` of its text is not None (``Task.settled``); the caller cuts every output
        to its settled prefix, so stopping early only saves time (vLLM runs to the budget)."""
        ...

    def loglik(self, prompts: PromptSet, choices: list[str]) -> list[list[float]]:
        """Per prompt, the log-likelihood of each choice appended to it as the answer."""
        ...
