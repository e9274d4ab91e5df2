"""The grid through a real SLURM cluster: `snakemake --profile slurm` submits every GPU-stage job
with sbatch (GPU, memory and runtime requests from the config), a job killed for memory is
retried with more, and the report renders.

Needs a running cluster (``tests/slurm/cluster.sh start``, as ``.ci/run`` does); skipped
otherwise. Finished jobs are read from the cluster's jobcomp/filetxt log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, small_grid_config

pytestmark = pytest.mark.slurm

STATE = Path(os.environ.get("SLURM_TEST_STATE", "/tmp/icldistill-slurm"))
JOBCOMP = STATE / "jobcomp.log"


def _cluster_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    result = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    return result.returncode == 0 and bool(re.search(r"idle|mixed|allocated", result.stdout))


def _config(model_dir: Path) -> dict:
    gpu_job = {"gpu": 1, "cpus_per_task": 1, "mem_mb": 3000, "runtime": 10}
    return small_grid_config(
        model_dir,
        max_examples=3,
        max_new_tokens={"nli": 4, "ner": 8},
        cluster={
            # the teacher jobs ask for 60 MB on their first attempt: SLURM kills them for memory
            # (JobAcctGatherParams=OverMemoryKill) and Snakemake resubmits them with 60 x 50 MB
            "retry_scale": 50,
            "stages": {"infer": gpu_job, "train": gpu_job, "teacher": gpu_job | {"mem_mb": 60}},
        },
    )


def _jobcomp() -> list[dict[str, str]]:
    if not JOBCOMP.exists():
        return []
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in JOBCOMP.read_text().splitlines() if line.strip()]


def test_grid_through_slurm_with_a_retried_job(tmp_path):
    if not _cluster_up():
        if os.environ.get("ICLDISTILL_REQUIRE_SLURM"):  # the CI tier: a missing cluster is a failure
            pytest.fail("no SLURM cluster running")
        pytest.skip("no SLURM cluster running (tests/slurm/cluster.sh start)")
    from .conftest import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    workdir = tmp_path / "grid"
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(_config(model)))
    before = len(_jobcomp())  # job ids restart with the cluster's state: count records instead
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    result = subprocess.run(
        [snakemake, "-s", str(ROOT / "Snakefile"), "--profile", str(ROOT / "slurm"), "-j", "4"]
        + ["--configfile", str(workdir / "config.yaml")]
        # this cluster has no slurmdbd (squeue keeps finished jobs for MinJobAge=300 s) and no accounts
        + ["--slurm-status-command", "squeue", "--slurm-no-account"]
        + ["--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "5", "--verbose"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (workdir / "results" / "RESULTS.md").exists()
    assert (workdir / "results" / "tables" / "cells.csv").exists()

    jobs = _jobcomp()[before:]
    # 8 infer + 4 train + 2 teacher jobs, plus the 2 teacher attempts killed for memory
    # (signal 9 from OverMemoryKill: FAILED with ExitCode 0:9)
    completed = [j for j in jobs if j["JobState"] == "COMPLETED"]
    failed = [j for j in jobs if j["JobState"] in ("OUT_OF_MEMORY", "FAILED", "CANCELLED")]
    assert len(completed) == 14, jobs
    assert len(failed) == 2, jobs
    assert all(j["NodeList"] for j in completed)
    # every one went through sbatch with the config's GPU and memory requests
    calls = re.findall(r"sbatch call: (.*)", result.stdout + result.stderr)
    assert len(calls) == 16, calls
    assert all("--gpus=1" in c for c in calls)
    assert sum("--mem 60 " in c + " " for c in calls) == 2, calls
    assert sum("--mem 3000 " in c + " " for c in calls) == 14, calls
