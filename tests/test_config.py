"""Config validation: schema + semantic checks fail before any job with the offending key."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError

from icldistill.config import ConfigError, check_config, eval_cap
from icldistill.grid import Grid, sweep_name

from .conftest import ROOT, SCHEMA, validated

DEFAULT = validated(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))


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
        ("eval.max_examples_per_task", {"upos": 10}, "eval.max_examples_per_task.upos"),
        ("models", {"m": {"display_name": "no source"}}, "models.m"),
        ("models", {"data": {"path": "x"}}, "models.data"),
        ("scoring", {"qa": "loglik"}, "scoring.qa"),
        ("data.path", "does/not/exist", "data.path"),
        ("report", {"focus_model": "nope"}, "report.focus_model"),
        ("conditions", {"d": {"kind": "train", "few_shot": True}}, "conditions.d.few_shot"),
        ("conditions.finetuned.sweep", {"lambda": [0.1]}, "conditions.finetuned.sweep"),
        ("conditions.entropy.dynamic", {"strategy": "softmax"}, "conditions.entropy.dynamic.strategy"),
        ("conditions.entropy.dynamic", {"strategy": "entropy", "lambda_0": 1}, "conditions.entropy.dynamic.lambda_0"),
        ("conditions.entropy.lambda", 0.5, "conditions.entropy.lambda"),
        ("conditions.loss_ratio.dynamic", {"strategy": "loss_ratio", "ema": 1.0}, "conditions.loss_ratio.dynamic.ema"),
        ("conditions.meta.dynamic", {"strategy": "meta", "meta_lr": -1}, "conditions.meta.dynamic.meta_lr"),
        ("conditions.base.dynamic", {"strategy": "entropy"}, "conditions.base"),
        ("eval.split", "dev", "eval.split"),
        ("selection.languages", ["en", "xx"], "selection.languages[1]"),
        ("conditions.distilled.lambda", float("nan"), "conditions.distilled.lambda"),
        ("conditions.distilled.sweep", {"lambda": [0.1, float("inf")]}, "conditions.distilled.sweep.lambda[1]"),
        ("training.lr", float("nan"), "training.lr"),
        ("conditions.meta.dynamic", {"strategy": "meta", "meta_lr": float("-inf")}, "conditions.meta.dynamic.meta_lr"),
        ("models", {"m": {"gguf": {"package": "no-such-package-xyz", "file": "m.gguf"}}}, "models.m.gguf.package"),
        # a model id names its results folder: no path separators, no '..'
        ("models", {"../../escape": {"path": "org/model"}}, "models.../../escape"),
        ("models", {"a/b": {"path": "org/model"}}, "models.a/b"),
        ("models", {"a..b": {"path": "org/model"}}, "models.a..b"),
        # display names and condition labels (given or derived) are unique
        (
            "models",
            {"a": {"path": "org/model-a", "display_name": "M"}, "b": {"path": "org/model-b", "display_name": "M"}},
            "models.b.display_name",
        ),
        ("models", {"a": {"path": "org/model-a", "display_name": "b"}, "b": {"path": "org/model-b"}}, "models.b"),
        ("conditions.control.label", "Distilled", "conditions.control.label"),
        ("conditions.control.label", "Distilled λ=0.1", "conditions.control.label"),
        # a local model folder must exist and hold a config.json (hub ids are not looked up)
        ("models", {"m": {"path": "/no/such/model-folder"}}, "models.m.path"),
        ("models", {"m": {"path": "does/not/exist"}}, "models.m.path"),
        ("models", {"m": {"path": str(ROOT / "resources")}}, "models.m.path"),
        # k demonstrations (and one training row besides them) from the local English train pool
        ("few_shot.k", 1000, "few_shot.k"),
        ("few_shot.k_per_task", {"qa": 120}, "few_shot.k_per_task.qa"),
        # every task has a cell: PAWS-X has no Hindi
        ("languages", ["hi"], "tasks[1]"),
        # a revision pins a hub id's or hub data set's files: not a GGUF package's, not a misspelt data set's
        ("models.smollm2-135m.revision", "v1", "models.smollm2-135m.revision"),
        ("data", {"source": "hf", "revision": {"google/xtrem": "v1"}}, "data.revision.google/xtrem"),
        ("data.revision", {"google/xtreme": "v1"}, "data.revision"),
    ],
)
def test_semantic_errors_name_the_key(path, value, key):
    with pytest.raises(ConfigError, match=rf"config key '{re.escape(key)}'"):
        check_config(validated(_with(path, value)), root=ROOT)


@pytest.mark.parametrize(
    ("path", "value", "instance"),
    [
        ("conditions", {"base": {"kind": "teleport"}}, "['conditions']['base']['kind']"),
        ("few_shot.k", -1, "['few_shot']['k']"),
        ("few_shot.k_per_task", {"ner": -2}, "['few_shot']['k_per_task']['ner']"),
        ("eval.max_examples_per_task", {"pos": 0}, "['eval']['max_examples_per_task']['pos']"),
        ("models", {}, "['models']"),
        ("conditions", {"d": {"kind": "train", "loss": "kd", "lambda": -0.1}}, "['conditions']['d']['lambda']"),
        ("conditions", {"d": {"kind": "train", "loss": "l2"}}, "['conditions']['d']['loss']"),
        ("conditions", {"d": {"kind": "train", "loss": "kd", "kd_loss": "js"}}, "['conditions']['d']['kd_loss']"),
        ("training.mode", "per_language", "['training']['mode']"),
        ("training.method", "qlora", "['training']['method']"),
        ("training.max_steps", 0, "['training']['max_steps']"),
        ("teacher", {"top_k": 0}, "['teacher']['top_k']"),
        ("conditions.distilled.sweep", {"lambda": [0.1, -1]}, "['conditions']['distilled']['sweep']['lambda'][1]"),
        ("conditions.distilled.sweep", {"lambda": [0.1, 0.10]}, "['conditions']['distilled']['sweep']['lambda']"),
        ("training.seeds", [0, 1, 0], "['training']['seeds']"),
        ("training.seeds", [0, -2], "['training']['seeds'][1]"),
        ("training.kd_loss", "js", "['training']['kd_loss']"),
    ],
)
def test_enums_and_bounds_are_the_schemas_and_name_the_key(path, value, instance):
    """Types, enums and bounds live in the schema only; its error names the key."""
    with pytest.raises(WorkflowError, match=rf"On instance{re.escape(instance)}:"):
        validated(_with(path, value))


def test_hub_ids_and_pools_large_enough_pass():
    """A Hugging Face id is not looked up (no network at config time); k = pool size - 1 leaves
    one training row; k = pool size is fine without training."""
    check_config(_with("models", {"m": {"path": "org/not-cached-model"}}), root=ROOT)
    check_config(_with("models", {"m": {"path": "org/not-cached-model", "revision": "v1"}}), root=ROOT)
    check_config(_with("data", {"source": "hf", "revision": {"google/xtreme": "v3", "nyu-mll/multi_nli": "v1"}}), ROOT)
    check_config(_with("few_shot.k", 119), root=ROOT)
    infer_only = _with("few_shot.k", 120)
    infer_only["conditions"] = {k: v for k, v in infer_only["conditions"].items() if v["kind"] == "infer"}
    check_config(infer_only, root=ROOT)
    check_config(_with("languages", ["hi", "de"]), root=ROOT)  # pa has de


def test_lora_target_modules_must_exist_in_the_model(tiny_model_dir, tmp_path):
    """Module names come from the safetensors header (the tied lm_head is not stored there);
    a folder without safetensors builds its config on the meta device."""
    cfg = _with("models", {"tiny": {"path": str(tiny_model_dir)}})
    check_config(cfg, root=ROOT)  # the default targets: every projection of a Llama
    cfg["training"]["lora"]["target_modules"] = ["q_proj", "self_attn.v_proj", "lm_head"]
    check_config(cfg, root=ROOT)
    cfg["training"]["lora"]["target_modules"] = ["q_proj", "q_prj"]
    with pytest.raises(ConfigError, match=r"config key 'training.lora.target_modules\[1\]': .*no module 'q_prj'"):
        check_config(cfg, root=ROOT)
    cfg["training"]["method"] = "full"  # no LoRA: nothing to target
    check_config(cfg, root=ROOT)
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(tiny_model_dir / "config.json", config_only)
    cfg = _with("models", {"tiny": {"path": str(config_only)}})
    cfg["training"]["lora"]["target_modules"] = ["down_proj", "mlp.up_proj"]
    check_config(cfg, root=ROOT)
    cfg["training"]["lora"]["target_modules"] = ["down_proj", "mlp.q_proj"]
    with pytest.raises(ConfigError, match=r"config key 'training.lora.target_modules\[1\]': .*no module 'mlp.q_proj'"):
        check_config(cfg, root=ROOT)


def test_kd_loss_values_are_the_trainers():
    from icldistill.train.losses import KD_LOSSES

    schema = yaml.safe_load(SCHEMA.read_text())
    training = schema["properties"]["training"]["properties"]["kd_loss"]["enum"]
    condition = schema["properties"]["conditions"]["additionalProperties"]["properties"]["kd_loss"]["enum"]
    assert set(training) == set(condition) == set(KD_LOSSES)


def test_train_settings_defaults_are_the_schemas():
    """A config that sets no training key trains with ``TrainSettings()``: the trainer's
    defaults and the schema's agree (the schema is their home, the trainer's only mirror them)."""
    from icldistill.train.settings import TrainSettings

    raw = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg = {key: raw[key] for key in ("models", "tasks", "languages", "data", "eval", "few_shot", "generation")}
    cfg = validated(cfg | {"conditions": {"ft": {"kind": "train"}, "kd": {"kind": "train", "loss": "kd"}}})
    grid = Grid.from_config(cfg)
    assert TrainSettings(**grid.train_settings("ft", ["nli"])) == TrainSettings()
    assert TrainSettings(**grid.train_settings("kd", ["nli"])) == TrainSettings(loss="kd", lam=0.5)


def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path):
    from icldistill.config import check_config_files

    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("training:\n  lr: 0.1\nconditions:\n  a: {kind: infer}\n  b: {kind: infer}\n")
    bad.write_text("training:\n  lr: 0.1\n  max_steps: 2\nconditions:\n  a: {kind: infer, kind: train}\n")
    check_config_files([good, ROOT / "config" / "config.yaml"])
    with pytest.raises(ConfigError, match=rf"config key 'conditions.a.kind': given twice in {bad}, line 5"):
        check_config_files([good, bad])


def _grid(cfg=None) -> Grid:
    return Grid.from_config(DEFAULT if cfg is None else cfg)


def test_default_config_is_valid_and_skips_invalid_pairs():
    check_config(DEFAULT, root=ROOT)
    grid = _grid().cells()
    # 5 tasks x 6 languages minus pa-hi and qa-fr; base, fewshot, finetuned, distilled, its 3
    # sweep members and distilled-best, control and the five dynamic-λ strategies
    assert len(grid) == 28 * 14
    assert not any((c.task, c.language) in {("pa", "hi"), ("qa", "fr")} for c in grid)


def test_sweep_expands_into_stable_names_after_its_condition():
    grid = _grid()
    assert grid.names()[:9] == [
        "base", "fewshot", "finetuned", "distilled",
        "distilled@lam=0", "distilled@lam=0.1", "distilled@lam=0.5", "distilled-best", "control",
    ]  # fmt: skip
    member = grid["distilled@lam=0.1"]
    assert (member.role, member.sweep_of, member.lam, member.loss) == ("sweep", "distilled", 0.1, "kd")
    assert dict(member.settings) == {"loss": "kd", "teacher_few_shot": True, "lambda": 0.1, "few_shot": False}
    best = grid["distilled-best"]
    assert (best.role, best.sweep_of, best.lambdas, best.trained) == ("best", "distilled", (0.0, 0.1, 0.5), False)
    assert "sweep" not in grid["distilled"].settings and grid["distilled"].role == "train"
    assert DEFAULT["conditions"]["distilled"]["sweep"] == {"lambda": [0, 0.1, 0.5]}  # the config is not edited
    assert [sweep_name("d", v) for v in (0, 0.05, 1.0, 1e-4)] == ["d@lam=0", "d@lam=0.05", "d@lam=1", "d@lam=0.0001"]
    assert grid.sweep_members("distilled-best") == ["distilled@lam=0", "distilled@lam=0.1", "distilled@lam=0.5"]
    assert grid.sweep_members("distilled") == grid.sweep_members("distilled-best")


def test_seeds_expand_every_trained_condition():
    grid = _grid(_with("training.seeds", [0, 1, 2]))
    runs = [c.name for c in grid if c.has_run]
    reported = [c for c in grid.reported() if grid[c].trained]
    # finetuned, distilled, its 3 sweep members, control and the five strategies, 3 seeds each
    assert len(reported) == 11 and len(runs) == 33
    assert all(grid[c].replicated and grid.seed_members(c) == [f"{c}@seed={s}" for s in (0, 1, 2)] for c in reported)
    run = grid["finetuned@seed=2"]
    assert (run.role, run.seed_of, run.seed, run.loss, run.has_run) == ("seed", "finetuned", 2, "ce", True)
    assert grid["distilled@lam=0.1@seed=1"].sweep_of == "distilled"  # a sweep member's seed run
    assert grid.train_settings("finetuned@seed=2", ["nli"])["seed"] == 2
    # identical runs are still shared, seed by seed; the mean condition has no run of its own
    assert grid.trained_run("distilled@lam=0@seed=1", ["ner"]) == "finetuned@seed=1"
    assert grid.trained_run("distilled@lam=0.5@seed=2", ["ner"]) == "distilled@seed=2"
    with pytest.raises(ValueError, match="no training run of its own"):
        grid.trained_run("finetuned", ["ner"])
    assert grid.sweep_members("distilled-best") == ["distilled@lam=0", "distilled@lam=0.1", "distilled@lam=0.5"]
    rows = {r["condition"]: r for r in grid.rows()}
    assert rows["finetuned"]["seeds"] == 3 and rows["finetuned@seed=1"]["role"] == "seed"
    assert rows["finetuned@seed=1"]["label"] == "Fine-Tuned (seed 1)"
    assert rows["distilled@lam=0"]["reuses"] == "finetuned"
    assert ("finetuned@seed=1", "finetuned") not in grid.comparisons()
    # one seed (or training.seed alone) expands nothing: paths stay those of a single run
    one = _grid(_with("training.seeds", [4]))
    assert one.conditions == _grid().conditions
    assert one.train_settings("finetuned", ["nli"])["seed"] == 4


def test_identical_runs_are_trained_once():
    grid = _grid()
    # λ = 0 is SFT: no teacher, and the run of Fine-Tuned is reused; λ = 0.5 is Distilled
    assert grid.train_settings("distilled@lam=0", ["ner"]) == grid.train_settings("finetuned", ["ner"])
    assert not grid.uses_teacher("distilled@lam=0", ["ner"])
    assert grid.trained_run("distilled@lam=0", ["ner"]) == "finetuned"
    assert grid.trained_run("distilled@lam=0.5", ["ner"]) == "distilled"
    assert grid.trained_run("distilled@lam=0.1", ["nli"]) == "distilled@lam=0.1"
    # the same λ with a zero-shot teacher is another run
    assert grid.trained_run("control", ["ner"]) == "control"
    # task_prior per task is a fixed λ: 0.5 for QA (= Distilled), 0.1 for NER, the same run as
    # the sweep's λ = 0.1 (a configured condition's name wins over a sweep member's)
    assert grid.trained_run("task_prior", ["qa"]) == "distilled"
    assert grid.trained_run("task_prior", ["ner"]) == "task_prior"
    assert grid.trained_run("distilled@lam=0.1", ["ner"]) == "task_prior"
    assert grid.trained_run("task_prior", ["nli"]) == "task_prior"
    assert grid.train_settings("task_prior", ["nli"])["lam"] == 1.0
    multitask = grid.train_settings("task_prior", ["nli", "qa", "ner"])
    assert multitask["strategy"] == "task_prior"
    assert multitask["strategy_params"] == {"lambdas": {"nli": 1.0, "qa": 0.5, "ner": 0.1}}
    # without Fine-Tuned, λ = 0 trains itself, still without a teacher
    no_ft = _grid(_with("conditions", {k: v for k, v in DEFAULT["conditions"].items() if k != "finetuned"}))
    assert no_ft.trained_run("distilled@lam=0", ["ner"]) == "distilled@lam=0"


def test_dynamic_settings_fill_defaults_and_change_only_their_condition():
    grid = _grid()
    entropy = grid.train_settings("entropy", ["nli"])
    assert entropy["strategy"] == "entropy" and entropy["strategy_params"] == {"lambda_max": 1.0, "normalizer": "vocab"}
    meta = grid.train_settings("meta", ["nli"])["strategy_params"]
    assert meta == {"lambda_init": 0.5, "meta_lr": 0.1, "lambda_max": 5.0, "val_batch_size": 8}
    changed = _grid(_with("conditions.entropy.dynamic", {"strategy": "entropy", "lambda_max": 2.0}))
    for cond in grid:
        if cond.trained:
            same = changed.train_settings(cond.name, ["nli"]) == grid.train_settings(cond.name, ["nli"])
            assert same == (cond.name != "entropy"), cond.name


def test_condition_rows_describe_roles_labels_and_reuse():
    rows = {r["condition"]: r for r in _grid().rows()}
    assert (rows["distilled@lam=0"]["role"], rows["distilled@lam=0"]["reuses"]) == ("sweep", "finetuned")
    # λ = 0.1 is its own run for NLI/PA/QA and task_prior's for NER/POS: no single "reuses"
    assert rows["distilled@lam=0.1"]["reuses"] == "" and rows["distilled@lam=0.1"]["label"] == "Distilled λ=0.1"
    assert rows["distilled-best"]["role"] == "best" and rows["distilled-best"]["label"] == "Distilled (best λ)"
    assert "chosen per task on the dev split (EN)" in rows["distilled-best"]["description"]
    assert rows["meta"]["role"] == "dynamic" and rows["meta"]["strategy"] == "meta"
    assert rows["meta"]["label"] == "Meta-λ" and rows["meta"]["lambda"] is None
    assert rows["fewshot"]["description"] == "5-shot in-context learning, no fine-tuning"
    assert rows["task_prior"]["reuses"] == ""  # Distilled's run for QA only
    assert rows["distilled"]["lambda"] == 0.5 and rows["finetuned"]["lambda"] is None
    assert [r["role"] for r in rows.values()].count("infer") == 2


def test_comparisons_follow_the_report_config():
    default = _grid().comparisons()
    trained = ["distilled", "distilled-best", "control", "entropy", "grad_conflict", "loss_ratio", "meta", "task_prior"]
    assert default == [(c, "finetuned") for c in trained] + [("distilled", "control")]
    cfg = _with("report.comparisons", {"reference": "control", "pairs": [["entropy", "distilled"], ["x", "base"]]})
    changed = _grid(cfg).comparisons()
    assert ("finetuned", "control") in changed and ("control", "control") not in changed
    assert changed[-1] == ("entropy", "distilled")  # a pair naming a condition the grid lacks is skipped


def test_train_settings_carry_exactly_what_a_condition_depends_on():
    grid = _grid()
    ft, dist, ctrl = (grid.train_settings(c, ["ner"]) for c in ("finetuned", "distilled", "control"))
    assert ft["loss"] == "ce" and "lam" not in ft
    assert dist["loss"] == ctrl["loss"] == "kd" and dist["lam"] == 0.5 and "strategy" not in dist
    assert {k: v for k, v in dist.items() if k not in ("lam", "kd_loss", "temperature")} == ft | {"loss": "kd"}
    assert grid.teacher_shots("distilled", "ner") == 5 and grid.teacher_shots("control", "ner") == 0
    changed = _grid(_with("conditions.control", dict(DEFAULT["conditions"]["control"], **{"lambda": 0.05})))
    assert changed.train_settings("control", ["ner"])["lam"] == 0.05
    assert changed.train_settings("distilled", ["ner"]) == dist


def test_shots_follow_condition_and_per_task_override():
    grid = _grid(_with("few_shot.k_per_task", {"qa": 2}))
    assert grid.shots("base", "qa") == 0
    assert grid.shots("fewshot", "qa") == 2
    assert grid.shots("fewshot", "nli") == 5


def test_eval_cap_per_task_overrides_the_global_cap():
    cfg = _with("eval.max_examples_per_task", {"pos": 7, "qa": None})
    cfg["eval"]["max_examples"] = 12
    assert eval_cap(cfg, "pos") == 7
    assert eval_cap(cfg, "qa") is None
    assert eval_cap(cfg, "nli") == 12


def _dry_run(tmp_path: Path, cfg: dict) -> subprocess.CompletedProcess:
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(cfg, sort_keys=False))
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


def test_workflow_refuses_a_nan_lambda_naming_the_key(tmp_path):
    """YAML's ``.nan`` passes the schema's ``type: number, minimum: 0``; the config check stops it."""
    result = _dry_run(tmp_path, _with("conditions.control.lambda", float("nan")))
    assert result.returncode != 0
    assert "config key 'conditions.control.lambda': must be a finite number, got nan" in result.stdout + result.stderr


def test_a_condition_key_set_to_null_is_removed(tmp_path):
    """``distilled: {sweep: null}`` in a --configfile drops the sweep (config/gemma-real.yaml)."""
    result = _dry_run(tmp_path, _with("conditions.distilled.sweep", None))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "distilled@lam=" not in result.stdout + result.stderr
    assert "condition=distilled" in result.stdout


def test_assembled_gguf_calls_the_package_builder(tmp_path, monkeypatch):
    from icldistill.models import ModelError, assembled_gguf

    (tmp_path / "fake_builder.py").write_text(
        "from pathlib import Path\ndef assemble(path):\n    Path(path).write_bytes(b'GGUF')\n    return path\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = assembled_gguf("pytest", "fake_builder:assemble", tmp_path)  # any installed distribution
    assert out == tmp_path / "pytest.gguf" and out.read_bytes() == b"GGUF"
    with pytest.raises(ModelError, match="pip install no-such-package-xyz"):
        assembled_gguf("no-such-package-xyz", "fake_builder:assemble", tmp_path)
    with pytest.raises(ModelError, match="cannot load 'fake_builder:missing'"):
        assembled_gguf("pytest", "fake_builder:missing", tmp_path)


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
    # finetuned, distilled, distilled@lam=0.1 (λ 0 and 0.5 reuse finetuned and distilled),
    # control and the five strategies (task_prior stays per task), each over all tasks
    assert counts["train"] == 9
    assert counts["teacher_cache"] == 10  # still one per (task, teacher shots)
    assert "results/training/smollm2-135m/multitask/distilled/adapter" in result.stdout
    assert "multitask/distilled@lam=0/adapter" not in result.stdout


def test_default_grid_trains_each_distinct_run_once_and_shares_teacher_caches(tmp_path):
    result = _dry_run(tmp_path, DEFAULT)
    assert result.returncode == 0, result.stderr[-2000:]
    table = result.stdout[result.stdout.index("Job stats:") :].split("\n\n")[0]
    counts = {p[0]: int(p[1]) for p in (line.split() for line in table.splitlines()) if len(p) == 2 and p[1].isdigit()}
    # per task: finetuned, distilled, distilled@lam=0.1, control, 4 strategies; task_prior is a
    # run of its own only for NLI and PA (λ 1), QA and NER/POS reuse λ 0.5 and λ 0.1
    assert counts["train"] == 5 * 8 + 2
    assert counts["teacher_cache"] == 10  # one per (task, teacher shots): 5-shot and 0-shot
    # the sweep's 3 members on the select split (dev rows), through the test split's rules
    assert result.stdout.count("output: results/predictions/select/") == 5 * 3
    assert counts["select_lambda"] == 5 and counts["best_cell"] == 28
    assert result.stdout.count("output: results/metrics/select/") == 15
    assert "distilled@lam=0/adapter" not in result.stdout
    assert "results/data/nli/select.en.jsonl" in result.stdout


def test_workflow_refuses_a_key_given_twice_naming_file_and_line(tmp_path):
    configfile = tmp_path / "twice.yaml"
    configfile.write_text("training:\n  lr: 0.1\n  max_steps: 2\n  lr: 0.2\n")
    snakemake = Path(sys.executable).with_name("snakemake")
    result = subprocess.run(
        [str(snakemake), "-n", "--cores", "1", "--configfile", str(configfile), "--directory", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode != 0
    assert (
        f"config key 'training.lr': given twice in {configfile}, line 4 (first on line 2)"
        in result.stdout + result.stderr
    )


def test_training_reads_english_data_without_english_among_the_languages(tmp_path):
    """Training rows, the teacher's demonstrations and the best-λ choice read English data,
    whether or not English is evaluated."""
    result = _dry_run(tmp_path, _with("tasks", ["nli"]) | {"languages": ["de"]})
    assert result.returncode == 0, result.stderr[-2000:]
    for path in ("data/nli/train.en.jsonl", "data/nli/demos/5shot.en.json", "data/nli/select.en.jsonl"):
        assert f"results/{path}" in result.stdout
    # English is not evaluated
    assert not re.search(r"results/metrics/test/[^/\s]+/nli/[^/\s]+/en\.json", result.stdout)
    assert "results/metrics/test/smollm2-135m/nli/base/de.json" in result.stdout


def test_only_the_grid_spells_the_names_of_expanded_conditions():
    """Roles are data on :class:`Condition`: no code outside ``icldistill.grid`` builds or parses
    a sweep member's, seed run's or best-λ condition's name (docstrings may show one)."""
    spelled = re.compile(r"""["'][^"'\n]*(@lam=|@seed=|-best)[^"'\n]*["']""")
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for folder in ("src", "workflow")
        for path in sorted((ROOT / folder).rglob("*"))
        if path.suffix in (".py", ".smk") and path.name != "grid.py"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if spelled.search(line) and "``" not in line and '"""' not in line
    ]
    assert not offenders
