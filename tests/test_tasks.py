"""Task registry: prompts, gold answers and every parser."""

from __future__ import annotations

import pytest

from icldistill.tasks import NO_MATCH, TASKS, get_task, valid_pairs

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
