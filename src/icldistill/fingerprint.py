"""Content fingerprints and folder manifests: what makes a result's rerun exact.

Two mechanisms, both content-based, so that a ``touch`` reruns nothing and an edit reruns
exactly what depends on it:

- **Fingerprints** of what a job reads from outside the results folder: the local data file a
  ``prepare_split`` job reads (:func:`data_fingerprint`) and the source of a model
  (:func:`model_fingerprint`: the GGUF file a package ships, the files of a local model folder,
  or a hub id's configured revision). The workflow puts them into the ``params`` of each job
  that reads the file or loads the model; Snakemake reruns a job whose params changed.
  Every file is hashed at most once per process and, with a store (:func:`use_store`), once
  per (path, size, mtime, ctime): a ``touch`` costs one re-hash and changes nothing.
- **Manifests** of folder outputs (a converted model, an adapter, prompts, predictions):
  ``MANIFEST.json`` (relative path → size, SHA-256) written as the folder's last file
  (:func:`write_manifest`). Before the DAG is built, :func:`manifest_problem` checks each
  existing folder cheaply (manifest present, each file present with its size, a file changed
  after the manifest re-hashed) and :func:`mark_outdated` dates a failing one to 1970, so
  Snakemake reruns the job that makes it and everything after it; a job reading a folder
  calls :func:`verify_manifest`, which compares every hash and names the file that differs.

The package never imports Snakemake: the workflow calls these functions with paths.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: The manifest of a folder output, written last.
MANIFEST = "MANIFEST.json"
#: Bumped when the manifest's layout changes (an older layout fails the check: rerun).
MANIFEST_FORMAT = 1
#: Files Snakemake itself may add to a folder output (``--touch``): never in a manifest.
IGNORED = frozenset({MANIFEST, ".snakemake_timestamp"})
#: The mtime (seconds since the epoch) a folder output gets when it fails its manifest.
OUTDATED_MTIME = 1

CHUNK = 1 << 20


class ManifestError(ValueError):
    """A folder output whose files do not match its manifest (or that has none)."""


# -- hashes --------------------------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def combined_hash(hashes: Mapping[str, str]) -> str:
    """One SHA-256 over ``name → sha256`` pairs: of the ``sha256sum``-style lines
    ``<sha256>  <name>`` in name order (so it is independent of the mapping's order)."""
    lines = "".join(f"{hashes[name]}  {name}\n" for name in sorted(hashes))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


class HashCache:
    """SHA-256 of files, each computed once per (path, size, mtime, ctime).

    In memory always; with ``store`` (a JSON file) also across processes, so a large model
    folder is hashed once, not on every dry run. A file whose size, mtime or ctime changed is
    hashed again (a ``touch`` costs one re-hash, and the hash, hence every fingerprint, is
    unchanged). The ctime makes an edit visible even when the mtime is set back afterwards
    (``touch -r``): the kernel sets it on every write and no user can set it back. A store that
    cannot be read starts empty; one that cannot be written is left as it is.
    """

    def __init__(self, store: str | Path | None = None) -> None:
        self.store = Path(store) if store is not None else None
        self.entries: dict[str, tuple[int, int, int, str]] = {}
        if self.store is not None and self.store.is_file():
            try:
                saved = json.loads(self.store.read_text(encoding="utf-8"))
                self.entries = {path: tuple(entry) for path, entry in saved["files"].items() if len(entry) == 4}
            except (OSError, ValueError, KeyError, TypeError):
                self.entries = {}

    def sha256(self, path: str | Path) -> str:
        """SHA-256 of ``path``, from the cache when its size, mtime and ctime are the recorded ones."""
        key = str(Path(path).resolve())
        stat = os.stat(key)
        cached = self.entries.get(key)
        if cached is not None and tuple(cached[:3]) == (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns):
            return cached[3]
        digest = sha256_file(key)
        self.entries[key] = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, digest)
        self._save()
        return digest

    def _save(self) -> None:
        if self.store is None:
            return
        try:
            self.store.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.store.with_name(f"{self.store.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"format": 2, "files": self.entries}), encoding="utf-8")
            tmp.replace(self.store)
        except OSError:
            pass


_CACHE = HashCache()


def use_store(store: str | Path | None) -> None:
    """Keep this process's file hashes in ``store`` too (None: in memory only)."""
    global _CACHE
    _CACHE = HashCache(store)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file through this process's :class:`HashCache`."""
    return _CACHE.sha256(path)


def file_entry(path: str | Path) -> dict[str, Any]:
    """``{size, sha256}`` of a file."""
    return {"size": Path(path).stat().st_size, "sha256": file_sha256(path)}


def folder_files(folder: str | Path) -> list[Path]:
    """Every file under ``folder`` but the manifest and Snakemake's timestamp, in path order."""
    folder = Path(folder)
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).as_posix() not in IGNORED]


def folder_hashes(folder: str | Path) -> dict[str, dict[str, Any]]:
    """``relative path → {size, sha256}`` of every file under ``folder`` (:func:`folder_files`)."""
    folder = Path(folder)
    return {path.relative_to(folder).as_posix(): file_entry(path) for path in folder_files(folder)}


def folder_fingerprint(folder: str | Path) -> str:
    """:func:`combined_hash` of the files of a folder (names and contents; not mtimes)."""
    return combined_hash({name: entry["sha256"] for name, entry in folder_hashes(folder).items()})


# -- fingerprints of what jobs read ---------------------------------------------------------------
def data_fingerprint(source: Mapping[str, Any], task: str, split: str, lang: str) -> str | None:
    """SHA-256 of the one local file a ``prepare_split`` job of (task, split, lang) reads
    (``select`` reads dev); None when the file does not exist (the job then fails naming it).
    For Hub data the revision ``data.revision`` pins for the data set that split is read from
    (None when none is pinned; the source, all of the ``data`` block, is a param of its own)."""
    from .data import SELECT_SPLIT, hub_source, local_path

    split = "dev" if split == SELECT_SPLIT else split
    if source.get("source", "local") != "local":
        return (source.get("revision") or {}).get(hub_source(task, split, lang).dataset)
    path = local_path(source["path"], task, split, lang)
    return file_sha256(path) if path.is_file() else None


def distribution_fingerprint(package: str) -> str:
    """:func:`combined_hash` of the installed files of ``package`` (bytecode left out, since
    Python rewrites it): the content, not the version number, of a distribution."""
    dist = importlib.metadata.distribution(package)
    files = {
        str(entry): file_sha256(path)
        for entry in dist.files or ()
        if entry.suffix != ".pyc" and (path := Path(dist.locate_file(entry))).is_file()
    }
    return combined_hash(files)


def gguf_fingerprint(gguf: Mapping[str, Any]) -> dict[str, Any]:
    """What a GGUF model's conversion depends on: the SHA-256 of the ``file`` the package ships,
    or for an ``assemble`` callable the content of the package holding it
    (:func:`distribution_fingerprint`; the assembler checks the joined file against the hash
    that package ships, so the package determines the bytes). A missing package or file gives
    ``sha256: null`` and the conversion job names it."""
    from .models import ModelError, gguf_path

    package = gguf["package"]
    entry: dict[str, Any] = {"package": package}
    try:
        if gguf.get("assemble"):
            entry |= {"assemble": gguf["assemble"], "sha256": distribution_fingerprint(package)}
        else:
            entry |= {"file": gguf["file"], "sha256": file_sha256(gguf_path(package, gguf["file"]))}
    except (importlib.metadata.PackageNotFoundError, ModelError, OSError):
        entry["sha256"] = None
    return entry


def model_fingerprint(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprint of a configured model's source: :func:`gguf_fingerprint` for ``gguf``;
    for ``path`` naming a local folder the :func:`folder_fingerprint` of its files; for a hub
    id its configured ``revision`` (null when none is pinned: the hub's current files)."""
    if "gguf" in spec:
        return {"source": "gguf"} | gguf_fingerprint(spec["gguf"])
    path = Path(spec["path"])
    if path.is_dir():
        return {"source": "local", "sha256": folder_fingerprint(path)}
    return {"source": "hub", "revision": spec.get("revision")}


# -- manifests of folder outputs -----------------------------------------------------------------
def write_manifest(folder: str | Path) -> Path:
    """Write ``folder/MANIFEST.json`` (``relative path → {size, sha256}`` of every other file),
    under a temporary name moved into place: call it when the folder is otherwise complete."""
    folder = Path(folder)
    manifest = {"format": MANIFEST_FORMAT, "files": folder_hashes(folder)}
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(folder / MANIFEST)
    return folder / MANIFEST


def read_manifest(folder: str | Path) -> dict[str, dict[str, Any]]:
    """The ``files`` of ``folder``'s manifest; :class:`ManifestError` when it is missing,
    unreadable or of another format."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ManifestError(f"{folder}: no {MANIFEST} (unfinished, or written by an older version)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError(f"format {manifest.get('format')!r}, expected {MANIFEST_FORMAT}")
        for name, entry in files.items():
            if not isinstance(entry, dict) or not {"size", "sha256"} <= set(entry):
                raise ValueError(f"entry {name!r} lacks size or sha256")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ManifestError(f"{path}: unreadable manifest ({err})") from None
    return files


def manifest_problem(folder: str | Path) -> str | None:
    """Why ``folder`` fails its manifest, cheaply (None when it passes): no or an unreadable
    manifest, a recorded file missing or of another size, or a file changed after the manifest
    was written whose hash differs. "Changed after" is a newer ctime than the manifest's: the
    kernel sets it on every write, so an edit is seen even with its mtime set back, and only
    such files are hashed. Files the manifest does not list are ignored (Snakemake's
    ``.snakemake_timestamp``, for one)."""
    folder = Path(folder)
    try:
        files = read_manifest(folder)
    except ManifestError as err:
        return str(err).removeprefix(f"{folder}: ")
    written = (folder / MANIFEST).stat().st_ctime_ns
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        stat = path.stat()
        if stat.st_size != entry["size"]:
            return f"{name} has {stat.st_size} bytes, its manifest says {entry['size']}"
        if stat.st_ctime_ns > written and file_sha256(path) != entry["sha256"]:
            return f"{name} changed after the manifest was written (SHA-256 differs)"
    return None


def verify_manifest(folder: str | Path) -> None:
    """Check every file of ``folder`` against its manifest, by hash; :class:`ManifestError`
    naming the first file that is missing or differs (the job that reads a folder calls this
    before using it)."""
    folder = Path(folder)
    for name, entry in read_manifest(folder).items():
        path = folder / name
        if not path.is_file():
            raise ManifestError(f"{path}: missing (listed in {folder / MANIFEST})")
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            raise ManifestError(
                f"{path}: SHA-256 {actual[:12]}… differs from its manifest's {entry['sha256'][:12]}… "
                "(the folder was changed after it was written)"
            )


def verify_input_folders(folders: Iterable[str | Path]) -> None:
    """:func:`verify_manifest` for each folder a job is about to read. A folder that fails is
    marked out of date (:func:`mark_outdated`) before the error is raised, so the next run
    writes it again (left as it was, it would pass the cheap check before every run and fail
    its readers every time)."""
    for folder in folders:
        try:
            verify_manifest(folder)
        except ManifestError as err:
            if not Path(folder).is_dir():
                raise
            mark_outdated(folder)
            raise ManifestError(f"{err}; {folder} is marked out of date, the next run writes it again") from None


def mark_outdated(folder: str | Path) -> None:
    """Date a folder output to :data:`OUTDATED_MTIME` (1970), the folder and Snakemake's
    ``.snakemake_timestamp`` in it (which Snakemake reads instead when present).

    Older than any input or script, the output makes Snakemake rerun the job that writes it,
    and so every job after it. Moving or removing the folder would not: Snakemake 9 does not
    rerun a job for a missing output as long as the outputs that depend on it are present and
    up to date (what lets intermediate files be deleted). The folder stays where it is, for
    inspection, until that job replaces it; readers meanwhile refuse it by its hashes."""
    folder = Path(folder)
    for path in (folder / ".snakemake_timestamp", folder):
        if path.exists():
            os.utime(path, (OUTDATED_MTIME, OUTDATED_MTIME), follow_symlinks=False)


def pattern_folders(pattern: str, names: Mapping[str, Iterable[str]]) -> list[Path]:
    """Existing folders matching the path ``pattern`` (``{wildcard}`` fields, none spanning
    ``/``) whose wildcards take values in ``names`` (a wildcard not in ``names`` takes any
    value); e.g. every existing ``results/predictions/{split}/{model}/{task}/{condition}`` of the
    grid's models, tasks and conditions."""
    allowed = {key: set(values) for key, values in names.items()}
    glob = re.sub(r"\{[^}]+\}", "*", pattern)
    regex = re.compile(
        "".join(
            f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{[^}]+\})", pattern)
            if part
        )
    )
    found = []
    for path in sorted(Path().glob(glob)):
        match = regex.fullmatch(path.as_posix())
        if (
            match
            and path.is_dir()
            and all(value in allowed.get(key, (value,)) for key, value in match.groupdict().items())
        ):
            found.append(path)
    return found


def mark_failing_outdated(folders: Iterable[str | Path], say=None) -> list[tuple[Path, str]]:
    """Check each existing folder output with :func:`manifest_problem`; mark each one that
    fails out of date (:func:`mark_outdated`), saying so (``say``, default stderr). Returns
    the ``(folder, reason)`` pairs marked."""
    say = say or (lambda line: print(line, file=sys.stderr))
    marked = []
    for folder in folders:
        reason = manifest_problem(folder)
        if reason is None:
            continue
        mark_outdated(folder)
        say(f"{folder} fails its manifest: {reason}; marked out of date, so the job that writes it runs again")
        marked.append((Path(folder), reason))
    return marked
