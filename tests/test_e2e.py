"""The real Snakefile end to end on a tiny random Llama and the mini data: every stage, the
report, a no-op second run, and a config change that reruns only the affected jobs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import MINI, ROOT

pytestmark = pytest.mark.e2e

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def _config(model_dir: Path) -> dict:
    return {
        "models": {"tiny": {"display_name": "Tiny-Llama", "path": str(model_dir), "dtype": "float32"}},
        "tasks": ["nli", "pa", "qa", "ner", "pos"],
        "languages": ["en", "hi", "es", "de", "fr", "zh"],
        "conditions": {
            "base": {"kind": "infer", "few_shot": False},
            "fewshot": {"kind": "infer", "few_shot": True},
            "finetuned": {"kind": "train", "loss": "ce"},
            "distilled": {"kind": "train", "loss": "kd", "teacher_few_shot": True, "lambda": 0.5},
            "control": {"kind": "train", "loss": "kd", "teacher_few_shot": False, "lambda": 0.5},
            # differs from distilled only in lambda: must share its teacher cache
            "distilled_lam01": {"kind": "train", "loss": "kd", "teacher_few_shot": True, "lambda": 0.1},
        },
        "data": {"source": "local", "path": str(MINI)},
        "eval": {"split": "test", "max_examples": 3, "seed": 1},
        "few_shot": {"k": 2, "seed": 1},
        "scoring": {"nli": "loglik", "pa": "generate"},
        "generation": {
            "backend": "hf",
            "batch_size": 4,
            "max_new_tokens": {"nli": 4, "pa": 4, "qa": 6, "ner": 8, "pos": 8},
        },
        "training": {"max_steps": 2, "batch_size": 4, "max_examples": 8, "checkpoint_every": 1, "lr": 1e-3},
        "teacher": {"top_k": 8},
    }


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            SNAKEMAKE,
            "-s",
            str(ROOT / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(workdir / "config.yaml"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def write_config(workdir: Path, config: dict) -> None:
    """``workdir/config.yaml``, keys in ``config``'s order (as a user writes them)."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def run_grid(tmp_path_factory, name: str, config: dict) -> Path:
    """A fresh working folder ``name`` with ``config``, run to the end on 2 cores."""
    workdir = tmp_path_factory.mktemp(name)
    write_config(workdir, config)
    _snakemake(workdir, "--cores", "2")
    return workdir


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    return run_grid(tmp_path_factory, "grid", _config(tiny_model_dir))


def test_grid_writes_cells_results_and_figures(finished_run):
    cells = pd.read_csv(finished_run / "results" / "tables" / "cells.csv")
    assert list(cells.columns[:7]) == ["model", "task", "condition", "language", "metric", "value", "n"]
    primary = cells[cells.metric.isin(["accuracy", "f1"]) & ~((cells.task == "ner") & (cells.metric != "f1"))]
    cell_keys = set(zip(primary.task, primary.condition, primary.language, strict=True))
    assert len(cell_keys) == 28 * 6  # 28 valid (task, language) pairs x 6 conditions
    assert ("pa", "base", "hi") not in cell_keys and ("qa", "fewshot", "fr") not in cell_keys
    assert set(cells[cells.task == "qa"].metric) == {"f1", "exact_match"}
    assert (cells.n == 3).all()
    assert cells.value.between(0, 100).all()
    # every cell carries its 95 % bootstrap interval
    assert cells.ci_low.between(0, 100).all() and cells.ci_high.between(0, 100).all()
    assert (cells.ci_low <= cells.ci_high).all()

    results = (finished_run / "results" / "RESULTS.md").read_text(encoding="utf-8")
    assert "## Summary: Average Score per Condition" in results
    assert "Tiny-Llama" in results and "#### QA Exact Match (%)" in results
    for section in ("## Few-Shot", "## Fine-Tuned", "## Distilled", "## Control", "Dist−FT", "Ctrl−FT"):
        assert section in results
    # paired bootstrap tests of every compared difference, per language and task average
    paired = pd.read_csv(finished_run / "results" / "tables" / "paired.csv")
    averages = paired[paired.language == "avg"]
    assert set(zip(averages.condition, averages.reference, strict=True)) == {
        ("distilled", "finetuned"), ("control", "finetuned"), ("distilled_lam01", "finetuned"), ("distilled", "control")
    }  # fmt: skip
    assert len(averages) == 4 * 5 and (averages.ci_low <= averages.ci_high).all()
    assert "bold only when it excludes 0" in results
    for figure in ("task_bar.png", "heatmap_distilled.png", "gap.png"):
        path = finished_run / "results" / "figures" / figure
        assert path.stat().st_size > 1000
        assert f"figures/{figure}" in results


def test_every_job_has_a_benchmark_record_and_the_compute_table_sums_them(finished_run):
    """Every rule writes a benchmark record; compute.csv lists each inference, teacher and
    training job once, with its record's wall time and the tokens it processed, and the report's
    Compute section prices each condition: Distilled (teacher + training + evaluation) costs more
    than Base (evaluation only)."""
    bench = finished_run / "results" / "benchmarks"
    logs = finished_run / "results" / "logs"
    logged = {p.relative_to(logs).with_suffix("") for p in logs.rglob("*.log")}
    recorded = {p.relative_to(bench).with_suffix("") for p in bench.rglob("*.tsv")}
    # render_results' record appears after the run's last job: compare the jobs before it
    assert logged - {Path("render_results")} <= recorded
    compute = pd.read_csv(finished_run / "results" / "tables" / "compute.csv")
    per_rule = compute.groupby("rule").size().to_dict()
    # 5 tasks × 6 conditions, distilled_lam01 has its own run; 2 teacher shots × 5 tasks; 4 runs × 5
    assert per_rule == {"infer": 30, "teacher_cache": 10, "train": 20}
    assert compute.seconds.gt(0).all() and compute.max_rss_mib.gt(0).all()
    assert compute.tokens.gt(0).all() and compute.tokens_per_s.gt(0).all()
    record = pd.read_csv(bench / "infer" / "tiny.nli.base.test.tsv", sep="\t")
    row = compute[(compute.rule == "infer") & (compute.job == "tiny.nli.base.test")].iloc[0]
    assert row.seconds == pytest.approx(record.s[0]) and row.conditions == "base"
    # the 2-shot teacher of NLI serves Distilled and distilled_lam01
    teacher = compute[(compute.rule == "teacher_cache") & (compute.job == "tiny.nli.2shot")].iloc[0]
    assert sorted(teacher.conditions.split(";")) == ["distilled", "distilled_lam01"]
    results = (finished_run / "results" / "RESULTS.md").read_text(encoding="utf-8")
    assert "## Compute" in results
    section = results.split("## Compute", 1)[1].split("\n## ", 1)[0]
    lines = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}
    assert {"inference", "teacher", "training"} <= set(lines)
    base = [cell.strip() for cell in lines["Base"].split("|")[1:-1]]
    assert base[1:3] == ["0", "0"] and base[3] != "—"


def test_prompts_predictions_and_metrics_are_per_language(finished_run):
    results = finished_run / "results"
    # one file per language, and the folder's manifest (written last)
    assert sorted(p.name for p in (results / "prompts/test/tiny/pa/2shot").glob("*.json")) == [
        "MANIFEST.json",
        *(f"{lang}.json" for lang in sorted(["en", "es", "de", "fr", "zh"])),
    ]
    assert sorted(p.name for p in (results / "predictions/test/tiny/qa/base").glob("*.jsonl")) == [
        f"{lang}.jsonl" for lang in sorted(["en", "hi", "es", "de", "zh"])
    ]
    assert (results / "metrics/test/tiny/ner/fewshot/zh.json").is_file()


def test_second_run_has_nothing_to_do_and_report_renders(finished_run):
    dry = _snakemake(finished_run, "-n", "--cores", "1")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    _snakemake(finished_run, "--report", str(finished_run / "report.html"))
    html = (finished_run / "report.html").read_text(encoding="utf-8", errors="replace")
    assert "cells.csv" in html and "task_bar.png" in html


def test_run_record_is_written_and_shown_in_the_report(finished_run, tiny_model_dir):
    record = json.loads((finished_run / "results" / "run.json").read_text(encoding="utf-8"))
    assert {"git", "versions", "config_hash", "models", "data", "config"} <= set(record)
    assert {"commit", "dirty"} <= set(record["git"])
    assert {"torch", "transformers", "peft", "vllm", "snakemake", "datasets"} <= set(record["versions"])
    weights = tiny_model_dir / "model.safetensors"
    weights_hash = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record["models"]["tiny"]["files"]["model.safetensors"]["sha256"] == weights_hash
    assert record["data"]["count"] > 0 and len(record["data"]["files"]) == record["data"]["count"]
    results = (finished_run / "results" / "RESULTS.md").read_text(encoding="utf-8")
    appendix = results[results.index("## Run Record") :]
    assert f"**Config hash**: `{record['config_hash'][:12]}`" in appendix
    assert f"`{record['models']['tiny']['sha256'][:12]}`" in appendix
    assert f"{record['data']['count']} files (combined hash) | `{record['data']['sha256'][:12]}`" in appendix


def test_config_change_reruns_only_affected_jobs(finished_run, tiny_model_dir):
    cfg = _config(tiny_model_dir)
    cfg["scoring"]["pa"] = "loglik"
    write_config(finished_run, cfg)
    try:
        dry = _snakemake(finished_run, "-n", "--cores", "1")
    finally:
        write_config(finished_run, _config(tiny_model_dir))
    out = dry.stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    # the PA inference job of each of the 6 conditions, their 30 cells, the table and the report
    assert counts.get("infer") == 6
    assert counts.get("score_cell") == 30
    assert "build_prompts" not in counts and "prepare_split" not in counts and "train" not in counts


def _planned(finished_run, cfg) -> dict[str, int]:
    write_config(finished_run, cfg)
    try:
        out = _snakemake(finished_run, "-n", "--cores", "1").stdout
    finally:
        write_config(finished_run, _config(cfg["models"]["tiny"]["path"]))
    table = out[out.index("Job stats:") :].split("\n\n")[0].splitlines()
    return {p[0]: int(p[1]) for p in (line.split() for line in table) if len(p) == 2 and p[1].isdigit()}


def test_teacher_cache_is_computed_once_per_task_and_shots(finished_run):
    logs = sorted(p.name for p in (finished_run / "results" / "logs" / "teacher_cache").glob("*.log"))
    # distilled and distilled_lam01 differ only in lambda: one 2-shot cache per task, plus
    # the 0-shot cache of control
    assert logs == sorted(f"tiny.{t}.{s}shot.log" for t in ("nli", "pa", "qa", "ner", "pos") for s in (0, 2))
    snakemake_logs = "".join(p.read_text() for p in (finished_run / ".snakemake" / "log").glob("*.log"))
    assert snakemake_logs.count("rule teacher_cache:") == 10
    trained = finished_run / "results/training/tiny/ner/distilled_lam01"
    assert (trained / "adapter" / "adapter_model.safetensors").is_file()
    assert (trained / "train_log.csv").read_text().splitlines()[1].split(",")[4] == "0.1"


def test_lambda_change_replans_only_that_condition(finished_run, tiny_model_dir):
    cfg = _config(tiny_model_dir)
    cfg["conditions"]["distilled_lam01"]["lambda"] = 0.05
    counts = _planned(finished_run, cfg)
    # its 5 training runs (per task), their 5 evaluations and 28 cells, then table, run record
    # (whose params hold the config hash) and report
    assert counts == {
        "train": 5,
        "infer": 5,
        "score_cell": 28,
        "collect_cells": 1,
        "run_record": 1,
        "render_results": 1,
        "all": 1,
        "total": 42,
    }


def test_failed_job_under_keep_going_leaves_a_partial_report(finished_run, tmp_path):
    """A run in which a job fails still renders the finished cells to results/partial/ (with
    --keep-going), and never writes the workflow's own table or report."""
    import shutil

    workdir = tmp_path / "partial"
    data = tmp_path / "data"
    shutil.copytree(MINI, data)
    # a damaged German NER file: its data job fails, and with it that cell's chain
    with (data / "ner" / "test.de.jsonl").open("a", encoding="utf-8") as f:
        f.write("{not json\n")
    config = yaml.safe_load((finished_run / "config.yaml").read_text())
    config["tasks"], config["languages"] = ["pa", "ner"], ["en", "de"]
    config["conditions"] = {k: v for k, v in config["conditions"].items() if k in ("base", "fewshot")}
    config["data"]["path"] = str(data)
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir)]
        + ["--configfile", str(workdir / "config.yaml"), "--cores", "2", "--keep-going"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode != 0
    assert "cells finished, 0 stale" in result.stderr
    partial = workdir / "results" / "partial"
    cells = pd.read_csv(partial / "cells.csv")
    # inference runs per (task, condition) over all languages: every NER cell failed and is
    # listed without a value; the report shows it as —
    finished = cells.dropna(subset=["value"])
    assert set(finished["task"]) == {"pa"} and set(finished["condition"]) == {"base", "fewshot"}
    assert set(cells.loc[cells["value"].isna(), "task"]) == {"ner"}
    assert "test.de.jsonl" in result.stdout + result.stderr
    report = (partial / "RESULTS.md").read_text(encoding="utf-8")
    ner = report[report.index("### NER") :].split("\n\n")[1]
    assert "—" in ner
    assert not (workdir / "results" / "tables" / "cells.csv").exists()
    assert not (workdir / "results" / "RESULTS.md").exists()
