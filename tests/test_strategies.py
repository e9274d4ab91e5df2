"""Dynamic-λ strategies: each formula on a hand-computed case, then each strategy in a real
(tiny-model) training run, with its λ_eff logged per step and exact resumption of its state."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from icldistill.data import prepare_split
from icldistill.teacher import build_teacher_cache
from icldistill.train import trainer
from icldistill.train.run import run_training
from icldistill.train.strategies import (
    GradConflict,
    LossRatio,
    Meta,
    conflict_lambda,
    ema,
    entropy_lambdas,
    gradient_cosine,
    make_strategy,
    meta_hypergradient,
    meta_lambda,
    prior_lambda,
    ratio_lambda,
    teacher_entropy,
)

from .conftest import MINI, training_files


# -- formulas ------------------------------------------------------------------------------------
def test_entropy_weights_on_hand_computed_cases():
    uniform2 = torch.tensor([[0.0, 0.0]])  # top-K entropy log 2
    assert teacher_entropy(uniform2).item() == pytest.approx(math.log(2))
    # the seed's formula: the full-vocabulary entropy H over log V. H = log 2 with V = 4 gives
    # λ_max · (1 − log 2 / log 4) = λ_max / 2, whatever the top-K logits are
    h2 = torch.tensor([math.log(2)])
    assert entropy_lambdas(uniform2, 1.0, 4, "vocab", full_entropy=h2).item() == pytest.approx(0.5)
    assert entropy_lambdas(uniform2, 2.0, 4, "vocab", full_entropy=h2).item() == pytest.approx(1.0)
    # a uniform teacher over the whole vocabulary gets 0, a certain one the full λ_max
    assert entropy_lambdas(uniform2, 1.0, 4, "vocab", full_entropy=torch.tensor([math.log(4)])).item() == 0.0
    assert entropy_lambdas(uniform2, 0.8, 1000, "vocab", full_entropy=torch.tensor([0.0])).item() == pytest.approx(0.8)
    # top_k: the entropy of the K cached logits renormalised, over log K; p = (0.8, 0.2) here
    values = torch.tensor([[math.log(0.8), math.log(0.2)]])
    h = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    assert entropy_lambdas(values, 1.0, 100, "top_k").item() == pytest.approx(1 - h / math.log(2), rel=1e-6)
    assert entropy_lambdas(uniform2, 1.0, 4, "top_k").item() == pytest.approx(0.0, abs=1e-7)
    # per token: one λ_i per answer token
    assert entropy_lambdas(torch.cat([uniform2, values]), 1.0, 4, "top_k").shape == (2,)
    # the seed's formula needs the full entropy; a cache without it is an error, not a silent top-K
    with pytest.raises(ValueError, match="full-vocabulary entropy"):
        entropy_lambdas(uniform2, 1.0, 4, "vocab")


def test_gradient_conflict_on_hand_computed_cases():
    g_ce = [torch.tensor([1.0, 0.0]), torch.tensor([0.0])]
    g_kd = [torch.tensor([1.0, 1.0]), torch.tensor([0.0])]
    cosine = gradient_cosine(g_ce, g_kd)
    assert cosine == pytest.approx(1 / math.sqrt(2))
    assert conflict_lambda(0.5, cosine) == pytest.approx(0.5 / math.sqrt(2))
    opposed = [torch.tensor([-1.0, 0.0]), torch.tensor([0.0])]
    assert gradient_cosine(g_ce, opposed) == pytest.approx(-1.0)
    assert conflict_lambda(0.5, -1.0) == 0.0
    assert gradient_cosine(g_ce, [torch.zeros(2), torch.zeros(1)]) == 0.0
    info = GradConflict(lam=0.0, **{"lambda": 0.5}).mix(g_ce, g_kd)
    assert info == {"lambda_eff": pytest.approx(0.5 / math.sqrt(2)), "cos": pytest.approx(1 / math.sqrt(2))}


def test_loss_ratio_on_hand_computed_cases():
    assert ema(None, 2.0, 0.9) == 2.0
    assert ema(2.0, 4.0, 0.9) == pytest.approx(2.2)
    assert ratio_lambda(0.5, 2.0, 0.25) == pytest.approx(4.0)
    assert ratio_lambda(0.5, 2.0, 0.25, lambda_max=3.0) == 3.0
    strategy = LossRatio(lambda_0=0.5, ema=0.5, lambda_max=None)
    # step 1: EMAs start at CE 2, KD 0.5 → λ = 0.5 · 2 / 0.5 = 2
    assert strategy.token_weights("nli", 2.0, torch.tensor([0.25, 0.75]), None, 10) == pytest.approx(2.0)
    # step 2: EMA(CE) = 0.5·2 + 0.5·1 = 1.5, EMA(KD) = 0.5·0.5 + 0.5·1 = 0.75 → λ = 1
    assert strategy.token_weights("nli", 1.0, torch.tensor([1.0]), None, 10) == pytest.approx(1.0)
    restored = LossRatio(lambda_0=0.5, ema=0.5, lambda_max=None)
    restored.load_state_dict(strategy.state_dict())
    assert restored.token_weights("nli", 1.0, torch.tensor([1.0]), None, 10) == pytest.approx(
        strategy.token_weights("nli", 1.0, torch.tensor([1.0]), None, 10)
    )


def test_meta_update_on_hand_computed_cases():
    g_val, g_kd = [torch.tensor([1.0, 2.0])], [torch.tensor([3.0, -1.0])]
    # ∂L_val/∂λ = −lr · ⟨g_val, g_KD⟩ = −0.1 · (3 − 2) = −0.1: more KD lowers the dev loss
    assert meta_hypergradient(g_val, g_kd, 0.1) == pytest.approx(-0.1)
    assert meta_lambda(0.5, -0.1, 0.2, 5.0) == pytest.approx(0.52)
    assert meta_lambda(0.5, 10.0, 0.2, 5.0) == 0.0  # kept >= 0
    assert meta_lambda(4.9, -10.0, 0.2, 5.0) == 5.0  # kept <= λ_max
    # normalised step: scale = lr·‖g_val‖·‖g_KD‖ = 0.1·√5·√10, so the step is meta_lr·cos
    scale = 0.1 * math.sqrt(5) * math.sqrt(10)
    assert meta_lambda(0.5, -0.1, 0.2, 5.0, scale) == pytest.approx(0.5 + 0.2 / math.sqrt(50))

    seen = {}

    def val_gradient(step):
        seen["step"] = step
        return g_val

    meta = Meta(lambda_init=0.5, meta_lr=0.2, lambda_max=5.0, val_batch_size=2)
    info = meta.mix([torch.tensor([1.0, 0.0])], g_kd, lr=0.1, val_gradient=val_gradient)
    # the look-ahead is the SGD step −lr·(g_CE + λ·g_KD) with the current λ
    torch.testing.assert_close(seen["step"][0], -0.1 * (torch.tensor([1.0, 0.0]) + 0.5 * g_kd[0]))
    assert info["meta_grad"] == pytest.approx(-0.1)
    assert info["lambda_eff"] == pytest.approx(0.5 + 0.2 / math.sqrt(50)) == meta.current
    assert meta.state_dict() == {"lambda": meta.current}


def test_task_prior_and_unknown_strategy():
    assert prior_lambda({"nli": 1.0, "ner": 0.1}, "ner") == 0.1
    assert make_strategy("task_prior", 0.0, {"lambdas": {"nli": 1.0}}).token_weights("nli", 1.0, None, None, 0) == 1.0
    assert make_strategy("fixed", 0.3, {}).token_weights("nli", 1.0, None, None, 0) == 0.3
    with pytest.raises(ValueError, match="unknown λ strategy 'softmax'"):
        make_strategy("softmax", 0.5, {})


# -- strategies in training runs ------------------------------------------------------------------
K = 8


@pytest.fixture(scope="module")
def files(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("strategy-data")
    paths = {}
    for task in ("nli", "ner"):
        paths[task, "train"], demos = training_files(root, task, 3, 24)
        dev = root / f"{task}.dev.jsonl"
        prepare_split({"source": "local", "path": str(MINI)}, task, "dev", "en", None, 1, dev, root / "m.json")
        paths[task, "dev"] = dev
        teacher = root / f"{task}.teacher.safetensors"
        settings = {"dtype": "float32", "batch_size": 4}
        build_teacher_cache(
            str(tiny_model_dir), task, str(paths[task, "train"]), str(demos), str(teacher), K, settings, "tiny"
        )
        paths[task, "teacher"] = teacher
    return paths


def _run(tiny_model_dir, files, out: Path, strategy: str, params: dict, tasks=("nli",), **overrides):
    settings = {
        "max_steps": 3,
        "batch_size": 4,
        "lr": 1e-2,
        "warmup_steps": 0,
        "checkpoint_every": 0,
        "loss": "kd",
        "strategy": strategy,
        "strategy_params": params,
    } | overrides
    run_training(
        str(tiny_model_dir),
        list(tasks),
        [str(files[t, "train"]) for t in tasks],
        [str(files[t, "teacher"]) for t in tasks],
        str(out),
        str(out) + ".csv",
        settings,
        dev_files=[str(files[t, "dev"]) for t in tasks],
    )
    with open(str(out) + ".csv", newline="") as f:
        return list(csv.DictReader(f))


def test_entropy_lambda_is_recomputed_from_the_cached_full_entropy(tiny_model_dir, files, tmp_path):
    """Each step's logged λ_eff is the mean over the batch's answer tokens of
    λ_max·(1 − H_i/log V), H_i read from the teacher cache (the full-vocabulary entropy), the
    batch from the run's seeded plan; the logged loss lies between CE and CE + λ_max·KD."""
    from icldistill.models import load_tokenizer
    from icldistill.train.run import load_task_data

    tokenizer = load_tokenizer(tiny_model_dir)
    vocab = len(tokenizer)
    rows = _run(tiny_model_dir, files, tmp_path / "entropy", "entropy", {"lambda_max": 2.0, "normalizer": "vocab"})
    data = load_task_data(tokenizer, "nli", str(files["nli", "train"]), str(files["nli", "teacher"]))
    plan = trainer.batch_plan([data], trainer.TrainSettings(max_steps=3, batch_size=4, seed=0))
    lams = []
    for row, (_, indices) in zip(rows, plan, strict=True):
        entropy = torch.cat([data.teacher.example_entropy(i) for i in indices]).double()
        expected = (2.0 * (1 - entropy / math.log(vocab))).clamp(min=0).mean().item()
        assert float(row["lambda"]) == 2.0
        assert float(row["lambda_eff"]) == pytest.approx(expected, abs=2e-6)  # fp32 arithmetic on λ_max = 2
        ce, kd, loss = float(row["ce"]), float(row["kd"]), float(row["loss"])
        assert ce - 1e-5 <= loss <= ce + 2.0 * kd + 1e-5
        lams.append(expected)
    # with the full entropy λ is not pinned above λ_max·(1 − log K/log V) as the top-K bound was
    assert min(lams) < 2.0 * (1 - math.log(K) / math.log(vocab))


def test_grad_conflict_logs_lambda_from_the_cosine(tiny_model_dir, files, tmp_path):
    rows = _run(tiny_model_dir, files, tmp_path / "conflict", "grad_conflict", {"lambda": 0.5}, tasks=("ner",))
    assert len(rows) == 3
    for row in rows:
        cosine = float(row["cos"])
        assert -1 <= cosine <= 1
        assert float(row["lambda_eff"]) == pytest.approx(0.5 * max(0.0, cosine), abs=1e-6)


def test_grad_conflict_step_is_the_mixed_gradient(tiny_model_dir, files, tmp_path, monkeypatch):
    """The optimizer sees g_CE + λ_eff·g_KD: with the cosine forced to 1 the run equals fixed λ."""
    from safetensors.torch import load_file

    import icldistill.train.strategies as strategies

    monkeypatch.setattr(strategies, "gradient_cosine", lambda a, b: 1.0)
    _run(tiny_model_dir, files, tmp_path / "mixed", "grad_conflict", {"lambda": 0.5}, lora_dropout=0.0, bf16=False)
    monkeypatch.undo()
    _run(tiny_model_dir, files, tmp_path / "fixed", "fixed", {}, lam=0.5, lora_dropout=0.0, bf16=False)
    a = load_file(str(tmp_path / "mixed" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "fixed" / "adapter_model.safetensors"))
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4)  # two backward passes round apart


def test_loss_ratio_follows_the_logged_losses(tiny_model_dir, files, tmp_path):
    rows = _run(
        tiny_model_dir, files, tmp_path / "ratio", "loss_ratio", {"lambda_0": 0.5, "ema": 0.5, "lambda_max": None}
    )
    ema_ce = ema_kd = None
    for row in rows:
        ema_ce, ema_kd = ema(ema_ce, float(row["ce"]), 0.5), ema(ema_kd, float(row["kd"]), 0.5)
        assert float(row["lambda_eff"]) == pytest.approx(0.5 * ema_ce / ema_kd, rel=1e-3)


def test_meta_lambda_moves_within_bounds_on_dev_batches(tiny_model_dir, files, tmp_path):
    params = {"lambda_init": 0.5, "meta_lr": 0.2, "lambda_max": 1.0, "val_batch_size": 3}
    rows = _run(tiny_model_dir, files, tmp_path / "meta", "meta", params)
    lams = [float(r["lambda_eff"]) for r in rows]
    assert all(0.0 <= lam <= 1.0 for lam in lams)
    previous = 0.5
    for row, lam in zip(rows, lams, strict=True):
        assert row["meta_grad"] != ""
        assert abs(lam - previous) <= 0.2 + 1e-9  # a normalised step moves λ by at most meta_lr
        previous = lam
    assert lams[0] != 0.5


def test_meta_needs_dev_examples(tiny_model_dir, files, tmp_path):
    settings = {"max_steps": 1, "batch_size": 4, "checkpoint_every": 0, "loss": "kd", "strategy": "meta"}
    settings["strategy_params"] = {"lambda_init": 0.5, "meta_lr": 0.1, "lambda_max": 1.0, "val_batch_size": 2}
    out = tmp_path / "nodev"
    with pytest.raises(ValueError, match="needs English dev examples of task nli"):
        run_training(
            str(tiny_model_dir), ["nli"], [str(files["nli", "train"])], [str(files["nli", "teacher"])],
            str(out), str(out) + ".csv", settings,
        )  # fmt: skip


def test_task_prior_in_multitask_uses_each_batch_tasks_lambda(tiny_model_dir, files, tmp_path):
    lambdas = {"nli": 1.0, "ner": 0.1}
    rows = _run(
        tiny_model_dir, files, tmp_path / "prior", "task_prior", {"lambdas": lambdas}, tasks=("nli", "ner"), max_steps=6
    )
    assert {r["task"] for r in rows} == {"nli", "ner"}
    for row in rows:
        assert float(row["lambda_eff"]) == lambdas[row["task"]]
        assert row["lambda"] == ""


@pytest.mark.parametrize(
    ("strategy", "params"),
    [
        ("loss_ratio", {"lambda_0": 0.5, "ema": 0.9, "lambda_max": None}),
        ("meta", {"lambda_init": 0.5, "meta_lr": 0.2, "lambda_max": 2.0, "val_batch_size": 3}),
    ],
)
def test_interrupted_run_resumes_the_strategy_state_exactly(
    tiny_model_dir, files, tmp_path, monkeypatch, strategy, params
):
    """A run stopped after its step-2 checkpoint resumes to the same weights and λ trace."""
    from safetensors.torch import load_file

    save = trainer.save_checkpoint

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt

    straight = _run(tiny_model_dir, files, tmp_path / "straight", strategy, params, max_steps=4, checkpoint_every=2)
    monkeypatch.setattr(trainer, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_model_dir, files, tmp_path / "resumed", strategy, params, max_steps=4, checkpoint_every=2)
    monkeypatch.undo()
    assert not (tmp_path / "resumed").exists()
    resumed = _run(tiny_model_dir, files, tmp_path / "resumed", strategy, params, max_steps=4, checkpoint_every=2)
    assert [r["lambda_eff"] for r in resumed] == [r["lambda_eff"] for r in straight]
    a = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_every_declared_strategy_has_its_training_class_and_every_class_a_declaration():
    from icldistill.train.registry import STRATEGIES
    from icldistill.train.strategies import STRATEGY_CLASSES

    assert set(STRATEGIES) == set(STRATEGY_CLASSES) - {"fixed"}
    for spec in STRATEGIES.values():
        # the legend line is written from the defaults alone
        assert spec.describe(spec.defaults) and spec.check(spec.defaults) is None, spec.name
