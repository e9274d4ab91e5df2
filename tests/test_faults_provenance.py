"""Stale cells are never counted: each metrics file records the files it came from (and their
SHA-256); ``collect_cells`` refuses one whose inputs changed, and the partial report of a failed
run shows out-of-date cells as stale, not as finished."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pandas as pd
import pytest

from icldistill.aggregate import collect_cells, render_partial, score_cell
from icldistill.provenance import StaleCellError, stale_reason

from .conftest import ROOT
from .test_e2e import SNAKEMAKE, _config, _snakemake, write_config

META = {"model": "Tiny", "model_id": "tiny", "task": "pa", "condition": "base", "language": "de"}


@pytest.fixture
def scored(tmp_path):
    data = tmp_path / "test.de.jsonl"
    rows = [
        {"id": "a", "sentence1": "x", "sentence2": "y", "label": 1},
        {"id": "b", "sentence1": "x", "sentence2": "z", "label": 0},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    predictions = tmp_path / "de.jsonl"
    predictions.write_text('{"id": "a", "output": "Yes"}\n{"id": "b", "output": "Yes"}\n')
    metrics = tmp_path / "metrics.json"
    score_cell(predictions, data, metrics, META)
    return {"data": data, "predictions": predictions, "metrics": metrics}


def test_a_metrics_file_records_the_hash_of_each_input(scored):
    record = json.loads(scored["metrics"].read_text())
    inputs = record["provenance"]["inputs"]
    for role in ("predictions", "data"):
        assert inputs[role]["path"] == str(scored[role])
        assert inputs[role]["sha256"] == hashlib.sha256(scored[role].read_bytes()).hexdigest()
    # the combined hash: sha256sum-style lines in role order
    lines = "".join(f"{inputs[r]['sha256']}  {r}\n" for r in ("data", "predictions"))
    assert record["provenance"]["sha256"] == hashlib.sha256(lines.encode()).hexdigest()
    assert stale_reason(record) is None
    assert collect_cells([scored["metrics"]])["value"].tolist() == [50.0]


def test_a_cell_whose_predictions_changed_is_refused_naming_the_file(scored):
    scored["predictions"].write_text('{"id": "a", "output": "No"}\n{"id": "b", "output": "No"}\n')
    with pytest.raises(StaleCellError, match=rf"{scored['metrics']}: stale cell: its predictions input .* changed"):
        collect_cells([scored["metrics"]])


def test_a_cell_without_provenance_or_with_a_missing_input_is_stale(scored):
    record = json.loads(scored["metrics"].read_text())
    assert "older version" in stale_reason({k: v for k, v in record.items() if k != "provenance"})
    scored["data"].unlink()
    assert "no longer exists" in stale_reason(record)


def test_the_partial_report_shows_stale_cells_as_stale(scored, tmp_path):
    expected = [("Tiny", "tiny", "pa", "base", "de"), ("Tiny", "tiny", "pa", "fewshot", "de")]
    fresh = tmp_path / "fewshot.json"
    score_cell(scored["predictions"], scored["data"], fresh, META | {"condition": "fewshot"})
    path, done, stale = render_partial(
        [scored["metrics"], fresh], tmp_path / "partial", expected, stale=[scored["metrics"]]
    )
    assert (done, stale) == (1, 1)
    cells = pd.read_csv(tmp_path / "partial" / "cells.csv").set_index("condition")
    assert cells.loc["base", "status"] == "stale" and pd.isna(cells.loc["base", "value"])
    assert cells.loc["fewshot", "status"] == "finished" and cells.loc["fewshot", "value"] == 50.0
    report = path.read_text(encoding="utf-8")
    assert "1 cells finished; 1 are stale" in report
    assert "- tiny · pa · base · de: its job had to rerun and did not finish" in report


@pytest.mark.e2e
def test_a_changed_lambda_whose_training_fails_leaves_its_old_cells_stale(tiny_model_dir, tmp_path):
    """The issue's case: λ changed, the teacher cache broken, ``--keep-going``. The old λ's
    metrics files are still on disk and consistent with the old predictions; the DAG says they
    are out of date, so the partial report lists them as stale and shows Base as finished."""
    config = _config(tiny_model_dir)
    config |= {"tasks": ["pa"], "languages": ["en", "de"]}
    config["conditions"] = {k: config["conditions"][k] for k in ("base", "distilled")}
    write_config(tmp_path, config)
    _snakemake(tmp_path, "--cores", "2")
    old = json.loads((tmp_path / "results/metrics/test/tiny/pa/distilled/de.json").read_text())

    config["conditions"]["distilled"]["lambda"] = 0.25
    write_config(tmp_path, config)
    cache = tmp_path / "results/teacher/tiny/pa/2shot.safetensors"
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    result = subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path)]
        + ["--configfile", str(tmp_path / "config.yaml"), "--cores", "2", "--keep-going"],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=900,
    )
    assert result.returncode != 0
    assert "2 of 4 cells finished, 2 stale" in result.stderr, result.stderr[-3000:]
    # the old λ's file is untouched (it is what a careless report would show)
    assert json.loads((tmp_path / "results/metrics/test/tiny/pa/distilled/de.json").read_text()) == old
    cells = pd.read_csv(tmp_path / "results" / "partial" / "cells.csv")
    status = dict(zip(cells["condition"] + "/" + cells["language"], cells["status"], strict=True))
    assert status == {"base/en": "finished", "base/de": "finished", "distilled/en": "stale", "distilled/de": "stale"}
    assert cells.loc[cells["status"] == "stale", "value"].isna().all()
    report = (tmp_path / "results" / "partial" / "RESULTS.md").read_text(encoding="utf-8")
    assert "2 are stale" in report and "tiny · pa · distilled · de" in report
