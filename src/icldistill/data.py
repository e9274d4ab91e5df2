"""One loader, two sources (a local folder or the Hugging Face Hub), one record shape per task.

Rows are returned in the local layout (``google/xtreme`` field names) plus an ``id``. Rows
that do not match their task's schema are rejected with the file and line number.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from .fingerprint import write_manifest
from .hub import HubError, not_downloaded
from .tasks import HFSource, Row, RowError, get_task

SPLITS = ("train", "dev", "test")
#: the workflow's name for the dev rows a sweep's best λ is chosen on (capped apart from dev)
SELECT_SPLIT = "select"


class DataError(ValueError):
    """Missing or malformed benchmark data."""


def local_path(root: str | Path, task: str, split: str, lang: str) -> Path:
    """``<root>/<task>/<split>.<lang>.jsonl``."""
    return Path(root) / task / f"{split}.{lang}.jsonl"


def read_local(root: str | Path, task: str, split: str, lang: str) -> list[Row]:
    """Read and validate one split of the local layout."""
    spec = get_task(task)
    path = local_path(root, task, split, lang)
    if not path.is_file():
        raise DataError(f"{path}: no such data file (data.path points at {root})")
    rows = []
    # read bytes and decode line by line, so that a bad byte is reported with its line
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{lineno}: not UTF-8 ({err.reason} at byte {err.start})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
            try:
                # a JSON escape of a lone surrogate ("\ud800") decodes to text no file can hold
                json.dumps(row, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as err:
                bad = err.object[err.start : err.end]
                raise DataError(f"{path}:{lineno}: text is not valid Unicode ({err.reason}: {bad!r})") from None
            try:
                if not isinstance(row, dict):
                    raise RowError("row is not a JSON object")
                spec.check_row(row)
            except RowError as err:
                raise DataError(f"{path}:{lineno}: {task} row rejected: {err}") from None
            row.setdefault("id", f"{task}-{split}-{lang}-{lineno:05d}")
            rows.append(row)
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def hub_source(task: str, split: str, lang: str) -> HFSource:
    """The hub data set, config (its ``{lang}``/``{lang_name}`` filled in) and split that one
    split of ``task`` in ``lang`` is read from (``task.hf_sources``)."""
    from .tasks.tagging import POS

    source = get_task(task).hf_sources[split]
    config = source.config
    if config is not None:
        config = config.format(lang=lang, lang_name=POS.LANG_NAMES.get(lang, lang))
    return replace(source, config=config)


def read_hf(
    task: str, split: str, lang: str, cache_dir: str | None = None, revisions: dict[str, str] | None = None
) -> list[Row]:
    """Load one split from the Hugging Face Hub (``google/xtreme`` and MultiNLI) and normalise it:
    the data set at its pinned revision (``revisions``, ``data.revision``), from ``cache_dir``
    (None: the default cache). Offline (a workflow job), a config the download stage did not
    fetch is a :class:`~icldistill.hub.HubError` saying so."""
    import datasets

    spec = get_task(task)
    source = hub_source(task, split, lang)
    config = source.config
    revision = (revisions or {}).get(source.dataset)
    try:
        ds = datasets.load_dataset(source.dataset, config, split=source.split, cache_dir=cache_dir, revision=revision)
    except (ConnectionError, FileNotFoundError, ValueError) as err:
        if not datasets.config.HF_HUB_OFFLINE:
            raise
        cache = cache_dir or datasets.config.HF_DATASETS_CACHE
        raise HubError(
            not_downloaded(f"data set {source.dataset!r} config {config!r}", revision, str(cache)) + f" ({err})"
        ) from None
    if source.filter_language:
        ds = ds.filter(lambda r: r["language"] == lang)
    rows = []
    for i, raw in enumerate(ds):
        row = spec.from_hf(raw, ds.features)
        if not spec.keep_hf_row(row):
            continue
        try:
            spec.check_row(row)
        except RowError as err:
            raise DataError(f"{source.dataset}/{config}[{source.split}] row {i}: {task} row rejected: {err}") from None
        row.setdefault("id", f"{task}-{split}-{lang}-{i:05d}")
        rows.append(row)
    return rows


def load_split(source: dict[str, Any], task: str, split: str, lang: str) -> list[Row]:
    """Rows of ``task``/``split``/``lang`` from the configured source (``data`` config block)."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; expected one of {SPLITS}")
    kind = source.get("source", "local")
    if kind == "local":
        return read_local(source["path"], task, split, lang)
    if kind == "hf":
        return read_hf(task, split, lang, source.get("cache_dir"), source.get("revision"))
    raise DataError(f"data.source: unknown source {kind!r} (expected 'local' or 'hf')")


def stable_seed(*parts: Any) -> int:
    """A seed derived from ``parts`` that is the same on every machine and Python run."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def sample_rows(rows: list[Row], cap: int | None, seed: int) -> list[Row]:
    """At most ``cap`` rows drawn without replacement (seeded), kept in their file order."""
    if cap is None or len(rows) <= cap:
        return list(rows)
    keep = sorted(random.Random(seed).sample(range(len(rows)), cap))
    return [rows[i] for i in keep]


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write rows as JSON lines (UTF-8) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@contextmanager
def staged_dir(path: str | Path) -> Iterator[Path]:
    """A folder written as a whole: files go to ``<path>.partial``, which replaces ``path`` only
    when the block finishes, so a job killed between two of its files leaves no folder that
    looks complete (a failed block leaves only the ``.partial`` folder, cleared next time).
    Its manifest (:func:`icldistill.fingerprint.write_manifest`) is written last, before the
    move: a folder in place always carries the sizes and hashes its readers check."""
    path = Path(path)
    staging = path.with_name(path.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    yield staging
    write_manifest(staging)
    if path.exists():
        shutil.rmtree(path)
    staging.replace(path)


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON (UTF-8, indented) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(path)


def prepare_split(
    source: dict[str, Any],
    task: str,
    split: str,
    lang: str,
    cap: int | None,
    seed: int,
    out: str | Path,
    manifest: str | Path,
) -> None:
    """Load, validate and sample one split; write the rows and a manifest recording the sample.
    ``split`` may be :data:`SELECT_SPLIT`: dev rows, sampled with their own cap and seed."""
    rows = load_split(source, task, "dev" if split == SELECT_SPLIT else split, lang)
    sample_seed = stable_seed(seed, task, split, lang)
    kept = sample_rows(rows, cap, sample_seed)
    write_jsonl(out, kept)
    write_json(
        manifest,
        {
            "task": task,
            "split": split,
            "language": lang,
            "source": {k: v for k, v in source.items()},
            "rows_available": len(rows),
            "rows_kept": len(kept),
            "cap": cap,
            "seed": seed,
            "sample_seed": sample_seed,
            "ids": [r["id"] for r in kept],
        },
    )
