"""What a grid asks of a cluster, from Snakemake's own dry run: jobs per rule, what each GPU job
requests, and GPU-hours per model and stage.

``python -m icldistill.plan --configfile config/paper.yaml`` runs ``snakemake -n --profile
slurm`` (so the requests are those the SLURM executor would submit, retry 1) and prints a
Markdown summary; ``--write FILE`` also writes it (the README's cluster plan is generated so).

Two figures per model and stage:

- **requested**: Σ ``gpu`` × ``runtime`` of the planned jobs, the GPU time SLURM reserves on the
  first attempt (a ceiling: a job ends when its work does);
- **estimated**: planned jobs × GPUs × the mean wall time of that model's jobs of the stage
  in the benchmark records (``results/benchmarks/<rule>/``, written by every rule's
  ``benchmark:``) of the working directory: the jobs of this grid that already ran, or a pilot
  (one task, say: ``snakemake --profile slurm results/<model>/nli/...``). Where a model's stage
  has no record, no estimate is made rather than one guessed.

The dry run's text is parsed (rule, wildcards, resources, benchmark of every job): Snakemake
prints the same fields for every job it plans, and this reads nothing else.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .compute import read_benchmark

#: the GPU rules and the stage each counts in (λ selection's dev-set inference is inference)
GPU_RULES = {"infer": "inference", "teacher_cache": "teacher", "train": "training"}


@dataclass
class PlannedJob:
    rule: str
    wildcards: dict[str, str] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)
    benchmark: str | None = None

    @property
    def gpus(self) -> int:
        return int(self.resources.get("gpu", 0) or 0)

    @property
    def runtime_minutes(self) -> float:
        return float(self.resources.get("runtime", 0) or 0)


def _pairs(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(", "):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def parse_dry_run(text: str) -> list[PlannedJob]:
    """Every job block of a ``snakemake -n`` output (``rule X:`` / ``localrule X:`` and its
    indented fields); jobs are in the order printed."""
    jobs: list[PlannedJob] = []
    current: PlannedJob | None = None
    for line in text.splitlines():
        head = re.match(r"^(?:local)?rule (\w+):$", line)
        if head:
            current = PlannedJob(head.group(1))
            jobs.append(current)
            continue
        if not line.startswith("    "):
            current = None  # a job block ends at its first unindented line
            continue
        if current is None:
            continue
        key, _, value = line.strip().partition(": ")
        if key == "wildcards":
            current.wildcards = _pairs(value)
        elif key == "resources":
            current.resources = _pairs(value)
        elif key == "benchmark":
            current.benchmark = value
    return jobs


def job_counts(jobs: list[PlannedJob]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for job in jobs:
        counts[job.rule] += 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def recorded_seconds(records: Path | None, models: set[str]) -> dict[tuple[str, str], list[float]]:
    """Wall seconds of every benchmark record under ``records`` (a ``results/benchmarks``) of a GPU rule,
    per (model, stage): finished jobs of this grid or of a pilot run, planned or not (a finished
    job is no longer in the plan). A record's name starts with its model id (the longest
    matching one: ids may contain dots)."""
    seconds: dict[tuple[str, str], list[float]] = defaultdict(list)
    for rule, stage in GPU_RULES.items():
        for path in sorted((records / rule).glob("*.tsv")) if records else []:
            owners = [m for m in models if path.name.startswith(m + ".")]
            record = read_benchmark(path) if owners else None
            if record and record.get("seconds") is not None:
                seconds[(max(owners, key=len), stage)].append(record["seconds"])
    return seconds


def gpu_hours(jobs: list[PlannedJob], records: Path | None) -> list[dict]:
    """Per (model, stage) of the planned GPU jobs: jobs, GPUs per job, requested GPU-hours, and,
    where that model's stage has benchmark records under ``records``, the estimate planned jobs ×
    GPUs × mean recorded wall time."""
    groups: dict[tuple[str, str], dict] = {}
    for job in jobs:
        if job.rule not in GPU_RULES or not job.gpus:
            continue
        key = (job.wildcards.get("model", ""), GPU_RULES[job.rule])
        row = groups.setdefault(
            key, {"model": key[0], "stage": key[1], "jobs": 0, "gpus": set(), "gpu_total": 0, "requested": 0.0}
        )
        row["jobs"] += 1
        row["gpus"].add(job.gpus)
        row["gpu_total"] += job.gpus
        row["requested"] += job.gpus * job.runtime_minutes / 60
    recorded = recorded_seconds(records, {model for model, _ in groups})
    rows = [groups[k] for k in sorted(groups)]
    for row in rows:
        seen = recorded.get((row["model"], row["stage"]), [])
        row["records"] = len(seen)
        gpu_total = row.pop("gpu_total")
        row["estimated"] = gpu_total * sum(seen) / len(seen) / 3600 if seen else None
        row["gpus"] = "/".join(str(g) for g in sorted(row["gpus"]))
    return rows


def markdown(jobs: list[PlannedJob], command: str, records: Path | None) -> str:
    counts = job_counts(jobs)
    lines = [
        f"`{command}` plans **{len(jobs):,} jobs**:",
        "",
        ", ".join(f"{rule} {n:,}" for rule, n in counts.items()) + ".",
        "",
    ]
    rows = gpu_hours(jobs, records)
    if not rows:
        return "\n".join(lines + ["No job asks for a GPU.", ""])
    lines += [
        "| model | stage | jobs | GPUs per job | GPU-hours requested | records | GPU-hours estimated |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        estimated = f"{r['estimated']:.1f}" if r["estimated"] is not None else "—"
        lines.append(
            f"| {r['model']} | {r['stage']} | {r['jobs']} | {r['gpus']} | {r['requested']:.1f} | {r['records']} | {estimated} |"
        )
    total = sum(r["requested"] for r in rows)
    estimated = [r["estimated"] for r in rows if r["estimated"] is not None]
    complete = len(estimated) == len(rows)
    lines += [
        f"| **all** | | {sum(r['jobs'] for r in rows)} | | **{total:,.1f}** | {sum(r['records'] for r in rows)} | "
        + (f"**{sum(estimated):,.1f}**" if complete else (f"{sum(estimated):,.1f} (partial)" if estimated else "—"))
        + " |",
        "",
    ]
    return "\n".join(lines)


def dry_run(args: list[str], cwd: Path) -> str:
    """``snakemake -n --profile slurm <args>`` in ``cwd``; its whole output (stdout and stderr)."""
    command = [sys.executable, "-m", "snakemake", "-n", "--profile", "slurm", "-j", "64", *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the dry run failed ({' '.join(command[2:])}):\n{result.stderr[-3000:]}")
    return result.stdout + result.stderr


def command_line(configfiles: list[str]) -> str:
    """The dry run's command as the summary names it."""
    files = f" --configfile {' '.join(configfiles)}" if configfiles else ""
    return "snakemake --profile slurm -n -j 64" + files


START, END = "<!-- plan: generated by python -m icldistill.plan", "<!-- /plan -->"


def replace_block(text: str, block: str, command: str) -> str:
    """``text`` with the part between its plan markers replaced by ``block`` (the README's plan
    is generated, and a test checks it against a fresh dry run)."""
    head, start, rest = text.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"no {START} ... {END} block to replace")
    return f"{head}{START} {command} -->\n{block}{END}{tail}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m icldistill.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="*", default=[], help="config files merged over config/config.yaml")
    parser.add_argument("--directory", default=".", help="the workflow's working directory")
    parser.add_argument(
        "--records", help="benchmark records to estimate from (default: <directory>/results/benchmarks; '' for none)"
    )
    parser.add_argument("--readme", help="also replace the plan block of this Markdown file with the summary")
    args = parser.parse_args(argv)
    extra = ["--configfile", *args.configfile] if args.configfile else []
    root = Path(args.directory)
    records = (
        root / "results" / "benchmarks" if args.records is None else (Path(args.records) if args.records else None)
    )
    jobs = parse_dry_run(dry_run(extra, root))
    text = markdown(jobs, command_line(args.configfile), records)
    print(text)
    if args.readme:
        arguments = " ".join(["--configfile", *args.configfile] if extra else []) + (
            " --records ''" if not records else ""
        )
        readme = Path(args.readme)
        readme.write_text(replace_block(readme.read_text(encoding="utf-8"), text, arguments.strip()), encoding="utf-8")


if __name__ == "__main__":
    main()
