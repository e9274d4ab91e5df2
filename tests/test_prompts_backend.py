"""Prompt building (chat template, shared prefix, seeded demonstrations) and the HF backend's
prefix KV reuse, on a tiny random Llama: reuse must not change a single greedy token."""

from __future__ import annotations

import json

import pytest

from icldistill.data import read_local
from icldistill.models import load_tokenizer
from icldistill.prompts import PromptSet, build_prompts, write_prompt_files
from icldistill.tasks import get_task

from .conftest import MINI


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def test_tokenizer_is_left_padded_after_reload(tokenizer):
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None


@pytest.mark.parametrize("task_id", ["nli", "qa", "ner"])
def test_few_shot_prompts_share_one_prefix_with_demonstrations(tokenizer, task_id):
    task = get_task(task_id)
    rows = read_local(MINI, task_id, "test", "de")[:4]
    pool = read_local(MINI, task_id, "train", "en")
    prompts = build_prompts(tokenizer, task, rows, pool, k=3, seed=5, lang="de")
    assert prompts.prefix.startswith("<|im_start|>system\n" + task.instruction)
    assert prompts.prefix.count("<|im_start|>assistant\n") == 3
    assert len({tuple(d) for d in prompts.demonstrations}) == 1 and len(prompts.demonstrations[0]) == 3
    for row, suffix in zip(rows, prompts.suffixes, strict=True):
        full = tokenizer.apply_chat_template(
            [{"role": "system", "content": task.instruction}]
            + [m for d in prompts.demonstrations[0] for m in _demo_messages(task, pool, d)]
            + [{"role": "user", "content": task.user_message(row)}],
            tokenize=False,
            add_generation_prompt=True,
        )
        assert prompts.prefix + suffix == full
        assert suffix.endswith("<|im_start|>assistant\n")
    again = build_prompts(tokenizer, task, rows, pool, k=3, seed=5, lang="de")
    assert again.prefix == prompts.prefix
    assert build_prompts(tokenizer, task, rows, pool, k=3, seed=6, lang="de").prefix != prompts.prefix


def _demo_messages(task, pool, demo_id):
    row = next(r for r in pool if r["id"] == demo_id)
    return [{"role": "user", "content": task.user_message(row)}, {"role": "assistant", "content": task.answer(row)}]


def test_zero_shot_prefix_is_the_system_message(tokenizer):
    task = get_task("pos")
    rows = read_local(MINI, "pos", "test", "zh")[:2]
    prompts = build_prompts(tokenizer, task, rows, [], k=0, seed=1, lang="zh")
    assert prompts.prefix == f"<|im_start|>system\n{task.instruction}<|im_end|>\n"
    assert prompts.demonstrations == [[], []]


def test_resampled_demonstrations_differ_per_example_and_share_the_system_prefix(tokenizer):
    task = get_task("nli")
    rows = read_local(MINI, "nli", "test", "en")[:6]
    pool = read_local(MINI, "nli", "train", "en")
    prompts = build_prompts(tokenizer, task, rows, pool, k=2, seed=1, lang="en", resample=True)
    assert len({tuple(d) for d in prompts.demonstrations}) > 1
    assert prompts.prefix == f"<|im_start|>system\n{task.instruction}<|im_end|>\n"


def test_plain_text_fallback_without_chat_template(tokenizer):
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = None
    task = get_task("nli")
    rows = read_local(MINI, "nli", "test", "en")[:2]
    pool = read_local(MINI, "nli", "train", "en")
    prompts = build_prompts(tokenizer, task, rows, pool, k=2, seed=1, lang="en")
    assert not prompts.chat_template
    assert prompts.prefix.startswith(task.instruction) and prompts.suffixes[0] == task.user_message(rows[0])


def test_prompt_file_round_trip(tiny_model_dir, tmp_path):
    data_file = MINI / "qa" / "test.hi.jsonl"
    out = tmp_path / "hi.json"
    write_prompt_files(
        str(tiny_model_dir),
        "qa",
        ["hi"],
        [str(data_file)],
        [str(MINI / "qa" / "train.en.jsonl")],
        [str(out)],
        k=2,
        seed=3,
    )
    obj = json.loads(out.read_text(encoding="utf-8"))
    assert obj["meta"]["shots"] == 2 and obj["meta"]["language"] == "hi"
    prompts = PromptSet.from_json(obj)
    assert len(prompts.suffixes) == len(prompts.ids) >= 24


# -- backend ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    import torch

    from icldistill.backends.hf import HFBackend

    torch.manual_seed(0)
    return HFBackend(tiny_model_dir, dtype="float32", batch_size=5, progress=False)


@pytest.mark.parametrize(("task_id", "k"), [("ner", 5), ("qa", 2), ("nli", 0)])
def test_prefix_reuse_gives_identical_greedy_outputs(backend, tokenizer, task_id, k):
    task = get_task(task_id)
    rows = read_local(MINI, task_id, "test", "es")[:7]
    pool = read_local(MINI, task_id, "train", "en")
    prompts = build_prompts(tokenizer, task, rows, pool, k=k, seed=2, lang="es")
    budgets = [12] * len(rows)
    backend.reuse_prefix = True
    with_reuse = backend.generate(prompts, budgets)
    backend.reuse_prefix = False
    without = backend.generate(prompts, budgets)
    assert with_reuse == without
    assert all(isinstance(o, str) for o in with_reuse)


def test_prefix_ids_are_an_exact_prefix_of_every_prompt(backend, tokenizer):
    task = get_task("pa")
    rows = read_local(MINI, "pa", "test", "fr")[:3]
    prompts = build_prompts(tokenizer, task, rows, read_local(MINI, "pa", "train", "en"), k=2, seed=2, lang="fr")
    prefix, suffixes = backend.encode(prompts)
    assert prefix and all(suffixes)


def test_loglik_with_and_without_reuse_agree(backend, tokenizer):
    task = get_task("nli")
    rows = read_local(MINI, "nli", "test", "fr")[:4]
    prompts = build_prompts(tokenizer, task, rows, read_local(MINI, "nli", "train", "en"), k=2, seed=2, lang="fr")
    backend.reuse_prefix = True
    a = backend.loglik(prompts, list(task.choices()))
    backend.reuse_prefix = False
    b = backend.loglik(prompts, list(task.choices()))
    assert len(a) == 4 and all(len(r) == 3 for r in a)
    assert all(x < 0 for r in a for x in r)
    assert [x for r in a for x in r] == pytest.approx([x for r in b for x in r], abs=1e-4)


def test_cut_at_stop_takes_the_earliest_stop_string():
    from icldistill.backends.base import cut_at_stop

    assert cut_at_stop("B-PER O\nnext", ["\n"]) == "B-PER O"
    assert cut_at_stop("a;b\nc", ["\n", ";"]) == "a"
    assert cut_at_stop("no stop here", ["###"]) == "no stop here"
    assert cut_at_stop("text", None) == "text"
    assert cut_at_stop("###", ["###"]) == ""


def test_generation_stops_at_a_stop_string(backend, tokenizer):
    task = get_task("qa")
    rows = read_local(MINI, "qa", "test", "de")[:4]
    prompts = build_prompts(tokenizer, task, rows, read_local(MINI, "qa", "train", "en"), k=0, seed=2, lang="de")
    free = backend.generate(prompts, [16] * 4)
    # stop at a piece of text the model really generates
    stop = next(o[len(o) // 2 : len(o) // 2 + 2] for o in free if len(o) >= 4)
    cut = backend.generate(prompts, [16] * 4, stop=[stop])
    for full, short in zip(free, cut, strict=True):
        assert stop not in short
        assert full.startswith(short)
        assert short == (full[: full.index(stop)] if stop in full else full)
    assert sum(map(len, cut)) < sum(map(len, free))
