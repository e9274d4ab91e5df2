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

With several training seeds (``training.seeds``) a cell's value is the mean over its S seed
replicates, each scored on the same examples, and the bootstrap is two-level: every resample
draws S seeds with replacement (once, shared by all languages — a seed is one trained model)
and the examples, and averages the drawn seeds' values. A paired test of two conditions trained
on the same seeds draws the same seeds for both (seed s of Distilled is paired with seed s of
Fine-Tuned: same LoRA initialisation and data order). One seed reduces to the one-level bootstrap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import stable_seed
from .tasks import TASKS

#: resamples per interval and test unless configured
DEFAULT_RESAMPLES = 1000
#: two-sided level of the intervals
ALPHA = 0.05


def _entity_terms(task: str, metric: str, rows: list[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    tp = np.array([r["true_pos"] for r in rows], dtype=float)
    pred = np.array([r["pred"] for r in rows], dtype=float)
    gold = np.array([r["gold"] for r in rows], dtype=float)
    terms = {"f1": (2 * tp, pred + gold), "precision": (tp, pred), "recall": (tp, gold)}
    if metric not in terms:
        raise ValueError(f"{task} has no resampling terms for metric {metric!r}")
    return terms[metric]


def _token_terms(task: str, metric: str, rows: list[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([r["correct"] for r in rows], dtype=float),
        np.array([r["tokens"] for r in rows], dtype=float),
    )


#: ratio terms of the scorings whose metric is not a mean of per-example values (``Task.scoring``)
RATIO_TERMS = {"entities": _entity_terms, "tokens": _token_terms}


def ratio_terms(task: str, metric: str, per_example: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Per-example (numerator, denominator) arrays of ``task``'s ``metric`` (see the module table)."""
    rows = list(per_example)
    terms = RATIO_TERMS.get(TASKS[task].scoring) if task in TASKS else None
    if terms is not None:
        return terms(task, metric, rows)
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


#: one (numerator, denominator) pair of a cell, or one per training seed, on the same examples
Terms = tuple[np.ndarray, np.ndarray]
Replicates = Terms | Sequence[Terms]


def as_replicates(cell: Replicates) -> list[Terms]:
    """``cell`` as a list of (numerator, denominator) pairs, one per seed replicate."""
    if isinstance(cell, tuple) and len(cell) == 2 and isinstance(cell[0], np.ndarray):
        return [cell]
    replicates = list(cell)
    if not replicates:
        raise ValueError("a cell needs at least one replicate")
    sizes = {len(num) for num, _ in replicates}
    if len(sizes) != 1:
        raise ValueError(f"seed replicates are scored on different numbers of examples: {sorted(sizes)}")
    return replicates


def seed_picks(replicates: int, resamples: int, seed: int) -> np.ndarray | None:
    """``resamples`` × ``replicates`` seed indices drawn with replacement; None for one seed."""
    if replicates == 1:
        return None
    return np.random.default_rng(stable_seed(seed, "seeds")).integers(0, replicates, size=(resamples, replicates))


def observed(cell: Sequence[Terms]) -> float:
    """The cell's value: the mean over its seed replicates."""
    return float(np.mean([ratio(num, den) for num, den in cell]))


def resampled(cell: Sequence[Terms], idx: np.ndarray, picks: np.ndarray | None) -> np.ndarray:
    """The cell's value on each resample: examples ``idx`` (B × n) of the seeds ``picks`` (B × S)."""
    values = np.stack([ratio(num[idx], den[idx]) for num, den in cell], axis=1)  # B × S
    if picks is None:
        return values.mean(axis=1)
    return np.take_along_axis(values, picks, axis=1).mean(axis=1)


def bootstrap_interval(
    numerator: np.ndarray, denominator: np.ndarray, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile bootstrap interval of one cell's metric (one seed)."""
    return cell_interval((numerator, denominator), resamples, seed)


def cell_interval(cell: Replicates, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of one cell's metric over examples and, with several
    seed replicates, over seeds (two-level; see the module docstring)."""
    cell = as_replicates(cell)
    n = len(cell[0][0])
    if n == 0:
        return float("nan"), float("nan")
    idx = resample_indices(n, resamples, seed)
    return percentile_interval(resampled(cell, idx, seed_picks(len(cell), resamples, seed)))


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
    a: Sequence[Replicates],
    b: Sequence[Replicates],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedResult:
    """Paired bootstrap of ``mean_l value_l(a) − mean_l value_l(b)`` over groups ``l`` (the
    languages of a task average; one group for a single cell). ``a[l]`` and ``b[l]`` are the
    (numerator, denominator) terms — or one pair per training seed — of the same examples, in
    the same order. Seeds are drawn once per resample for all groups, the same draw for ``a``
    and ``b`` when both have the same number of seeds (paired by seed)."""
    if len(a) != len(b) or not a:
        raise ValueError("paired groups must match and not be empty")
    a, b = [as_replicates(g) for g in a], [as_replicates(g) for g in b]
    seeds_a, seeds_b = {len(g) for g in a}, {len(g) for g in b}
    if len(seeds_a) != 1 or len(seeds_b) != 1:
        raise ValueError("every group of a condition must have the same seed replicates")
    picks_a = seed_picks(seeds_a.pop(), resamples, seed)
    picks_b = seed_picks(seeds_b.pop(), resamples, stable_seed(seed, "reference"))
    if picks_a is not None and picks_b is not None and picks_a.shape == picks_b.shape:
        picks_b = picks_a
    difference, draws = 0.0, np.zeros(resamples)
    for group, (cell_a, cell_b) in enumerate(zip(a, b, strict=True)):
        if len(cell_a[0][0]) != len(cell_b[0][0]):
            raise ValueError(f"group {group}: {len(cell_a[0][0])} and {len(cell_b[0][0])} examples are not paired")
        idx = resample_indices(len(cell_a[0][0]), resamples, stable_seed(seed, group))
        difference += observed(cell_a) - observed(cell_b)
        draws += resampled(cell_a, idx, picks_a) - resampled(cell_b, idx, picks_b)
    difference, draws = difference / len(a), draws / len(a)
    low, high = percentile_interval(draws)
    p_value = min(1.0, 2.0 * min(float(np.mean(draws <= 0)), float(np.mean(draws >= 0))))
    return PairedResult(difference, low, high, p_value)
