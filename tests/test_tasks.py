"""Task registry: prompts, gold answers and every parser."""

from __future__ import annotations

import pytest

from icldistill.tasks import NO_MATCH, TASKS, get_task, starts_with_think, strip_think, valid_pairs

from .conftest import SAMPLE_ROWS


def test_registry_and_coverage_declared_once():
    assert list(TASKS) == ["nli", "pa", "qa", "ner", "pos"]
    assert "hi" not in get_task("pa").languages
    assert "fr" not in get_task("qa").languages
    pairs = valid_pairs(["pa", "qa"], ["en", "hi", "fr"])
    assert pairs == [("pa", "en"), ("pa", "fr"), ("qa", "en"), ("qa", "hi")]
    with pytest.raises(KeyError, match="unknown task 'xnli'"):
        get_task("xnli")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("entailment", "entailment"),
        ("  Contradiction.", "contradiction"),
        ("The answer is neutral (not entailment).", "neutral"),
        ("non-entailment", None),
        ("The hypothesis is contradictory to the premise.", "contradiction"),
        ("The premise entails it", "entailment"),
        ("", None),
        ("I cannot tell", None),
    ],
)
def test_nli_parser(output, expected):
    assert get_task("nli").parse(output, {}) == expected


@pytest.mark.parametrize(
    ("output", "expected"),
    [("Yes", "yes"), ("no, they differ", "no"), ("Yes and no", "yes"), ("yesterday", None), ("nope", None)],
)
def test_pa_parser(output, expected):
    assert get_task("pa").parse(output, {}) == expected


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("Paris", "Paris"),
        ('"the Nile"\nbecause...', "the Nile"),
        ("Answer: 1998", "1998"),
        ("   \n  ", None),
        ("«Berlín»", "Berlín"),
    ],
)
def test_qa_parser(output, expected):
    assert get_task("qa").parse(output, {}) == expected


def test_ner_parser_aligns_pads_and_fills_with_o():
    row = {"tokens": ["a", "b", "c"], "ner_tags": ["O", "O", "O"]}
    ner = get_task("ner")
    assert ner.parse("B-PER I-PER O", row) == ["B-PER", "I-PER", "O"]
    assert ner.parse("b-per, i-per", row) == ["B-PER", "I-PER", "O"]
    assert ner.parse("B-PER FOO O O O", row) == ["B-PER", "O", "O"]
    assert ner.parse("no entities here", row) is None


def test_pos_parser_uses_no_match_filler():
    row = {"tokens": ["a", "b", "c"], "pos_tags": ["DET", "NOUN", "VERB"]}
    pos = get_task("pos")
    assert pos.parse("DET NOUN", row) == ["DET", "NOUN", NO_MATCH]
    assert pos.parse("DET banana VERB ADJ", row) == ["DET", NO_MATCH, "VERB"]
    assert pos.parse("nothing", row) is None


def test_answers_round_trip_through_their_parser():
    expected = {
        "nli": "contradiction",
        "pa": "yes",
        "qa": "the Caspian Sea",
        "ner": ["B-PER", "O", "O", "B-LOC"],
        "pos": ["PROPN", "VERB", "ADP", "PROPN"],
    }
    for task_id, row in SAMPLE_ROWS.items():
        task = get_task(task_id)
        row = row | {"id": "1"}
        task.check_row(row)
        assert task.parse(task.answer(row), row) == expected[task_id]
        assert task.user_message(row).endswith(":")


def test_tag_budget_scales_with_length_and_respects_cap():
    ner = get_task("ner")
    assert ner.generation_budget({"tokens": ["x"] * 5}) == 28
    assert ner.generation_budget({"tokens": ["x"] * 500}, default=64) == 64
    assert get_task("pos").generation_budget({"tokens": ["x"] * 5}) == 23
    assert get_task("nli").generation_budget({}, default=4) == 4


#: reasoning a think block may hold before the answer; each would parse to a wrong answer
THINK_DECOYS = {
    "nli": "Sleeping and awake... entailment? No.",
    "pa": "At first no, but the meaning is the same.",
    "qa": "The river Volga is in Russia.",
    "ner": "O O O O",
    "pos": "NOUN NOUN NOUN NOUN",
}


@pytest.mark.parametrize("task_id", list(SAMPLE_ROWS))
def test_parsers_drop_a_leading_think_block(task_id):
    task, row = get_task(task_id), SAMPLE_ROWS[task_id]
    expected = task.parse(task.answer(row), row)
    closed = f"<think>\n{THINK_DECOYS[task_id]}\n</think>\n\n{task.answer(row)}"
    assert task.parse(closed, row) == expected
    assert task.parse(f"\n{closed}", row) == expected  # leading whitespace before the block
    # cut off by the generation budget inside the block: nothing after it, even with the answer in it
    assert task.parse(f"<think>\n{THINK_DECOYS[task_id]} {task.answer(row)}", row) is None


def test_strip_think_only_at_the_start():
    assert strip_think("<think>a</think> b <think>c</think>") == " b <think>c</think>"
    assert strip_think("<think></think>neutral") == "neutral"
    assert strip_think("  <think>\nstill thinking") is None
    assert strip_think("neutral <think>x</think>") == "neutral <think>x</think>"
    assert get_task("nli").parse("neutral <think>entailment</think>", {}) == "neutral"
    assert [starts_with_think(o) for o in ("<think>x</think>y", " <think>x", "x<think>", "</think>")] == [
        True,
        True,
        False,
        False,
    ]
