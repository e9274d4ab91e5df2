"""Over-long inputs are cut by a documented policy and counted: an evaluation prompt that leaves
no room for its answer in the model's context loses characters from the start of the example's
own text (instruction, demonstrations and the question kept); each cut example is counted in the
prompt file, the predictions, the metrics, ``cells.csv`` and the report."""

from __future__ import annotations

import pandas as pd
import pytest

from icldistill.data import read_jsonl
from icldistill.models import load_tokenizer
from icldistill.prompts import CUT_MARK, build_prompts, encode_prompts, fit_to_context
from icldistill.tasks import get_task

from .conftest import MINI, small_grid_config
from .test_e2e import _snakemake, write_config


def test_fit_to_context_cuts_the_fewest_characters_from_the_start():
    def split(message):
        return "P", message

    def count(prefix, suffix):  # one "token" per character
        return len(prefix) + len(suffix)

    # 1 + 1 (mark) + 16 - c <= 10  →  c >= 8
    assert fit_to_context(split, "abcdefghijklmnop", count, 10) == ("P", CUT_MARK + "ijklmnop", 8)
    assert fit_to_context(split, "abc", count, 10) == ("P", "abc", 0)
    with pytest.raises(ValueError, match="demonstrations alone exceed 1 tokens"):
        fit_to_context(split, "abc", count, 1)


def test_a_long_qa_prompt_is_cut_to_fit_and_keeps_its_question(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    task = get_task("qa")
    rows = read_jsonl(MINI / "qa" / "test.en.jsonl")[:3]
    short = {
        "id": "short",
        "context": "Rome.",
        "question": "Where?",
        "answers": {"text": ["Rome"], "answer_start": [0]},
    }
    rows.append(short)
    whole = build_prompts(tokenizer, task, rows)
    lengths = [len(tokenizer(whole.prefix + s).input_ids) for s in whole.suffixes]
    limit, budget = min(lengths[:3]) - 5, 6
    prompts = build_prompts(tokenizer, task, rows, max_tokens=limit, max_new_tokens=budget)
    assert prompts.cut[:3] != [0, 0, 0] and all(c > 0 for c in prompts.cut[:3]) and prompts.cut[3] == 0
    assert prompts.over_length() == 3
    prefix, suffixes = encode_prompts(tokenizer, prompts)
    for row, suffix, ids, cut in zip(rows, prompts.suffixes, suffixes, prompts.cut, strict=True):
        assert len(prefix) + len(ids) + budget <= limit
        assert f"Question: {row['question']}\nAnswer:" in suffix
        if cut:
            assert CUT_MARK + row["context"][cut - len("Passage: ") :] in suffix
            # the fewest characters: one fewer does not fit (counted here with the tokenizer)
            message = task.user_message(row)
            longer = suffix.replace(CUT_MARK + message[cut:], CUT_MARK + message[cut - 1 :])
            assert (
                len(encode_prompts(tokenizer, type(prompts)(prompts.prefix, [longer], ["x"]))[1][0])
                + len(prefix)
                + budget
                > limit
            )
    assert prompts.to_json({})["examples"][0]["cut_chars"] == prompts.cut[0]


@pytest.mark.e2e
def test_cut_inputs_are_counted_in_cells_and_the_report(tiny_model_dir, tmp_path):
    config = small_grid_config(tiny_model_dir, 3, {"qa": 6})
    config["models"]["tiny"]["context_length"] = 160  # prompts of 200-240 tokens; instruction + question ~100
    config |= {"tasks": ["qa"], "languages": ["en", "de"]}
    config["conditions"] = {"base": config["conditions"]["base"]}
    write_config(tmp_path, config)
    _snakemake(tmp_path, "--cores", "2")
    cells = pd.read_csv(tmp_path / "results" / "tables" / "cells.csv")
    counts = cells.drop_duplicates(["language"]).set_index("language")["over_length"]
    predictions = {
        lang: read_jsonl(tmp_path / f"results/predictions/test/tiny/qa/base/{lang}.jsonl") for lang in ("en", "de")
    }
    for lang in ("en", "de"):
        assert counts[lang] == sum(1 for p in predictions[lang] if p.get("cut_chars")) > 0
    report = (tmp_path / "results" / "RESULTS.md").read_text(encoding="utf-8")
    assert f"{counts.sum():g} inputs did not fit the model's context" in report
