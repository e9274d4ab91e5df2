"""The inference backend interface shared by the Hugging Face and vLLM backends."""

from __future__ import annotations

from typing import Protocol

from ..prompts import PromptSet


class Backend(Protocol):
    """Greedy generation and label scoring over the prompts of one cell."""

    def generate(self, prompts: PromptSet, max_new_tokens: list[int]) -> list[str]:
        """One greedy completion per prompt, each at most ``max_new_tokens[i]`` tokens."""
        ...

    def loglik(self, prompts: PromptSet, choices: list[str]) -> list[list[float]]:
        """Per prompt, the log-likelihood of each choice appended to it as the answer."""
        ...
