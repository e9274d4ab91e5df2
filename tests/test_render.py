"""Tests of the results report renderer (icldistill.render)."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from icldistill.render import read_cells, render_report, tables
from icldistill.render.__main__ import main as cli_main
from icldistill.render.figures import write_figures

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SEED_CELLS = FIXTURES / "seed_cells.csv"
# The seed report lives beside the repository: <repo>/../shared/reference/seed-report.md.
SEED_REPORT = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "seed-report.md"


def _load_fixture_helper():
    """Import tests/fixtures/seed_tables.py (the fixtures folder is not a package)."""
    spec = importlib.util.spec_from_file_location("seed_tables", FIXTURES / "seed_tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


seed_tables = _load_fixture_helper()

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def seed_text() -> str:
    if not SEED_REPORT.is_file():
        pytest.skip(f"seed report not found at {SEED_REPORT}; it is needed to check the fixture render")
    return SEED_REPORT.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def seed_render(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seed")
    return render_report(pd.read_csv(SEED_CELLS), out)


def make_cells(rows, extra_columns: bool = False) -> pd.DataFrame:
    """cells.csv-like frame from (model, task, condition, language, metric, value) tuples."""
    frame = pd.DataFrame(rows, columns=["model", "task", "condition", "language", "metric", "value"])
    frame["n"] = 10
    if extra_columns:
        frame["seed"] = 1
        frame["note"] = "x"
    return frame


# --- the seed report ------------------------------------------------------------------------


def test_fixture_is_what_the_script_writes():
    rows = seed_tables.seed_cells(seed_text())
    with SEED_CELLS.open(encoding="utf-8", newline="") as handle:
        assert list(csv.DictReader(handle)) == rows


def test_every_seed_table_number_comes_back(seed_render):
    expected = seed_tables.parse_tables(seed_text())
    rendered = seed_tables.parse_tables(seed_render.read_text(encoding="utf-8"))
    assert len(expected) == 34
    compared = 0
    for heading, seed_table in expected.items():
        assert heading in rendered, f"no table under {heading}"
        ours = rendered[heading]
        assert ours["header"] == seed_table["header"], heading
        ours_rows = {row[0]: row for row in ours["rows"]}
        assert list(ours_rows) == [row[0] for row in seed_table["rows"]], heading
        for seed_row in seed_table["rows"]:
            our_row = ours_rows[seed_row[0]]
            for column, seed_cell, our_cell in zip(seed_table["header"], seed_row, our_row, strict=True):
                if column in ("Observation", seed_table["header"][0]):
                    continue
                want, got = (
                    seed_tables.parse_number(seed_cell),
                    seed_tables.parse_number(our_cell),
                )
                where = f"{heading} / {seed_row[0]} / {column}"
                if want is None:
                    assert got is None, where
                else:
                    assert got is not None and abs(got - want) <= 0.1 + 1e-9, f"{where}: {got} != {want}"
                    compared += 1
    assert compared > 250


def test_seed_bold_deltas_and_observations(seed_render):
    rendered = seed_tables.parse_tables(seed_render.read_text(encoding="utf-8"))
    overview = rendered[("Per-Task × Condition Overview (Llama-3.2-3B)",)]
    expected = seed_tables.parse_tables(seed_text())[("Per-Task × Condition Overview (Llama-3.2-3B)",)]
    assert overview["rows"] == expected["rows"]
    gap = rendered[("Analysis", "The FT ≥ Distilled ≥ Control Ordering")]
    notes = {row[0]: row[-1] for row in gap["rows"]}
    assert notes["NLI (Acc %)"] == "Distilled **beats** FT (+3.7 pp)"
    assert notes["PA (Acc %)"] == "Near-parity (−0.6 pp)"
    assert notes["QA (F1 %)"] == "Small regression (−2.5 pp); Control ≈ Distilled"
    assert notes["NER (F1 %)"] == "Large regression (−9.5 pp)"
    assert notes["POS (Acc %)"] == "Largest regression (−10.5 pp)"


def test_seed_prose_numbers(seed_render):
    text = seed_render.read_text(encoding="utf-8")
    assert "Fine-Tuned ≥ Distilled ≥ Control   (4 out of 5 tasks)" in text
    assert "**Distilled > Control in every task**" in text
    assert "**Fine-Tuned > Distilled in 4/5 tasks**" in text
    assert "### Cross-Lingual Transfer (Distilled Condition)" in text
    assert "- **English**: 66.1%" in text
    assert "- **Non-English (avg)**: 58.2%" in text
    assert "- **EN → X gap**: 7.9 pp" in text
    assert "23 non-English" in text
    for name in ("task_bar.png", "gap.png", "heatmap_distilled.png"):
        assert f"](figures/{name})" in text
        assert (seed_render.parent / "figures" / name).read_bytes().startswith(PNG_MAGIC)


def test_seed_summary_counts():
    cells = read_cells(SEED_CELLS)
    valued = tables.primary_cells(cells).dropna(subset=["value"])
    base = valued[valued["condition"] == "base"].groupby("model").size()
    assert base["Llama-3.2-3B"] == 28 and base["Qwen3-1.7B"] == 17
    assert tables.default_focus_model(cells) == "Llama-3.2-3B"


# --- table functions on tiny frames ---------------------------------------------------------


def test_summary_is_mean_over_cells_not_tasks():
    cells = tables.tidy_cells(
        make_cells(
            [
                ("M", "nli", "base", "en", "accuracy", 10.0),
                ("M", "nli", "base", "hi", "accuracy", 20.0),
                ("M", "qa", "base", "en", "f1", 60.0),
                ("M", "qa", "base", "en", "exact_match", 99.0),
                ("M", "ner", "base", "en", "precision", 99.0),
                ("M", "ner", "base", "en", "f1", None),
            ],
            extra_columns=True,
        )
    )
    summary = tables.summary_table(cells)
    assert summary.at["M", "base"] == pytest.approx(30.0)
    assert list(summary.columns) == ["base"]


def test_language_table_avg_and_missing():
    cells = tables.tidy_cells(
        make_cells(
            [
                ("A", "pa", "base", "en", "accuracy", 50.0),
                ("A", "pa", "base", "es", "accuracy", None),
                ("A", "pa", "base", "de", "accuracy", 61.0),
                ("B", "pa", "base", "en", "accuracy", None),
            ]
        )
    )
    grid = tables.language_table(cells, "base", "pa", "accuracy", ["A", "B"], ["en", "hi", "es", "de"])
    assert grid.at["A", "Avg"] == pytest.approx(55.5)
    assert math.isnan(grid.at["A", "hi"]) and math.isnan(grid.at["A", "es"])
    assert math.isnan(grid.at["B", "Avg"])


def test_missing_cells_render_as_dash(tmp_path):
    cells = make_cells(
        [
            ("A", "nli", "base", "en", "accuracy", 50.0),
            ("A", "nli", "base", "hi", "accuracy", None),
            ("B", "nli", "base", "en", "accuracy", None),
            ("B", "nli", "base", "hi", "accuracy", None),
        ]
    )
    text = render_report(cells, tmp_path).read_text(encoding="utf-8")
    table = seed_tables.parse_tables(text)[("Base", "NLI (Acc %)")]
    assert table["header"] == ["Model", "EN", "HI", "Avg"]
    assert table["rows"] == [["A", "50.0", "—", "**50.0**"], ["B", "—", "—", "**—**"]]
    summary = seed_tables.parse_tables(text)[("Summary: Average Score per Condition",)]
    assert summary["rows"] == [["A", "50.0"], ["B", "—"]]


def test_default_focus_model_most_values_then_first():
    cells = tables.tidy_cells(
        make_cells(
            [
                ("A", "nli", "base", "en", "accuracy", 1.0),
                ("B", "nli", "base", "en", "accuracy", 1.0),
                ("B", "nli", "base", "hi", "accuracy", 1.0),
                ("A", "nli", "base", "hi", "accuracy", None),
                ("C", "nli", "base", "en", "accuracy", 1.0),
                ("C", "nli", "base", "hi", "accuracy", 1.0),
            ]
        )
    )
    assert tables.model_order(cells) == ["A", "B", "C"]
    assert tables.default_focus_model(cells) == "B"


def test_rounding_and_signs():
    assert tables.decimal1(33.9 / 6) == "5.7"
    assert tables.decimal1(-0.04) == "0.0"
    assert tables.signed(3.66) == "+3.7"
    assert tables.signed(-0.6) == "-0.6"
    assert tables.signed(-0.6, minus="−") == "−0.6"
    assert tables.signed(float("nan")) == "—"


@pytest.mark.parametrize(
    ("gap", "largest", "expected"),
    [
        (3.7, False, "Distilled **beats** FT (+3.7 pp)"),
        (1.0, False, "Distilled **beats** FT (+1.0 pp)"),
        (0.9, False, "Near-parity (+0.9 pp)"),
        (-0.6, False, "Near-parity (−0.6 pp)"),
        (-1.0, False, "Small regression (−1.0 pp)"),
        (-4.9, False, "Small regression (−4.9 pp)"),
        (-5.0, False, "Large regression (−5.0 pp)"),
        (-10.5, True, "Largest regression (−10.5 pp)"),
    ],
)
def test_observation_thresholds(gap, largest, expected):
    assert tables.describe_gap(gap, largest=largest) == expected


def test_gap_observations_mention_control():
    gaps = pd.DataFrame({"distilled": [-2.0, -3.0], "control": [-2.5, 0.0]}, index=["qa", "pa"])
    notes = tables.gap_observations(gaps)
    assert notes["qa"] == "Small regression (−2.0 pp); Control ≈ Distilled"
    assert notes["pa"] == "Small regression (−3.0 pp); Control beats Distilled (+3.0 pp)"


def test_ordering_counts_partial():
    overview = pd.DataFrame(
        {
            "finetuned": [50.0, 60.0, 70.0],
            "distilled": [55.0, 59.0, 60.0],
            "control": [40.0, 59.5, None],
        },
        index=["nli", "pa", "qa"],
    )
    counts = tables.ordering_counts(overview)
    assert counts["ft_ge_dist_ge_ctrl"] == (0, 2)
    assert counts["dist_gt_ctrl"] == (1, 2)
    assert counts["ft_gt_dist"] == (2, 3)


def test_cross_lingual_means_over_cells():
    cells = tables.tidy_cells(
        make_cells(
            [
                ("M", "nli", "distilled", "en", "accuracy", 80.0),
                ("M", "nli", "distilled", "hi", "accuracy", 60.0),
                ("M", "nli", "distilled", "de", "accuracy", 70.0),
                ("M", "pa", "distilled", "en", "accuracy", 90.0),
                ("M", "pa", "distilled", "de", "accuracy", None),
            ]
        )
    )
    stats = tables.cross_lingual(cells, "M", "distilled")
    assert stats["en_avg"] == pytest.approx(85.0)
    assert stats["non_en_avg"] == pytest.approx(65.0)
    assert stats["gap"] == pytest.approx(20.0)
    assert (stats["n_en"], stats["n_non_en"]) == (2, 2)
    drop = tables.largest_transfer_drop(cells, "M", "distilled")
    assert (drop["task"], drop["language"], drop["drop"]) == (
        "nli",
        "hi",
        pytest.approx(-20.0),
    )


# --- whole reports on small grids -----------------------------------------------------------


def inference_only_cells() -> pd.DataFrame:
    rows = []
    for model, offset in (("Small", 0.0), ("Big", 10.0)):
        for condition, bonus in (("base", 0.0), ("fewshot", 5.0)):
            for task, metric in (
                ("nli", "accuracy"),
                ("qa", "f1"),
                ("qa", "exact_match"),
            ):
                for language, value in (("en", 50.0), ("de", 40.0)):
                    rows.append(
                        (
                            model,
                            task,
                            condition,
                            language,
                            metric,
                            value + offset + bonus,
                        )
                    )
    return make_cells(rows)


def test_base_fewshot_only_grid_renders_cleanly(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "gap.png").write_bytes(PNG_MAGIC)  # left by an earlier render
    report = render_report(inference_only_cells(), tmp_path)
    text = report.read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert "## Base" in headings and "## Few-Shot" in headings
    assert "#### QA Exact Match (%)" in headings
    assert "## Analysis" in headings and "### Overall Results (Small)" in headings
    assert "### Cross-Lingual Transfer (Few-Shot Condition)" in headings
    for absent in (
        "Ordering",
        "Gap",
        "Dist−FT",
        "Ctrl−FT",
        "Fine-Tuned",
        "Distilled",
        "Control",
        "Training",
    ):
        assert absent not in text, absent
    assert "gap.png" not in text
    assert "**Models**: Small · Big (focus: Small)" in text
    assert "\n\n\n" not in text
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "heatmap_fewshot.png",
        "task_bar.png",
    ]
    overview = seed_tables.parse_tables(text)[("Per-Task × Condition Overview (Small)",)]
    assert overview["header"] == ["Task", "Base", "Few-Shot"]
    assert overview["rows"][0] == ["NLI (Acc %)", "45.0", "50.0"]


def test_unknown_condition_after_known_ones(tmp_path):
    rows = [
        ("M", "nli", "distilled_lam005", "en", "accuracy", 70.0),
        ("M", "nli", "finetuned", "en", "accuracy", 60.0),
        ("M", "nli", "base", "en", "accuracy", 30.0),
        ("M", "nli", "distilled", "en", "accuracy", 65.0),
    ]
    cells = tables.tidy_cells(make_cells(rows))
    assert tables.condition_order(cells) == [
        "base",
        "finetuned",
        "distilled",
        "distilled_lam005",
    ]
    text = render_report(cells, tmp_path, heatmap_condition="distilled_lam005").read_text(encoding="utf-8")
    summary = seed_tables.parse_tables(text)[("Summary: Average Score per Condition",)]
    assert summary["header"] == [
        "Model",
        "Base",
        "Fine-Tuned",
        "Distilled",
        "distilled_lam005",
    ]
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections.index("## Distilled") < sections.index("## distilled_lam005") < sections.index("## Analysis")
    assert "> - **distilled_lam005**:" in text
    assert text.splitlines()[2].startswith("**Model**: M  **Tasks**: NLI (XNLI)")
    # Fine-tuned and distilled present, control absent: no Ctrl−FT column, no ordering chain.
    overview = seed_tables.parse_tables(text)[("Per-Task × Condition Overview (M)",)]
    assert overview["header"][-1] == "Dist−FT" and "Ctrl−FT" not in overview["header"]
    assert overview["rows"][0][-1] == "**+5.0**"
    assert "Ordering" not in text
    gap = seed_tables.parse_tables(text)[("Analysis", "Gap to Fine-Tuned")]
    assert gap["header"] == ["Task", "Distilled−FT", "Observation"]
    assert (tmp_path / "figures" / "heatmap_distilled_lam005.png").is_file()
    assert "](figures/gap.png)" in text


def test_figures_are_non_empty_pngs(tmp_path):
    cells = tables.tidy_cells(pd.read_csv(SEED_CELLS))
    written = write_figures(cells, tmp_path, "Llama-3.2-3B", "distilled")
    assert [p.name for p in written] == [
        "task_bar.png",
        "gap.png",
        "heatmap_distilled.png",
    ]
    for path in written:
        data = path.read_bytes()
        assert len(data) > 10_000 and data.startswith(PNG_MAGIC)


def test_cli_and_options(tmp_path, capsys):
    cells_csv = tmp_path / "cells.csv"
    inference_only_cells().assign(extra="ignored").to_csv(cells_csv, index=False)
    out = tmp_path / "out"
    assert cli_main(["--cells", str(cells_csv), "--out", str(out), "--focus-model", "Big"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "RESULTS.md")
    assert "### Overall Results (Big)" in (out / "RESULTS.md").read_text(encoding="utf-8")
    assert cli_main(["--cells", str(cells_csv), "--out", str(out), "--focus-model", "Nope"]) == 2
    assert "Nope" in capsys.readouterr().err


def test_custom_template(tmp_path):
    template = tmp_path / "mini.md.j2"
    template.write_text("{{ focus_model }}: {{ summary.rows | length }} models\n", encoding="utf-8")
    report = render_report(inference_only_cells(), tmp_path / "out", template=template)
    assert report.read_text(encoding="utf-8") == "Small: 2 models\n"


def test_package_does_not_import_snakemake():
    render_dir = Path(tables.__file__).resolve().parent
    for source in render_dir.glob("*.py"):
        assert "snakemake" not in source.read_text(encoding="utf-8"), source
