"""Per-cell metrics files → the tidy table ``cells.csv``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .data import read_jsonl, write_json
from .metrics import score
from .tasks import get_task

CELL_COLUMNS = ["model", "task", "condition", "language", "metric", "value", "n", "parse_failures", "model_id"]


def score_cell(
    predictions_file: str | Path, data_file: str | Path, out_file: str | Path, meta: dict[str, Any]
) -> dict[str, Any]:
    """Score one cell's predictions against its data and write the metrics file."""
    predictions = read_jsonl(predictions_file)
    references = read_jsonl(data_file)
    if [p["id"] for p in predictions] != [r["id"] for r in references]:
        raise ValueError(f"{predictions_file}: prediction ids do not match {data_file}")
    result = score(meta["task"], meta["language"], [p["output"] for p in predictions], references)
    per_example = result.pop("per_example")
    record = meta | {"n": result.pop("n"), "parse_failures": result.pop("parse_failures")}
    record["extra"] = {k: result.pop(k) for k in list(result) if k not in get_task(meta["task"]).metrics}
    record["metrics"] = result
    record["per_example"] = [{"id": r["id"]} | e for r, e in zip(references, per_example, strict=True)]
    write_json(out_file, record)
    return record


def collect_cells(metric_files: list[str | Path]):
    """One row per (model, task, condition, language, metric), as a pandas DataFrame."""
    import pandas as pd

    rows = []
    for path in metric_files:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
        for metric, value in rec["metrics"].items():
            rows.append(
                {
                    "model": rec["model"],
                    "task": rec["task"],
                    "condition": rec["condition"],
                    "language": rec["language"],
                    "metric": metric,
                    "value": round(float(value), 4),
                    "n": rec["n"],
                    "parse_failures": rec["parse_failures"],
                    "model_id": rec["model_id"],
                }
            )
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def write_cells(metric_files: list[str | Path], out_file: str | Path):
    cells = collect_cells(metric_files)
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(out_file) + ".tmp")
    cells.to_csv(tmp, index=False)
    tmp.replace(out_file)
    return cells


def render_partial(
    metric_files: list[str | Path],
    out_dir: str | Path,
    expected: list[tuple[str, str, str, str, str]] | None = None,
    template: str | Path | None = None,
):
    """After a failed run (e.g. ``--keep-going``): the cells that finished, in ``out_dir``
    (``cells.csv`` and ``RESULTS.md``). ``expected`` lists the grid's cells as (model display
    name, model id, task, condition, language); those without a result get an empty value, which
    the report shows as —. Written outside the workflow's own outputs, so nothing partial is ever
    taken as complete. Returns the report path, or None when no cell finished."""
    import pandas as pd

    from .render.report import render_report
    from .vocab import PRIMARY_METRIC

    done = [p for p in metric_files if Path(p).exists()]
    if not done:
        return None
    cells = collect_cells(done)
    have = set(zip(cells["model_id"], cells["task"], cells["condition"], cells["language"], strict=True))
    missing = [
        {"model": name, "task": task, "condition": cond, "language": lang, "metric": PRIMARY_METRIC.get(task, "score")}
        | {"value": None, "n": 0, "parse_failures": 0, "model_id": model_id}
        for name, model_id, task, cond, lang in expected or ()
        if (model_id, task, cond, lang) not in have
    ]
    if missing:
        cells = pd.concat([cells, pd.DataFrame(missing, columns=CELL_COLUMNS)], ignore_index=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells.to_csv(out_dir / "cells.csv", index=False)
    return render_report(cells, out_dir, template=template)
