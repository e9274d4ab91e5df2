"""Tests of the results report renderer (icldistill.render)."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from icldistill.render import parse_failures, read_cells, read_conditions, read_selection, read_training, render_report
from icldistill.render import report as render_report_module
from icldistill.render.__main__ import main as cli_main
from icldistill.render.common import (
    condition_order,
    decimal1,
    language_table,
    model_order,
    primary_cells,
    shown_conditions,
    signed,
    task_condition_table,
)
from icldistill.render.contracts import tidy_cells, tidy_conditions, tidy_selection, tidy_training
from icldistill.render.crosslingual import cross_lingual, default_heatmap_condition, largest_transfer_drop
from icldistill.render.dynamic import (
    best_of,
    dynamic_gap_average,
    dynamic_gap_table,
    lambda_eff_lines,
    lambda_eff_traces,
)
from icldistill.render.figures import figure_files, write_figures
from icldistill.render.gaps import describe_gap, gap_observations, ordering_counts
from icldistill.render.overview import (
    chance_levels,
    chance_lines,
    summary_table,
    task_bar_conditions,
    task_condition_bounds,
)
from icldistill.render.plotting import interval_bars
from icldistill.render.report import default_focus_model
from icldistill.render.sweep import chosen_line

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SEED_CELLS = Path(__file__).resolve().parents[1] / "resources" / "reference" / "seed_cells.csv"
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
    valued = primary_cells(cells).dropna(subset=["value"])
    base = valued[valued["condition"] == "base"].groupby("model").size()
    assert base["Llama-3.2-3B"] == 28 and base["Qwen3-1.7B"] == 17
    assert default_focus_model(cells) == "Llama-3.2-3B"


# --- table functions on tiny frames ---------------------------------------------------------


def test_summary_is_mean_over_cells_not_tasks():
    cells = tidy_cells(
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
    summary = summary_table(cells)
    assert summary.at["M", "base"] == pytest.approx(30.0)
    assert list(summary.columns) == ["base"]


def test_language_table_avg_and_missing():
    cells = tidy_cells(
        make_cells(
            [
                ("A", "pa", "base", "en", "accuracy", 50.0),
                ("A", "pa", "base", "es", "accuracy", None),
                ("A", "pa", "base", "de", "accuracy", 61.0),
                ("B", "pa", "base", "en", "accuracy", None),
            ]
        )
    )
    grid = language_table(cells, "base", "pa", "accuracy", ["A", "B"], ["en", "hi", "es", "de"])
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
    cells = tidy_cells(
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
    assert model_order(cells) == ["A", "B", "C"]
    assert default_focus_model(cells) == "B"


def test_rounding_and_signs():
    assert decimal1(33.9 / 6) == "5.7"
    assert decimal1(-0.04) == "0.0"
    assert signed(3.66) == "+3.7"
    assert signed(-0.6) == "-0.6"
    assert signed(-0.6, minus="−") == "−0.6"
    assert signed(float("nan")) == "—"


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
    assert describe_gap(gap, largest=largest) == expected


def test_gap_observations_mention_control():
    gaps = pd.DataFrame({"distilled": [-2.0, -3.0], "control": [-2.5, 0.0]}, index=["qa", "pa"])
    notes = gap_observations(gaps)
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
    counts = ordering_counts(overview)
    assert counts["ft_ge_dist_ge_ctrl"] == (0, 2)
    assert counts["dist_gt_ctrl"] == (1, 2)
    assert counts["ft_gt_dist"] == (2, 3)


def test_cross_lingual_means_over_cells():
    cells = tidy_cells(
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
    stats = cross_lingual(cells, "M", "distilled")
    assert stats["en_avg"] == pytest.approx(85.0)
    assert stats["non_en_avg"] == pytest.approx(65.0)
    assert stats["gap"] == pytest.approx(20.0)
    assert (stats["n_en"], stats["n_non_en"]) == (2, 2)
    drop = largest_transfer_drop(cells, "M", "distilled")
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
    # two models: the cross-model figure
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "heatmap_fewshot.png",
        "models.png",
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
    cells = tidy_cells(make_cells(rows))
    assert condition_order(cells) == [
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
    cells = tidy_cells(pd.read_csv(SEED_CELLS))
    written = write_figures(cells, tmp_path, "Llama-3.2-3B", "distilled")
    assert [p.name for p in written] == [
        "task_bar.png",
        "gap.png",
        "heatmap_distilled.png",
        "models.png",
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


def test_section_partials_resolve_beside_the_template_then_the_default(tmp_path):
    default = render_report(inference_only_cells(), tmp_path / "default").read_text(encoding="utf-8")
    # the main template copied alone still finds the default partials
    copied = tmp_path / "copied" / "results.md.j2"
    copied.parent.mkdir()
    copied.write_text(render_report_module.DEFAULT_TEMPLATE.read_text(encoding="utf-8"), encoding="utf-8")
    assert render_report(inference_only_cells(), tmp_path / "a", template=copied).read_text(encoding="utf-8") == default
    # a partial beside the template replaces the default one
    (copied.parent / "sections").mkdir()
    (copied.parent / "sections" / "parse_failures.md.j2").write_text(
        "{% macro section() %}## Parse Failures\n\nreplaced{% endmacro %}\n", encoding="utf-8"
    )
    text = render_report(inference_only_cells(), tmp_path / "b", template=copied).read_text(encoding="utf-8")
    assert "## Parse Failures\n\nreplaced\n" in text and "No cell has more than" not in text


def test_package_does_not_import_snakemake():
    render_dir = Path(render_report_module.__file__).resolve().parent
    for source in render_dir.glob("*.py"):
        assert "snakemake" not in source.read_text(encoding="utf-8"), source


# --- λ sweeps, best λ on dev and dynamic λ ------------------------------------------------------

SWEEP_CELLS = FIXTURES / "sweep_cells.csv"
SWEEP_CONDITIONS = FIXTURES / "sweep_conditions.csv"
SWEEP_SELECTION = FIXTURES / "sweep_selection.csv"
SWEEP_TRAINING = FIXTURES / "sweep_training.csv"
SWEEP_MEMBERS = ("distilled@lam=0", "distilled@lam=0.1", "distilled@lam=0.5")
SWEEP_LABELS = ("Distilled λ=0", "Distilled λ=0.1", "Distilled λ=0.5")
DYNAMIC_LABELS = ("Entropy-λ", "Grad-Conflict-λ", "Loss-Ratio-λ", "Meta-λ", "Task-Prior-λ")
NEW_FIGURES = ("lambda_sweep.png", "dynamic_gap.png", "lambda_eff.png")
#: two models and a training log: the cross-model figure and the training curves
CROSS_FIGURES = ("models.png", "training_curves.png")


def sweep_inputs() -> dict:
    """The render inputs of the sweep fixture: cells and the three optional tables."""
    return {
        "cells": read_cells(SWEEP_CELLS),
        "conditions": read_conditions(SWEEP_CONDITIONS),
        "selection": read_selection(SWEEP_SELECTION),
        "training": read_training(SWEEP_TRAINING),
    }


def render_sweep(out: Path, **overrides) -> Path:
    inputs = {**sweep_inputs(), **overrides}
    return render_report(
        inputs.pop("cells"),
        out,
        conditions=inputs["conditions"],
        selection=inputs["selection"],
        training=inputs["training"],
        paired=inputs.get("paired"),
    )


@pytest.fixture(scope="module")
def sweep_render(tmp_path_factory) -> Path:
    return render_sweep(tmp_path_factory.mktemp("sweep"))


@pytest.fixture(scope="module")
def sweep_text(sweep_render) -> str:
    return sweep_render.read_text(encoding="utf-8")


def test_sweep_tables_rows_values_and_delta(sweep_text):
    rendered = seed_tables.parse_tables(sweep_text)
    nli = rendered[("λ Sweep", "NLI (Acc %) — Distilled λ sweep")]
    assert nli["header"] == ["λ", "EN", "DE", "Avg", "Dev", "Δ vs FT"]
    assert nli["rows"] == [
        ["λ = 0 (= Fine-Tuned)", "60.0", "50.0", "**55.0**", "61.0", "+0.0"],
        ["λ = 0.1 ✓", "62.0", "51.0", "**56.5**", "63.0", "+1.5"],
        ["λ = 0.5 (= Distilled)", "64.0", "52.0", "**58.0**", "62.5", "+3.0"],
    ]
    ner = rendered[("λ Sweep", "NER (F1 %) — Distilled λ sweep")]
    assert [row[0] for row in ner["rows"]] == ["λ = 0 (= Fine-Tuned) ✓", "λ = 0.1", "λ = 0.5 (= Distilled)"]
    assert [row[-1] for row in ner["rows"]] == ["+0.0", "+1.5", "-6.0"]
    assert "Chosen on the dev split (EN): λ = 0.1 (dev 63.0); test Avg 56.5 (Δ vs FT +1.5)." in sweep_text
    assert "Chosen on the dev split (EN): λ = 0 (dev 55.0); test Avg 45.0 (Δ vs FT +0.0)." in sweep_text
    best = rendered[("λ Sweep", "Best λ per task (chosen on dev, never on test)")]
    assert best["header"] == ["Task", "λ", "Dev", "Test Avg", "Δ vs FT"]
    assert best["rows"] == [
        ["NLI (Acc %)", "0.1", "63.0", "56.5", "+1.5"],
        ["NER (F1 %)", "0", "55.0", "45.0", "+0.0"],
    ]
    assert "](figures/lambda_sweep.png)" in sweep_text


def test_sweep_section_sits_between_conditions_and_analysis(sweep_text):
    sections = [line for line in sweep_text.splitlines() if line.startswith("## ")]
    assert sections == [
        "## Main Result: Average Score per Task",
        "## Distillation Gap per Task",
        "## Cross-Lingual Heatmap (Distilled)",
        "## Summary: Average Score per Condition",
        "## Per-Task × Condition Overview (Tiny-1B)",
        "## Base",
        "## Few-Shot",
        "## Fine-Tuned",
        "## Distilled",
        "## Control",
        "## Distilled (best λ)",
        *(f"## {label}" for label in DYNAMIC_LABELS),
        "## λ Sweep",
        "## Parse Failures",
        "## Analysis",
    ]


def test_sweep_members_only_in_the_sweep_section(sweep_text):
    rendered = seed_tables.parse_tables(sweep_text)
    shown = ["Base", "Few-Shot", "Fine-Tuned", "Distilled", "Control", "Distilled (best λ)", *DYNAMIC_LABELS]
    assert rendered[("Summary: Average Score per Condition",)]["header"] == ["Model", *shown]
    overview = rendered[("Per-Task × Condition Overview (Tiny-1B)",)]
    assert overview["header"] == ["Task", *shown, "Dist−FT", "Ctrl−FT"]
    overall = rendered[("Analysis", "Overall Results (Tiny-1B)")]
    assert [row[0] for row in overall["rows"]] == shown
    assert [row[1] for row in overall["rows"]][-5:] == ["**51.0%**", "**51.0%**", "**47.8%**", "**51.8%**", "**52.3%**"]
    for member in (*SWEEP_MEMBERS, *SWEEP_LABELS):
        assert member not in sweep_text, member


def test_legend_uses_the_conditions_table(sweep_text):
    legend = [line for line in sweep_text.splitlines() if line.startswith("> - ")]
    assert legend[3:6] == [
        "> - **Distilled**: SFT + few-shot teacher logit KD (CE + λ·MSE, λ 0.5)",
        "> - **Distilled λ sweep**: λ ∈ {0, 0.1, 0.5}; one run per value, sharing the teacher cache; "
        "λ = 0 is Fine-Tuned (reused); λ = 0.5 is Distilled (reused)",
        "> - **Control**: SFT + zero-shot teacher logit KD (CE + λ·MSE, λ 0.5)",
    ]
    assert legend[7] == (
        "> - **Entropy-λ**: SFT + few-shot teacher KD with λ_i = λ_max·(1 − H/log V) per answer token (λ_max 1)"
    )
    assert len(legend) == 12  # eleven shown conditions and one sweep line


def test_dynamic_lambda_table(sweep_text):
    rendered = seed_tables.parse_tables(sweep_text)
    dynamic = rendered[("Analysis", "Dynamic λ")]
    assert dynamic["header"] == [
        "Task",
        "Fine-Tuned",
        "Distilled (λ=0.5)−FT",
        "Distilled (best λ)−FT",
        *(f"{label}−FT" for label in DYNAMIC_LABELS),
        "Best of these",
    ]
    assert dynamic["rows"] == [
        ["NLI (Acc %)", "55.0", "**+3.0**", "**+1.5**", "**+2.8**", "+0.5", "-0.5", "**+3.5**", "**+3.0**", "Meta-λ"],
        [
            "NER (F1 %)",
            "45.0",
            "**-6.0**",
            "+0.0",
            "-0.7",
            "**+1.5**",
            "**-4.0**",
            "+0.0",
            "**+1.5**",
            "Grad-Conflict-λ / Task-Prior-λ",
        ],
        # Entropy-λ: the mean of 57.75 and 44.25 (51.0) minus 50.0, not of the printed 57.8 and 44.3 (+1.1).
        ["Avg", "50.0", "**-1.5**", "+0.8", "**+1.0**", "**+1.0**", "**-2.2**", "**+1.8**", "**+2.3**", "Task-Prior-λ"],
    ]
    analysis = sweep_text[sweep_text.index("## Analysis") :]
    assert analysis.index("| NER (F1 %) | **-6.0** | **-20.0** |") < analysis.index("### Dynamic λ")
    assert analysis.index("### Dynamic λ") < analysis.index("### Cross-Lingual Transfer")
    assert "`results/tables/training.csv`" in sweep_text
    assert "](figures/dynamic_gap.png)" in sweep_text and "](figures/lambda_eff.png)" in sweep_text


def test_sweep_figures_written_then_removed(tmp_path):
    figures_dir = tmp_path / "figures"
    render_sweep(tmp_path)
    names = sorted(p.name for p in figures_dir.iterdir())
    assert names == sorted(["task_bar.png", "gap.png", "heatmap_distilled.png", *NEW_FIGURES, *CROSS_FIGURES])
    assert sorted(figure_files(read_conditions(SWEEP_CONDITIONS), None, models=2)) == names
    for name in names:
        assert (figures_dir / name).read_bytes().startswith(PNG_MAGIC), name
    # Without the new inputs, their figures go and the report is the one a fresh render writes.
    cells = read_cells(SWEEP_CELLS)
    text = render_report(cells, tmp_path).read_text(encoding="utf-8")
    assert sorted(p.name for p in figures_dir.iterdir()) == [
        "gap.png",
        "heatmap_distilled.png",
        "models.png",
        "task_bar.png",
    ]
    assert text == render_report(cells, tmp_path / "fresh").read_text(encoding="utf-8")
    assert "λ Sweep" not in text and "Dynamic λ" not in text


def test_plain_conditions_table_changes_nothing(seed_render, tmp_path):
    conditions = pd.DataFrame(
        {
            "condition": ["base", "fewshot", "finetuned", "distilled", "control"],
            "label": ["", "", "", "", ""],
            "role": ["infer", "infer", "train", "train", "train"],
        }
    )
    report = render_report(pd.read_csv(SEED_CELLS), tmp_path, conditions=conditions)
    assert report.read_text(encoding="utf-8") == seed_render.read_text(encoding="utf-8")
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "gap.png",
        "heatmap_distilled.png",
        "models.png",
        "task_bar.png",
    ]


def test_sweep_without_selection_or_finetuned(tmp_path):
    inputs = sweep_inputs()
    cells = inputs["cells"][inputs["cells"]["condition"] != "finetuned"]
    text = render_report(cells, tmp_path, conditions=inputs["conditions"]).read_text(encoding="utf-8")
    nli = seed_tables.parse_tables(text)[("λ Sweep", "NLI (Acc %) — Distilled λ sweep")]
    assert nli["rows"][1] == ["λ = 0.1", "62.0", "51.0", "**56.5**", "—", "—"]
    assert not any("✓" in row[0] for row in nli["rows"])
    assert "Chosen on" not in text and "Best λ" not in text
    # No Fine-Tuned: no gaps, so no Dynamic λ section and no gap figures; no training log: no λ_eff figure.
    assert "### Dynamic λ" not in text
    names = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert names == ["heatmap_distilled.png", "lambda_sweep.png", "models.png", "task_bar.png"]


def test_task_bar_and_heatmap_default_skip_sweeps():
    conditions = read_conditions(SWEEP_CONDITIONS)
    cells = read_cells(SWEEP_CELLS)
    shown = shown_conditions(cells, conditions)
    assert task_bar_conditions(shown, conditions) == [
        "base",
        "fewshot",
        "finetuned",
        "distilled",
        "control",
        "distilled-best",
    ]
    dropped = ["distilled", "distilled-best", "entropy", "grad_conflict", "loss_ratio", "meta", "task_prior"]
    order = shown_conditions(cells[~cells["condition"].isin(dropped)], conditions)
    # The sweep members, last in config order, are neither shown nor the default heatmap.
    assert order == ["base", "fewshot", "finetuned", "control"]
    assert default_heatmap_condition(order) == "control"


def test_table_labels_win_over_vocabulary(tmp_path):
    inputs = sweep_inputs()
    conditions = inputs["conditions"].copy()
    conditions.loc[conditions["condition"] == "finetuned", "label"] = "SFT"
    text = render_report(inputs["cells"], tmp_path, conditions=conditions, selection=inputs["selection"]).read_text(
        encoding="utf-8"
    )
    assert "## SFT" in text.splitlines()
    assert "| λ = 0 (= SFT) ✓ |" in text
    assert seed_tables.parse_tables(text)[("Analysis", "Dynamic λ")]["header"][1] == "SFT"


def test_figure_files_follow_the_conditions_table():
    conditions = read_conditions(SWEEP_CONDITIONS)
    assert figure_files(conditions, "control") == [
        "task_bar.png",
        "gap.png",
        "heatmap_control.png",
        "lambda_sweep.png",
        "lambda_eff.png",
        "dynamic_gap.png",
        "training_curves.png",
    ]
    plain = conditions[conditions["role"].isin(["infer", "train"])][["condition", "role"]]
    assert figure_files(plain) == ["task_bar.png", "gap.png", "heatmap_distilled.png", "training_curves.png"]
    assert figure_files(plain, models=3)[-2:] == ["models.png", "training_curves.png"]
    inference_only = plain[plain["role"] == "infer"]
    assert figure_files(inference_only) == ["task_bar.png", "heatmap_fewshot.png"]
    no_reference = conditions[~conditions["condition"].isin(["finetuned", "distilled"])][["condition", "role"]]
    # Without Distilled the default heatmap is the last condition shown (sweep members never are).
    assert figure_files(no_reference) == [
        "task_bar.png",
        "heatmap_task_prior.png",
        "lambda_sweep.png",
        "lambda_eff.png",
        "training_curves.png",
    ]
    assert figure_files(None, "distilled") == ["task_bar.png", "gap.png", "heatmap_distilled.png"]
    with pytest.raises(ValueError):
        figure_files(None)


def test_dynamic_average_rounds_after_averaging():
    overview = pd.DataFrame(
        {"finetuned": [55.0, 45.0, None], "entropy": [57.75, 44.25, 70.0], "meta": [60.0, None, 70.0]},
        index=["nli", "ner", "qa"],
    )
    conditions = pd.DataFrame(
        {"condition": ["finetuned", "entropy", "meta"], "label": ["", "", ""], "role": ["train", "dynamic", "dynamic"]}
    )
    gaps = dynamic_gap_table(overview, tidy_conditions(conditions))
    assert list(gaps.columns) == ["finetuned", "entropy", "meta"]
    assert gaps.at["nli", "entropy"] == pytest.approx(2.8)
    average = dynamic_gap_average(overview, gaps.columns)
    assert average["finetuned"] == pytest.approx(50.0)
    assert average["entropy"] == pytest.approx(1.0)  # qa has no Fine-Tuned: left out
    assert math.isnan(average["meta"])  # meta lacks ner
    assert best_of(average, ["entropy", "meta"]) == ["entropy"]
    assert best_of(pd.Series({"a": 1.04, "b": 0.96}), ["a", "b"]) == ["a", "b"]


def test_lambda_eff_traces_scopes_and_step_means(tmp_path):
    training = tidy_training(
        pd.DataFrame(
            {
                "model": ["M"] * 6,
                "scope": ["multitask", "multitask", "multitask", "ner", "nli", "nli"],
                "condition": ["entropy", "entropy", "meta", "entropy", "entropy", "distilled"],
                "step": [1, 1, 1, 1, 1, 1],
                "lambda_eff": [0.2, 0.4, 0.7, 0.1, 0.5, 0.5],
            }
        )
    )
    traces = lambda_eff_traces(training, "M", ["meta", "entropy"], ["nli", "ner"])
    assert traces.values.tolist() == [
        ["nli", "entropy", 1, 0.5],
        ["ner", "entropy", 1, 0.1],
        ["multitask", "meta", 1, 0.7],
        ["multitask", "entropy", 1, pytest.approx(0.3)],
    ]
    path = lambda_eff_lines(traces, 0.5, "M", tmp_path / "lambda_eff.png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    assert lambda_eff_traces(None, "M", ["entropy"]).empty


def test_chosen_line_names_the_dev_languages():
    sweep = pd.DataFrame({"Avg": [40.12], "Gap": [-1.2]}, index=["distilled@lam=1"])
    choice = {"candidate": "distilled@lam=1", "lambda": 1.0, "dev_score": 45.25, "dev_languages": ["en", "de"]}
    line = chosen_line(choice, sweep)
    assert line == "Chosen on the dev split (EN, DE): λ = 1 (dev 45.3); test Avg 40.1 (Δ vs FT −1.2)."
    assert chosen_line(None, sweep) is None


def test_optional_tables_are_checked():
    conditions = pd.read_csv(SWEEP_CONDITIONS, dtype=str, keep_default_na=False)
    with pytest.raises(ValueError, match="unknown role"):
        tidy_conditions(conditions.assign(role="swept"))
    with pytest.raises(ValueError, match="sweep_of"):
        tidy_conditions(conditions.assign(sweep_of=""))
    with pytest.raises(ValueError, match="lacks column"):
        tidy_conditions(conditions.drop(columns="role"))
    selection = pd.read_csv(SWEEP_SELECTION, dtype=str, keep_default_na=False)
    with pytest.raises(ValueError, match="more than one chosen"):
        tidy_selection(selection.assign(chosen="True"))
    tidy = read_selection(SWEEP_SELECTION)
    assert tidy["chosen"].dtype == bool and tidy["chosen"].sum() == 2
    assert read_conditions(SWEEP_CONDITIONS)["lambda"].tolist()[3] == 0.5


def test_empty_optional_tables_render_without_new_sections(tmp_path):
    # The workflow writes a lone newline for a table without rows (no training run, no sweep).
    empty = tmp_path / "empty.csv"
    empty.write_text("\n", encoding="utf-8")
    training, selection = read_training(empty), read_selection(empty)
    assert training.empty and selection.empty
    conditions = read_conditions(SWEEP_CONDITIONS)
    plain = conditions[conditions["role"].isin(["infer", "train"])]
    cells = read_cells(SWEEP_CELLS)
    text = render_report(cells, tmp_path / "out", conditions=plain, selection=selection, training=training).read_text(
        encoding="utf-8"
    )
    assert "λ Sweep" not in text and "Dynamic λ" not in text
    # Conditions the table does not list keep the vocabulary's fallbacks and are shown.
    assert "## distilled@lam=0.1" in text.splitlines() and "> - **entropy**: user-defined condition" in text


def test_cli_takes_the_optional_tables(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--cells", str(SWEEP_CELLS), "--out", str(out)]
    optional = [
        "--conditions",
        str(SWEEP_CONDITIONS),
        "--selection",
        str(SWEEP_SELECTION),
        "--training",
        str(SWEEP_TRAINING),
    ]
    assert cli_main(argv + optional) == 0
    assert capsys.readouterr().out.strip() == str(out / "RESULTS.md")
    text = (out / "RESULTS.md").read_text(encoding="utf-8")
    assert "## λ Sweep" in text and "### Dynamic λ" in text
    for name in NEW_FIGURES:
        assert (out / "figures" / name).is_file()
    assert cli_main(argv + ["--conditions", str(tmp_path / "missing.csv")]) == 2


def _paired(rows):
    """A paired.csv-like table of task-average tests of the sweep fixture's model."""
    columns = ["model", "task", "condition", "reference", "language", "difference", "ci_low", "ci_high", "p_value"]
    frame = pd.DataFrame([("Tiny-1B", *row) for row in rows], columns=columns)
    frame["significant"] = (frame.ci_low > 0) | (frame.ci_high < 0)
    return frame


def test_paired_tests_bold_by_evidence_and_print_intervals(tmp_path):
    paired = _paired(
        [
            # NLI Distilled +3.0 with an interval over 0: printed, not bold; Control's excludes 0
            ("nli", "distilled", "finetuned", "avg", 3.0, -1.2, 7.4, 0.2),
            ("nli", "control", "finetuned", "avg", -4.0, -8.0, -0.5, 0.01),
            # NER Distilled −6.0, significant; a small but significant entropy gap is bold too
            ("ner", "distilled", "finetuned", "avg", -6.0, -9.0, -3.0, 0.0),
            ("ner", "entropy", "finetuned", "avg", -0.4, -0.7, -0.1, 0.03),
            ("ner", "distilled", "finetuned", "en", -6.0, -9.5, -2.5, 0.0),  # per language: not read
        ]
    )
    text = render_sweep(tmp_path, paired=paired).read_text(encoding="utf-8")
    rendered = seed_tables.parse_tables(text)
    gaps = next(t for key, t in rendered.items() if key[0] == "Analysis" and "Distilled−FT" in t["header"])
    nli = next(r for r in gaps["rows"] if r[0] == "NLI (Acc %)")
    assert nli[1] == "+3.0 [-1.2, +7.4]" and nli[2].startswith("**") and "[-8.0, -0.5]" in nli[2]
    ner = next(r for r in gaps["rows"] if r[0] == "NER (F1 %)")
    assert ner[1] == "**-6.0 [-9.0, -3.0]**"
    assert "bold only when it excludes 0" in text and "bold when |Δ|" not in text
    dynamic = rendered[("Analysis", "Dynamic λ")]
    column = dynamic["header"].index("Entropy-λ−FT")
    ner_dynamic = next(r for r in dynamic["rows"] if r[0] == "NER (F1 %)")
    assert ner_dynamic[column].startswith("**")
    # a comparison without a test is shown plain, and the Avg row over tasks is never bold
    assert not any(cell.startswith("**") for cell in dynamic["rows"][-1][2:-1])


# --- parse failures ---------------------------------------------------------------------------


def parse_failure_cells(**columns) -> pd.DataFrame:
    """Two NLI Base cells of 8 outputs: EN with 7 that did not parse, DE with 1."""
    cells = make_cells([("M", "nli", "base", "en", "accuracy", 12.5), ("M", "nli", "base", "de", "accuracy", 50.0)])
    return cells.assign(n=8, **columns)


@pytest.mark.parametrize(
    "columns",
    [{"parse_failure_rate": [0.875, 0.125]}, {"parse_failures": [7, 1]}],  # the rate, or counts of an older table
)
def test_cells_with_many_parse_failures_are_marked_and_listed(tmp_path, columns):
    text = render_report(parse_failure_cells(**columns), tmp_path).read_text(encoding="utf-8")
    rendered = seed_tables.parse_tables(text)
    assert rendered[("Base", "NLI (Acc %)")]["rows"] == [["M", "12.5†", "50.0", "**31.3**"]]
    listed = rendered[("Parse Failures",)]
    assert listed["header"] == ["Model", "Task", "Condition", "Language", "Not parsed"]
    assert listed["rows"] == [["M", "NLI", "Base", "EN", "87.5 %"]]
    assert "> † after a value: more than 20 % of the cell's outputs did not parse." in text
    assert "They count as wrong" in text


def test_parse_failure_threshold_is_exclusive_and_one_constant(tmp_path, monkeypatch):
    cells = tidy_cells(parse_failure_cells(parse_failure_rate=[0.2, math.nan]))
    assert parse_failures.parse_failure_cells(cells).empty  # exactly 20 % is not more than 20 %
    monkeypatch.setattr(parse_failures, "PARSE_FAILURE_THRESHOLD", 0.1)
    assert parse_failures.parse_failure_cells(cells)["language"].tolist() == ["en"]
    text = render_report(cells, tmp_path).read_text(encoding="utf-8")
    assert "more than 10 % of outputs" in text and "| M | 12.5† | 50.0 |" in text


def test_no_parse_failures_say_so_in_one_line(seed_render):
    # the seed table has neither rates nor counts: no failures known
    text = seed_render.read_text(encoding="utf-8")
    section = text[text.index("## Parse Failures") : text.index("## Analysis")]
    assert "No cell has more than 20 % of outputs that did not parse." in section
    assert "†" not in text and ("Parse Failures",) not in seed_tables.parse_tables(text)
    assert read_cells(SEED_CELLS)["parse_failure_rate"].isna().all()


def test_task_bars_carry_interval_bars_and_label_tasks_a_chance_line():
    from matplotlib.collections import LineCollection
    from matplotlib.container import ErrorbarContainer
    from matplotlib.figure import Figure

    cells = tidy_cells(
        pd.DataFrame(
            [
                ["M", "nli", "base", "en", "accuracy", 40.0, 10, 30.0, 50.0],
                ["M", "nli", "base", "de", "accuracy", 20.0, 10, 10.0, 34.0],
                ["M", "nli", "finetuned", "en", "accuracy", 60.0, 10, 55.0, 70.0],
                ["M", "qa", "base", "en", "f1", 12.0, 10, 8.0, 16.0],
                ["M", "qa", "finetuned", "en", "f1", float("nan"), 10, float("nan"), float("nan")],
            ],
            columns=["model", "task", "condition", "language", "metric", "value", "n", "ci_low", "ci_high"],
        )
    )
    low, high = task_condition_bounds(cells, "M")
    # mean of the bounds over the languages with a value
    assert low.loc["nli", "base"] == 20.0 and high.loc["nli", "base"] == 42.0
    assert low.loc["nli", "finetuned"] == 55.0 and pd.isna(low.loc["qa", "finetuned"])
    assert chance_levels(["nli", "pa", "qa", "ner"]) == {"nli": 100 / 3, "pa": 50.0}

    overview = task_condition_table(cells, "M")
    figure = Figure()
    axes = figure.subplots()
    data = overview.rename_axis(index="task", columns="condition").stack(future_stack=True).rename("value")
    import seaborn as sns

    sns.barplot(data=data.reset_index(), x="task", y="value", hue="condition", ax=axes)
    interval_bars(axes, list(overview.columns), low, high)
    chance_lines(axes, list(overview.index), chance_levels(list(overview.index)))
    bars = [c for c in axes.containers if isinstance(c, ErrorbarContainer)]
    # three values with an interval: NLI base, NLI finetuned, QA base (QA finetuned has none)
    spans = sorted(tuple(round(v, 6) for v in c.lines[2][0].get_segments()[0][:, 1]) for c in bars)
    assert spans == [(8.0, 16.0), (20.0, 42.0), (55.0, 70.0)]
    chance = [c for c in axes.collections if isinstance(c, LineCollection) and c.get_label() == "chance"]
    assert len(chance) == 1 and chance[0].get_segments()[0][0][1] == pytest.approx(100 / 3)


def test_no_rule_line_turns_the_paragraph_above_it_into_a_heading(tmp_path):
    """A ``---`` right under a line of text is a setext heading in Markdown: every horizontal
    rule of the report has a blank line above it (the cross-lingual paragraph, followed by the
    intervals section, once had none)."""
    cells = pd.read_csv(SEED_CELLS)
    cells["ci_low"], cells["ci_high"] = cells["value"] - 1, cells["value"] + 1
    lines = render_report(cells, tmp_path).read_text(encoding="utf-8").splitlines()
    assert any(line.startswith("## 95 % Intervals per Cell") for line in lines)
    assert "### Cross-Lingual Transfer (Distilled Condition)" in lines
    glued = [lines[i - 1] for i, line in enumerate(lines) if line == "---" and i and lines[i - 1].strip()]
    assert not glued
