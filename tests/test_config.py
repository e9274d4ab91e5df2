"""Config validation: schema + semantic checks fail before any job with the offending key."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from icldistill.config import ConfigError, cells, check_config, shots

from .conftest import ROOT

DEFAULT = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def _with(path: str, value):
    cfg = copy.deepcopy(DEFAULT)
    *parents, last = path.split(".")
    node = cfg
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return cfg


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        ("tasks", ["nli", "xnli"], "tasks[1]"),
        ("languages", ["en", "ja"], "languages[1]"),
        ("conditions", {"base": {"kind": "teleport"}}, "conditions.base.kind"),
        ("few_shot.k", -1, "few_shot.k"),
        ("few_shot.k_per_task", {"ner": -2}, "few_shot.k_per_task.ner"),
        ("models", {}, "models"),
        ("models", {"m": {"display_name": "no source"}}, "models.m"),
        ("models", {"data": {"path": "x"}}, "models.data"),
        ("scoring", {"qa": "loglik"}, "scoring.qa"),
        ("data.path", "does/not/exist", "data.path"),
        ("report", {"focus_model": "nope"}, "report.focus_model"),
        ("conditions", {"d": {"kind": "train", "loss": "kd", "lambda": -0.1}}, "conditions.d.lambda"),
        ("conditions", {"d": {"kind": "train", "loss": "l2"}}, "conditions.d.loss"),
        ("conditions", {"d": {"kind": "train", "loss": "kd", "kd_loss": "js"}}, "conditions.d.kd_loss"),
        ("conditions", {"d": {"kind": "train", "few_shot": True}}, "conditions.d.few_shot"),
        ("training.mode", "per_language", "training.mode"),
        ("training.method", "qlora", "training.method"),
        ("training.max_steps", 0, "training.max_steps"),
        ("teacher", {"top_k": 0}, "teacher.top_k"),
    ],
)
def test_semantic_errors_name_the_key(path, value, key):
    with pytest.raises(ConfigError, match=rf"config key '{__import__('re').escape(key)}'"):
        check_config(_with(path, value), root=ROOT)


def test_default_config_is_valid_and_skips_invalid_pairs():
    check_config(DEFAULT, root=ROOT)
    grid = cells(DEFAULT)
    assert len(grid) == 5 * 28  # 5 tasks x 6 languages minus pa-hi and qa-fr, five conditions
    assert not any((c.task, c.language) in {("pa", "hi"), ("qa", "fr")} for c in grid)


def test_train_settings_carry_exactly_what_a_condition_depends_on():
    from icldistill.config import teacher_shots, train_settings

    ft, dist, ctrl = (train_settings(DEFAULT, c) for c in ("finetuned", "distilled", "control"))
    assert ft["loss"] == "ce" and "lam" not in ft
    assert dist["loss"] == ctrl["loss"] == "kd" and dist["lam"] == 0.5
    assert {k: v for k, v in dist.items() if k not in ("lam", "kd_loss", "temperature")} == ft | {"loss": "kd"}
    assert teacher_shots(DEFAULT, "distilled", "ner") == 5 and teacher_shots(DEFAULT, "control", "ner") == 0
    changed = _with("conditions.distilled", dict(DEFAULT["conditions"]["distilled"], **{"lambda": 0.05}))
    assert train_settings(changed, "distilled")["lam"] == 0.05
    assert train_settings(changed, "control") == ctrl


def test_shots_follow_condition_and_per_task_override():
    cfg = _with("few_shot.k_per_task", {"qa": 2})
    assert shots(cfg, "base", "qa") == 0
    assert shots(cfg, "fewshot", "qa") == 2
    assert shots(cfg, "fewshot", "nli") == 5


def _dry_run(tmp_path: Path, cfg: dict) -> subprocess.CompletedProcess:
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(cfg))
    snakemake = Path(sys.executable).with_name("snakemake")
    return subprocess.run(
        [str(snakemake), "-n", "--cores", "1", "--configfile", str(configfile), "--directory", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_workflow_refuses_unknown_task_before_any_job(tmp_path):
    result = _dry_run(tmp_path, _with("tasks", ["nli", "xnli"]))
    assert result.returncode != 0
    assert "config key 'tasks[1]': unknown task 'xnli'" in result.stdout + result.stderr


def test_workflow_schema_rejects_wrong_type_naming_the_key(tmp_path):
    result = _dry_run(tmp_path, _with("generation.batch_size", "many"))
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "batch_size" in out and "'many' is not of type 'integer'" in out


def test_multitask_mode_plans_one_training_run_per_condition(tmp_path):
    cfg = _with("training.mode", "multitask")
    result = _dry_run(tmp_path, cfg)
    assert result.returncode == 0, result.stderr[-2000:]
    table = result.stdout[result.stdout.index("Job stats:") :].split("\n\n")[0]
    counts = {p[0]: int(p[1]) for p in (line.split() for line in table.splitlines()) if len(p) == 2 and p[1].isdigit()}
    assert counts["train"] == 3  # finetuned, distilled, control over all tasks
    assert counts["teacher_cache"] == 10  # still one per (task, teacher shots)
    assert "results/smollm2-135m/multitask/distilled/adapter" in result.stdout
