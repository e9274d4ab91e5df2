"""λ as a grid axis, end to end on a tiny model: a sweep sharing one teacher cache, λ = 0 and
the sweep value equal to Distilled's reused instead of retrained, the best λ chosen on dev,
each dynamic-λ strategy trained with its λ_eff logged, and the report's sections."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from .conftest import small_grid_config
from .test_e2e import _snakemake, run_grid, write_config

pytestmark = pytest.mark.e2e

KD = {"kind": "train", "loss": "kd", "teacher_few_shot": True}
STRATEGIES = {
    "entropy": {"strategy": "entropy", "lambda_max": 1.0},
    "grad_conflict": {"strategy": "grad_conflict", "lambda": 0.5},
    "loss_ratio": {"strategy": "loss_ratio", "lambda_0": 0.5, "lambda_max": 10.0},
    "meta": {"strategy": "meta", "meta_lr": 0.2, "val_batch_size": 4},
    "task_prior": {"strategy": "task_prior", "classification": 1.0, "sequence_labelling": 0.5},
}


def _config(model_dir, sweep=(0, 0.1, 0.5)) -> dict:
    cfg = small_grid_config(model_dir, 3, {"nli": 4, "ner": 8})
    cfg["conditions"] = {
        "finetuned": {"kind": "train", "loss": "ce"},
        "distilled": KD | {"lambda": 0.5, "sweep": {"lambda": list(sweep)}},
    } | {name: KD | {"dynamic": block} for name, block in STRATEGIES.items()}
    cfg["training"]["max_steps"] = 3
    return cfg


@pytest.fixture(scope="module")
def lambda_run(tiny_model_dir, tmp_path_factory):
    return run_grid(tmp_path_factory, "lambda-grid", _config(tiny_model_dir))


def job_records(workdir) -> dict[str, tuple[str, list[str]]]:
    """Each output file of the finished run in ``workdir`` → (rule, input files) of the job that
    wrote it, as Snakemake recorded them when the job ran (read back with ``--detailed-summary``)."""
    summary = _snakemake(workdir, "--detailed-summary").stdout
    records = {}
    for line in summary.splitlines():
        fields = line.split("\t")
        if len(fields) == 8 and fields[0] != "output_file":
            records[fields[0]] = (fields[2], fields[4].split(","))
    return records


#: (task, condition) → the condition whose training run and predictions it reuses
REUSED = {(t, "distilled@lam=0"): "finetuned" for t in ("nli", "ner")} | {
    (t, "distilled@lam=0.5"): "distilled" for t in ("nli", "ner")
} | {("ner", "task_prior"): "distilled"}  # fmt: skip


def test_sweep_shares_one_teacher_cache_and_reuses_identical_runs(lambda_run):
    logs = lambda_run / "results" / "logs"
    assert sorted(p.name for p in (logs / "teacher_cache").glob("*.log")) == [
        "tiny.ner.2shot.log",
        "tiny.nli.2shot.log",
    ]
    trained = {p.name.removesuffix(".log") for p in (logs / "train").glob("*.log")}
    # λ = 0 is Fine-Tuned's run and λ = 0.5 Distilled's; task_prior's NER λ 0.5 is Distilled's too
    assert trained == {
        f"tiny.{task}.{c}"
        for task in ("nli", "ner")
        for c in ("finetuned", "distilled", "distilled@lam=0.1", "entropy", "grad_conflict", "loss_ratio", "meta")
    } | {"tiny.nli.task_prior"}


def test_reused_members_are_scored_from_the_run_they_reuse(lambda_run):
    """Reuse is sound because λ = 0 KD training is bitwise SFT (unit-tested in
    tests/test_training.py::test_lambda_zero_equals_sft_and_kd_changes_the_weights) and an equal
    λ is the same run. What only the end-to-end run shows: the workflow planned no training or
    generation for a reusing member (no job, no adapter, no predictions folder), Snakemake
    recorded the reused condition's predictions as the input of its metrics, and its cells are
    that condition's cells row by row."""
    results = lambda_run / "results"
    jobs = job_records(lambda_run)
    made = [out for out, (rule, _) in jobs.items() if rule in ("train", "infer")]
    assert any("/finetuned/" in out for out in made)
    cells = pd.read_csv(results / "tables" / "cells.csv")

    def cell_rows(task, condition):
        rows = cells[(cells.task == task) & (cells.condition == condition)].drop(columns="condition")
        return rows.sort_values(["language", "metric"]).reset_index(drop=True)

    for (task, member), run in REUSED.items():
        assert not [out for out in made if re.search(rf"/{task}/{re.escape(member)}(/|$)", out)], member
        assert not (results / "training" / "tiny" / task / member).exists()
        assert not list(results.glob(f"predictions/*/tiny/{task}/{member}"))
        for lang in ("en", "de"):
            rule, inputs = jobs[f"results/metrics/test/tiny/{task}/{member}/{lang}.json"]
            assert rule == "score_cell" and f"results/predictions/test/tiny/{task}/{run}" in inputs, (member, inputs)
        if "@lam=" in member:  # a sweep member is also scored on dev, for the choice of λ
            rule, inputs = jobs[f"results/metrics/select/tiny/{task}/{member}/en.json"]
            assert rule == "score_cell" and f"results/predictions/select/tiny/{task}/{run}" in inputs
        reused = cell_rows(task, run)
        assert len(reused) >= 2
        pd.testing.assert_frame_equal(cell_rows(task, member), reused)
    # the sweep members trained on their own are scored from their own predictions
    rule, inputs = jobs["results/metrics/test/tiny/nli/distilled@lam=0.1/en.json"]
    assert "results/predictions/test/tiny/nli/distilled@lam=0.1" in inputs


def test_best_lambda_is_chosen_on_dev_and_reports_that_members_test_cells(lambda_run):
    results = lambda_run / "results"
    cells = pd.read_csv(results / "tables" / "cells.csv")
    for task in ("nli", "ner"):
        selection = json.loads((results / "selection" / "tiny" / task / "distilled-best.json").read_text())
        assert selection["languages"] == ["en"] and len(selection["candidates"]) == 3
        best_dev = max(c["dev_score"] for c in selection["candidates"])
        chosen = selection["chosen"]
        assert chosen["dev_score"] == best_dev
        # ties go to the smallest λ
        assert chosen["lambda"] == min(c["lambda"] for c in selection["candidates"] if c["dev_score"] == best_dev)
        dev_metrics = results / "metrics" / "select" / "tiny" / task / chosen["condition"] / "en.json"
        assert json.loads(dev_metrics.read_text())["n"] == 9  # every English dev row, never test
        for lang in ("en", "de"):
            rows = cells[(cells.task == task) & (cells.language == lang)]
            best = rows[rows.condition == "distilled-best"].set_index("metric")["value"]
            member = rows[rows.condition == chosen["condition"]].set_index("metric")["value"]
            pd.testing.assert_series_equal(best, member)
    table = pd.read_csv(results / "tables" / "selection.csv")
    assert len(table) == 6 and table.groupby("task")["chosen"].sum().eq(1).all()


def test_each_strategy_logs_its_lambda_trace(lambda_run):
    training = pd.read_csv(lambda_run / "results" / "tables" / "training.csv")
    for name in ("entropy", "grad_conflict", "loss_ratio", "meta"):
        for task in ("nli", "ner"):
            run = training[(training.condition == name) & (training.scope == task)]
            assert list(run.step) == [1, 2, 3] and run.lambda_eff.notna().all(), (name, task)
    assert training[training.condition == "grad_conflict"].cos.notna().all()
    assert training[training.condition == "meta"].meta_grad.notna().all()
    assert (training[training.condition == "loss_ratio"].lambda_eff <= 10.0).all()
    # task_prior trains its own NLI run (λ 1); its NER run is Distilled's (λ 0.5), logged under both
    prior = training[training.condition == "task_prior"].set_index("scope")
    assert (prior.loc["nli", "run"] == "task_prior").all() and (prior.loc["nli", "lambda_eff"] == 1.0).all()
    assert (prior.loc["ner", "run"] == "distilled").all() and (prior.loc["ner", "lambda_eff"] == 0.5).all()
    reused = training[(training.condition == "distilled@lam=0") & (training.scope == "ner")]
    assert (reused.run == "finetuned").all() and len(reused) == 3


def test_report_has_sweep_and_dynamic_sections_and_figures(lambda_run):
    results = lambda_run / "results"
    report = (results / "RESULTS.md").read_text(encoding="utf-8")
    assert "## λ Sweep" in report and "### NLI (Acc %) — Distilled λ sweep" in report
    assert "λ = 0 (= Fine-Tuned)" in report and "### Dynamic λ" in report
    assert "Best λ per task (chosen on dev, never on test)" in report
    summary = report[report.index("## Summary") : report.index("## Per-Task")]
    assert "Distilled (best λ)" in summary and "Meta-λ" in summary and "λ=0.1" not in summary
    for figure in ("lambda_sweep.png", "lambda_eff.png", "dynamic_gap.png"):
        assert (results / "figures" / figure).stat().st_size > 1000
        assert f"figures/{figure}" in report


def test_changing_one_sweep_value_replans_only_that_member(lambda_run, tiny_model_dir):
    write_config(lambda_run, _config(tiny_model_dir, (0, 0.2, 0.5)))
    try:
        out = _snakemake(lambda_run, "-n", "--cores", "1").stdout
    finally:
        write_config(lambda_run, _config(tiny_model_dir))
    table = out[out.index("Job stats:") :].split("\n\n")[0].splitlines()
    counts = {p[0]: int(p[1]) for p in (line.split() for line in table) if len(p) == 2 and p[1].isdigit()}
    # λ = 0.2 trains and is evaluated (test and dev) per task; the choice and best cells follow
    assert counts["train"] == 2 and counts["infer"] == 2 + 2  # test and select split, per task
    assert out.count("output: results/predictions/select/tiny/") == 2
    assert counts["score_cell"] == 4 + 2 and counts["select_lambda"] == 2 and counts["best_cell"] == 4
    assert "teacher_cache" not in counts and "prepare_split" not in counts
