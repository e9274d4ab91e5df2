"""What a run cost: every heavy job's Snakemake benchmark record (wall time, peak memory, CPU
time) with the tokens it processed, and from those the Compute section's two tables: per
stage, and per condition (teacher + training + evaluation) next to its score.

The jobs come from the workflow (``compute_jobs`` in ``workflow/rules/common.smk``): rule,
benchmark file, the file that holds its tokens, and the reported conditions it serves. A
teacher cache or training run shared by several conditions counts in full for each: the
per-condition figure is what that condition costs on its own.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from .layout import SELECT_SPLIT

#: the stage of each rule, in pipeline order
STAGES = {
    "convert_gguf_model": "model",
    "prepare_split": "data",
    "draw_demonstrations": "data",
    "select_training_rows": "data",
    "build_prompts": "prompts",
    "infer": "inference",
    "teacher_cache": "teacher",
    "train": "training",
    "score_cell": "metrics",
    "seed_cell": "metrics",
    "select_lambda": "metrics",
    "best_cell": "metrics",
    "run_record": "report",
}
STAGE_ORDER = list(dict.fromkeys(STAGES.values()))
#: what a condition's cost is made of, by stage
COST_PARTS = {"teacher": "teacher", "training": "training", "inference": "evaluation"}
#: the figures of a job row (the rest are names)
NUMERIC = ("seconds", "max_rss_mib", "cpu_seconds", "load_seconds", "compute_seconds", "tokens", "tokens_per_s")
COLUMNS = ["stage", "rule", "job", "model", "task", "condition", "conditions", *NUMERIC]


def read_benchmark(path: str | Path) -> dict[str, float] | None:
    """Wall seconds, peak RSS (MiB) and CPU seconds of a Snakemake benchmark file (its first
    repeat); ``None`` when the job has no record (it ran before records were kept)."""
    path = Path(path)
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        return None
    row = rows[0]
    return {
        "seconds": _number(row.get("s")),
        "max_rss_mib": _number(row.get("max_rss")),
        "cpu_seconds": _number(row.get("cpu_time")),
    }


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def job_tokens(rule: str, artifact: str | None) -> dict[str, float | None]:
    """Tokens (and model-loading seconds where recorded) of a job, from what it wrote:
    an inference job's ``stats.json``, a teacher job's ``<cache>.stats.json``, a trained adapter's
    ``summary.json``."""
    none = {"tokens": None, "load_seconds": None, "compute_seconds": None}
    if not artifact or not Path(artifact).exists():
        return none
    path = Path(artifact)
    if rule == "infer":
        stats = json.loads((path / "stats.json").read_text(encoding="utf-8")) if (path / "stats.json").exists() else {}
        tokens = None
        if "prompt_tokens" in stats:
            tokens = stats["prompt_tokens"] + stats.get("output_tokens", 0)
        return {"tokens": tokens, "load_seconds": stats.get("load_seconds"), "compute_seconds": stats.get("seconds")}
    if rule == "teacher_cache":
        stats = json.loads(path.read_text(encoding="utf-8"))
        return {
            "tokens": stats.get("tokens"),
            "load_seconds": stats.get("load_seconds"),
            "compute_seconds": stats.get("seconds"),
        }
    if rule == "train":
        summary = path / "summary.json"
        stats = json.loads(summary.read_text(encoding="utf-8")) if summary.exists() else {}
        return {
            "tokens": stats.get("tokens"),
            "load_seconds": stats.get("load_seconds"),
            "compute_seconds": stats.get("seconds"),
        }
    return none


def job_rows(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per job (:data:`COLUMNS`), in the order given; jobs without a record are kept
    with empty figures, so a missing record shows as missing rather than as free."""
    rows = []
    for job in jobs:
        record = read_benchmark(job["benchmark"]) or {}
        tokens = job_tokens(job["rule"], job.get("artifact"))
        seconds = record.get("seconds")
        rate = None
        if tokens["tokens"] and seconds:
            # per second of the job's compute: model loading is not throughput
            compute = seconds - (tokens["load_seconds"] or 0.0)
            rate = round(tokens["tokens"] / compute, 1) if compute > 0 else None
        rows.append(
            {
                "stage": STAGES.get(job["rule"], job["rule"]),
                "rule": job["rule"],
                "job": Path(job["benchmark"]).stem,
                "model": job.get("model", ""),
                "task": job.get("task", ""),
                "condition": job.get("condition", ""),
                "conditions": ";".join(job.get("conditions", [])),
                "seconds": seconds,
                "max_rss_mib": record.get("max_rss_mib"),
                "cpu_seconds": record.get("cpu_seconds"),
                "load_seconds": tokens["load_seconds"],
                "compute_seconds": tokens["compute_seconds"],
                "tokens": tokens["tokens"],
                "tokens_per_s": rate,
            }
        )
    return rows


def write_compute(jobs: list[dict[str, Any]], out: str | Path) -> None:
    """``compute.csv``: :func:`job_rows` of ``jobs``."""
    with Path(out).open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in job_rows(jobs):
            writer.writerow({k: "" if v is None else v for k, v in row.items()})


def read_compute(path: str | Path | None) -> list[dict[str, Any]]:
    if not path or not Path(path).exists():
        return []
    with Path(path).open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in NUMERIC:
            row[key] = _number(row[key]) if row[key] != "" else None
        row["conditions"] = [c for c in row["conditions"].split(";") if c]
    return rows


def stage_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stage: jobs, jobs with a record, summed wall seconds, the longest job, peak RSS,
    tokens and tokens/s (over the compute seconds of the jobs that count tokens)."""
    out = []
    for stage in STAGE_ORDER + sorted({r["stage"] for r in rows} - set(STAGE_ORDER)):
        members = [r for r in rows if r["stage"] == stage]
        if not members:
            continue
        timed = [r for r in members if r["seconds"] is not None]
        counted = [r for r in timed if r["tokens"]]
        compute = sum(r["seconds"] - (r["load_seconds"] or 0.0) for r in counted)
        tokens = sum(r["tokens"] for r in counted)
        rss = [r["max_rss_mib"] for r in members if r["max_rss_mib"] is not None]
        out.append(
            {
                "stage": stage,
                "jobs": len(members),
                "timed": len(timed),
                "seconds": sum(r["seconds"] for r in timed),
                "longest": max((r["seconds"] for r in timed), default=None),
                "max_rss_mib": max(rss, default=None),
                "load_seconds": sum(r["load_seconds"] or 0.0 for r in members),
                "tokens": tokens or None,
                "tokens_per_s": tokens / compute if counted and compute > 0 else None,
            }
        )
    return out


def condition_costs(rows: list[dict[str, Any]], model: str, conditions: list[str]) -> list[dict[str, Any]]:
    """Per reported condition of ``model``: seconds of its teacher caches, training runs and
    evaluation (inference) jobs, and their total. A part whose jobs lack records is ``None``."""
    out = []
    for condition in conditions:
        parts: dict[str, float | None] = {}
        for stage, part in COST_PARTS.items():
            jobs = [r for r in rows if r["stage"] == stage and r["model"] == model and condition in r["conditions"]]
            if stage == "inference":
                jobs = [r for r in jobs if r["rule"] == "infer"]
            parts[part] = None if any(r["seconds"] is None for r in jobs) else float(sum(r["seconds"] for r in jobs))
        known = [v for v in parts.values() if v is not None]
        total = sum(known) if len(known) == len(parts) else None
        out.append({"condition": condition, **parts, "total": total})
    return out


# -- command line: where a run's time went -----------------------------------------------------
def rule_summary(results: str | Path = "results") -> list[dict[str, Any]]:
    """Per rule, from every benchmark record under ``results/benchmarks`` (all jobs, cheap local
    ones included) and ``results/tables/compute.csv`` (the heavy jobs' own timings): jobs, wall
    seconds, and for the heavy rules that split into process start-up (interpreter, imports,
    reading inputs, writing outputs), model loading and compute."""
    results = Path(results)
    heavy = {}
    for row in read_compute(results / "tables" / "compute.csv"):
        heavy[(row["rule"], row["job"])] = row
    groups: dict[str, list] = {}
    for folder in sorted(p for p in (results / "benchmarks").iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.tsv")):
            record = read_benchmark(path)
            if record is None:
                continue
            # the select split's jobs (dev rows for the best λ) are a row of their own
            label = f"{folder.name} ({SELECT_SPLIT})" if path.stem.endswith("." + SELECT_SPLIT) else folder.name
            groups.setdefault(label, []).append((folder.name, path.stem, record))
    out = []
    for label, group in groups.items():
        rule = group[0][0]
        records = [(job, r) for _, job, r in group]
        split = [heavy.get((rule, job)) for job, _ in records]
        known = [(r, h) for (_, r), h in zip(records, split, strict=True) if h and h["compute_seconds"] is not None]
        load = sum(h["load_seconds"] or 0.0 for _, h in known)
        work = sum(h["compute_seconds"] for _, h in known)
        wall_known = sum(r["seconds"] for r, _ in known)
        out.append(
            {
                "stage": STAGES.get(rule, rule),
                "rule": label,
                "jobs": len(records),
                "seconds": sum(r["seconds"] or 0.0 for _, r in records),
                "max_rss_mib": max((r["max_rss_mib"] or 0.0 for _, r in records), default=None),
                "startup": wall_known - load - work if known else None,
                "load": load if known else None,
                "compute": work if known else None,
            }
        )
    order = {stage: i for i, stage in enumerate(STAGE_ORDER)}
    return sorted(out, key=lambda r: (order.get(r["stage"], len(order)), r["rule"]))


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m icldistill.compute", description="Sum a run's benchmark records by stage and by rule."
    )
    parser.add_argument("results", nargs="?", default="results", help="the run's results folder")
    args = parser.parse_args(argv)
    rows = rule_summary(args.results)
    if not rows:
        raise SystemExit(f"{args.results}/benchmarks holds no benchmark records")

    def fmt(x: float | None) -> str:
        return "—" if x is None else f"{x:.1f}"

    print(
        f"{'stage':<10} {'rule':<22} {'jobs':>5} {'wall s':>9} {'start-up':>9} {'loading':>9} {'compute':>9} {'peak MiB':>9}"
    )
    for r in rows:
        print(
            f"{r['stage']:<10} {r['rule']:<22} {r['jobs']:>5} {r['seconds']:>9.1f} {fmt(r['startup']):>9} "
            f"{fmt(r['load']):>9} {fmt(r['compute']):>9} {fmt(r['max_rss_mib']):>9}"
        )
    by_stage: dict[str, float] = {}
    for r in rows:
        by_stage[r["stage"]] = by_stage.get(r["stage"], 0.0) + r["seconds"]
    total = sum(by_stage.values())
    print()
    for stage, seconds in by_stage.items():
        print(f"{stage:<10} {seconds:>9.1f} s  {100 * seconds / total:5.1f} %")
    print(f"{'all jobs':<10} {total:>9.1f} s (job time; the run's wall time is less with parallel jobs)")


if __name__ == "__main__":
    main()
