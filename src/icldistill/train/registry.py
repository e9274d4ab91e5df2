"""The dynamic-λ strategies, each declared once: name, report label, parameters with their
defaults, the legend line, and the checks of its parameters beyond "a number ≥ 0".

Everything else reads these declarations: config checking and defaults
(:mod:`icldistill.config`), labels and legends in the report, the benchmarks. The arithmetic
and the state a strategy keeps between steps are in :mod:`icldistill.train.strategies`, whose
class of the same ``name`` does the training (a test keeps the two sets of names equal). This
module imports no torch: the config checks and the report run without it.

A new strategy is one :class:`StrategySpec` in :data:`STRATEGIES` below plus its class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StrategySpec:
    name: str
    #: the condition's name in tables and figures
    label: str
    #: every parameter the strategy takes (``conditions.<c>.dynamic.<param>``) and its default
    defaults: dict[str, Any]
    #: the legend's description of the λ rule, from the parameters with defaults filled in
    describe: Callable[[dict[str, Any]], str]
    #: parameters with a fixed set of values; every other parameter is a number ≥ 0
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: further checks of the filled parameters: (parameter, message) of the first that fails
    check: Callable[[dict[str, Any]], tuple[str, str] | None] = lambda params: None


def _entropy(p: dict[str, Any]) -> str:
    norm = "log V" if p["normalizer"] == "vocab" else "log K"
    return f"λ_i = λ_max·(1 − H(p_teacher,i)/{norm}) per answer token (λ_max {p['lambda_max']:g})"


def _loss_ratio(p: dict[str, Any]) -> str:
    cap = "" if p["lambda_max"] is None else f", at most {p['lambda_max']:g}"
    return f"λ_t = λ_0·EMA(CE)/EMA(KD) (λ_0 {p['lambda_0']:g}, EMA decay {p['ema']:g}{cap})"


def _meta(p: dict[str, Any]) -> str:
    return (
        f"λ learned by a one-step look-ahead on English dev batches "
        f"(λ_0 {p['lambda_init']:g}, meta-lr {p['meta_lr']:g})"
    )


def _task_prior(p: dict[str, Any]) -> str:
    return (
        f"λ by task type (classification {p['classification']:g}, extractive QA "
        f"{p['extractive_qa']:g}, sequence labelling {p['sequence_labelling']:g})"
    )


STRATEGIES: dict[str, StrategySpec] = {
    spec.name: spec
    for spec in (
        StrategySpec(
            "entropy",
            "Entropy-λ",
            {"lambda_max": 1.0, "normalizer": "vocab"},
            _entropy,
            choices={"normalizer": ("vocab", "top_k")},
        ),
        StrategySpec(
            "grad_conflict",
            "Grad-Conflict-λ",
            {"lambda": 0.5},
            lambda p: f"λ_eff = λ·max(0, cos(∇CE, ∇KD)) per step (λ {p['lambda']:g})",
        ),
        StrategySpec(
            "loss_ratio",
            "Loss-Ratio-λ",
            {"lambda_0": 0.5, "ema": 0.9, "lambda_max": None},
            _loss_ratio,
            check=lambda p: None if 0 <= p["ema"] < 1 else ("ema", f"must be in [0, 1), got {p['ema']}"),
        ),
        StrategySpec(
            "meta",
            "Meta-λ",
            {"lambda_init": 0.5, "meta_lr": 0.1, "lambda_max": 5.0, "val_batch_size": 8},
            _meta,
            check=lambda p: None if p["val_batch_size"] >= 1 else ("val_batch_size", "must be >= 1"),
        ),
        StrategySpec(
            "task_prior",
            "Task-Prior-λ",
            # keyed by Task.family (icldistill.tasks)
            {"classification": 1.0, "extractive_qa": 0.5, "sequence_labelling": 0.1},
            _task_prior,
        ),
    )
}
