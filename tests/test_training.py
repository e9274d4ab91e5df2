"""Training: the KD losses on hand-computed cases, λ = 0 equals SFT, the teacher cache (format,
checks, agreement with a plain forward pass) and exact resumption after a killed job."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from icldistill.data import read_jsonl, write_jsonl
from icldistill.demos import read_demonstrations
from icldistill.models import load_tokenizer
from icldistill.teacher import build_teacher_cache
from icldistill.train.examples import build_sequences, tokenizer_hash
from icldistill.train.losses import answer_ce, kd_term, topk_kl, topk_mse
from icldistill.train.run import load_task_data, run_training
from icldistill.train.teacher_cache import TeacherCacheError, load_teacher_cache
from icldistill.train.trainer import TrainSettings, batch_plan, collate

from .conftest import ROOT, training_files


# -- losses ------------------------------------------------------------------------------------
def test_topk_mse_on_a_hand_computed_example():
    student = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 1.0, -1.0]])
    teacher_ids = torch.tensor([[3, 1], [2, 0]])
    teacher_values = torch.tensor([[5.0, 2.0], [0.0, 1.0]])
    # gathered student: [[4, 2], [1, 0]]; squared errors: [[1, 0], [1, 1]] → mean 0.75
    assert topk_mse(student, teacher_values, teacher_ids).item() == pytest.approx(0.75)


def test_topk_kl_is_zero_for_matching_logits_and_positive_otherwise():
    student = torch.tensor([[2.0, 1.0, 0.0]])
    ids = torch.tensor([[0, 1]])
    assert topk_kl(student, torch.tensor([[2.0, 1.0]]), ids).item() == pytest.approx(0.0, abs=1e-7)
    # p = softmax([0, 0]) = [.5, .5], q = softmax([2, 1]); KL = sum p log(p/q)
    q = torch.softmax(torch.tensor([2.0, 1.0]), 0)
    expected = sum(0.5 * math.log(0.5 / q[i].item()) for i in range(2))
    assert topk_kl(student, torch.tensor([[0.0, 0.0]]), ids).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="unknown kd_loss"):
        kd_term("l1", student, torch.tensor([[0.0, 0.0]]), ids)


def test_answer_ce_matches_definition():
    logits = torch.tensor([[0.0, math.log(3.0)]])
    assert answer_ce(logits, torch.tensor([1])).item() == pytest.approx(-math.log(0.75))


def test_collate_marks_only_answer_positions():
    from icldistill.train.examples import TrainExample

    batch = collate([TrainExample("a", [5, 6, 7], [8, 9]), TrainExample("b", [5], [4])], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [5, 4, 0, 0, 0]]
    assert batch["rows"].tolist() == [0, 0, 1]
    assert batch["positions"].tolist() == [2, 3, 0]
    assert batch["keep"].tolist() == [0, 2, 3] and batch["slots"].tolist() == [1, 2, 0]
    assert batch["targets"].tolist() == [8, 9, 4]


def test_batch_plan_is_seeded_and_samples_every_task():
    from icldistill.train.trainer import TaskData

    tasks = [TaskData("nli", [None] * 10), TaskData("pos", [None] * 7)]
    settings = TrainSettings(max_steps=20, batch_size=3, seed=4)
    plan = batch_plan(tasks, settings)
    assert plan == batch_plan(tasks, settings) and len(plan) == 20
    assert {t for t, _ in plan} == {0, 1}
    assert plan != batch_plan(tasks, TrainSettings(max_steps=20, batch_size=3, seed=5))


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    return training_files(tmp_path_factory.mktemp("data"), "nli", 3, 24)


@pytest.fixture(scope="module")
def train_file(data_files):
    return data_files[0]


@pytest.fixture(scope="module")
def demos_file(data_files):
    return data_files[1]


SETTINGS = {"dtype": "float32", "batch_size": 4}


@pytest.fixture(scope="module")
def teacher_file(tiny_model_dir, train_file, demos_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "nli.3shot.safetensors"
    stats = build_teacher_cache(
        str(tiny_model_dir), "nli", str(train_file), str(demos_file), str(out), 8, SETTINGS, "tiny"
    )
    # K·(2 + 4) + 4 + 4 bytes per answer token (values, ids, answer id, entropy), plus the int64
    # offsets per example
    assert stats["examples"] == 24
    assert stats["bytes_per_answer_token"] == pytest.approx(8 * 6 + 8 + 8 * 25 / stats["answer_tokens"])
    return out


@pytest.fixture(scope="module")
def control_teacher_file(tiny_model_dir, train_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "nli.0shot.safetensors"
    build_teacher_cache(str(tiny_model_dir), "nli", str(train_file), None, str(out), 8, SETTINGS, "tiny")
    return out


# -- teacher cache ------------------------------------------------------------------------------
def test_teacher_cache_matches_a_plain_forward_pass(tiny_model_dir, train_file, demos_file, teacher_file):
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(tiny_model_dir)
    rows = read_jsonl(train_file)
    demos = read_demonstrations(demos_file)
    assert len(rows) == 24 and not {r["id"] for r in rows} & demos.held_out
    prefix, teacher_examples = build_sequences(tokenizer, "nli", rows, demos)
    _, student_examples = build_sequences(tokenizer, "nli", rows)
    # student and teacher sequences end with the same answer ids
    assert [e.answer_ids for e in teacher_examples] == [e.answer_ids for e in student_examples]
    cache = load_teacher_cache(teacher_file, student_examples, tokenizer_hash(tokenizer))
    assert cache.header["shots"] == 3 and cache.header["top_k"] == 8 and cache.values.dtype == torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    for i in (0, 5, 23):
        example = teacher_examples[i]
        assert example.prompt_ids[: len(prefix)] == prefix
        ids = torch.tensor([example.prompt_ids + example.answer_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -len(example.answer_ids) - 1 : -1]
        values, top = torch.topk(logits, 8, dim=-1)
        cached_values, cached_ids = cache.example(i)
        assert torch.equal(cached_ids, top.to(torch.int32))
        torch.testing.assert_close(cached_values.float(), values, atol=0.05, rtol=0.01)
        # the stored entropy is the full-vocabulary softmax entropy, written out here
        p = torch.softmax(logits.double(), dim=-1)
        entropy = -(p * p.log()).sum(-1)
        torch.testing.assert_close(cache.example_entropy(i).double(), entropy, atol=1e-4, rtol=1e-5)


def test_cache_that_does_not_match_is_rejected(tiny_model_dir, train_file, teacher_file, tmp_path):
    tokenizer = load_tokenizer(tiny_model_dir)
    assert load_task_data(tokenizer, "nli", str(train_file), str(teacher_file)).teacher is not None
    examples = load_task_data(tokenizer, "nli", str(train_file), None).examples
    with pytest.raises(TeacherCacheError, match="another tokenizer"):
        load_teacher_cache(teacher_file, examples, "0" * 16)
    fewer = tmp_path / "fewer.jsonl"
    write_jsonl(fewer, read_jsonl(train_file)[:20])
    with pytest.raises(TeacherCacheError, match="not the training data"):
        load_task_data(tokenizer, "nli", str(fewer), str(teacher_file))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(teacher_file.read_bytes()[:-100])
    with pytest.raises(TeacherCacheError, match="not a readable teacher cache"):
        load_task_data(tokenizer, "nli", str(train_file), str(truncated))


def test_cache_with_non_finite_values_is_rejected(tiny_model_dir, train_file, teacher_file, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(teacher_file), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        metadata = f.metadata()
    tensors["values"][3, 2] = float("nan")
    broken = tmp_path / "nan.safetensors"
    save_file(tensors, str(broken), metadata=metadata)
    tokenizer = load_tokenizer(tiny_model_dir)
    with pytest.raises(TeacherCacheError, match="non-finite"):
        load_task_data(tokenizer, "nli", str(train_file), str(broken))


# -- the identity that ties Control to the student: same prompt, same frozen model ----------------
def test_control_kd_is_zero_at_the_first_step_and_distilled_is_not(
    tiny_model_dir, train_file, teacher_file, control_teacher_file, tmp_path
):
    """Control's teacher is the frozen base model reading the student's own prompt, and LoRA
    starts as the identity (B = 0): before the first update student and teacher logits are the
    same, so Control's KD term is 0 up to the cache's bf16 rounding. Distilled's teacher reads
    the few-shot prompt, so its KD term is not."""

    def first_kd(teacher):
        _, out = _train(tiny_model_dir, train_file, teacher, tmp_path, loss="kd", lam=0.5, max_steps=1)
        return float(Path(str(out) + ".csv").read_text().splitlines()[1].split(",")[3])

    control, distilled = first_kd(control_teacher_file), first_kd(teacher_file)
    # bf16 keeps 8 bits of mantissa: |logit| · 2^-8 bounds the rounding of each cached value
    values = load_teacher_cache(
        control_teacher_file, load_task_data(load_tokenizer(tiny_model_dir), "nli", str(train_file), None).examples,
        tokenizer_hash(load_tokenizer(tiny_model_dir)),
    ).values.float()  # fmt: skip
    bound = float((values.abs() * 2**-8).pow(2).mean())
    assert control <= bound, (control, bound)
    assert distilled > bound and distilled > 10 * control, (distilled, control, bound)


# -- training ------------------------------------------------------------------------------------
def _train(tiny_model_dir, train_file, teacher, tmp_path, **overrides):
    settings = {"max_steps": 4, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1, "checkpoint_every": 0} | overrides
    out = tmp_path / f"adapter-{len(list(tmp_path.iterdir()))}"
    run_training(
        str(tiny_model_dir), ["nli"], [str(train_file)], [str(teacher)] if teacher else [], str(out), str(out) + ".csv",
        settings,
    )  # fmt: skip
    from safetensors.torch import load_file

    return load_file(str(out / "adapter_model.safetensors")), out


def test_lambda_zero_equals_sft_and_kd_changes_the_weights(tiny_model_dir, train_file, teacher_file, tmp_path):
    sft, out = _train(tiny_model_dir, train_file, None, tmp_path)
    kd0, _ = _train(tiny_model_dir, train_file, teacher_file, tmp_path, loss="kd", lam=0.0)
    kd1, kd_out = _train(tiny_model_dir, train_file, teacher_file, tmp_path, loss="kd", lam=1.0)
    assert sft.keys() == kd0.keys()
    assert all(torch.equal(sft[k], kd0[k]) for k in sft)
    assert any(not torch.equal(sft[k], kd1[k]) for k in sft)
    log = (Path(str(kd_out) + ".csv")).read_text().splitlines()
    assert log[0].startswith("step,task,ce,kd,lambda,lambda_eff,loss,lr,grad_norm,tokens,tokens_per_s")
    assert len(log) == 5 and float(log[1].split(",")[3]) > 0


def test_killed_training_resumes_to_the_same_weights(tiny_model_dir, train_file, teacher_file, tmp_path):
    settings = {"max_steps": 60, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 5, "loss": "kd", "lam": 0.5}
    job = {
        "model": str(tiny_model_dir),
        "train": str(train_file),
        "teacher": str(teacher_file),
        "settings": settings,
    }

    def launch(out):
        spec = tmp_path / f"{out.name}.json"
        spec.write_text(json.dumps(job | {"out": str(out)}))
        code = (
            "import json, sys; from icldistill.train.run import run_training; j = json.load(open(sys.argv[1])); "
            "run_training(j['model'], ['nli'], [j['train']], [j['teacher']], j['out'], j['out'] + '.csv', j['settings'])"
        )
        env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
        return subprocess.Popen([sys.executable, "-c", code, str(spec)], env=env, stderr=subprocess.DEVNULL)

    interrupted = tmp_path / "interrupted"
    proc = launch(interrupted)
    checkpoints = tmp_path / "interrupted.checkpoints"
    deadline = time.time() + 120
    while not any(checkpoints.glob("step-*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not interrupted.exists() and any(checkpoints.glob("step-*"))
    assert launch(interrupted).wait() == 0  # resumes from the checkpoint
    assert launch(tmp_path / "straight").wait() == 0

    from safetensors.torch import load_file

    a = load_file(str(interrupted / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "straight" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)

    def losses(path):  # the log without its timing columns
        return [line.split(",")[:9] for line in Path(str(path) + ".csv").read_text().splitlines()]

    assert losses(interrupted) == losses(tmp_path / "straight")


def test_multitask_training_samples_every_task(tiny_model_dir, train_file, tmp_path):
    pos_file, _ = training_files(tmp_path, "pos", 3, 8)
    out = tmp_path / "multitask"
    settings = {"max_steps": 6, "batch_size": 2, "checkpoint_every": 0}
    summary = run_training(
        str(tiny_model_dir), ["nli", "pos"], [str(train_file), str(pos_file)], [], str(out), str(out) + ".csv", settings
    )
    assert summary["steps"] == 6
    tasks = {line.split(",")[1] for line in Path(str(out) + ".csv").read_text().splitlines()[1:]}
    assert tasks == {"nli", "pos"}


def test_a_checkpoint_from_other_training_rows_is_not_resumed(
    tiny_model_dir, train_file, tmp_path, monkeypatch, caplog
):
    """A run killed after a checkpoint, rerun on changed training rows, starts fresh (and says
    why) instead of continuing the old rows' weights: its result is a fresh run's."""
    from safetensors.torch import load_file

    from icldistill.train import trainer

    changed = tmp_path / "changed.jsonl"
    rows = read_jsonl(train_file)
    write_jsonl(changed, rows[1:] + [rows[0] | {"label": "neutral" if rows[0]["label"] != "neutral" else "entailment"}])
    settings = {"max_steps": 4, "batch_size": 4, "checkpoint_every": 2, "lora_dropout": 0.0}
    save = trainer.save_checkpoint

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        _train_to(tiny_model_dir, train_file, tmp_path / "run", settings)
    monkeypatch.undo()
    assert any((tmp_path / "run.checkpoints").glob("step-*"))
    with caplog.at_level("WARNING", logger="icldistill.train.trainer"):
        _train_to(tiny_model_dir, changed, tmp_path / "run", settings)
    assert "made from other training rows" in caplog.text
    _train_to(tiny_model_dir, changed, tmp_path / "fresh", settings)
    a = load_file(str(tmp_path / "run" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "fresh" / "adapter_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def _train_to(model_dir, rows_file, out, settings):
    run_training(str(model_dir), ["nli"], [str(rows_file)], [], str(out), str(out) + ".csv", settings)


def test_a_non_finite_loss_stops_training_naming_step_and_task(tiny_model_dir, train_file, tmp_path, monkeypatch):
    from icldistill.train import trainer

    monkeypatch.setattr(trainer, "answer_ce", lambda logits, targets: logits.sum() * float("nan"))
    with pytest.raises(FloatingPointError, match=r"CE loss is nan at step 1 of task nli \(.*adapter"):
        _train_to(tiny_model_dir, train_file, tmp_path / "adapter", {"max_steps": 2, "batch_size": 4})


def test_seeds_do_not_share_data_orders():
    """Seed s's order is not seed s+1's shifted by an epoch (as Random(seed + epoch) made it)."""
    from icldistill.train.trainer import TaskData

    tasks = [TaskData("nli", [None] * 8)]
    plans = [
        [i for _, b in batch_plan(tasks, TrainSettings(max_steps=6, batch_size=4, seed=s)) for i in b] for s in (0, 1)
    ]
    assert plans[0][8:16] != plans[1][:8] and plans[0] != plans[1]


# -- the answer head ---------------------------------------------------------------------------
def _padded_batch():
    from icldistill.train.examples import TrainExample

    examples = [TrainExample("a", [5, 6, 7, 8, 9, 10], [11, 12]), TrainExample("b", [5, 6], [13, 14, 15])]
    return collate(examples, pad_id=0)


@pytest.mark.parametrize("pad_limit, by_rows", [(0.0, True), (0.25, False)])
def test_answer_head_picks_the_answer_logits_of_each_row_from_the_model_forward(tiny_model_dir, pad_limit, by_rows):
    """The gathered path equals the model's own full forward at each (row, position) of a padded
    batch (row b's answer sits where row a still has prompt), and its gradient equals the
    forward's: the head is a reindexing, not another model. Both ways through the decoder: the
    batch (rows of 8 and 5 tokens, 3 of 16 positions padding) goes row by row above a pad limit
    of 3/16 and as one padded batch at or below it."""
    from transformers import AutoModelForCausalLM

    from icldistill.train.trainer import AnswerHead

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.eval()
    head = AnswerHead(model, pad_limit)
    head.check(torch.device("cpu"))
    assert head.gathered
    batch = _padded_batch()
    assert head.by_rows(batch["attention_mask"]) == by_rows
    assert head.positions(batch["attention_mask"]) == (13 if by_rows else 16)
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = full[batch["rows"], batch["positions"]]
    ours = head(batch, torch.device("cpu"))
    assert ours.shape == (5, model.config.vocab_size)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    weight = model.get_output_embeddings().weight
    (g_ours,) = torch.autograd.grad(answer_ce(ours, batch["targets"]), weight)
    (g_full,) = torch.autograd.grad(answer_ce(expected, batch["targets"]), weight)
    torch.testing.assert_close(g_ours, g_full, rtol=1e-4, atol=1e-6)


def test_answer_head_falls_back_to_the_forward_when_the_model_scales_its_logits(tiny_model_dir):
    """A head that does more than the output layer (here a logit scale, as Cohere's and Granite's
    do) is caught by the check, and training then reads the model's own logits."""
    from transformers import AutoModelForCausalLM

    from icldistill.train.trainer import AnswerHead

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.eval()
    plain_forward = model.forward

    def scaled_forward(*args, **kwargs):
        out = plain_forward(*args, **kwargs)
        out.logits = out.logits * 0.25
        return out

    model.forward = scaled_forward
    head = AnswerHead(model)
    head.check(torch.device("cpu"))
    assert not head.gathered
    batch = _padded_batch()
    expected = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(head(batch, torch.device("cpu")), expected[batch["rows"], batch["positions"]])


def test_pad_limit_is_a_result_setting_and_checkpointing_is_not():
    """Batched and row-by-row passes round differently (another run), checkpointing does not."""
    default = TrainSettings().fingerprint()
    assert TrainSettings(pad_limit=0.0).fingerprint() != default
    assert TrainSettings(activation_checkpointing=False, checkpoint_above_tokens=7).fingerprint() == default


def test_auto_checkpointing_switches_per_batch_with_bitwise_the_same_gradients(tiny_model_dir):
    """``auto`` checkpoints a micro-batch of more than ``checkpoint_above_tokens`` positions and
    not a shorter one; whichever it does, the gradients are those of no checkpointing."""
    from icldistill.train.examples import TrainExample
    from icldistill.train.trainer import AnswerHead, prepare_model, set_checkpointing

    long = collate([TrainExample("a", list(range(5, 40)), [41, 42]), TrainExample("b", list(range(7, 40)), [43])], 0)
    short = collate([TrainExample("c", list(range(5, 12)), [41, 42])], 0)
    grads, states = {}, []
    for mode in (False, "auto"):
        settings = TrainSettings(activation_checkpointing=mode, checkpoint_above_tokens=20, lora_dropout=0.1)
        model = prepare_model(str(tiny_model_dir), settings)
        model.train()
        base = model.get_base_model()
        head = AnswerHead(model, settings.pad_limit)
        torch.manual_seed(3)
        grads[mode] = []
        for batch in (long, short, long):
            if mode == "auto":
                set_checkpointing(model, head.positions(batch["attention_mask"]) > settings.checkpoint_above_tokens)
                states.append(base.is_activation_checkpointing)
            answer_ce(head(batch, torch.device("cpu")), batch["targets"]).backward()
            grads[mode].append([p.grad.clone() for p in model.parameters() if p.requires_grad])
            model.zero_grad()
    assert states == [True, False, True]
    pairs = [
        (a, b)
        for step_a, step_b in zip(grads[False], grads["auto"], strict=True)
        for a, b in zip(step_a, step_b, strict=True)
    ]
    assert len(pairs) > 0 and all(torch.equal(a, b) for a, b in pairs)
    assert any(float(g.abs().sum()) > 0 for g in grads[False][1])


def test_activation_checkpointing_gives_bitwise_the_same_gradients(tiny_model_dir):
    """Recomputing activations (dropout on, its RNG replayed) changes memory, not the gradient:
    that is why the setting is outside the run's fingerprint and params."""
    from icldistill.train.examples import TrainExample
    from icldistill.train.trainer import AnswerHead, prepare_model

    batch = collate(
        [TrainExample("a", list(range(5, 40)), [41, 42]), TrainExample("b", list(range(7, 20)), [43, 44, 45])], 0
    )
    grads = []
    for on in (False, True):
        settings = TrainSettings(activation_checkpointing=on, lora_dropout=0.1)
        model = prepare_model(str(tiny_model_dir), settings)
        model.train()
        base = model.get_base_model()
        assert (getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing) == on
        torch.manual_seed(3)
        answer_ce(AnswerHead(model)(batch, torch.device("cpu")), batch["targets"]).backward()
        grads.append([p.grad for p in model.parameters() if p.requires_grad])
        assert settings.fingerprint() == TrainSettings(lora_dropout=0.1).fingerprint()
    assert len(grads[0]) > 0 and all(torch.equal(a, b) for a, b in zip(*grads, strict=True))
    assert any(float(g.abs().sum()) > 0 for g in grads[0])
