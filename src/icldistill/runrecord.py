"""The run record ``results/run.json``: what a run's results came from.

Git commit and dirty flag of the workflow checkout, versions of the packages that compute the
numbers, a SHA-256 of every model source (the GGUF file a package ships or builds, each file of
a local model folder, or the configured revision of a hub id), a SHA-256 of every local data
file the grid's tasks and languages can read, and a hash of the resolved config.

Pure functions of their arguments (and of the files and installed packages they name); the
workflow's ``run_record`` rule writes :func:`build_record` with :func:`write_record`, and the
report's appendix reads it back with :func:`read_record`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .config import task_languages
from .fingerprint import combined_hash, file_entry, file_sha256, folder_hashes
from .fingerprint import sha256_file as sha256_file  # re-exported: the hashing lives in fingerprint

#: Bumped when the record's layout changes.
RECORD_FORMAT = 1

#: Distributions whose versions the record holds (a missing one is recorded as null).
PACKAGES = ("torch", "transformers", "peft", "vllm", "snakemake", "datasets", "icldistill")

#: The splits of the local data layout (``<root>/<task>/<split>.<lang>.jsonl``).
DATA_SPLITS = ("train", "dev", "test")


# -- hashes --------------------------------------------------------------------------------------
def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the config's canonical JSON (sorted keys, no whitespace, UTF-8)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def code_version(paths: Iterable[str | Path]) -> str:
    """A short hash of the given source files (and :data:`RECORD_FORMAT`): the version of the
    code that writes the record. A missing file counts as empty."""
    digest = hashlib.sha256(f"format {RECORD_FORMAT}\n".encode())
    for path in paths:
        path = Path(path)
        digest.update(path.name.encode("utf-8") + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"")
    return digest.hexdigest()[:16]


# -- git -----------------------------------------------------------------------------------------
def _git(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=60)


def git_state(directory: str | Path) -> dict[str, Any]:
    """``commit`` (HEAD) and ``dirty`` (uncommitted changes, untracked files included, within
    ``directory``) of the checkout holding ``directory``; both null, with a ``note`` saying
    why, when it is not a git checkout or git cannot be run."""
    directory = Path(directory)
    try:
        head = _git(directory, "rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError) as err:
        return {"commit": None, "dirty": None, "changed_files": None, "note": f"git could not be run ({err})"}
    if head.returncode != 0:
        reason = (head.stderr.strip().splitlines() or ["git rev-parse HEAD failed"])[0]
        return {
            "commit": None,
            "dirty": None,
            "changed_files": None,
            "note": f"not a git checkout (or no commit yet): {reason}",
        }
    status = _git(directory, "status", "--porcelain", "--", ".")
    if status.returncode != 0:
        reason = (status.stderr.strip().splitlines() or ["git status failed"])[0]
        return {"commit": head.stdout.strip(), "dirty": None, "changed_files": None, "note": reason}
    changed = [line for line in status.stdout.splitlines() if line.strip()]
    return {"commit": head.stdout.strip(), "dirty": bool(changed), "changed_files": len(changed), "note": None}


# -- packages ------------------------------------------------------------------------------------
def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution, null when it is not installed."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# -- models --------------------------------------------------------------------------------------
def _gguf_record(gguf: Mapping[str, Any]) -> dict[str, Any]:
    from icldistill.models import ModelError, assembled_gguf, gguf_path

    package = gguf["package"]
    entry: dict[str, Any] = {"source": "gguf", "package": package, "package_version": None}
    try:
        entry["package_version"] = importlib.metadata.version(package)
        if gguf.get("assemble"):
            entry["assemble"] = gguf["assemble"]
            with tempfile.TemporaryDirectory(prefix="run-record-") as scratch:
                entry |= file_entry(assembled_gguf(package, gguf["assemble"], scratch))
        else:
            path = gguf_path(package, gguf["file"])
            entry |= {"file": gguf["file"]} | file_entry(path)
    except (importlib.metadata.PackageNotFoundError, ModelError, OSError) as err:
        entry |= {"size": None, "sha256": None, "error": str(err)}
    return entry


def model_record(spec: Mapping[str, Any]) -> dict[str, Any]:
    """What one model of the config was loaded from, with its hash.

    - ``gguf``: the package, its version, and size + SHA-256 of the GGUF file it ships (``file``)
      or builds (``assemble``, built into a scratch folder that is removed);
    - ``path`` naming a local folder: size + SHA-256 of each file, and their :func:`combined_hash`;
    - ``path`` naming a hub id: the configured ``revision``, null when none is pinned.
    """
    if "gguf" in spec:
        return _gguf_record(spec["gguf"])
    path = Path(spec["path"])
    if path.is_dir():
        files = folder_hashes(path)
        return {
            "source": "local",
            "path": str(path),
            "files": files,
            "sha256": combined_hash({name: f["sha256"] for name, f in files.items()}),
        }
    return {"source": "hub", "id": spec["path"], "revision": spec.get("revision")}


# -- data ----------------------------------------------------------------------------------------
def data_files(config: Mapping[str, Any]) -> list[Path]:
    """The local data files the grid can read: ``<data.path>/<task>/<split>.<lang>.jsonl`` for
    every configured task, split and language the task has, where the file exists."""
    root = Path(config["data"]["path"])
    return [
        path
        for task in config["tasks"]
        for split in DATA_SPLITS
        for lang in task_languages(config, task)
        if (path := root / task / f"{split}.{lang}.jsonl").is_file()
    ]


def data_record(config: Mapping[str, Any]) -> dict[str, Any]:
    """SHA-256 of every file of :func:`data_files` (keyed by path relative to the data folder),
    their count and :func:`combined_hash`; for hub data only the source, with a note."""
    data = config["data"]
    if data.get("source", "local") != "local":
        return {
            "source": data.get("source"),
            "files": {},
            "count": 0,
            "sha256": None,
            "note": "data read from the Hugging Face Hub: no local files to checksum",
        }
    root = Path(data["path"])
    files = {path.relative_to(root).as_posix(): file_sha256(path) for path in data_files(config)}
    return {"source": "local", "path": str(root), "count": len(files), "sha256": combined_hash(files), "files": files}


def data_fingerprint(config: Mapping[str, Any]) -> str | None:
    """The combined data hash alone (cheap for local data: what the rule tracks in ``params``)."""
    return data_record(config)["sha256"]


# -- the record ----------------------------------------------------------------------------------
def build_record(config: Mapping[str, Any], workflow_dir: str | Path) -> dict[str, Any]:
    """The run record of ``config`` (the resolved workflow config) run from ``workflow_dir``."""
    return {
        "format": RECORD_FORMAT,
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(workflow_dir),
        "python": platform.python_version(),
        "versions": package_versions(),
        "config_hash": config_hash(config),
        "models": {name: model_record(spec) for name, spec in config["models"].items()},
        "data": data_record(config),
        "config": json.loads(json.dumps(config, default=str)),
    }


def write_record(record: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``record`` as JSON (written under a temporary name, then moved into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_record(path: str | Path) -> dict[str, Any]:
    """A run record written by :func:`write_record`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
