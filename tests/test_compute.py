"""The Compute tables from hand-written benchmark records: sums by stage, tokens per second of
compute, per-condition costs with shared jobs, and missing records shown as missing."""

from __future__ import annotations

import json

import pytest

from icldistill import compute

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _record(path, seconds, rss, cpu):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:00\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")
    return str(path)


@pytest.fixture
def jobs(tmp_path):
    predictions = tmp_path / "pred"
    predictions.mkdir()
    (predictions / "stats.json").write_text(json.dumps({"prompt_tokens": 900, "output_tokens": 100, "load_seconds": 5}))
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "summary.json").write_text(json.dumps({"tokens": 640, "seconds": 60.0, "load_seconds": 0.0}))
    return [
        {"rule": "infer", "benchmark": _record(tmp_path / "b/infer/base.tsv", 25.0, 1000.0, 40.0),
         "artifact": str(predictions), "conditions": ["base"], "model": "m"},
        {"rule": "infer", "benchmark": _record(tmp_path / "b/infer/ft.tsv", 30.0, 1200.0, 50.0),
         "artifact": None, "conditions": ["finetuned"], "model": "m"},
        {"rule": "train", "benchmark": _record(tmp_path / "b/train/ft.tsv", 64.0, 3000.0, 120.0),
         "artifact": str(adapter), "conditions": ["finetuned", "distilled"], "model": "m"},
        {"rule": "infer", "benchmark": str(tmp_path / "b/infer/missing.tsv"),
         "artifact": None, "conditions": ["distilled"], "model": "m"},
    ]  # fmt: skip


def test_a_benchmark_record_is_read_and_a_missing_one_is_none(tmp_path):
    path = _record(tmp_path / "x.tsv", 12.5, 812.3, 20.1)
    assert compute.read_benchmark(path) == {"seconds": 12.5, "max_rss_mib": 812.3, "cpu_seconds": 20.1}
    assert compute.read_benchmark(tmp_path / "absent.tsv") is None


def test_job_rows_count_tokens_per_second_of_compute(jobs):
    rows = compute.job_rows(jobs)
    base, finetuned, train, missing = rows
    # (900 + 100) tokens over 25 - 5 s of compute after loading
    assert base["tokens"] == 1000 and base["tokens_per_s"] == 50.0 and base["load_seconds"] == 5
    assert finetuned["tokens"] is None and finetuned["tokens_per_s"] is None
    assert train["tokens"] == 640 and train["tokens_per_s"] == 10.0
    assert missing["seconds"] is None and missing["stage"] == "inference"


def test_stage_summary_sums_and_keeps_the_longest_and_the_peak(jobs):
    stages = {s["stage"]: s for s in compute.stage_summary(compute.job_rows(jobs))}
    inference = stages["inference"]
    assert (inference["jobs"], inference["timed"], inference["seconds"], inference["longest"]) == (3, 2, 55.0, 30.0)
    assert inference["max_rss_mib"] == 1200.0
    # tokens/s over the jobs that count tokens only (the base job: 1000 tokens in 20 s)
    assert inference["tokens"] == 1000 and inference["tokens_per_s"] == 50.0
    assert list(stages) == ["inference", "training"]


def test_condition_costs_count_a_shared_run_for_each_and_missing_records_as_unknown(jobs):
    costs = {
        c["condition"]: c
        for c in compute.condition_costs(compute.job_rows(jobs), "m", ["base", "finetuned", "distilled"])
    }
    assert costs["base"] == {"condition": "base", "teacher": 0.0, "training": 0.0, "evaluation": 25.0, "total": 25.0}
    assert costs["finetuned"]["training"] == 64.0 and costs["finetuned"]["total"] == 94.0
    # the same training run serves Distilled, whose inference has no record: total unknown
    assert costs["distilled"]["training"] == 64.0
    assert costs["distilled"]["evaluation"] is None and costs["distilled"]["total"] is None
    assert compute.condition_costs(compute.job_rows(jobs), "other", ["base"])[0]["total"] == 0.0


def test_the_table_round_trips_through_compute_csv(jobs, tmp_path):
    out = tmp_path / "compute.csv"
    compute.write_compute(jobs, out)
    rows = compute.read_compute(out)
    assert [r["rule"] for r in rows] == ["infer", "infer", "train", "infer"]
    assert rows[2]["conditions"] == ["finetuned", "distilled"] and rows[3]["seconds"] is None
    assert compute.stage_summary(rows) == compute.stage_summary(compute.job_rows(jobs))


def test_rule_summary_splits_heavy_jobs_into_start_up_loading_and_compute(tmp_path, capsys):
    results = tmp_path / "results"
    predictions = tmp_path / "pred"
    predictions.mkdir()
    stats = {"prompt_tokens": 900, "output_tokens": 100, "load_seconds": 5.0, "seconds": 15.0}
    (predictions / "stats.json").write_text(json.dumps(stats))
    job = {"rule": "infer", "benchmark": _record(results / "benchmarks/infer/m.nli.base.test.tsv", 25.0, 900.0, 40.0)}
    _record(results / "benchmarks/infer/m.nli.distilled.select.tsv", 7.0, 800.0, 6.0)  # dev rows, λ choice
    _record(results / "benchmarks/score_cell/m.nli.base.en.test.tsv", 1.5, 100.0, 1.0)
    _record(results / "benchmarks/score_cell/m.nli.base.de.test.tsv", 2.5, 120.0, 1.0)
    (results / "tables").mkdir()
    compute.write_compute([job | {"artifact": str(predictions), "conditions": ["base"], "model": "m"}],
                          results / "tables" / "compute.csv")  # fmt: skip
    rows = {r["rule"]: r for r in compute.rule_summary(results)}
    assert list(rows) == ["infer", "infer (select)", "score_cell"]  # pipeline order
    assert (rows["infer (select)"]["jobs"], rows["infer (select)"]["seconds"]) == (1, 7.0)
    infer = rows["infer"]
    assert (infer["jobs"], infer["seconds"], infer["startup"], infer["load"], infer["compute"]) == (
        1,
        25.0,
        5.0,
        5.0,
        15.0,
    )
    score = rows["score_cell"]
    assert (score["jobs"], score["seconds"], score["max_rss_mib"], score["startup"]) == (2, 4.0, 120.0, None)
    compute.main([str(results)])
    printed = capsys.readouterr().out
    assert "inference" in printed and "all jobs" in printed and "36.0 s" in printed


def test_the_report_prints_the_compute_section(jobs, tmp_path):
    """RESULTS.md with a compute table: the per-stage and per-condition tables, Base's cost being
    its evaluation alone."""
    import pandas as pd

    from icldistill.render import render_report

    cells = pd.DataFrame(
        [("m", "nli", c, lang, "accuracy", v, 10) for c, v in (("base", 40.0), ("finetuned", 50.0), ("distilled", 55.0))
         for lang in ("en", "de")],
        columns=["model", "task", "condition", "language", "metric", "value", "n"],
    )  # fmt: skip
    text = render_report(cells, tmp_path, compute=compute.job_rows(jobs)).read_text(encoding="utf-8")
    section = text.split("## Compute", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in section.splitlines()
            if line.startswith("| ")}  # fmt: skip
    assert rows["inference"][1:3] == ["3 (2 timed)", "55 s"]
    assert rows["Base"] == ["Base", "0", "0", "25 s", "25 s", "40.0"]
    assert rows["Fine-Tuned"][2:5] == ["1 min 04 s", "30 s", "1 min 34 s"]
    assert rows["Distilled"][4] == "—"
