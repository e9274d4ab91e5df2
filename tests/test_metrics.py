"""Metrics: MLQA normalisation (official script), seqeval entity F1, POS accuracy, parse failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icldistill.aggregate import collect_cells, score_cell, seed_cell
from icldistill.data import write_jsonl
from icldistill.metrics import mlqa, score

from .conftest import SAMPLE_ROWS


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("The Eiffel Tower!", "en", "eiffel tower"),
        ("an apple, a day", "en", "apple day"),
        ("El río Amazonas", "es", "río amazonas"),
        ("los Andes y las Pampas", "es", "andes y pampas"),
        ("Die Deutsche Bahn", "de", "deutsche bahn"),
        ("des Kaisers „Palast“", "de", "kaisers palast"),
        ("भारत की राजधानी।", "hi", "भारत की राजधानी"),
        ("the ताज महल", "hi", "the ताज महल"),  # Hindi: no article list, not even English's
        ("北京大学，中国", "zh", "北 京 大 学 中 国"),
        ("2008年北京Olympics", "zh", "2008 年 北 京 olympics"),
    ],
)
def test_mlqa_normalize_answer(text, lang, expected):
    assert mlqa.normalize_answer(text, lang) == expected


def test_mlqa_f1_and_em_per_language():
    assert mlqa.exact_match_score("the Danube", "Danube", "en") == 1.0
    assert mlqa.f1_score("the blue Danube river", "Danube", "en") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert mlqa.exact_match_score("la Ciudad de México", "Ciudad de México", "es") == 1.0
    assert mlqa.exact_match_score("der Rhein", "Rhein", "de") == 1.0
    # zh: mixed segmentation gives character-level F1
    assert mlqa.f1_score("北京大学", "北京", "zh") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert mlqa.f1_score("नई दिल्ली", "दिल्ली", "hi") == pytest.approx(2 * 0.5 * 1 / 1.5)
    with pytest.raises(ValueError, match="fr"):
        mlqa.normalize_answer("la tour", "fr")


def _qa_ref(*answers):
    return {
        "id": "q",
        "context": " ".join(answers),
        "question": "?",
        "answers": {"text": list(answers), "answer_start": [0] * len(answers)},
    }


def test_score_qa_takes_best_gold_and_counts_empty_output():
    result = score(
        "qa",
        "en",
        ["Answer: the Nile.", "", "Nile river"],
        [_qa_ref("Nile", "the Nile"), _qa_ref("Nile"), _qa_ref("Amazon")],
    )
    assert result["exact_match"] == pytest.approx(100 / 3)
    assert result["f1"] == pytest.approx(100 / 3)
    assert result["n"] == 3 and result["parse_failures"] == 1
    assert [e["exact_match"] for e in result["per_example"]] == [1.0, 0.0, 0.0]


def test_score_nli_accuracy_parses_first_label_word():
    refs = [{"label": "entailment"}, {"label": "neutral"}, {"label": "contradiction"}, {"label": "neutral"}]
    outputs = ["Entailment.", "It is neutral, not contradiction", "I think so", "contradiction"]
    result = score("nli", "de", outputs, refs)
    assert result["accuracy"] == 50.0
    assert result["parse_failures"] == 1


def test_score_pa_maps_integer_labels_to_yes_no():
    refs = [{"label": 1}, {"label": 0}, {"label": 0}]
    result = score("pa", "fr", ["Yes", "no.", "yesterday"], refs)
    assert result["accuracy"] == pytest.approx(200 / 3)
    assert result["parse_failures"] == 1  # "yesterday" is not the word "yes"


def test_score_ner_is_seqeval_entity_f1_with_padding():
    ref = {"tokens": ["Angela", "Merkel", "visited", "Paris", "."], "ner_tags": ["B-PER", "I-PER", "O", "B-LOC", "O"]}
    # second prediction is short: padded with O, so only the person entity is found
    result = score("ner", "en", ["B-PER I-PER O B-LOC O", "B-PER I-PER"], [ref, ref])
    # 3 entities predicted, 4 gold, 3 correct
    assert result["precision"] == 100.0
    assert result["recall"] == 75.0
    assert result["f1"] == pytest.approx(100 * 2 * 0.75 / 1.75)
    assert result["length_mismatches"] == 1
    assert result["per_example"][1] == {"true_pos": 1, "pred": 1, "gold": 2}


def test_score_ner_garbage_is_parse_failure_and_scores_zero():
    ref = {"tokens": ["Rome"], "ner_tags": ["B-LOC"]}
    result = score("ner", "en", ["no idea"], [ref])
    assert result["f1"] == 0.0 and result["parse_failures"] == 1


def test_score_pos_token_accuracy_aligned_by_position():
    ref = {"tokens": ["The", "cat", "sleeps", "."], "pos_tags": ["DET", "NOUN", "VERB", "PUNCT"]}
    result = score("pos", "en", ["DET NOUN VERB PUNCT", "DET VERB", "DET NOUN foo PUNCT ADJ"], [ref, ref, ref])
    # 4 + 1 + 3 correct of 12 tokens; the filler never matches a gold tag
    assert result["accuracy"] == pytest.approx(100 * 8 / 12)
    assert result["parse_failures"] == 0
    assert result["length_mismatches"] == 2


def test_score_rejects_misaligned_inputs():
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        score("nli", "en", ["a", "b"], [{"label": "neutral"}])


#: hand-written Qwen3-style outputs for the NLI sample row (gold: contradiction)
THINKING_OUTPUTS = [
    "<think>\nA sleeping man could be neutral here... no, asleep is not awake.\n</think>\n\ncontradiction",
    "<think>\nHmm, maybe neutral? The man sleeps, so",  # generation budget ran out in the block
    "contradiction",
    "I cannot tell",
]


def test_score_drops_think_blocks_and_counts_them():
    refs = [SAMPLE_ROWS["nli"]] * 4
    result = score("nli", "en", THINKING_OUTPUTS, refs)
    # closed block then the gold label: correct; unclosed block: does not parse
    assert [e["correct"] for e in result["per_example"]] == [1.0, 0.0, 1.0, 0.0]
    assert result["accuracy"] == 50.0
    assert result["parse_failures"] == 2
    assert result["think_blocks"] == 2


def test_tag_length_is_checked_after_the_think_block():
    row = SAMPLE_ROWS["pos"]
    outputs = [
        "<think>\nAnna is a name, lives a verb.\n</think>\nPROPN VERB ADP PROPN",
        "<think>\nPROPN VERB ADP PROPN",
    ]
    result = score("pos", "en", outputs, [row, row])
    assert result["accuracy"] == 50.0
    assert (result["parse_failures"], result["think_blocks"], result["length_mismatches"]) == (1, 2, 0)


def _score_nli_cell(tmp_path, name: str, outputs: list[str]) -> str:
    """Score ``outputs`` against the NLI sample row as one cell; return its metrics file."""
    refs = [SAMPLE_ROWS["nli"] | {"id": f"x{i}"} for i in range(len(outputs))]
    write_jsonl(tmp_path / f"{name}.data.jsonl", refs)
    write_jsonl(
        tmp_path / f"{name}.pred.jsonl", [{"id": r["id"], "output": o} for r, o in zip(refs, outputs, strict=True)]
    )
    meta = {"model": "M", "model_id": "org/m", "task": "nli", "condition": name, "language": "en"}
    out = tmp_path / f"{name}.json"
    score_cell(tmp_path / f"{name}.pred.jsonl", tmp_path / f"{name}.data.jsonl", out, meta)
    return str(out)


def test_metrics_record_and_cells_carry_think_blocks_and_parse_failure_rate(tmp_path):
    thinking = _score_nli_cell(tmp_path, "thinking", THINKING_OUTPUTS)
    record = json.loads(Path(thinking).read_text(encoding="utf-8"))
    assert record["parse_failures"] == 2 and record["extra"] == {"think_blocks": 2}
    plain = _score_nli_cell(tmp_path, "plain", ["contradiction"] * 4)
    mean = tmp_path / "mean.json"
    averaged = seed_cell([thinking, plain], [0, 1], "mean", mean)
    assert averaged["parse_failures"] == 1.0 and averaged["extra"] == {"think_blocks": 1.0}
    cells = collect_cells([thinking, plain, mean], resamples=20)
    # the rate, then the over-long input count, are appended after the columns cells.csv had before
    assert list(cells.columns) == [
        *("model", "task", "condition", "language", "metric", "value", "n", "parse_failures", "model_id"),
        *("ci_low", "ci_high", "seeds", "seed_sd", "parse_failure_rate", "over_length"),
    ]
    assert cells.set_index("condition")["parse_failure_rate"].to_dict() == {"thinking": 0.5, "plain": 0.0, "mean": 0.25}
