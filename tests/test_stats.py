"""Bootstrap intervals and paired tests: the resampled statistic is the metric itself (checked
against the scorer on real rows); intervals and p-values against values worked out by hand and
against the plain re-implementation below of the procedure README.md ("Statistics") documents."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from icldistill.data import read_local, stable_seed
from icldistill.metrics import score
from icldistill.stats import bootstrap_interval, cell_interval, paired_difference, ratio, ratio_terms

from .conftest import MINI


# -- the documented procedure, written out loop by loop (shares only the seeding convention) ----
# A cell is a list of seed runs, each a (numerator, denominator) pair of per-example sequences.
# Seeding: examples are drawn with numpy's default_rng(seed).integers(0, n, (B, n)), seeds with
# default_rng(stable_seed(seed, "seeds")).integers(0, S, (B, S)); a paired test seeds group g's
# examples with stable_seed(seed, g) and draws the same seeds for both conditions.
def reference_value(numerator, denominator, rows) -> float:
    """100 · Σ numerator / Σ denominator over the example indices ``rows`` (0 when Σ den is 0)."""
    num, den = sum(float(numerator[i]) for i in rows), sum(float(denominator[i]) for i in rows)
    return 100.0 * num / den if den else 0.0


def _examples(n: int, resamples: int, seed: int):
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _seed_draws(replicates: int, resamples: int, seed: int):
    if replicates == 1:
        return [[0]] * resamples
    return np.random.default_rng(stable_seed(seed, "seeds")).integers(0, replicates, size=(resamples, replicates))


def reference_draws(cell, resamples: int, seed: int) -> list[float]:
    """value* per resample: S seeds drawn with replacement, the examples drawn with replacement,
    the mean over the drawn seeds of their value on the drawn examples."""
    examples = _examples(len(cell[0][0]), resamples, seed)
    picks = _seed_draws(len(cell), resamples, seed)
    return [statistics.fmean(reference_value(*cell[s], rows) for s in picks[b]) for b, rows in enumerate(examples)]


def reference_interval(cell, resamples: int, seed: int) -> tuple[float, float]:
    """The 2.5 and 97.5 percentiles of value*."""
    low, high = np.percentile(reference_draws(cell, resamples, seed), [2.5, 97.5])
    return float(low), float(high)


def reference_paired(a, b, resamples: int, seed: int) -> tuple[float, float, float, float]:
    """(difference, low, high, p) of mean_g value(a_g) − value(b_g): per resample the same
    examples for a and b within a group and the same seeds for both (b may have one seed)."""
    seeds_a, seeds_b = len(a[0]), len(b[0])
    assert seeds_b in (1, seeds_a), "the reference pairs seeds only when both have the same number"
    picks_a = _seed_draws(seeds_a, resamples, seed)
    picks_b = picks_a if seeds_b == seeds_a else _seed_draws(1, resamples, seed)
    difference, draws = 0.0, np.zeros(resamples)
    for g, (cell_a, cell_b) in enumerate(zip(a, b, strict=True)):
        n = len(cell_a[0][0])
        everything = range(n)
        difference += statistics.fmean(reference_value(*t, everything) for t in cell_a)
        difference -= statistics.fmean(reference_value(*t, everything) for t in cell_b)
        for r, rows in enumerate(_examples(n, resamples, stable_seed(seed, g))):
            value_a = statistics.fmean(reference_value(*cell_a[s], rows) for s in picks_a[r])
            value_b = statistics.fmean(reference_value(*cell_b[s], rows) for s in picks_b[r])
            draws[r] += value_a - value_b
    difference, draws = difference / len(a), draws / len(a)
    low, high = np.percentile(draws, [2.5, 97.5])
    below, above = float(np.mean(draws <= 0)), float(np.mean(draws >= 0))
    return difference, float(low), float(high), min(1.0, 2.0 * min(below, above))


def _fields(result) -> tuple[float, float, float, float]:
    return result.difference, result.low, result.high, result.p_value


@pytest.mark.parametrize(("task", "metric"), [("nli", "accuracy"), ("qa", "f1"), ("qa", "exact_match"), ("ner", "f1"),
                                              ("ner", "precision"), ("ner", "recall"), ("pos", "accuracy")])  # fmt: skip
def test_ratio_terms_reproduce_the_cell_metric(task, metric):
    rows = read_local(MINI, task, "test", "en")
    # a mix of right and wrong outputs: the gold answer for even rows, garbage for odd ones
    from icldistill.tasks import get_task

    spec = get_task(task)
    outputs = [spec.answer(r) if i % 2 == 0 else "no idea" for i, r in enumerate(rows)]
    if task == "ner":  # partly right tag sequences, so precision and recall differ
        outputs = [" ".join(["O"] * len(r["tokens"])) if i % 3 == 0 else spec.answer(r) for i, r in enumerate(rows)]
    result = score(task, "en", outputs, rows)
    numerator, denominator = ratio_terms(task, metric, result["per_example"])
    assert ratio(numerator, denominator) == pytest.approx(result[metric], abs=1e-9)


def test_bootstrap_interval_on_simple_cases():
    ones = np.ones(20)
    assert bootstrap_interval(ones, ones) == (100.0, 100.0)
    correct = np.array([1.0, 0.0] * 50)
    low, high = bootstrap_interval(correct, np.ones(100), resamples=2000, seed=3)
    assert (low, high) == pytest.approx(reference_interval([(correct, np.ones(100))], 2000, 3), abs=1e-9)
    # binomial p = 0.5, n = 100: the 95 % interval is about 50 ± 10
    assert 38 < low < 43 and 57 < high < 62
    # a ratio, not a mean of ratios: NER-style terms with unequal denominators
    num, den = np.array([2.0, 0.0, 4.0, 1.0, 0.0]), np.array([2.0, 3.0, 4.0, 5.0, 0.0])
    assert bootstrap_interval(num, den, 500, 5) == pytest.approx(reference_interval([(num, den)], 500, 5), abs=1e-9)
    wide = bootstrap_interval(correct[:10], np.ones(10), resamples=2000, seed=3)
    assert wide[1] - wide[0] > high - low  # fewer examples, wider interval
    assert all(np.isnan(v) for v in bootstrap_interval(np.array([]), np.array([])))


def test_paired_difference_on_hand_checkable_cases():
    n = np.ones(3)
    a, b = (np.array([1.0, 1.0, 0.0]), n), (np.array([0.0, 1.0, 0.0]), n)
    result = paired_difference([a], [b], resamples=4000)
    # a − b differs only on example 0: Δ* = 100/3 · (times example 0 is drawn), so Δ* ≥ 0 always,
    # P(Δ* ≤ 0) = P(example 0 never drawn) = (2/3)³ = 8/27 and p = 2 · 8/27 = 16/27;
    # P(Δ* = 0) > 2.5 % and P(Δ* = 100) = 1/27 > 2.5 %: the interval is exactly [0, 100]
    assert result.difference == pytest.approx(100 / 3)
    assert (result.low, result.high, result.significant) == (0.0, 100.0, False)
    assert result.p_value == pytest.approx(16 / 27, abs=0.05)
    assert _fields(result) == pytest.approx(reference_paired([[a]], [[b]], 4000, 0), abs=1e-9)
    same = paired_difference([a], [a], resamples=500)
    assert (same.difference, same.low, same.high, same.p_value, same.significant) == (0.0, 0.0, 0.0, 1.0, False)
    right, wrong = (np.ones(50), np.ones(50)), (np.zeros(50), np.ones(50))
    decisive = paired_difference([right], [wrong], resamples=500)
    assert (decisive.low, decisive.high, decisive.p_value, decisive.significant) == (100.0, 100.0, 0.0, True)
    # ... and b better than a: the sign follows a − b
    reverse = paired_difference([b], [a], resamples=4000)
    assert (reverse.difference, reverse.low, reverse.high) == pytest.approx((-100 / 3, -100.0, 0.0))
    assert reverse.p_value == pytest.approx(16 / 27, abs=0.05)
    # a task average: the mean of the per-language differences
    two = paired_difference([right, a], [wrong, a], resamples=500)
    assert two.difference == pytest.approx(50.0) and two.low == two.high == 50.0
    # languages that disagree: each resampled on its own, the mean of the two Δ*
    mixed = paired_difference([a, b], [b, a], resamples=500, seed=4)
    assert _fields(mixed) == pytest.approx(reference_paired([[a], [b]], [[b], [a]], 500, 4), abs=1e-9)
    assert mixed.difference == 0.0 and mixed.low < 0 < mixed.high
    with pytest.raises(ValueError, match="not paired"):
        paired_difference([a], [(np.ones(4), np.ones(4))])


def test_two_level_bootstrap_over_seeds():
    rng = np.random.default_rng(0)
    ones = np.ones(40)
    x1, x2 = (rng.integers(0, 2, 40).astype(float), ones), (rng.integers(0, 2, 40).astype(float), ones)
    # one seed is the one-level bootstrap; identical seeds change nothing
    one_level = reference_interval([x1], 500, 7)
    assert cell_interval(x1, 500, 7) == pytest.approx(one_level, abs=1e-9)
    assert cell_interval([x1], 500, 7) == pytest.approx(one_level, abs=1e-9)
    assert cell_interval([x1, x1, x1], 500, 7) == pytest.approx(one_level, abs=1e-9)
    # two seeds that differ: seeds and examples resampled
    assert cell_interval([x1, x2], 500, 7) == pytest.approx(reference_interval([x1, x2], 500, 7), abs=1e-9)
    # seeds that disagree completely (all right / all wrong): the drawn pair's mean is 0, 50 or
    # 100 with probability 1/4, 1/2, 1/4, so the interval is [0, 100], while the examples alone
    # (every seed's spread is 0) would give the single point 50
    right, wrong = (ones, ones), (np.zeros(40), ones)
    assert cell_interval([right, wrong], 2000, 7) == (0.0, 100.0)
    # paired by seed: a condition against itself is exactly 0 even when its seeds differ ...
    same = paired_difference([[x1, x2]], [[x1, x2]], resamples=500, seed=1)
    assert (same.difference, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    # ... and the difference is the mean over seeds of the per-seed differences: seed 0 differs
    # by 100, seed 1 ties, so Δ* is 0, 50 or 100 (1/4, 1/2, 1/4) and p = 2 · 1/4
    shifted = paired_difference([[right, x1]], [[wrong, x1]], resamples=500, seed=1)
    assert (shifted.difference, shifted.low, shifted.high) == (50.0, 0.0, 100.0)
    assert shifted.p_value == pytest.approx(0.5, abs=0.1)
    assert _fields(shifted) == pytest.approx(reference_paired([[right, x1]], [[wrong, x1]], 500, 1), abs=1e-9)
    # against a condition without seeds (inference), only the seeded side's seeds are resampled
    mixed = paired_difference([[right, wrong]], [x1], resamples=500, seed=1)
    assert mixed.difference == pytest.approx(50.0 - 100 * x1[0].sum() / 40)
    assert _fields(mixed) == pytest.approx(reference_paired([[right, wrong]], [[x1]], 500, 1), abs=1e-9)
    with pytest.raises(ValueError, match="different numbers of examples"):
        cell_interval([x1, (np.ones(3), np.ones(3))])


def test_cells_table_carries_seeded_intervals(tmp_path):
    from icldistill.aggregate import collect_cells, score_cell
    from icldistill.data import write_jsonl
    from icldistill.tasks import get_task

    rows = read_local(MINI, "pa", "test", "en")
    spec = get_task("pa")
    outputs = [spec.answer(r) if i % 3 else "maybe" for i, r in enumerate(rows)]
    write_jsonl(tmp_path / "pred.jsonl", [{"id": r["id"], "output": o} for r, o in zip(rows, outputs, strict=True)])
    write_jsonl(tmp_path / "data.jsonl", rows)
    meta = {"model": "M", "model_id": "m", "task": "pa", "condition": "base", "language": "en"}
    record = score_cell(tmp_path / "pred.jsonl", tmp_path / "data.jsonl", tmp_path / "metrics.json", meta)
    cells = collect_cells([tmp_path / "metrics.json"], resamples=500, seed=7)
    row = cells.iloc[0]
    # accuracy: numerator "correct", denominator 1; seeded per (model, task, language, metric)
    correct = [e["correct"] for e in record["per_example"]]
    expected = reference_interval([(correct, [1] * len(correct))], 500, stable_seed(7, "m", "pa", "en", "accuracy"))
    assert (row.ci_low, row.ci_high) == pytest.approx(expected, abs=1e-4)
    assert row.value == pytest.approx(100 * statistics.fmean(correct), abs=1e-4)
    assert row.ci_low < row.value < row.ci_high
    columns = list(cells.columns)
    at = columns.index("ci_low")
    assert columns[at : at + 4] == ["ci_low", "ci_high", "seeds", "seed_sd"]


def test_paired_tests_per_language_and_task_average(tmp_path):
    from icldistill.aggregate import paired_tests, score_cell
    from icldistill.data import write_jsonl
    from icldistill.tasks import get_task

    spec = get_task("pa")
    files = []
    for lang in ("en", "de"):
        rows = read_local(MINI, "pa", "test", lang)
        write_jsonl(tmp_path / f"{lang}.jsonl", rows)
        # "good" answers every row right, "half" every other one: good − half = +50 pp
        for condition, wrong in (("good", lambda i: False), ("half", lambda i: i % 2 == 1)):
            outputs = ["maybe" if wrong(i) else spec.answer(r) for i, r in enumerate(rows)]
            pred = tmp_path / f"{condition}.{lang}.pred.jsonl"
            write_jsonl(pred, [{"id": r["id"], "output": o} for r, o in zip(rows, outputs, strict=True)])
            out = tmp_path / f"{condition}.{lang}.json"
            meta = {"model": "M", "model_id": "m", "task": "pa", "condition": condition, "language": lang}
            score_cell(pred, tmp_path / f"{lang}.jsonl", out, meta)
            files.append(out)
    table = paired_tests(files, [("good", "half")], resamples=300)
    assert list(table.language) == ["de", "en", "avg"]
    n = len(read_local(MINI, "pa", "test", "en"))
    expected = 100 * (n // 2) / n
    assert table.difference.tolist() == pytest.approx([expected, expected, expected], abs=1e-3)
    assert table.significant.all() and (table.ci_low > 0).all() and (table.p_value == 0).all()
    assert paired_tests(files, [("good", "nothing")]).empty
