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

from icldistill.data import prepare_split, read_jsonl
from icldistill.models import load_tokenizer
from icldistill.teacher import TeacherCacheError, build_teacher_cache, load_teacher_cache
from icldistill.train.examples import build_sequences, tokenizer_hash, training_rows
from icldistill.train.losses import answer_ce, kd_term, topk_kl, topk_mse
from icldistill.train.run import load_task_data, run_training
from icldistill.train.trainer import TrainSettings, batch_plan, collate

from .conftest import MINI, ROOT


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
def train_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "train.en.jsonl"
    prepare_split({"source": "local", "path": str(MINI)}, "nli", "train", "en", None, 1, out, out.with_suffix(".json"))
    return out


DATA = {"demo_shots": 3, "seed": 1, "max_examples": 24}


@pytest.fixture(scope="module")
def teacher_file(tiny_model_dir, train_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "nli.3shot.safetensors"
    settings = {"dtype": "float32", "batch_size": 4}
    stats = build_teacher_cache(str(tiny_model_dir), "nli", str(train_file), str(out), 3, 8, 1, 24, 3, settings, "tiny")
    # K·(2 + 4) + 4 bytes per answer token, plus the int64 offsets per example
    assert stats["examples"] == 24
    assert stats["bytes_per_answer_token"] == pytest.approx(8 * 6 + 4 + 8 * 25 / stats["answer_tokens"])
    return out


# -- teacher cache ------------------------------------------------------------------------------
def test_teacher_cache_matches_a_plain_forward_pass(tiny_model_dir, train_file, teacher_file):
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(tiny_model_dir)
    pool = read_jsonl(train_file)
    rows = training_rows(pool, "nli", 3, 1, 24)
    assert not {r["id"] for r in rows} & {d for d in _demo_ids(tokenizer, pool)}
    prefix, teacher_examples = build_sequences(tokenizer, "nli", rows, pool, 3, 1)
    _, student_examples = build_sequences(tokenizer, "nli", rows, pool, 0, 1)
    # student and teacher sequences end with the same answer ids
    assert [e.answer_ids for e in teacher_examples] == [e.answer_ids for e in student_examples]
    cache = load_teacher_cache(teacher_file, student_examples, tokenizer_hash(tokenizer))
    assert cache.header["shots"] == 3 and cache.header["top_k"] == 8 and cache.values.dtype == torch.bfloat16
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    for i in (0, 5, 23):
        example = teacher_examples[i]
        ids = torch.tensor([prefix + example.prompt_ids + example.answer_ids])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, -len(example.answer_ids) - 1 : -1]
        values, top = torch.topk(logits, 8, dim=-1)
        cached_values, cached_ids = cache.example(i)
        assert torch.equal(cached_ids, top.to(torch.int32))
        torch.testing.assert_close(cached_values.float(), values, atol=0.05, rtol=0.01)


def _demo_ids(tokenizer, pool):
    from icldistill.data import stable_seed
    from icldistill.prompts import sample_demonstrations

    return [d["id"] for d in sample_demonstrations(pool, 3, stable_seed(1, "nli", "en"))]


def test_cache_that_does_not_match_is_rejected(tiny_model_dir, train_file, teacher_file, tmp_path):
    tokenizer = load_tokenizer(tiny_model_dir)
    assert load_task_data(tokenizer, "nli", str(train_file), str(teacher_file), 3, 1, 24).teacher is not None
    examples = load_task_data(tokenizer, "nli", str(train_file), None, 3, 1, 24).examples
    with pytest.raises(TeacherCacheError, match="another tokenizer"):
        load_teacher_cache(teacher_file, examples, "0" * 16)
    with pytest.raises(TeacherCacheError, match="not the training data"):
        load_task_data(tokenizer, "nli", str(train_file), str(teacher_file), 3, 1, 20)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(teacher_file.read_bytes()[:-100])
    with pytest.raises(TeacherCacheError, match="not a readable teacher cache"):
        load_task_data(tokenizer, "nli", str(train_file), str(truncated), 3, 1, 24)


# -- training ------------------------------------------------------------------------------------
def _train(tiny_model_dir, train_file, teacher, tmp_path, **overrides):
    settings = {"max_steps": 4, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1, "checkpoint_every": 0} | overrides
    out = tmp_path / f"adapter-{len(list(tmp_path.iterdir()))}"
    run_training(
        str(tiny_model_dir),
        ["nli"],
        [str(train_file)],
        [str(teacher)] if teacher else [],
        str(out),
        str(out) + ".csv",
        settings,
        {"nli": DATA},
    )
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
        "data": DATA,
    }

    def launch(out):
        spec = tmp_path / f"{out.name}.json"
        spec.write_text(json.dumps(job | {"out": str(out)}))
        code = (
            "import json, sys; from icldistill.train.run import run_training; j = json.load(open(sys.argv[1])); "
            "run_training(j['model'], ['nli'], [j['train']], [j['teacher']], j['out'], j['out'] + '.csv', j['settings'], {'nli': j['data']})"
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
    pos_file = tmp_path / "pos.train.jsonl"
    prepare_split({"source": "local", "path": str(MINI)}, "pos", "train", "en", None, 1, pos_file, tmp_path / "m.json")
    out = tmp_path / "multitask"
    settings = {"max_steps": 6, "batch_size": 2, "checkpoint_every": 0}
    summary = run_training(
        str(tiny_model_dir), ["nli", "pos"], [str(train_file), str(pos_file)], [], str(out), str(out) + ".csv", settings,
        {"nli": DATA, "pos": DATA},
    )  # fmt: skip
    assert summary["steps"] == 6
    tasks = {line.split(",")[1] for line in Path(str(out) + ".csv").read_text().splitlines()[1:]}
    assert tasks == {"nli", "pos"}
