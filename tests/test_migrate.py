"""Moving a results folder of the model-first layout into the stage-first one
(``python -m icldistill.migrate``), with Snakemake's metadata records, so nothing reruns.

The old and new paths are written out here by hand; the record names are Snakemake's (the
URL-safe base64 of the output path). That Snakemake plans nothing after a real migration is
checked on the default grid (see the issue note) — this file checks the moves themselves."""

from __future__ import annotations

import json
import os
from base64 import urlsafe_b64encode
from pathlib import Path

import pytest

from icldistill.migrate import MigrationError, main, migrate

OLD_FILES = {
    "results/tiny/nli/prompts/2shot/en.json": "prompts",
    "results/tiny/nli/prompts/2shot/MANIFEST.json": "manifest",
    "results/tiny/nli/prompts/0shot-select/en.json": "dev prompts",
    "results/tiny/nli/teacher/2shot.safetensors": "cache",
    "results/tiny/nli/teacher/2shot.stats.json": "stats",
    "results/tiny/nli/base/predictions/en.jsonl": "predictions",
    "results/tiny/nli/base/metrics/en.json": "metrics",
    "results/tiny/nli/distilled@lam=0.1/select/predictions/en.jsonl": "dev predictions",
    "results/tiny/nli/distilled@lam=0.1/select/metrics/en.json": "dev metrics",
    "results/tiny/nli/distilled-best/selection.json": "selection",
    "results/tiny/multitask/distilled/adapter/adapter_model.safetensors": "weights",
    "results/tiny/multitask/distilled/adapter.checkpoints/step-000004/state.pt": "checkpoint",
    "results/tiny/multitask/distilled/train_log.csv": "log csv",
    "results/data/nli/test.en.jsonl": "data",
    "results/tables/cells.csv": "cells",
    "results/logs/infer/tiny.nli.base.log": "infer log",
    "results/logs/infer_select/tiny.nli.distilled@lam=0.1.log": "dev infer log",
    "results/logs/score_cell/tiny.nli.base.en.log": "score log",
    "results/benchmarks/build_select_prompts/tiny.nli.0shot.tsv": "dev prompt record",
    "results/logs/prepare_split/nli.test.en.log": "data log",
}
NEW_FILES = {
    "results/prompts/test/tiny/nli/2shot/en.json": "prompts",
    "results/prompts/test/tiny/nli/2shot/MANIFEST.json": "manifest",
    "results/prompts/select/tiny/nli/0shot/en.json": "dev prompts",
    "results/teacher/tiny/nli/2shot.safetensors": "cache",
    "results/teacher/tiny/nli/2shot.stats.json": "stats",
    "results/predictions/test/tiny/nli/base/en.jsonl": "predictions",
    "results/metrics/test/tiny/nli/base/en.json": "metrics",
    "results/predictions/select/tiny/nli/distilled@lam=0.1/en.jsonl": "dev predictions",
    "results/metrics/select/tiny/nli/distilled@lam=0.1/en.json": "dev metrics",
    "results/selection/tiny/nli/distilled-best.json": "selection",
    "results/training/tiny/multitask/distilled/adapter/adapter_model.safetensors": "weights",
    "results/training/tiny/multitask/distilled/adapter.checkpoints/step-000004/state.pt": "checkpoint",
    "results/training/tiny/multitask/distilled/train_log.csv": "log csv",
    "results/data/nli/test.en.jsonl": "data",
    "results/tables/cells.csv": "cells",
    "results/logs/infer/tiny.nli.base.test.log": "infer log",
    "results/logs/infer/tiny.nli.distilled@lam=0.1.select.log": "dev infer log",
    "results/logs/score_cell/tiny.nli.base.en.test.log": "score log",
    "results/benchmarks/build_prompts/tiny.nli.0shot.select.tsv": "dev prompt record",
    "results/logs/prepare_split/nli.test.en.log": "data log",
}
MTIME_NS = 1_700_000_000_123_456_789


def _key(path: str) -> str:
    return urlsafe_b64encode(path.encode()).decode()


def _old_run(root: Path) -> Path:
    for rel, text in OLD_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, ns=(MTIME_NS, MTIME_NS))
    (root / "results/tiny/nli/base/notes.txt").write_text("mine")
    os.utime(root / "results/tiny/nli/base/predictions", ns=(MTIME_NS, MTIME_NS))
    metadata = root / ".snakemake" / "metadata"
    metadata.mkdir(parents=True)
    records = {
        "results/tiny/nli/base/metrics/en.json": {
            "rule": "score_cell",
            "input": ["results/data/nli/test.en.jsonl", "results/tiny/nli/base/predictions"],
            "log": ["results/logs/score_cell/tiny.nli.base.en.log"],
            "params": ["'Tiny'"],
        },
        "results/tiny/nli/distilled@lam=0.1/select/predictions": {
            "rule": "infer_select",
            # sorted, as Snakemake records them
            "input": [
                "results/data/nli/select.en.jsonl",
                "results/tiny/multitask/distilled/adapter",
                "results/tiny/nli/prompts/0shot-select",
            ],
            "log": ["results/logs/infer_select/tiny.nli.distilled@lam=0.1.log"],
            "params": ["{'greedy': True}"],
        },
        "results/data/nli/test.en.jsonl": {"rule": "prepare_split", "input": [], "log": [], "params": ["12"]},
        # not moved itself, but reads moved outputs
        "results/tables/cells.csv": {
            "rule": "collect_cells",
            "input": ["results/tiny/nli/base/metrics/en.json", "results/tiny/nli/distilled-best/selection.json"],
            "log": ["results/logs/collect_cells.log"],
            "params": [],
        },
    }
    for path, record in records.items():
        (metadata / _key(path)).write_text(json.dumps(record))
    return root


def _files(root: Path) -> dict[str, str]:
    results = root / "results"
    return {p.relative_to(root).as_posix(): p.read_text() for p in results.rglob("*") if p.is_file()}


def test_every_output_log_and_record_moves_to_its_stage_first_path(tmp_path):
    run = _old_run(tmp_path)
    moves = migrate(run, say=lambda line: None)
    assert moves["results/tiny/nli/base/predictions"] == "results/predictions/test/tiny/nli/base"
    assert _files(run) == NEW_FILES | {"results/tiny/nli/base/notes.txt": "mine"}  # not an output: left
    for rel in NEW_FILES:
        assert (run / rel).stat().st_mtime_ns == MTIME_NS, rel  # Snakemake compares mtimes
    assert (run / "results/predictions/test/tiny/nli/base").stat().st_mtime_ns == MTIME_NS
    assert not (run / "results/tiny/multitask").exists() and not (run / "results/logs/infer_select").exists()

    metadata = run / ".snakemake" / "metadata"
    assert sorted(p.name for p in metadata.iterdir()) == sorted(
        _key(p)
        for p in (
            "results/metrics/test/tiny/nli/base/en.json",
            "results/predictions/select/tiny/nli/distilled@lam=0.1",
            "results/data/nli/test.en.jsonl",
            "results/tables/cells.csv",
        )
    )
    score = json.loads((metadata / _key("results/metrics/test/tiny/nli/base/en.json")).read_text())
    assert score == {
        "rule": "score_cell",
        "input": ["results/data/nli/test.en.jsonl", "results/predictions/test/tiny/nli/base"],
        "log": ["results/logs/score_cell/tiny.nli.base.en.test.log"],
        "params": ["'Tiny'"],
    }
    cells = json.loads((metadata / _key("results/tables/cells.csv")).read_text())
    assert cells["input"] == [
        "results/metrics/test/tiny/nli/base/en.json",
        "results/selection/tiny/nli/distilled-best.json",
    ]
    assert json.loads((metadata / _key("results/data/nli/test.en.jsonl")).read_text())["params"] == ["12"]
    dev = json.loads((metadata / _key("results/predictions/select/tiny/nli/distilled@lam=0.1")).read_text())
    assert dev["rule"] == "infer" and dev["params"] == ["{'greedy': True}"]
    # sorted again (Snakemake compares the sorted list): the moved prompts now sort first
    assert dev["input"] == [
        "results/data/nli/select.en.jsonl",
        "results/prompts/select/tiny/nli/0shot",
        "results/training/tiny/multitask/distilled/adapter",
    ]
    assert dev["log"] == ["results/logs/infer/tiny.nli.distilled@lam=0.1.select.log"]

    # a second call finds nothing of the old layout: nothing moves again
    assert migrate(run, say=lambda line: None) == {}
    assert _files(run) == NEW_FILES | {"results/tiny/nli/base/notes.txt": "mine"}


def test_a_dry_run_prints_the_moves_and_moves_nothing(tmp_path, capsys):
    run = _old_run(tmp_path)
    assert main(["--dry-run", str(run)]) == 0
    out = capsys.readouterr().out
    assert "results/tiny/nli/prompts/0shot-select -> results/prompts/select/tiny/nli/0shot" in out
    assert "left in place (not an output of the previous layout): results/tiny/nli/base/notes.txt" in out
    assert _files(run) == OLD_FILES | {"results/tiny/nli/base/notes.txt": "mine"}


def test_the_eval_split_of_the_old_run_names_its_folders(tmp_path):
    run = _old_run(tmp_path)
    migrate(run, eval_split="dev", say=lambda line: None)
    assert (run / "results/metrics/dev/tiny/nli/base/en.json").read_text() == "metrics"
    assert (run / "results/logs/infer/tiny.nli.base.dev.log").is_file()


@pytest.mark.parametrize(
    "blocker, message",
    [
        (".snakemake/incomplete/x", "jobs of a run are unfinished"),
        (".snakemake/locks/0.input.lock", "a Snakemake run holds this folder"),
        ("results/metrics/test/tiny/nli/base/en.json", "targets exist already, e.g. results/metrics/test/tiny"),
    ],
)
def test_it_refuses_an_unfinished_run_or_a_taken_target_and_moves_nothing(tmp_path, blocker, message):
    run = _old_run(tmp_path)
    (run / blocker).parent.mkdir(parents=True, exist_ok=True)
    (run / blocker).write_text("")
    before = _files(run)
    with pytest.raises(MigrationError, match=message):
        migrate(run, say=lambda line: None)
    assert _files(run) == before
    assert main([str(run)]) == 1


def test_metrics_provenance_points_at_the_moved_inputs_and_a_stale_cell_stays_stale(tmp_path, monkeypatch):
    """A cell records its inputs' paths and SHA-256 (icldistill.provenance); after the move each
    fresh cell still reads as fresh through the workflow's own check (paths rewritten, and a
    best-λ cell given the rewritten member's new hash), and a cell that was stale still is."""
    from icldistill.provenance import provenance, stale_reason

    monkeypatch.chdir(tmp_path)
    for rel, text in {
        "results/tiny/nli/base/predictions/en.jsonl": "p\n",
        "results/tiny/nli/base/predictions/de.jsonl": "q\n",
        "results/data/nli/test.en.jsonl": "d\n",
        "results/data/nli/test.de.jsonl": "e\n",
        "results/tiny/nli/distilled-best/selection.json": "{}\n",
    }.items():
        Path(rel).parent.mkdir(parents=True, exist_ok=True)
        Path(rel).write_text(text)
    member = Path("results/tiny/nli/base/metrics/en.json")
    member.parent.mkdir(parents=True)
    inputs = {"predictions": "results/tiny/nli/base/predictions/en.jsonl", "data": "results/data/nli/test.en.jsonl"}
    member.write_text(json.dumps({"metrics": {"accuracy": 50.0}, "provenance": provenance(inputs)}))
    best = Path("results/tiny/nli/distilled-best/metrics/en.json")
    best.parent.mkdir(parents=True)
    chosen = {"selection": "results/tiny/nli/distilled-best/selection.json", "chosen": str(member)}
    best.write_text(json.dumps({"metrics": {"accuracy": 50.0}, "provenance": provenance(chosen)}))
    stale = Path("results/tiny/nli/base/metrics/de.json")
    inputs = {"predictions": "results/tiny/nli/base/predictions/de.jsonl", "data": "results/data/nli/test.de.jsonl"}
    stale.write_text(json.dumps({"metrics": {"accuracy": 0.0}, "provenance": provenance(inputs)}))
    Path("results/tiny/nli/base/predictions/de.jsonl").write_text("edited after scoring\n")

    migrate(tmp_path, say=lambda line: None)
    moved = json.loads(Path("results/metrics/test/tiny/nli/base/en.json").read_text())
    assert moved["provenance"]["inputs"]["predictions"]["path"] == "results/predictions/test/tiny/nli/base/en.jsonl"
    assert stale_reason(moved) is None
    best = json.loads(Path("results/metrics/test/tiny/nli/distilled-best/en.json").read_text())
    assert best["provenance"]["inputs"]["chosen"]["path"] == "results/metrics/test/tiny/nli/base/en.json"
    assert stale_reason(best) is None  # the member's new hash
    still = json.loads(Path("results/metrics/test/tiny/nli/base/de.json").read_text())
    assert "changed after it was written" in stale_reason(still)
