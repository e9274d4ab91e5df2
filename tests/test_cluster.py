"""Cluster requests per (model, stage), retry scaling, and the SLURM profile's dry-run plan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from icldistill.cluster import declared_keys, job_resource, stage_request

from .conftest import ROOT

CONFIG = {
    "models": {
        "small": {"path": "x"},
        "big": {"path": "y", "cluster": {"gpu_model": "a100", "train": {"mem_mb": 96000, "runtime": 480, "gpu": 2}}},
    },
    "cluster": {"account": "proj", "gpu_partition": "gpu", "partition": "cpu", "retry_scale": 2},
}


def test_model_overrides_stage_defaults():
    small, big = stage_request(CONFIG, "small", "train"), stage_request(CONFIG, "big", "train")
    assert small == {"gpu": 1, "cpus_per_task": 4, "mem_mb": 32000, "runtime": 240}
    assert big == {"gpu": 2, "cpus_per_task": 4, "mem_mb": 96000, "runtime": 480, "gpu_model": "a100"}
    assert stage_request(CONFIG, "big", "model")["gpu"] == 0


def test_memory_and_runtime_grow_with_attempts():
    assert [job_resource(CONFIG, "big", "train", "mem_mb", a) for a in (1, 2, 3)] == [96000, 192000, 384000]
    assert [job_resource(CONFIG, "small", "infer", "runtime", a) for a in (1, 2)] == [60, 120]
    assert [job_resource(CONFIG, "big", "train", "gpu", a) for a in (1, 2)] == [2, 2]


def test_partitions_account_and_declared_keys():
    assert job_resource(CONFIG, "small", "infer", "slurm_partition") == "gpu"
    assert job_resource(CONFIG, "small", "model", "slurm_partition") == "cpu"
    assert job_resource(CONFIG, "small", "infer", "slurm_account") == "proj"
    assert job_resource(CONFIG, "small", "infer", "gpu_model") == ""
    keys = declared_keys(CONFIG, "train")
    assert {"mem_mb", "runtime", "cpus_per_task", "gpu", "gpu_model", "slurm_account", "slurm_partition"} <= set(keys)
    assert "slurm_extra" not in keys
    # nothing set: the profile's default-resources decide account and partition
    bare = {"models": {"m": {"path": "x"}}}
    assert declared_keys(bare, "infer") == ["mem_mb", "runtime", "cpus_per_task", "gpu"]
    assert declared_keys(bare, "model") == ["mem_mb", "runtime", "cpus_per_task"]


def test_vllm_jobs_ask_for_as_many_gpus_as_tensor_parallel_size():
    config = {
        "models": {"small": {"path": "x"}, "big": {"path": "y", "vllm": {"tensor_parallel_size": 2}}},
        "generation": {"backend": "vllm", "vllm": {"tensor_parallel_size": 1}},
    }
    assert [stage_request(config, "big", s)["gpu"] for s in ("infer", "teacher", "train")] == [2, 2, 1]
    assert stage_request(config, "small", "infer")["gpu"] == 1
    # the teacher on the HF backend: one GPU whatever vLLM's setting
    assert stage_request(config | {"teacher": {"backend": "hf"}}, "big", "teacher")["gpu"] == 1
    # the HF backend everywhere: tensor_parallel_size is not read
    assert stage_request(config | {"generation": {"backend": "hf"}}, "big", "infer")["gpu"] == 1
    # set explicitly: kept when it is enough, an error naming the model when it is not
    config["models"]["big"]["cluster"] = {"infer": {"gpu": 4}}
    assert stage_request(config, "big", "infer")["gpu"] == 4
    config["cluster"] = {"stages": {"teacher": {"gpu": 1}}}
    with pytest.raises(ValueError, match="models.big: the teacher jobs ask for gpu=1 .* tensor_parallel_size is 2"):
        stage_request(config, "big", "teacher")


def test_unknown_stage_is_an_error():
    with pytest.raises(ValueError, match="unknown stage"):
        stage_request(CONFIG, "small", "eval")


def test_paper_config_plans_the_seed_grid_with_gpu_requests_through_the_slurm_profile():
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    result = subprocess.run(
        [snakemake, "--profile", "slurm", "-n", "-j", "64", "--configfile", "config/paper.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    counts = {}
    for line in out.split("Job stats:")[1].splitlines()[3:]:
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        if parts[:1] == ["total"]:
            break
    # per model and task 13 distinct training runs: Fine-Tuned, Distilled, the 6 new sweep values
    # (λ 0 and 0.5 reuse Fine-Tuned and Distilled), Control and 4 strategies (task_prior's λ equals
    # a sweep value's in every task); 2 teacher shots; 28 valid (task, language) pairs, 18
    # conditions scored (5 + 8 sweep members + 5 strategies) plus distilled-best
    assert counts["train"] == 4 * 5 * 13 and counts["teacher_cache"] == 40
    # test split: 2 inference-only conditions and 13 runs; select split: the 8 sweep members
    assert counts["infer"] == 4 * 5 * (2 + 13) + 4 * 5 * 8
    assert out.count("output: results/predictions/select/") == 4 * 5 * 8
    assert counts["score_cell"] == 4 * 18 * 28 + out.count("output: results/metrics/select/")
    assert counts["best_cell"] == 4 * 28
    blocks = out.split("\nrule ")
    train_8b = next(b for b in blocks if b.startswith("train:") and "model=qwen3-8b" in b)
    assert "gpu=1" in train_8b and "gpu_model=a100" in train_8b and "mem_mb=96000" in train_8b
    infer_270m = next(b for b in blocks if b.startswith("infer:") and "model=gemma-3-270m" in b)
    assert "gpu=1" in infer_270m and "mem_mb=16000" in infer_270m
    # the planner reads the same plan: its job counts are Snakemake's own, and the README's
    # generated plan block is what it makes of this dry run
    from icldistill.plan import END, START, command_line, job_counts, markdown, parse_dry_run

    jobs = parse_dry_run(out)
    assert job_counts(jobs) == {rule: n for rule, n in counts.items() if rule != "total"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split(START)[1].split("-->\n", 1)[1].split(END)[0]
    assert block == markdown(jobs, command_line(["config/paper.yaml"]), None), (
        "README's cluster plan is out of date: python -m icldistill.plan --configfile config/paper.yaml "
        "--records '' --readme README.md"
    )


def _dry_run_jobs(*args: str) -> list[str]:
    """The job blocks (each starting with its rule name) of a ``snakemake`` dry run from the repo."""
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    result = subprocess.run([snakemake, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return (result.stdout + result.stderr).split("\nrule ")


def test_tensor_parallel_size_reaches_the_slurm_request(tmp_path):
    """Dry run through the SLURM profile: Qwen3-8B on 2-way tensor parallelism asks for 2 GPUs
    in its vLLM jobs (inference, teacher) and keeps its configured 2 for training."""
    override = tmp_path / "tp2.yaml"
    override.write_text("models:\n  qwen3-8b:\n    vllm:\n      tensor_parallel_size: 2\n")
    blocks = _dry_run_jobs("--profile", "slurm", "-n", "-j", "64", "--configfile", "config/paper.yaml", str(override))
    for rule in ("infer:", "teacher_cache:"):
        job = next(b for b in blocks if b.startswith(rule) and "model=qwen3-8b" in b)
        assert "gpu=2" in job, job
        other = next(b for b in blocks if b.startswith(rule) and "model=qwen3-1.7b" in b)
        assert "gpu=1" in other, other


@pytest.mark.parametrize("backend", ["hf", "vllm"])
def test_model_jobs_run_on_one_thread_side_by_side_and_a_vllm_engine_takes_the_cores(tmp_path, backend):
    """Local dry run with 4 cores: HF inference, teacher and training jobs get ``threads`` (1,
    so Snakemake prints no threads line and runs them side by side); vLLM inference and teacher
    jobs get all 4 cores, so two engines never share them."""
    override = tmp_path / "backend.yaml"
    override.write_text(f"generation:\n  backend: {backend}\nteacher:\n  backend: {backend}\n")
    blocks = _dry_run_jobs("-n", "--cores", "4", "--configfile", "config/config.yaml", str(override))
    for rule in ("infer:", "teacher_cache:", "train:"):
        job = next(b for b in blocks if b.startswith(rule))
        engine = backend == "vllm" and rule != "train:"
        assert ("threads: 4" in job) == engine and ("threads:" in job) == engine, job


def test_paper_config_turns_qwen3_thinking_off_in_every_prompt_teacher_and_training_job(tmp_path):
    """``models.<id>.chat_template_kwargs`` reach the planned jobs' params (Snakemake's own plan
    of the paper grid, through its API): ``enable_thinking: false`` for both Qwen3 models only."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, Quietness, ResourceSettings

    targets = {
        path.format(model=model)
        for model in ("qwen3-1.7b", "qwen3-8b", "llama-3.2-3b")
        for path in (
            "results/prompts/test/{model}/nli/5shot",
            "results/teacher/{model}/nli/5shot.safetensors",
            "results/training/{model}/nli/finetuned/adapter",
        )
    }
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow = api.workflow(
            snakefile=ROOT / "Snakefile",
            workdir=tmp_path,
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[ROOT / "config/config.yaml", ROOT / "config/paper.yaml"]),
        )
        dag = workflow.dag(DAGSettings(targets=targets))
        dag.execute_workflow(executor="dryrun")
        jobs = [j for j in dag.workflow_api._workflow.dag.jobs if "template_kwargs" in dict(j.params)]
    seen = {(j.rule.name, j.wildcards.model): dict(j.params)["template_kwargs"] for j in jobs}
    assert {rule for rule, _ in seen} == {"build_prompts", "teacher_cache", "train"}
    for (_, model), kwargs in seen.items():
        assert kwargs == ({"enable_thinking": False} if model.startswith("qwen3") else {}), (model, kwargs)
