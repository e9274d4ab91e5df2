"""Demonstrations: drawn once per (task, language, k) and written to a file that the prompt,
teacher and training jobs all read.

A few-shot prompt, the Distilled teacher's prompt and the rows the students train on all
depend on which rows serve as demonstrations. Drawing them in one job and passing the file
on makes every consumer see the same rows by construction, not because three jobs happen to
repeat the same seeded draw.

Two modes:

* **fixed** (default): one seeded draw of ``k`` rows per (task, language); every prompt of
  the cell shares them (and so one prefix). The English draw is held out of training, so no
  teacher sees the answer it is asked about among its demonstrations.
* **resample**: every example draws its own ``k`` rows from the pool (seeded by its id, never
  itself); the file then carries the pool.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import stable_seed
from .tasks import Row


@dataclass(frozen=True)
class Demonstrations:
    """The demonstrations of one (task, language) at ``shots`` demonstrations per prompt."""

    task: str
    lang: str
    shots: int
    seed: int = 0
    resample: bool = False
    #: the fixed draw (``shots`` rows, in prompt order); empty with ``resample``
    rows: list[Row] = field(default_factory=list)
    #: the pool every example draws from with ``resample``; empty otherwise
    pool: list[Row] = field(default_factory=list)
    #: where the pool came from (recorded in the prompt files)
    source: str = ""

    @classmethod
    def none(cls, task: str, lang: str) -> Demonstrations:
        """Zero-shot: no demonstrations."""
        return cls(task, lang, 0)

    def for_row(self, row: Row) -> list[Row]:
        """The demonstrations in the prompt of ``row``."""
        if not self.shots:
            return []
        if not self.resample:
            return self.rows
        seed = stable_seed(self.seed, self.task, self.lang, row["id"])
        return sample_demonstrations(self.pool, self.shots, seed, exclude_id=row["id"])

    @property
    def held_out(self) -> set[str]:
        """Ids of the fixed draw (held out of training when this is the English draw)."""
        return {r["id"] for r in self.rows}

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "language": self.lang,
            "shots": self.shots,
            "seed": self.seed,
            "resample": self.resample,
            "source": self.source,
            "rows": self.rows,
            "pool": self.pool,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Demonstrations:
        return cls(
            obj["task"],
            obj["language"],
            int(obj["shots"]),
            int(obj["seed"]),
            bool(obj["resample"]),
            list(obj["rows"]),
            list(obj["pool"]),
            obj.get("source", ""),
        )


def sample_demonstrations(pool: list[Row], k: int, seed: int, exclude_id: str | None = None) -> list[Row]:
    """``k`` demonstrations drawn with ``seed`` from ``pool`` (never the example itself)."""
    candidates = [r for r in pool if r["id"] != exclude_id]
    if k > len(candidates):
        raise ValueError(f"{k} demonstrations requested but the pool has {len(candidates)} rows")
    return random.Random(seed).sample(candidates, k)


def draw_demonstrations(
    pool: list[Row], task: str, lang: str, k: int, seed: int, resample: bool = False, source: str = ""
) -> Demonstrations:
    """The demonstrations of (``task``, ``lang``): ``k`` rows drawn from ``pool`` with a seed
    derived from (``seed``, task, language), or with ``resample`` the pool itself."""
    if k == 0:
        return Demonstrations.none(task, lang)
    if resample:
        if k >= len(pool):
            raise ValueError(f"{k} demonstrations per example need a pool of more than {k} rows, got {len(pool)}")
        return Demonstrations(task, lang, k, seed, True, [], list(pool), source)
    rows = sample_demonstrations(pool, k, stable_seed(seed, task, lang))
    return Demonstrations(task, lang, k, seed, False, rows, [], source)


def write_demonstrations(path: str | Path, demos: Demonstrations) -> None:
    from .data import write_json

    write_json(path, demos.to_json())


def read_demonstrations(path: str | Path) -> Demonstrations:
    return Demonstrations.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def training_rows(pool: list[Row], held_out: set[str], seed: int, task: str, cap: int | None) -> list[Row]:
    """The English rows every trained condition trains on: the train split without the task's
    English demonstrations (``held_out``), at most ``cap`` of them (seeded, in file order)."""
    rows = [r for r in pool if r["id"] not in held_out]
    if cap is not None and len(rows) > cap:
        keep = sorted(random.Random(stable_seed(seed, task, "train-cap")).sample(range(len(rows)), cap))
        rows = [rows[i] for i in keep]
    return rows
