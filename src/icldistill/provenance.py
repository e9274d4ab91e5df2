"""Provenance of a metrics file: the files it was computed from, with their SHA-256.

Every job that writes a cell's metrics (``score_cell``, ``seed_cell``, ``best_cell``) records
``provenance = {"inputs": {role: {"path", "sha256"}}, "sha256": <combined>}``. Reading a cell
back (:func:`stale_reason`) re-hashes those files: a cell whose predictions, data or member
metrics changed after it was written (a ``--touch``, a copied results folder, a hand edit) is
stale and is never counted as finished. Whether a cell is stale against the *config* is
Snakemake's own judgment (its params, inputs and code triggers); the workflow's partial report
asks the DAG for that (``workflow/rules/common.smk``), since mirroring every rule's settings
here would be a second, drifting copy of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .fingerprint import combined_hash, sha256_file


class StaleCellError(ValueError):
    """A metrics file whose recorded inputs are missing or have changed since it was written."""


def provenance(inputs: Mapping[str, str | Path]) -> dict[str, Any]:
    """The provenance block of a metrics file computed from ``inputs`` (role → file)."""
    files = {role: {"path": str(path), "sha256": sha256_file(path)} for role, path in inputs.items()}
    return {"inputs": files, "sha256": combined_hash({role: f["sha256"] for role, f in files.items()})}


def stale_reason(record: Mapping[str, Any]) -> str | None:
    """Why the metrics ``record`` is stale (None when every recorded input still has its
    recorded hash): no provenance (written by an older version), an input that no longer
    exists, or one whose content changed."""
    block = record.get("provenance")
    if not isinstance(block, Mapping) or not isinstance(block.get("inputs"), Mapping):
        return "it records no provenance (written by an older version of the workflow)"
    for role, entry in block["inputs"].items():
        path = Path(entry["path"])
        if not path.is_file():
            return f"its {role} input {path} no longer exists"
        if sha256_file(path) != entry["sha256"]:
            return f"its {role} input {path} changed after it was written"
    return None


def check_fresh(record: Mapping[str, Any], metrics_file: str | Path) -> None:
    """Raise :class:`StaleCellError` naming ``metrics_file`` when :func:`stale_reason` finds one."""
    reason = stale_reason(record)
    if reason is not None:
        raise StaleCellError(
            f"{metrics_file}: stale cell: {reason}; rerun it (snakemake --forcerun {metrics_file}) "
            "instead of reporting it"
        )
