"""The Reference section: this run against published numbers (the seed study's, shipped as
``resources/reference/seed_cells.csv``)."""

from __future__ import annotations

import pandas as pd
import pytest

from icldistill.render import render_report
from icldistill.render.reference import compare, read_reference, summarize

from .conftest import ROOT

SEED = ROOT / "resources" / "reference" / "seed_cells.csv"


def _run(rows):
    """A cells table of ``rows`` (model, task, condition, language, value, ci_low, ci_high)."""
    columns = ["model", "task", "condition", "language", "value", "ci_low", "ci_high"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["metric"] = frame["task"].map({"nli": "accuracy", "qa": "f1"})
    frame["n"] = 100
    return frame


PRIMARY = {"nli": "accuracy", "pa": "accuracy", "qa": "f1", "ner": "f1", "pos": "accuracy"}


def test_the_reference_fed_as_its_own_run_differs_by_nothing(tmp_path):
    seed = read_reference(SEED)
    compared = compare(seed.assign(ci_low=float("nan"), ci_high=float("nan")), seed)
    # every seed cell with a value, primary metric, is compared with itself
    expected = seed.dropna(subset=["value"])
    expected = expected[expected["metric"] == expected["task"].map(PRIMARY)]
    assert len(compared) == len(expected) > 0
    assert (compared["difference"] == 0).all()
    assert compared["inside"].isna().all()  # no intervals in the reference
    report = render_report(pd.read_csv(SEED), tmp_path, reference={"table": seed, "model": None, "source": "itself"})
    section = report.read_text(encoding="utf-8").split("## Reference: itself")[1].split("## Parse Failures")[0]
    deltas = [line.strip("|").split("|")[6].strip() for line in section.splitlines() if line.startswith("| Qwen")]
    assert deltas and set(deltas) == {"+0.0"}


def test_values_differences_and_intervals_against_another_model(tmp_path):
    reference = pd.DataFrame(
        [
            ["Big", "nli", "finetuned", "en", "accuracy", 80.0],
            ["Big", "nli", "finetuned", "de", "accuracy", 70.0],
            ["Big", "nli", "distilled", "en", "accuracy", None],  # left empty: not compared
            ["Other", "nli", "finetuned", "en", "accuracy", 10.0],
        ],
        columns=["model", "task", "condition", "language", "metric", "value"],
    )
    run = _run(
        [
            ["Small", "nli", "finetuned", "en", 75.0, 70.0, 85.0],  # 80 inside
            ["Small", "nli", "finetuned", "de", 50.0, 45.0, 55.0],  # 70 outside
            ["Small", "nli", "distilled", "en", 60.0, 50.0, 70.0],
        ]
    )
    compared = compare(run, reference, "Big").set_index("language")
    assert list(compared["difference"]) == [-5.0, -20.0]
    assert list(compared["inside"]) == [True, False]
    assert set(compared["reference_model"]) == {"Big"}
    (row,) = summarize(compared.reset_index()).itertuples()
    assert (row.value, row.reference, row.difference, row.languages, row.inside) == (62.5, 75.0, -12.5, 2, 1)
    # matched by display name instead: Small is not in the reference
    assert compare(run, reference).empty


def test_the_report_section_reads_as_a_comparison_or_says_why_there_is_none(tmp_path):
    run = _run(
        [
            ["Small", "nli", "base", "en", 40.0, 30.0, 50.0],
            ["Small", "nli", "finetuned", "en", 75.0, 70.0, 85.0],
        ]
    )
    seed = read_reference(SEED)
    llama = seed[(seed["model"] == "Llama-3.2-3B") & (seed["task"] == "nli") & (seed["language"] == "en")]
    expected = llama.set_index("condition")["value"]
    text = render_report(run, tmp_path / "a", reference={"table": seed, "model": "Llama-3.2-3B", "source": "the seed"})
    section = text.read_text(encoding="utf-8").split("## Reference: the seed")[1].split("## Parse Failures")[0]
    assert "The reference model is not this run's model" in section
    finetuned = next(line for line in section.splitlines() if "| Fine-Tuned |" in line)
    cells = [c.strip() for c in finetuned.strip("|").split("|")]
    assert cells[:6] == ["Small", "Llama-3.2-3B", "NLI", "Fine-Tuned", "75.0", f"{expected['finetuned']:.1f}"]
    assert cells[6] == f"{75.0 - expected['finetuned']:+.1f}"
    assert cells[7] == ("1/1" if 70.0 <= expected["finetuned"] <= 85.0 else "0/1")
    # no model in common and none chosen: a sentence, no table
    text = render_report(run, tmp_path / "b", reference={"table": seed, "model": None, "source": "the seed"})
    section = text.read_text(encoding="utf-8").split("## Reference: the seed")[1].split("## Parse Failures")[0]
    assert "No model of this run (Small) has numbers in the reference" in section and "|" not in section
    # without a reference: no section
    assert "## Reference" not in render_report(run, tmp_path / "c").read_text(encoding="utf-8")


def test_a_reference_without_the_needed_columns_is_refused(tmp_path):
    bad = tmp_path / "ref.csv"
    bad.write_text("model,task,value\nA,nli,1\n")
    with pytest.raises(ValueError, match="ref.csv: reference table lacks column"):
        read_reference(bad)
