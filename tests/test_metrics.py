"""Metrics: MLQA normalisation (official script), seqeval entity F1, POS accuracy, parse failures."""

from __future__ import annotations

import pytest

from icldistill.metrics import mlqa, score


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
