"""Section: the Run Record appendix. What the results were computed with, from ``results/run.json``
(:mod:`icldistill.runrecord`): commit, versions, config hash, model and data hashes.

Template partial: ``report/templates/sections/run_record.md.j2``.
"""

from __future__ import annotations

from collections.abc import Mapping

from icldistill.render.common import MISSING, Inputs, table

#: Where the workflow writes the run record the appendix summarises (:mod:`icldistill.runrecord`).
RUN_RECORD_FILE = "results/run.json"

#: Hex digits of a SHA-256 the appendix prints (run.json holds the whole hash).
HASH_DIGITS = 12


def short_hash(digest: str | None) -> str:
    """The first :data:`HASH_DIGITS` hex digits of a hash as code, or ``—``."""
    return f"`{digest[:HASH_DIGITS]}`" if digest else MISSING


def size_text(size: int | None) -> str:
    """A file size in MB (``98.4 MB``), or nothing when unknown."""
    return "" if size is None else f", {size / 1e6:.1f} MB"


def model_source_text(entry: Mapping) -> str:
    """Where a run-record model came from, in words."""
    source = entry.get("source")
    if source == "gguf":
        version = entry.get("package_version") or "not installed"
        what = f"`{entry['file']}`" if entry.get("file") else f"built by `{entry.get('assemble')}`"
        text = f"GGUF {what} of {entry['package']} {version}{size_text(entry.get('size'))}"
        return f"{text} (not hashed: {entry['error']})" if entry.get("error") else text
    if source == "local":
        return f"local folder `{entry['path']}`, {len(entry.get('files') or {})} files (combined hash)"
    revision = entry.get("revision")
    pinned = f"revision `{revision}`" if revision else "no revision pinned"
    return f"hub id `{entry.get('id')}`, {pinned}"


def run_record_context(record: Mapping | None) -> dict | None:
    """The Run Record appendix: commit and dirty flag, package versions, config hash and a
    table of model and data hashes (the data as a file count and one combined hash); None
    without a record."""
    if record is None:
        return None
    git = record.get("git") or {}
    if git.get("commit"):
        state = {True: "uncommitted changes", False: "clean", None: "state unknown"}[git.get("dirty")]
        commit = f"`{git['commit'][:HASH_DIGITS]}` ({state})"
    else:
        commit = f"none — {git.get('note') or 'not a git checkout'}"
    versions = " · ".join(f"{name} {version or MISSING}" for name, version in record.get("versions", {}).items())
    rows = [
        [f"model `{name}`", model_source_text(entry), short_hash(entry.get("sha256") or entry.get("revision"))]
        for name, entry in (record.get("models") or {}).items()
    ]
    data = record.get("data") or {}
    if data.get("source") == "local":
        rows.append(["data", f"`{data['path']}`, {data['count']} files (combined hash)", short_hash(data["sha256"])])
    else:
        rows.append(["data", data.get("note") or f"source {data.get('source')}", MISSING])
    return {
        "file": RUN_RECORD_FILE,
        "written_at": record.get("written_at") or MISSING,
        "commit": commit,
        "versions": versions,
        "python": record.get("python") or MISSING,
        "config_hash": short_hash(record.get("config_hash")),
        "digits": HASH_DIGITS,
        "table": table(["Input", "Source", "SHA-256"], rows),
    }


def context(inputs: Inputs) -> dict:
    """Template key ``run_record``."""
    return {"run_record": run_record_context(inputs.run_record)}
