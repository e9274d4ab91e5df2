"""Send a job's logging, warnings and progress bars to its rule's log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def to_file(path: str | Path | None) -> None:
    """Route ``logging`` and stderr (progress bars, warnings) of this process to ``path``."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the job
        sys.stderr = stream
        sys.stdout = stream
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.captureWarnings(True)
