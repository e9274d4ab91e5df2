"""Training seeds as a grid axis, end to end on a tiny model: one run per (condition, seed),
identical runs still shared across a λ sweep, cells reporting the mean and spread over seeds
with a two-level bootstrap interval, paired tests over seeds, the report's interval appendix,
and adding a seed training only that seed."""

from __future__ import annotations

import json
import re
import statistics

import numpy as np
import pandas as pd
import pytest

from icldistill.data import stable_seed

from .conftest import small_grid_config
from .test_e2e import _snakemake, run_grid, write_config
from .test_lambda_e2e import job_records
from .test_stats import reference_interval, reference_paired

pytestmark = pytest.mark.e2e

KD = {"kind": "train", "loss": "kd", "teacher_few_shot": True, "lambda": 0.5}
TRAINED = ("finetuned", "distilled", "control")


def _config(model_dir, seeds=(0, 1)) -> dict:
    cfg = small_grid_config(model_dir, 4, {"nli": 4, "ner": 8})
    cfg["conditions"] = {
        "base": {"kind": "infer", "few_shot": False},
        "finetuned": {"kind": "train", "loss": "ce"},
        "distilled": KD | {"sweep": {"lambda": [0, 0.5]}},
        "control": KD | {"teacher_few_shot": False},
    }
    cfg["training"] |= {"seeds": list(seeds), "lr": 5e-2}  # seeds that differ in their predictions
    cfg["stats"] = {"resamples": 400, "seed": 3}
    cfg["scoring"] = {"nli": "loglik"}  # label log-likelihoods: scores a tiny model varies on
    return cfg


@pytest.fixture(scope="module")
def seeds_run(tiny_model_dir, tmp_path_factory):
    return run_grid(tmp_path_factory, "seeds-grid", _config(tiny_model_dir))


def _metrics(workdir, task, condition, lang):
    path = workdir / "results" / "metrics" / "test" / "tiny" / task / condition / f"{lang}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _seed_terms(record, metric):
    """Each seed run's per-example (numerator, denominator), as README.md's table defines them:
    accuracy correct / 1, NER F1 2·TP / (predicted + gold entities)."""

    def terms(rows):
        if metric == "f1":
            return [2 * r["true_pos"] for r in rows], [r["pred"] + r["gold"] for r in rows]
        return [r["correct"] for r in rows], [1] * len(rows)

    return [terms(run["per_example"]) for run in record["per_seed"]]


def test_one_run_per_condition_and_seed(seeds_run):
    trained = {p.name.removesuffix(".log") for p in (seeds_run / "results" / "logs" / "train").glob("*.log")}
    # the sweep's λ = 0 and λ = 0.5 reuse Fine-Tuned's and Distilled's run of the same seed
    assert trained == {f"tiny.{t}.{c}@seed={s}" for t in ("nli", "ner") for c in TRAINED for s in (0, 1)}
    # one teacher cache per (task, shots), shared by every seed
    assert len(list((seeds_run / "results" / "logs" / "teacher_cache").glob("*.log"))) == 4
    models = seeds_run / "results" / "training" / "tiny" / "ner"
    weights = [(models / f"finetuned@seed={s}" / "adapter" / "adapter_model.safetensors").read_bytes() for s in (0, 1)]
    assert weights[0] != weights[1]  # the seed changes the run (LoRA initialisation, data order)


def test_cells_report_mean_spread_and_two_level_interval(seeds_run):
    cells = pd.read_csv(seeds_run / "results" / "tables" / "cells.csv")
    key = ["task", "condition", "language", "metric"]
    by_key = cells.set_index(key)
    trained_rows = cells[cells.condition.isin([*TRAINED, "distilled-best", "distilled@lam=0", "distilled@lam=0.5"])]
    assert (trained_rows.seeds == 2).all()
    assert (trained_rows.seed_sd > 0).any(), "no cell differs between seeds: the spread is untested"
    assert cells[cells.condition == "base"].seeds.isna().all()
    assert cells[cells.condition.str.contains("@seed=")].seeds.isna().all()
    for task, condition, lang, metric in trained_rows[key].itertuples(index=False):
        if condition.endswith("-best"):
            continue  # the chosen sweep member's cell, relabelled
        per_seed = [by_key.loc[(task, f"{condition}@seed={s}", lang, metric), "value"] for s in (0, 1)]
        row = by_key.loc[(task, condition, lang, metric)]
        assert row.value == pytest.approx(statistics.fmean(per_seed), abs=1e-4)
        assert row.seed_sd == pytest.approx(statistics.stdev(per_seed), abs=1e-4)
        assert row.ci_low <= row.value <= row.ci_high
    # the interval is the two-level bootstrap over seeds and examples (README "Statistics"),
    # recomputed by tests/test_stats.py's plain re-implementation, seeded per cell
    widths = []
    for task, metric in (("ner", "f1"), ("nli", "accuracy")):
        for lang in ("en", "de"):
            record = _metrics(seeds_run, task, "distilled", lang)
            assert [s["seed"] for s in record["per_seed"]] == [0, 1]
            cell_seed = stable_seed(3, "tiny", task, lang, metric)
            low, high = reference_interval(_seed_terms(record, metric), 400, cell_seed)
            row = by_key.loc[(task, "distilled", lang, metric)]
            assert (row.ci_low, row.ci_high) == pytest.approx((low, high), abs=1e-4)
            widths.append(high - low)
    assert max(widths) > 0, "every interval is a point: the comparison is vacuous"


def test_lambda_zero_member_is_fine_tuned_seed_by_seed(seeds_run):
    """The sweep's λ = 0 member is Fine-Tuned's run of the same seed (λ = 0 KD is bitwise SFT:
    tests/test_training.py::test_lambda_zero_equals_sft_and_kd_changes_the_weights): nothing of
    its own is trained or generated, and Snakemake scored its seed-s cells from Fine-Tuned's
    seed-s predictions, not another seed's."""
    jobs = job_records(seeds_run)
    made = {out for out, (rule, _) in jobs.items() if rule in ("train", "infer")}
    assert made and not [out for out in made if re.search(r"distilled@lam=0(@|/|$)", out)]
    cells = pd.read_csv(seeds_run / "results" / "tables" / "cells.csv")

    def seed_cells(task, condition):
        rows = cells[(cells.task == task) & (cells.condition == condition)].drop(columns="condition")
        return rows.sort_values(["language", "metric"]).reset_index(drop=True)

    for task in ("nli", "ner"):
        for seed in (0, 1):
            member = f"tiny/{task}/distilled@lam=0@seed={seed}"
            assert not (seeds_run / "results/training" / member).exists()
            assert not list((seeds_run / "results/predictions").glob(f"*/{member}"))
            for lang in ("en", "de"):
                rule, inputs = jobs[f"results/metrics/test/tiny/{task}/distilled@lam=0@seed={seed}/{lang}.json"]
                assert rule == "score_cell"
                assert f"results/predictions/test/tiny/{task}/finetuned@seed={seed}" in inputs, inputs
            # and its cells are that seed's Fine-Tuned cells, row by row
            fine_tuned = seed_cells(task, f"finetuned@seed={seed}")
            assert len(fine_tuned) >= 2
            pd.testing.assert_frame_equal(seed_cells(task, f"distilled@lam=0@seed={seed}"), fine_tuned)


def test_paired_tests_pair_seeds(seeds_run):
    paired = pd.read_csv(seeds_run / "results" / "tables" / "paired.csv")
    assert set(zip(paired.condition, paired.reference, strict=True)) == {
        ("distilled", "finetuned"), ("control", "finetuned"), ("distilled-best", "finetuned"), ("distilled", "control")
    }  # fmt: skip
    row = paired[(paired.task == "nli") & (paired.condition == "distilled") & (paired.reference == "finetuned")]
    row = row[row.language == "avg"].iloc[0]
    langs = ("de", "en")  # the task average's groups, in sorted language order
    a = [_seed_terms(_metrics(seeds_run, "nli", "distilled", lang), "accuracy") for lang in langs]
    b = [_seed_terms(_metrics(seeds_run, "nli", "finetuned", lang), "accuracy") for lang in langs]
    expected = reference_paired(a, b, 400, stable_seed(3, "tiny", "nli", "distilled", "finetuned"))
    assert (row.difference, row.ci_low, row.ci_high, row.p_value) == pytest.approx(expected, abs=1e-4)
    means = [
        np.mean([_metrics(seeds_run, "nli", c, lang)["metrics"]["accuracy"] for lang in langs])
        for c in ("distilled", "finetuned")
    ]
    assert row.difference == pytest.approx(means[0] - means[1], abs=1e-3)


def test_report_shows_means_with_spread_and_intervals(seeds_run):
    results = (seeds_run / "results" / "RESULTS.md").read_text(encoding="utf-8")
    main, _, appendix = results.partition("## 95 % Intervals per Cell (Tiny-Llama)")
    assert appendix, "no interval appendix"
    assert "(seed " not in main  # seed runs stay out of the sections; their mean is shown
    assert "mean over its 2 training seeds" in appendix
    cells = pd.read_csv(seeds_run / "results" / "tables" / "cells.csv").set_index(
        ["task", "condition", "language", "metric"]
    )
    ft = cells.loc[("nli", "finetuned", "en", "accuracy")]
    expected = f"{ft.value:.1f} ±{ft.seed_sd:.1f} [{ft.ci_low:.1f}, {ft.ci_high:.1f}]"
    assert expected in appendix
    training = pd.read_csv(seeds_run / "results" / "tables" / "training.csv")
    assert set(training[training.condition == "finetuned"].seed) == {0, 1}


def test_adding_a_seed_trains_only_that_seed(seeds_run, tiny_model_dir):
    write_config(seeds_run, _config(tiny_model_dir, seeds=(0, 1, 2)))
    try:
        plan = _snakemake(seeds_run, "-n", "--quiet", "rules").stdout
    finally:
        write_config(seeds_run, _config(tiny_model_dir))
    counts = {
        line.split()[0]: int(line.split()[1])
        for line in plan.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert counts["train"] == 6  # 3 conditions x 2 tasks, seed 2 only
    # test split: 3 runs x 2 tasks; select split (the sweep's dev rows): λ 0 and λ 0.5 are
    # Fine-Tuned's and Distilled's seed-2 runs, x 2 tasks
    assert counts["infer"] == 6 + 4 and "teacher_cache" not in counts
