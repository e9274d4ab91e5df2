"""Uncertainty of the grid's numbers: bootstrap intervals per cell and paired bootstrap tests.

Every metric of the benchmark is a ratio of sums over the cell's examples, so a cell is
resampled through per-example (numerator, denominator) pairs and the statistic recomputed
exactly as the metric is defined — corpus-level entity F1 for NER included:

=============  ==========================  ===========================
metric         numerator per example       denominator per example
=============  ==========================  ===========================
accuracy       correct (0/1)               1
QA f1 / EM     the example's F1 / EM       1
NER f1         2 · true positives          predicted + gold entities
NER precision  true positives              predicted entities
NER recall     true positives              gold entities
POS accuracy   correct tokens              tokens
=============  ==========================  ===========================

``value = 100 · Σ numerator / Σ denominator`` (0 when the denominator is 0, as seqeval does).
Intervals are percentile bootstrap intervals over B resamples of the examples (with
replacement, seeded). A paired test resamples the *same* example indices for both conditions
(they are scored on the same examples), so the difference's spread reflects the conditions,
not which examples were drawn; its two-sided p-value is ``min(1, 2·min(P*(Δ ≤ 0), P*(Δ ≥ 0)))``
over the resamples. A task average resamples each language's examples independently and
averages the per-language values, as the report averages languages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import stable_seed

#: resamples per interval and test unless configured
DEFAULT_RESAMPLES = 1000
#: two-sided level of the intervals
ALPHA = 0.05


def ratio_terms(task: str, metric: str, per_example: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-example (numerator, denominator) arrays of ``task``'s ``metric`` (see the module table)."""
    rows = list(per_example)
    if task == "ner":
        tp = np.array([r["true_pos"] for r in rows], dtype=float)
        pred = np.array([r["pred"] for r in rows], dtype=float)
        gold = np.array([r["gold"] for r in rows], dtype=float)
        terms = {"f1": (2 * tp, pred + gold), "precision": (tp, pred), "recall": (tp, gold)}
        if metric not in terms:
            raise ValueError(f"ner has no resampling terms for metric {metric!r}")
        return terms[metric]
    if task == "pos":
        return (
            np.array([r["correct"] for r in rows], dtype=float),
            np.array([r["tokens"] for r in rows], dtype=float),
        )
    key = "correct" if metric == "accuracy" else metric
    if rows and key not in rows[0]:
        raise ValueError(f"{task}: per-example scores lack {key!r} (metric {metric!r})")
    values = np.array([r[key] for r in rows], dtype=float)
    return values, np.ones_like(values)


def ratio(numerator: np.ndarray, denominator: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """``100 · Σ numerator / Σ denominator`` along ``axis`` (0 where the denominator sums to 0)."""
    num, den = numerator.sum(axis=axis), denominator.sum(axis=axis)
    return 100.0 * np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den != 0)


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """``resamples`` × ``n`` example indices drawn with replacement (seeded)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def percentile_interval(samples: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    low, high = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def bootstrap_interval(
    numerator: np.ndarray, denominator: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile bootstrap interval of one cell's metric."""
    if len(numerator) == 0:
        return float("nan"), float("nan")
    idx = resample_indices(len(numerator), resamples, seed)
    return percentile_interval(ratio(numerator[idx], denominator[idx]))


@dataclass(frozen=True)
class PairedResult:
    """A paired difference ``a − b``: observed value, its 95 % interval and two-sided p-value."""

    difference: float
    low: float
    high: float
    p_value: float

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0


def paired_difference(
    a: Sequence[tuple[np.ndarray, np.ndarray]],
    b: Sequence[tuple[np.ndarray, np.ndarray]],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedResult:
    """Paired bootstrap of ``mean_l value_l(a) − mean_l value_l(b)`` over groups ``l`` (the
    languages of a task average; one group for a single cell). ``a[l]`` and ``b[l]`` are the
    (numerator, denominator) terms of the same examples, in the same order."""
    if len(a) != len(b) or not a:
        raise ValueError("paired groups must match and not be empty")
    observed, draws = 0.0, np.zeros(resamples)
    for group, ((num_a, den_a), (num_b, den_b)) in enumerate(zip(a, b, strict=True)):
        if len(num_a) != len(num_b):
            raise ValueError(f"group {group}: {len(num_a)} and {len(num_b)} examples are not paired")
        idx = resample_indices(len(num_a), resamples, stable_seed(seed, group))
        observed += float(ratio(num_a, den_a) - ratio(num_b, den_b))
        draws += ratio(num_a[idx], den_a[idx]) - ratio(num_b[idx], den_b[idx])
    observed, draws = observed / len(a), draws / len(a)
    low, high = percentile_interval(draws)
    p_value = min(1.0, 2.0 * min(float(np.mean(draws <= 0)), float(np.mean(draws >= 0))))
    return PairedResult(observed, low, high, p_value)
