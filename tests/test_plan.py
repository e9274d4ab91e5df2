"""The cluster planner: Snakemake's dry-run text parsed into jobs, GPU-hours requested per model
and stage, and the estimate from benchmark records (hand-computed figures)."""

from __future__ import annotations

from pathlib import Path

import pytest

from icldistill.plan import END, START, PlannedJob, gpu_hours, markdown, parse_dry_run, replace_block

DRY_RUN = """\
Building DAG of jobs...
Job stats:
job      count
-----  -------
infer        2
train        1
total        3

[Mon Nov 30 06:20:44 2026]
rule infer:
    input: results/downloads/models/m.v2.json
    output: results/predictions/test/m.v2/nli/base
    log: results/logs/infer/m.v2.nli.base.test.log
    jobid: 7
    benchmark: results/benchmarks/infer/m.v2.nli.base.test.tsv
    reason: Missing output files: results/predictions/test/m.v2/nli/base
    wildcards: split=test, model=m.v2, task=nli, condition=base
    resources: tmpdir=/tmp, mem_mb=40000, mem=40 GB, runtime=90, cpus_per_task=8, gpu=2, gpu_model=a100
Shell command: None

[Mon Nov 30 06:20:44 2026]
rule infer:
    benchmark: results/benchmarks/infer/m.nli.base.test.tsv
    wildcards: split=test, model=m, task=nli, condition=base
    resources: tmpdir=/tmp, mem_mb=16000, runtime=30, cpus_per_task=4, gpu=1, gpu_model=

[Mon Nov 30 06:20:44 2026]
rule train:
    benchmark: results/benchmarks/train/m.nli.finetuned.tsv
    wildcards: model=m, scope=nli, condition=finetuned
    resources: tmpdir=/tmp, mem_mb=32000, runtime=240, cpus_per_task=4, gpu=1

[Mon Nov 30 06:20:44 2026]
localrule collect_cells:
    input: results/metrics/test/m/nli/base/en.json
    resources: tmpdir=/tmp
"""


def _record(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\tcpu_time\n{seconds}\t0:00:00\t100.0\t1.0\n")


def test_the_dry_run_text_is_parsed_job_by_job():
    jobs = parse_dry_run(DRY_RUN)
    assert [j.rule for j in jobs] == ["infer", "infer", "train", "collect_cells"]
    assert jobs[0].wildcards == {"split": "test", "model": "m.v2", "task": "nli", "condition": "base"}
    assert (jobs[0].gpus, jobs[0].runtime_minutes, jobs[0].resources["gpu_model"]) == (2, 90.0, "a100")
    assert jobs[0].benchmark == "results/benchmarks/infer/m.v2.nli.base.test.tsv"
    assert (jobs[3].gpus, jobs[3].benchmark) == (0, None)


def test_requested_gpu_hours_without_records_and_no_estimate():
    rows = gpu_hours(parse_dry_run(DRY_RUN), None)
    table = {(r["model"], r["stage"]): (r["jobs"], r["requested"], r["records"], r["estimated"]) for r in rows}
    # 2 GPUs x 90 min; 1 x 30 min; 1 x 240 min
    assert table == {
        ("m", "inference"): (1, 0.5, 0, None),
        ("m", "training"): (1, 4.0, 0, None),
        ("m.v2", "inference"): (1, 3.0, 0, None),
    }


def test_the_estimate_is_planned_jobs_times_gpus_times_the_mean_recorded_time(tmp_path):
    records = tmp_path / "results" / "benchmarks"
    # m's finished inference jobs (not in the plan any more) took 30 and 60 min: mean 45 min
    _record(records / "infer" / "m.pa.base.test.tsv", 1800)
    _record(records / "infer" / "m.nli.distilled_lam01.select.tsv", 3600)  # dev rows, λ choice
    # m.v2's record starts with "m." too: it is m.v2's (the longest id), 2 GPUs x 2 h
    _record(records / "infer" / "m.v2.pa.base.test.tsv", 7200)
    _record(records / "infer" / "other.nli.base.test.tsv", 99999)  # no planned model: ignored
    rows = {(r["model"], r["stage"]): r for r in gpu_hours(parse_dry_run(DRY_RUN), records)}
    assert rows["m", "inference"]["records"] == 2 and rows["m", "inference"]["estimated"] == pytest.approx(0.75)
    assert rows["m.v2", "inference"]["records"] == 1 and rows["m.v2", "inference"]["estimated"] == pytest.approx(4.0)
    assert rows["m", "training"]["estimated"] is None
    text = markdown(parse_dry_run(DRY_RUN), "snakemake -n", records)
    assert "plans **4 jobs**" in text and "infer 2, collect_cells 1, train 1." in text
    assert "| m.v2 | inference | 1 | 2 | 3.0 | 1 | 4.0 |" in text
    # one stage without records: the total estimate is marked partial
    assert "| **all** | | 3 | | **7.5** | 3 | 4.8 (partial) |" in text


def test_the_readme_block_is_replaced_between_its_markers():
    text = f"intro\n{START} --old -->\nold table\n{END}\noutro\n"
    assert replace_block(text, "new table\n", "--configfile x.yaml") == (
        f"intro\n{START} --configfile x.yaml -->\nnew table\n{END}\noutro\n"
    )
    with pytest.raises(ValueError, match="no .* block"):
        replace_block("no markers", "x", "")


def test_a_job_without_gpu_is_not_a_gpu_job():
    assert gpu_hours([PlannedJob("infer", {"model": "m"}, {"runtime": "60"})], None) == []
