"""Bootstrap intervals and paired tests: the resampled statistic is the metric itself (checked
against the scorer on real rows), intervals and p-values on hand-checkable cases."""

from __future__ import annotations

import numpy as np
import pytest

from icldistill.data import read_local
from icldistill.metrics import score
from icldistill.stats import bootstrap_interval, cell_interval, paired_difference, ratio, ratio_terms

from .conftest import MINI


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
    # binomial p = 0.5, n = 100: the 95 % interval is about 50 ± 10
    assert 38 < low < 43 and 57 < high < 62
    assert bootstrap_interval(correct, np.ones(100), resamples=2000, seed=3) == (low, high)  # seeded
    wide = bootstrap_interval(correct[:10], np.ones(10), resamples=2000, seed=3)
    assert wide[1] - wide[0] > high - low  # fewer examples, wider interval
    assert all(np.isnan(v) for v in bootstrap_interval(np.array([]), np.array([])))


def test_paired_difference_on_hand_checkable_cases():
    n = np.ones(3)
    a, b = (np.array([1.0, 1.0, 0.0]), n), (np.array([0.0, 1.0, 0.0]), n)
    result = paired_difference([a], [b], resamples=500)
    assert result.difference == pytest.approx(100 / 3)
    # a is never worse on any example: no resample favours b
    assert result.low >= 0 and result.p_value <= 1.0
    same = paired_difference([a], [a], resamples=500)
    assert (same.difference, same.low, same.high, same.p_value, same.significant) == (0.0, 0.0, 0.0, 1.0, False)
    right, wrong = (np.ones(50), np.ones(50)), (np.zeros(50), np.ones(50))
    decisive = paired_difference([right], [wrong], resamples=500)
    assert (decisive.low, decisive.high, decisive.p_value, decisive.significant) == (100.0, 100.0, 0.0, True)
    # a task average: the mean of the per-language differences
    two = paired_difference([right, a], [wrong, a], resamples=500)
    assert two.difference == pytest.approx(50.0) and two.low == two.high == 50.0
    with pytest.raises(ValueError, match="not paired"):
        paired_difference([a], [(np.ones(4), np.ones(4))])


def test_two_level_bootstrap_over_seeds():
    rng = np.random.default_rng(0)
    ones = np.ones(40)
    x1, x2 = (rng.integers(0, 2, 40).astype(float), ones), (rng.integers(0, 2, 40).astype(float), ones)
    # one seed is the one-level bootstrap; identical seeds change nothing
    assert cell_interval([x1], 500, 7) == cell_interval(x1, 500, 7) == bootstrap_interval(*x1, 500, 7)
    assert cell_interval([x1, x1, x1], 500, 7) == cell_interval(x1, 500, 7)
    # seeds that disagree completely (all right / all wrong): resampling seeds spans 0 to 100,
    # while the examples alone (every seed's spread is 0) would give the single point 50
    right, wrong = (ones, ones), (np.zeros(40), ones)
    low, high = cell_interval([right, wrong], 2000, 7)
    assert (low, high) == (0.0, 100.0)
    # paired by seed: a condition against itself is exactly 0 even when its seeds differ ...
    same = paired_difference([[x1, x2]], [[x1, x2]], resamples=500, seed=1)
    assert (same.difference, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    # ... and the difference is the mean over seeds of the per-seed differences
    shifted = paired_difference([[right, x1]], [[wrong, x1]], resamples=500, seed=1)
    assert shifted.difference == pytest.approx(50.0)
    assert shifted.low == 0.0 and shifted.high == 100.0  # seed 1 ties, seed 0 differs by 100
    # against a condition without seeds (inference), only the seeded side's seeds are resampled
    mixed = paired_difference([[right, wrong]], [x1], resamples=500, seed=1)
    assert mixed.difference == pytest.approx(50.0 - ratio(*x1))
    with pytest.raises(ValueError, match="different numbers of examples"):
        cell_interval([x1, (np.ones(3), np.ones(3))])


def test_cells_table_carries_seeded_intervals(tmp_path):
    from icldistill.aggregate import collect_cells, score_cell
    from icldistill.data import stable_seed, write_jsonl
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
    expected = bootstrap_interval(
        *ratio_terms("pa", "accuracy", record["per_example"]),
        resamples=500,
        seed=stable_seed(7, "m", "pa", "en", "accuracy"),
    )
    assert (row.ci_low, row.ci_high) == pytest.approx(expected, abs=1e-4)
    assert row.ci_low < row.value < row.ci_high
    assert list(cells.columns[-4:]) == ["ci_low", "ci_high", "seeds", "seed_sd"]


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
