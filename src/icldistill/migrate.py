"""Move a results folder of the previous layout into the stage-first one, so nothing reruns.

Until this layout (:mod:`icldistill.layout`), results were laid out model first, and the dev
rows the best λ is chosen on had rules and folders of their own::

    results/<model>/<task>/prompts/<k>shot[-select]/       -> results/prompts/<split>/<model>/<task>/<k>shot/
    results/<model>/<task>/<condition>/[select/]predictions -> results/predictions/<split>/<model>/<task>/<condition>/
    results/<model>/<task>/<condition>/[select/]metrics/<lang>.json
                                                           -> results/metrics/<split>/<model>/<task>/<condition>/<lang>.json
    results/<model>/<task>/<condition>/selection.json      -> results/selection/<model>/<task>/<condition>.json
    results/<model>/<task>/teacher/<file>                  -> results/teacher/<model>/<task>/<file>
    results/<model>/<scope>/<condition>/adapter[...], train_log.csv
                                                           -> results/training/<model>/<scope>/<condition>/...

(``<split>`` is ``select`` for the ``-select``/``select/`` paths, else the evaluation split),
and the logs and benchmark records of ``build_select_prompts``, ``infer_select``,
``score_select`` and ``seed_select`` now belong to ``build_prompts``, ``infer``, ``score_cell``
and ``seed_cell``, each name ending in ``.<split>``.

A layout change would otherwise rerun every job: Snakemake looks for outputs at the new paths.
This moves each output (files and folders, their modification times kept) and rewrites
Snakemake's metadata record of each (``.snakemake/metadata``: the key is the output path; the
record lists the job's input and log paths), so that after the move a dry run plans only what
the new code itself changed, and a changed setting still reruns exactly what it affects. Each
metrics file's provenance (the paths and hashes of what it was computed from) is pointed at
the new paths too, so that the cells still read as fresh.

Usage, from the working directory (the folder holding ``results/`` and ``.snakemake/``)::

    python -m icldistill.migrate --dry-run   # print the moves
    python -m icldistill.migrate             # move
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from base64 import urlsafe_b64decode, urlsafe_b64encode
from pathlib import Path

from .data import write_json
from .fingerprint import combined_hash, sha256_file
from .layout import SELECT_SPLIT

#: top-level folders of results/ that are not a model's (the previous layout's model folders
#: are every other one)
NOT_MODELS = {
    "models", "downloads", "data", "tables", "figures", "logs", "benchmarks", "partial",
    "prompts", "predictions", "metrics", "teacher", "training", "selection", "report",
}  # fmt: skip
#: rules merged into the test-split rule they cloned: their logs and records move to it
MERGED_RULES = {
    "build_select_prompts": "build_prompts",
    "infer_select": "infer",
    "score_select": "score_cell",
    "seed_select": "seed_cell",
}
#: rules whose jobs now carry the {split} wildcard (their log and record names end in it)
SPLIT_RULES = ("build_prompts", "infer", "score_cell", "seed_cell", "best_cell")


class MigrationError(RuntimeError):
    """The folder cannot be moved as it is (a run in progress or unfinished, a target taken)."""


def output_moves(results: Path, eval_split: str) -> tuple[dict[str, str], list[str]]:
    """``{old path: new path}`` of every output of the previous layout under ``results``
    (paths as Snakemake spells them, relative to the working directory), and the entries of
    the previous layout's folders that are no output of it (left where they are)."""
    moves: dict[str, str] = {}
    unknown: list[str] = []
    root = results.name

    def move(old: Path, *new: str) -> None:
        moves[old.as_posix()] = "/".join([root, *new])

    models = sorted(p for p in results.iterdir() if p.is_dir() and p.name not in NOT_MODELS)
    for model_dir in models:
        model = model_dir.name
        for task_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            task = task_dir.name
            for entry in sorted(task_dir.iterdir()):
                if entry.name == "prompts" and entry.is_dir():
                    for shots in sorted(entry.iterdir()):
                        name = shots.name.removesuffix("-select")
                        split = SELECT_SPLIT if shots.name.endswith("-select") else eval_split
                        move(shots, "prompts", split, model, task, name)
                elif entry.name == "teacher" and entry.is_dir():
                    for cache in sorted(entry.iterdir()):
                        move(cache, "teacher", model, task, cache.name)
                elif entry.is_dir():
                    _condition_moves(entry, model, task, eval_split, move, unknown)
                else:
                    unknown.append(entry.as_posix())
    return moves, unknown


def _condition_moves(folder: Path, model: str, task: str, eval_split: str, move, unknown: list[str]) -> None:
    condition = folder.name

    def evaluation(entry: Path, split: str) -> bool:
        """Move ``entry`` if it is a predictions or metrics folder of ``split``."""
        if entry.name == "predictions":
            move(entry, "predictions", split, model, task, condition)
        elif entry.name == "metrics" and entry.is_dir():
            for cell in sorted(entry.iterdir()):
                move(cell, "metrics", split, model, task, condition, cell.name)
        else:
            return False
        return True

    for entry in sorted(folder.iterdir()):
        if evaluation(entry, eval_split):
            continue
        if entry.name == "select" and entry.is_dir():
            unknown.extend(sub.as_posix() for sub in sorted(entry.iterdir()) if not evaluation(sub, SELECT_SPLIT))
        elif entry.name == "selection.json":
            move(entry, "selection", model, task, f"{condition}.json")
        elif entry.name.startswith("adapter") or entry.name == "train_log.csv":
            # task is the training scope here (a task, or "multitask")
            move(entry, "training", model, task, condition, entry.name)
        else:
            unknown.append(entry.as_posix())


def record_moves(results: Path, eval_split: str) -> dict[str, str]:
    """``{old path: new path}`` of every log and benchmark record of a rule now run per split
    (names not yet ending in a split)."""
    splits = {eval_split, SELECT_SPLIT, "test", "dev"}
    moves = {}
    for kind in ("logs", "benchmarks"):
        for rule in [*SPLIT_RULES, *MERGED_RULES]:
            folder = results / kind / rule
            if not folder.is_dir():
                continue
            split = SELECT_SPLIT if rule in MERGED_RULES else eval_split
            target = results / kind / MERGED_RULES.get(rule, rule)
            for path in sorted(folder.iterdir()):
                stem, suffix = os.path.splitext(path.name)
                if rule not in MERGED_RULES and stem.rsplit(".", 1)[-1] in splits:
                    continue  # already named by its split
                moves[path.as_posix()] = (target / f"{stem}.{split}{suffix}").as_posix()
    return moves


def remap(path: str, moves: dict[str, str]) -> str:
    """``path`` under the new layout: moved itself, inside a moved folder, or unchanged."""
    if path in moves:
        return moves[path]
    parent = path
    while "/" in parent:
        parent = parent.rsplit("/", 1)[0]
        if parent in moves:
            return moves[parent] + path[len(parent) :]
    return path


# -- Snakemake's metadata (snakemake.persistence.file.FilePersistence) --------------------------
# A record is the file .snakemake/metadata/<urlsafe base64 of the output path>, split into
# folders named "@<chunk>" where the name would exceed the file system's limit. Read and written
# here by the same rule, as Snakemake has no API to rename an output.
def _record_path(metadata: Path, key: str) -> Path:
    max_len = os.pathconf(metadata, "PC_NAME_MAX") if os.name == "posix" else 255
    encoded = urlsafe_b64encode(key.encode()).decode()
    chunks = [encoded[i : i + max_len - 1] for i in range(0, len(encoded), max_len - 1)]
    return metadata.joinpath(*["@" + c for c in chunks[:-1]], chunks[-1])


def _record_key(metadata: Path, path: Path) -> str:
    parts = path.relative_to(metadata).parts
    return urlsafe_b64decode("".join(p.removeprefix("@") for p in parts)).decode()


def metadata_moves(metadata: Path, moves: dict[str, str], log_moves: dict[str, str]) -> list[tuple[Path, Path, dict]]:
    """``(old record, new record, rewritten record)`` of every metadata record of a moved
    output or of a job that read one: its key, inputs, logs and rule in the new layout."""
    out = []
    if not metadata.is_dir():
        return out
    for path in sorted(p for p in metadata.rglob("*") if p.is_file()):
        key = _record_key(metadata, path)
        record = json.loads(path.read_text(encoding="utf-8"))
        new = dict(record)
        # Snakemake records a job's inputs sorted, and compares the lists
        new["input"] = sorted(remap(p, moves) for p in record.get("input") or [])
        new["log"] = [log_moves.get(p, p) for p in record.get("log") or []]
        new["rule"] = MERGED_RULES.get(record.get("rule"), record.get("rule"))
        new_key = remap(key, moves)
        if new_key != key or new != record:
            out.append((path, _record_path(metadata, new_key), new))
    return out


# -- the provenance block of each metrics file (icldistill.provenance) ---------------------------
def rewrite_provenance(files: list[Path], moves: dict[str, str]) -> int:
    """Point the provenance of the metrics ``files`` (already moved) at the inputs' new paths.

    A cell records each input's path and SHA-256 and is stale when one is missing or differs
    (:func:`icldistill.provenance.stale_reason`). Rewriting the paths changes a metrics file's
    bytes, so the cells that record it as an input (a seed mean, a best-λ cell) get its new
    hash — only where they recorded its hash before the rewrite: a cell that was stale stays
    stale. Files are rewritten inputs first; modification times are kept. Returns the number
    of files rewritten."""
    records = {}
    for path in files:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue  # not a metrics record (unreadable: its reader fails on it, as before the move)
        if isinstance(record, dict) and isinstance(record.get("provenance"), dict):
            records[path.as_posix()] = record
    rehashed: dict[str, tuple[str, str]] = {}  # path -> (hash before, hash after)
    pending = dict(records)
    while pending:
        ready = [
            path
            for path, record in pending.items()
            if not any(remap(e["path"], moves) in pending for e in record["provenance"]["inputs"].values())
        ]
        if not ready:
            raise MigrationError(f"metrics files record each other as inputs, e.g. {next(iter(pending))}")
        for path in ready:
            record = pending.pop(path)
            entries = record["provenance"]["inputs"]
            for entry in entries.values():
                entry["path"] = remap(entry["path"], moves)
                before, after = rehashed.get(entry["path"], (None, None))
                if entry["sha256"] == before:
                    entry["sha256"] = after
            record["provenance"]["sha256"] = combined_hash({role: e["sha256"] for role, e in entries.items()})
            stat, old_hash = Path(path).stat(), sha256_file(path)
            write_json(path, record)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            rehashed[path] = (old_hash, sha256_file(path))
    return len(records)


def _move(old: Path, new: Path) -> None:
    """Rename ``old`` to ``new`` keeping its modification time (Snakemake compares mtimes)."""
    stat = old.stat()
    new.parent.mkdir(parents=True, exist_ok=True)
    old.rename(new)
    os.utime(new, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _prune(folder: Path) -> None:
    """Remove the empty folders under ``folder`` and ``folder`` itself when it is left empty."""
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        if not any(path.iterdir()):
            path.rmdir()
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def migrate(workdir: str | Path = ".", eval_split: str = "test", dry_run: bool = False, say=print) -> dict[str, str]:
    """Move ``workdir/results`` of the previous layout into the current one, with the metadata
    records of its outputs. Returns the output moves. Refuses (:class:`MigrationError`) while a
    Snakemake run holds the folder or left jobs unfinished, or when a target exists."""
    workdir = Path(workdir)
    results, state = Path("results"), Path(".snakemake")
    cwd = os.getcwd()
    os.chdir(workdir)  # paths as Snakemake spells them: relative to the working directory
    try:
        if not results.is_dir():
            raise MigrationError(f"{workdir / results}: no such folder")
        for sub, why in (
            ("locks", "a Snakemake run holds this folder"),
            ("incomplete", "jobs of a run are unfinished"),
        ):
            if (state / sub).is_dir() and any((state / sub).iterdir()):
                raise MigrationError(
                    f"{workdir / state / sub} is not empty: {why}; let it finish, or run `snakemake --unlock` "
                    "/ remove the unfinished outputs, then migrate"
                )
        moves, unknown = output_moves(results, eval_split)
        logs = record_moves(results, eval_split)
        records = metadata_moves(state / "metadata", moves, logs)
        taken = [new for new in [*moves.values(), *logs.values()] if Path(new).exists()]
        if taken:
            raise MigrationError(f"{len(taken)} targets exist already, e.g. {taken[0]}: nothing moved")
        for old, new in [*moves.items(), *logs.items()]:
            say(f"{old} -> {new}")
        for entry in unknown:
            say(f"left in place (not an output of the previous layout): {entry}")
        if dry_run:
            return moves
        for old_record, new_record, record in records:
            new_record.parent.mkdir(parents=True, exist_ok=True)
            tmp = new_record.with_name(new_record.name + ".tmp")
            tmp.write_text(json.dumps(record), encoding="utf-8")
            tmp.replace(new_record)
            if old_record != new_record:
                old_record.unlink()
        for old, new in [*moves.items(), *logs.items()]:
            _move(Path(old), Path(new))
        cells = rewrite_provenance([Path(new) for new in moves.values() if new.endswith(".json")], moves)
        for path in sorted({Path(old).parts[1] for old in moves}):
            _prune(results / path)
        for rule in MERGED_RULES:
            for kind in ("logs", "benchmarks"):
                _prune(results / kind / rule)
        if (state / "metadata").is_dir():
            for folder in (p for p in (state / "metadata").iterdir() if p.is_dir()):
                _prune(folder)
        say(
            f"moved {len(moves)} outputs, {len(logs)} logs and records, {len(records)} metadata records; "
            f"{cells} metrics files point at their inputs' new paths"
        )
        return moves
    finally:
        os.chdir(cwd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m icldistill.migrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", nargs="?", default=".", help="the folder holding results/ and .snakemake/")
    parser.add_argument("--eval-split", default="test", help="the run's eval.split (default test)")
    parser.add_argument("--dry-run", action="store_true", help="print the moves, move nothing")
    args = parser.parse_args(argv)
    try:
        migrate(args.workdir, args.eval_split, args.dry_run)
    except MigrationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
