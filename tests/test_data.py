"""Data loading: local layout validation, seeded sampling, the Hugging Face source at the
``load_dataset`` boundary, and every row of the shipped mini sample."""

from __future__ import annotations

import json

import datasets
import pytest

from icldistill import data
from icldistill.tasks import TASKS, get_task
from icldistill.vocab import LANGUAGES

from .conftest import MINI


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


@pytest.mark.parametrize("task", list(TASKS))
def test_mini_sample_covers_every_valid_pair_and_every_row_is_valid(task):
    spec = get_task(task)
    train = data.read_local(MINI, task, "train", "en")  # read_local validates every row
    assert len(train) >= 120
    for lang in LANGUAGES:
        test_file = data.local_path(MINI, task, "test", lang)
        if lang not in spec.languages:
            assert not test_file.exists(), f"{test_file} is not a pair of the benchmark"
            continue
        assert len(data.read_local(MINI, task, "test", lang)) >= 24
        assert len(data.read_local(MINI, task, "dev", lang)) >= 8


@pytest.mark.parametrize("task", ["nli", "pa"])
def test_mini_sample_uses_every_label(task):
    spec = get_task(task)
    for lang in spec.languages:
        labels = {spec.gold_label(r) for r in data.read_local(MINI, task, "test", lang)}
        assert labels == set(spec.labels), (task, lang)


def test_mini_sample_train_is_disjoint_from_evaluation():
    for task in TASKS:
        train = {
            json.dumps({k: v for k, v in r.items() if k != "id"}, sort_keys=True)
            for r in data.read_local(MINI, task, "train", "en")
        }
        for split in ("dev", "test"):
            rows = data.read_local(MINI, task, split, "en")
            assert not any(json.dumps({k: v for k, v in r.items() if k != "id"}, sort_keys=True) in train for r in rows)


@pytest.mark.parametrize(
    ("task", "row", "message"),
    [
        ("nli", {"premise": "a", "label": "neutral"}, "missing field 'hypothesis'"),
        ("nli", {"premise": "a", "hypothesis": "b", "label": "maybe"}, "label 'maybe' out of range"),
        ("pa", {"sentence1": "a", "sentence2": "b", "label": 2}, "label 2 out of range"),
        ("ner", {"tokens": ["a", "b"], "ner_tags": ["O"]}, "ner_tags has 1 tags for 2 tokens"),
        ("pos", {"tokens": ["a"], "pos_tags": ["NOPE"]}, "unknown tags"),
        (
            "qa",
            {"id": "x", "context": "abc def", "question": "q", "answers": {"text": ["def"], "answer_start": [1]}},
            "not at offset 1",
        ),
    ],
)
def test_malformed_rows_are_rejected_with_file_and_line(tmp_path, task, row, message):
    good = {
        "nli": {"premise": "a", "hypothesis": "b", "label": "neutral"},
        "pa": {"sentence1": "a", "sentence2": "b", "label": 1},
        "ner": {"tokens": ["a"], "ner_tags": ["O"]},
        "pos": {"tokens": ["a"], "pos_tags": ["X"]},
        "qa": {"id": "y", "context": "abc", "question": "q", "answers": {"text": ["abc"], "answer_start": [0]}},
    }[task]
    _write(tmp_path / task / "test.en.jsonl", [good, row])
    with pytest.raises(data.DataError) as err:
        data.read_local(tmp_path, task, "test", "en")
    assert f"{tmp_path / task / 'test.en.jsonl'}:2:" in str(err.value)
    assert message in str(err.value)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(data.DataError, match=r"nli/test\.de\.jsonl: no such data file"):
        data.read_local(tmp_path, "nli", "test", "de")


def test_sampling_is_seeded_and_keeps_file_order():
    rows = [{"id": str(i)} for i in range(100)]
    a = data.sample_rows(rows, 10, seed=7)
    assert a == data.sample_rows(rows, 10, seed=7)
    assert a != data.sample_rows(rows, 10, seed=8)
    assert [int(r["id"]) for r in a] == sorted(int(r["id"]) for r in a)
    assert data.sample_rows(rows, None, seed=7) == rows


def test_prepare_split_records_the_sample(tmp_path):
    out, manifest = tmp_path / "rows.jsonl", tmp_path / "manifest.json"
    data.prepare_split({"source": "local", "path": str(MINI)}, "nli", "test", "de", 5, 11, out, manifest)
    record = json.loads(manifest.read_text())
    assert record["rows_kept"] == 5 and record["rows_available"] >= 24 and record["cap"] == 5
    assert record["ids"] == [r["id"] for r in data.read_jsonl(out)]


# -- Hugging Face source, mocked at the load_dataset boundary only ---------------------------
#: the ``pos_tags`` ClassLabel names of google/xtreme's ``udpos.*`` configs, in the hub's order
#: (tag id = position), written out here rather than taken from the project
UDPOS_CLASSLABEL = [
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
]  # fmt: skip


def _udpos_features():
    return datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "pos_tags": datasets.Sequence(datasets.ClassLabel(names=UDPOS_CLASSLABEL)),
        }
    )


def _fake_hub(calls):
    panx = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(
                datasets.ClassLabel(names=["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"])
            ),
            "langs": datasets.Sequence(datasets.Value("string")),
        }
    )
    tables = {
        ("google/xtreme", "XNLI", "test"): datasets.Dataset.from_list(
            [
                {
                    "language": "de",
                    "sentence1": "Er schläft.",
                    "sentence2": "Er ist wach.",
                    "gold_label": "contradiction",
                },
                {
                    "language": "fr",
                    "sentence1": "Il dort.",
                    "sentence2": "Il est éveillé.",
                    "gold_label": "contradiction",
                },
            ]
        ),
        ("google/xtreme", "PAWS-X.de", "validation"): datasets.Dataset.from_list(
            [{"sentence1": "A B", "sentence2": "B A", "label": "1"}]
        ),
        ("google/xtreme", "MLQA.zh.zh", "test"): datasets.Dataset.from_list(
            [
                {
                    "id": "m1",
                    "title": "t",
                    "context": "北京是首都",
                    "question": "首都?",
                    "answers": {"answer_start": [0], "text": ["北京"]},
                }
            ]
        ),
        ("google/xtreme", "PAN-X.hi", "test"): datasets.Dataset.from_list(
            [{"tokens": ["राम", "दिल्ली"], "ner_tags": [1, 5], "langs": ["hi", "hi"]}], features=panx
        ),
        ("google/xtreme", "udpos.German", "test"): datasets.Dataset.from_list(
            [{"tokens": ["Das", "Haus", "ist", "alt", "."], "pos_tags": [5, 7, 3, 0, 12]}],  # DET NOUN AUX ADJ PUNCT
            features=_udpos_features(),
        ),
        ("nyu-mll/multi_nli", None, "train"): datasets.Dataset.from_list(
            [
                {"premise": "p", "hypothesis": "h", "label": 2},
                {"premise": "p2", "hypothesis": "h2", "label": -1},
            ]
        ),
    }

    def load_dataset(name, config=None, split=None, cache_dir=None, revision=None):
        calls.append((name, config, split))
        return tables[(name, config, split)]

    return load_dataset


@pytest.mark.parametrize(
    ("task", "split", "lang", "expected"),
    [
        ("nli", "test", "de", [{"premise": "Er schläft.", "hypothesis": "Er ist wach.", "label": "contradiction"}]),
        ("nli", "train", "en", [{"premise": "p", "hypothesis": "h", "label": "contradiction"}]),
        ("pa", "dev", "de", [{"sentence1": "A B", "sentence2": "B A", "label": 1}]),
        ("ner", "test", "hi", [{"tokens": ["राम", "दिल्ली"], "ner_tags": ["B-PER", "B-LOC"]}]),
        (
            "pos",
            "test",
            "de",
            [{"tokens": ["Das", "Haus", "ist", "alt", "."], "pos_tags": ["DET", "NOUN", "AUX", "ADJ", "PUNCT"]}],
        ),
    ],
)
def test_hf_source_maps_real_configs_to_local_layout(monkeypatch, task, split, lang, expected):
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", _fake_hub(calls))
    rows = data.load_split({"source": "hf"}, task, split, lang)
    assert [{k: v for k, v in r.items() if k != "id"} for r in rows] == expected
    assert len(calls) == 1


def test_pos_tag_ids_decode_in_the_hub_order():
    """Tag id i is UDPOS_CLASSLABEL[i], read from the dataset's features and, without them, from
    the task's own label tuple, which therefore has to list the tags in the hub's order."""
    spec = get_task("pos")
    row = {"tokens": [f"w{i}" for i in range(17)], "pos_tags": list(range(17))}
    assert spec.from_hf(row, _udpos_features())["pos_tags"] == UDPOS_CLASSLABEL
    assert spec.from_hf(row)["pos_tags"] == UDPOS_CLASSLABEL


def test_hf_source_qa_keeps_squad_fields(monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", _fake_hub([]))
    (row,) = data.load_split({"source": "hf"}, "qa", "test", "zh")
    assert row["id"] == "m1" and row["answers"] == {"text": ["北京"], "answer_start": [0]}


def test_staged_dir_appears_only_when_complete(tmp_path):
    target = tmp_path / "predictions"
    with pytest.raises(RuntimeError), data.staged_dir(target) as out:
        (out / "en.jsonl").write_text("{}\n")
        raise RuntimeError("killed between two languages")
    assert not target.exists()  # only the staging folder is left, and the next run clears it
    with data.staged_dir(target) as out:
        (out / "en.jsonl").write_text("{}\n")
        (out / "de.jsonl").write_text("{}\n")
    assert sorted(p.name for p in target.iterdir()) == ["MANIFEST.json", "de.jsonl", "en.jsonl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions"]
