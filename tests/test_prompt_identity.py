"""One prompt for training, teacher and evaluation: token identity for every task and the
three kinds of template users have (a chat template with a system role, one without — Gemma
folds the system message into the first user turn — and none at all).

The evaluation side goes through the workflow's files (demonstrations file → prompt file →
``PromptSet.from_json`` → ``encode_prompts``, as the inference job does); the training side
through :func:`icldistill.train.examples.build_sequences`, as the teacher and training jobs do.
"""

from __future__ import annotations

import json
import shutil

import pytest

from icldistill.data import read_local, write_jsonl
from icldistill.demos import draw_demonstrations, write_demonstrations
from icldistill.models import load_tokenizer
from icldistill.prompts import PromptSet, encode_prompts, write_prompt_files
from icldistill.tasks import TASKS, get_task
from icldistill.teacher import build_teacher_cache
from icldistill.train.examples import TrainExample, build_sequences, sequences_hash
from icldistill.train.run import load_task_data

from .conftest import CHATML, MINI

#: Gemma-3's template reduced to what matters here: no system role (the system message opens
#: the first user turn), ``model`` as the assistant role, a BOS token of its own
GEMMA = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
#: ChatML with Qwen3's switch: ``enable_thinking=False`` writes an empty think block after the
#: assistant header
QWEN3 = CHATML.replace(
    "{{ '<|im_start|>assistant\n' }}",
    "{{ '<|im_start|>assistant\n' }}{% if enable_thinking is defined and enable_thinking is false %}"
    "{{ '<think>\n\n</think>\n\n' }}{% endif %}",
)
TEMPLATES = {"chatml": CHATML, "gemma": GEMMA, "plain": None}


@pytest.fixture(scope="module", params=list(TEMPLATES))
def model_dir(request, tiny_model_dir, tmp_path_factory):
    """The tiny model's tokenizer with each kind of template, saved as a model folder."""
    out = tmp_path_factory.mktemp(request.param) / "model"
    shutil.copytree(tiny_model_dir, out)
    tokenizer = load_tokenizer(tiny_model_dir)
    tokenizer.chat_template = TEMPLATES[request.param]
    tokenizer.save_pretrained(out)
    return out


def _eval_ids(model_dir, task_id, rows_file, demos_file, tmp_path, template_kwargs=None):
    """Prompt ids as the inference job sees them: prompt file written, read back, encoded."""
    out = tmp_path / f"prompts-{demos_file is not None}.json"
    write_prompt_files(
        str(model_dir), task_id, ["en"], [str(rows_file)], [str(demos_file)] if demos_file else [], [str(out)],
        template_kwargs,
    )  # fmt: skip
    prompts = PromptSet.from_json(json.loads(out.read_text(encoding="utf-8")))
    prefix, suffixes = encode_prompts(load_tokenizer(model_dir), prompts)
    return [prefix + s for s in suffixes], prompts


def _header(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["header"])


@pytest.mark.parametrize("task_id", list(TASKS))
def test_student_teacher_and_evaluation_prompts_are_token_identical(model_dir, task_id, tmp_path):
    tokenizer = load_tokenizer(model_dir)
    pool = read_local(MINI, task_id, "train", "en")
    demos = draw_demonstrations(pool, task_id, "en", 2, seed=3)
    rows = [r for r in pool if r["id"] not in demos.held_out][:4]
    rows_file, demos_file = tmp_path / "rows.jsonl", tmp_path / "demos.json"
    write_jsonl(rows_file, rows)
    write_demonstrations(demos_file, demos)

    base_ids, base_prompts = _eval_ids(model_dir, task_id, rows_file, None, tmp_path)
    few_ids, few_prompts = _eval_ids(model_dir, task_id, rows_file, demos_file, tmp_path)
    # the training job's student sequences
    student = load_task_data(tokenizer, task_id, str(rows_file), None).examples
    assert [e.prompt_ids for e in student] == base_ids
    # the teacher jobs' sequences, by the hash each cache records of them: Distilled's teacher
    # reads the Few-Shot prompt, Control's the Base prompt, both followed by the same answer ids
    for demos_path, expected_ids in ((demos_file, few_ids), (None, base_ids)):
        cache = tmp_path / f"teacher-{demos_path is not None}.safetensors"
        build_teacher_cache(
            str(model_dir), task_id, str(rows_file), demos_path and str(demos_path), str(cache), 4,
            {"dtype": "float32", "batch_size": 4}, "tiny",
        )  # fmt: skip
        expected = [TrainExample(e.id, ids, e.answer_ids) for e, ids in zip(student, expected_ids, strict=True)]
        assert _header(cache)["sequences_hash"] == sequences_hash(expected)
    # the system message / instruction is in the student's sequence (it once was dropped)
    instruction = get_task(task_id).instruction
    assert all(instruction in tokenizer.decode(e.prompt_ids) for e in student)

    task = get_task(task_id)
    for row, example, prompt_text in zip(rows, student, base_prompts.suffixes, strict=True):
        answer = task.answer(row)
        if base_prompts.chat_template:
            # prompt + answer is the conversation the template renders with the answer as the
            # assistant's turn, up to the end-of-turn token
            text = tokenizer.decode(example.input_ids)
            assert text.startswith(base_prompts.prefix + prompt_text)
            assert text[len(base_prompts.prefix + prompt_text) :].startswith(answer)
        else:
            # plain text: the answer exactly as the demonstrations show it after "Answer:", the
            # ids those of the whole text
            suffix_ids = tokenizer(prompt_text, add_special_tokens=False).input_ids
            whole = tokenizer(prompt_text + f" {answer}\n\n", add_special_tokens=False).input_ids
            assert example.prompt_ids[-len(suffix_ids) :] + example.answer_ids == whole
            assert tokenizer.decode(example.answer_ids) == f" {answer}\n\n"
    assert few_prompts.prefix.count(task.answer(demos.rows[0])) >= 1


def test_template_kwargs_reach_prompts_and_training_sequences(tiny_model_dir, tmp_path):
    tokenizer = load_tokenizer(tiny_model_dir)
    tokenizer.chat_template = QWEN3
    tokenizer.save_pretrained(tmp_path / "qwen")
    rows = read_local(MINI, "nli", "train", "en")[:2]
    write_jsonl(tmp_path / "rows.jsonl", rows)
    off = {"enable_thinking": False}
    ids, prompts = _eval_ids(tmp_path / "qwen", "nli", tmp_path / "rows.jsonl", None, tmp_path, off)
    assert all(s.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n") for s in prompts.suffixes)
    default_ids, default = _eval_ids(tmp_path / "qwen", "nli", tmp_path / "rows.jsonl", None, tmp_path)
    assert not any("<think>" in s for s in default.suffixes)
    _, student = build_sequences(load_tokenizer(tmp_path / "qwen"), "nli", rows, None, off)  # training and teacher
    assert [e.prompt_ids for e in student] == ids != default_ids
