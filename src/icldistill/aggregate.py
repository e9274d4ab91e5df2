"""Per-cell metrics files → the tidy table ``cells.csv``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import vocab
from .data import read_jsonl, stable_seed, write_json
from .metrics import score
from .provenance import check_fresh, provenance, stale_reason
from .stats import DEFAULT_RESAMPLES, cell_interval, ratio_terms
from .tasks import get_task

CELL_COLUMNS = [
    *vocab.CELL_COLUMNS,
    "parse_failures",
    "model_id",
    "ci_low",
    "ci_high",
    "seeds",
    "seed_sd",
    "parse_failure_rate",
    "over_length",
]


def score_cell(
    predictions_file: str | Path, data_file: str | Path, out_file: str | Path, meta: dict[str, Any]
) -> dict[str, Any]:
    """Score one cell's predictions against its data and write the metrics file: ``n``,
    ``parse_failures``, the task's ``metrics``, the other counts of :func:`~icldistill.metrics.score`
    (``think_blocks``, ``length_mismatches``) under ``extra``, and the ``per_example`` scores."""
    predictions = read_jsonl(predictions_file)
    references = read_jsonl(data_file)
    if [p["id"] for p in predictions] != [r["id"] for r in references]:
        raise ValueError(f"{predictions_file}: prediction ids do not match {data_file}")
    result = score(meta["task"], meta["language"], [p["output"] for p in predictions], references)
    per_example = result.pop("per_example")
    record = meta | {"n": result.pop("n"), "parse_failures": result.pop("parse_failures")}
    # inputs cut to fit the model's context (icldistill.prompts.fit_to_context)
    record["over_length"] = sum(1 for p in predictions if p.get("cut_chars"))
    record["extra"] = {k: result.pop(k) for k in list(result) if k not in get_task(meta["task"]).metrics}
    record["metrics"] = result
    record["per_example"] = [{"id": r["id"]} | e for r, e in zip(references, per_example, strict=True)]
    record["provenance"] = provenance({"predictions": predictions_file, "data": data_file})
    write_json(out_file, record)
    return record


def seed_cell(member_files: list[str | Path], seeds: list[int], condition: str, out_file: str | Path) -> dict[str, Any]:
    """The cell of ``condition`` from its seed runs' metrics files (one per seed of ``seeds``,
    same examples): every metric the mean over seeds, ``seed_sd`` its sample standard deviation,
    parse failures and extra counts the mean per seed; ``per_seed`` keeps each seed's metrics and
    per-example scores for the two-level bootstrap (:mod:`icldistill.stats`)."""
    import statistics

    records = [json.loads(Path(p).read_text(encoding="utf-8")) for p in member_files]
    if len(records) != len(seeds) or len(seeds) < 2:
        raise ValueError(f"{out_file}: {len(records)} seed metrics for seeds {seeds}")
    ids = [e["id"] for e in records[0]["per_example"]]
    for path, rec in zip(member_files, records, strict=True):
        if [e["id"] for e in rec["per_example"]] != ids:
            raise ValueError(f"{path}: scored on other examples than {member_files[0]}")

    def mean(values):
        return round(statistics.fmean(values), 6)

    metrics = records[0]["metrics"]
    record = {k: v for k, v in records[0].items() if k not in ("per_example", "metrics", "extra", "parse_failures")}
    record |= {
        "condition": condition,
        "parse_failures": mean([r["parse_failures"] for r in records]),
        "over_length": mean([r.get("over_length", 0) for r in records]),
        "extra": {k: mean([r["extra"][k] for r in records]) for k in records[0].get("extra", {})},
        "metrics": {m: mean([r["metrics"][m] for r in records]) for m in metrics},
        "seed_sd": {m: round(statistics.stdev([r["metrics"][m] for r in records]), 6) for m in metrics},
        "seeds": list(seeds),
        "per_seed": [
            {"seed": seed} | {k: rec[k] for k in ("condition", "metrics", "parse_failures", "per_example")}
            for seed, rec in zip(seeds, records, strict=True)
        ],
        "provenance": provenance({f"seed {seed}": path for seed, path in zip(seeds, member_files, strict=True)}),
    }
    write_json(out_file, record)
    return record


def replicates(record: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The per-example scores of a metrics record, one list per seed run (one without seeds)."""
    if "per_seed" in record:
        return [seed["per_example"] for seed in record["per_seed"]]
    return [record["per_example"]]


def cell_terms(record: dict[str, Any], metric: str):
    """The (numerator, denominator) terms of ``metric`` of each seed run of a metrics record."""
    return [ratio_terms(record["task"], metric, per_example) for per_example in replicates(record)]


def parse_failure_rate(parse_failures: float, n: int) -> float | None:
    """The fraction (0–1, 4 decimals) of a cell's outputs that did not parse; None without outputs.

    A cell averaged over seeds (:func:`seed_cell`) holds the mean count per seed, so its
    rate is the mean of the seeds' rates.
    """
    return round(parse_failures / n, 4) if n else None


def collect_cells(metric_files: list[str | Path], resamples: int = DEFAULT_RESAMPLES, seed: int = 0):
    """One row per (model, task, condition, language, metric), as a pandas DataFrame, with the
    95 % bootstrap interval of each value (``ci_low``, ``ci_high``; :mod:`icldistill.stats`,
    ``resamples`` resamples seeded from ``seed`` per (model, task, language, metric)), for
    trained conditions the number of training seeds and the standard deviation over them, and
    the cell's :func:`parse_failure_rate` (a fraction, the same for every metric of the cell).

    A metrics file whose recorded inputs changed after it was written
    (:mod:`icldistill.provenance`) is refused with an error naming it: a stale cell is never
    counted."""
    import pandas as pd

    rows = []
    for path in metric_files:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
        check_fresh(rec, path)
        for metric, value in rec["metrics"].items():
            # the same resamples for every condition of a (task, language): conditions scored on
            # the same examples get comparable intervals, identical results identical ones
            cell_seed = stable_seed(seed, rec["model_id"], rec["task"], rec["language"], metric)
            low, high = cell_interval(cell_terms(rec, metric), resamples=resamples, seed=cell_seed)
            spread = rec.get("seed_sd", {}).get(metric)
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
                    "ci_low": round(low, 4),
                    "ci_high": round(high, 4),
                    "seeds": len(rec.get("seeds", [])) or None,
                    "seed_sd": None if spread is None else round(spread, 4),
                    "parse_failure_rate": parse_failure_rate(rec["parse_failures"], rec["n"]),
                    "over_length": rec.get("over_length", 0),
                }
            )
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def write_cells(
    metric_files: list[str | Path], out_file: str | Path, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
):
    cells = collect_cells(metric_files, resamples, seed)
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
    conditions: list[dict[str, Any]] | None = None,
    stale: list[str | Path] | None = None,
):
    """After a failed run (e.g. ``--keep-going``): the cells that finished, in ``out_dir``
    (``cells.csv`` and ``RESULTS.md``). ``expected`` lists the grid's cells as (model display
    name, model id, task, condition, language); those without a result get an empty value, which
    the report shows as —. ``stale`` lists metrics files that exist but are out of date (their
    job had to rerun and did not finish, as the workflow's DAG says); they, and files whose
    recorded inputs changed (:func:`~icldistill.provenance.stale_reason`), are shown as stale:
    no value, ``status`` ``stale`` in ``cells.csv`` and a list at the top of the report, never
    as finished. ``conditions`` (:meth:`icldistill.grid.Grid.rows`) gives the report its
    labels and roles (sweep members in the λ sweep section). Written outside the workflow's own
    outputs, so nothing partial is ever taken as complete. Returns ``(report path, finished,
    stale)`` (the counts of cells), or None when no cell finished."""
    import pandas as pd

    from .render.report import render_report
    from .tasks import TASKS

    out_of_date = {str(p) for p in stale or ()}
    fresh, stale_cells = [], []
    for path in (p for p in metric_files if Path(p).exists()):
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
        key = (rec["model_id"], rec["task"], rec["condition"], rec["language"])
        reason = "its job had to rerun and did not finish" if str(path) in out_of_date else stale_reason(rec)
        if reason is None:
            fresh.append(path)
        else:
            stale_cells.append((key, reason))
    if not fresh:
        return None
    cells = collect_cells(fresh)
    cells["status"] = "finished"
    have = set(zip(cells["model_id"], cells["task"], cells["condition"], cells["language"], strict=True))
    stale_keys = {key for key, _ in stale_cells}
    missing = [
        {
            "model": name,
            "task": task,
            "condition": cond,
            "language": lang,
            "metric": TASKS[task].primary_metric if task in TASKS else "score",
        }
        | {"value": None, "n": 0, "parse_failures": 0, "model_id": model_id}
        | {"ci_low": None, "ci_high": None, "seeds": None, "seed_sd": None, "parse_failure_rate": None}
        | {"over_length": None}
        | {"status": "stale" if (model_id, task, cond, lang) in stale_keys else "missing"}
        for name, model_id, task, cond, lang in expected or ()
        if (model_id, task, cond, lang) not in have
    ]
    if missing:
        cells = pd.concat([cells, pd.DataFrame(missing, columns=[*CELL_COLUMNS, "status"])], ignore_index=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells.to_csv(out_dir / "cells.csv", index=False)
    frame = pd.DataFrame(conditions) if conditions else None
    path = render_report(cells.drop(columns="status"), out_dir, template=template, conditions=frame)
    if stale_cells:
        listing = "".join(
            f"- {model} · {task} · {cond} · {lang}: {reason}\n"
            for (model, task, cond, lang), reason in sorted(stale_cells)
        )
        banner = (
            f"> **Partial report.** {len(have)} cells finished; {len(stale_cells)} are stale (computed under "
            "older settings or from changed inputs) and are shown as —, not as results:\n\n" + listing + "\n"
        )
        path = Path(path)
        path.write_text(banner + path.read_text(encoding="utf-8"), encoding="utf-8")
    return path, len(have), len(stale_cells)


def select_lambda(
    dev_metric_files: list[str | Path], candidates: dict[str, float], condition: str, out_file: str | Path
) -> dict:
    """Choose the sweep member of the best condition ``condition`` with the highest dev score
    (primary metric, mean over the selection languages) and write the choice with every
    candidate's score to ``out_file``. Ties go to the smallest λ, the run closest to SFT."""

    records = [json.loads(Path(p).read_text(encoding="utf-8")) for p in dev_metric_files]
    if not records:
        raise ValueError(f"{out_file}: no dev metrics to choose a λ from")
    task = records[0]["task"]
    metric = get_task(task).primary_metric
    scores: dict[str, dict[str, float]] = {c: {} for c in candidates}
    for rec in records:
        if rec["condition"] not in scores:
            raise ValueError(f"dev metrics of {rec['condition']!r} are not a candidate ({', '.join(candidates)})")
        scores[rec["condition"]][rec["language"]] = float(rec["metrics"][metric])
    rows = [
        {
            "condition": c,
            "lambda": float(lam),
            "dev_score": sum(scores[c].values()) / len(scores[c]),
            "per_language": scores[c],
        }
        for c, lam in candidates.items()
        if scores[c]
    ]
    if len(rows) != len(candidates):
        missing = [c for c in candidates if not scores[c]]
        raise ValueError(f"no dev metrics for {', '.join(missing)}")
    chosen = max(rows, key=lambda r: (r["dev_score"], -r["lambda"]))
    selection = {
        "model": records[0]["model"],
        "model_id": records[0]["model_id"],
        "task": task,
        "condition": condition,
        "metric": metric,
        "languages": sorted({rec["language"] for rec in records}),
        "candidates": rows,
        "chosen": {k: chosen[k] for k in ("condition", "lambda", "dev_score")},
    }
    write_json(out_file, selection)
    return selection


def best_cell(selection_file: str | Path, test_metric_files: list[str | Path], condition: str, out_file: str | Path):
    """The test metrics of the member chosen in ``selection_file``, relabelled ``condition``."""
    selection = json.loads(Path(selection_file).read_text(encoding="utf-8"))
    chosen = selection["chosen"]
    for path in test_metric_files:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        if record["condition"] == chosen["condition"]:
            inputs = provenance({"selection": selection_file, "chosen": path})
            record = record | {"condition": condition, "selected": chosen, "provenance": inputs}
            write_json(out_file, record)
            return record
    raise ValueError(f"{selection_file}: chosen {chosen['condition']!r} has no test metrics among the inputs")


SELECTION_COLUMNS = [
    "model",
    "model_id",
    "task",
    "sweep_of",
    "best_condition",
    "candidate",
    "lambda",
    "dev_score",
    "dev_languages",
    "chosen",
]


def selection_rows(selection_files: list[str | Path], sweep_of: dict[str, str]) -> list[dict[str, Any]]:
    """One row per (model, task, candidate) of the λ choices; ``sweep_of`` maps each best
    condition to the condition it sweeps."""
    rows = []
    for path in selection_files:
        sel = json.loads(Path(path).read_text(encoding="utf-8"))
        for cand in sel["candidates"]:
            rows.append(
                {
                    "model": sel["model"],
                    "model_id": sel["model_id"],
                    "task": sel["task"],
                    "sweep_of": sweep_of[sel["condition"]],
                    "best_condition": sel["condition"],
                    "candidate": cand["condition"],
                    "lambda": cand["lambda"],
                    "dev_score": round(cand["dev_score"], 4),
                    "dev_languages": " ".join(sel["languages"]),
                    "chosen": cand["condition"] == sel["chosen"]["condition"],
                }
            )
    return rows


def write_tables(
    conditions: list[dict[str, Any]],
    selection_files: list[str | Path],
    runs: list[dict[str, str]],
    train_logs: list[str | Path],
    out: Any,
) -> None:
    """``conditions.csv``, ``selection.csv`` and ``training.csv`` (the per-step log of every
    trained condition, keyed by ``runs``: model, model_id, scope, condition and ``run``, the
    condition whose training run it uses — a reused run's log appears under each condition
    using it) at ``out.conditions`` etc."""
    import pandas as pd

    sweep_of = {c["condition"]: c["sweep_of"] for c in conditions if c["role"] == "best"}
    logs = []
    for run, path in zip(runs, train_logs, strict=True):
        log = pd.read_csv(path)
        for position, (key, value) in enumerate(run.items()):
            log.insert(position, key, value)
        logs.append(log)
    tables = {
        out.conditions: pd.DataFrame(conditions),
        out.selection: pd.DataFrame(selection_rows(selection_files, sweep_of), columns=SELECTION_COLUMNS),
        out.training: pd.concat(logs, ignore_index=True) if logs else pd.DataFrame(),
    }
    for path, frame in tables.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(str(path) + ".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(path)


PAIRED_COLUMNS = [
    "model",
    "model_id",
    "task",
    "condition",
    "reference",
    "language",
    "metric",
    "difference",
    "ci_low",
    "ci_high",
    "p_value",
    "significant",
]


def paired_tests(
    metric_files: list[str | Path],
    pairs: list[tuple[str, str]],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
):
    """Paired bootstrap tests of ``condition − reference`` on each task's primary metric, per
    language and for the task average (``language`` ``avg``: the mean over the languages both
    have), for every model; the two cells must be scored on the same examples. Conditions
    trained with several seeds are resampled over seeds too, paired by seed."""
    import pandas as pd

    from .stats import paired_difference

    records = {}
    for path in metric_files:
        rec = json.loads(Path(path).read_text(encoding="utf-8"))
        records[rec["model_id"], rec["task"], rec["condition"], rec["language"]] = rec
    rows = []
    keys = sorted({(m, t) for m, t, _, _ in records})
    for model_id, task in keys:
        metric = get_task(task).primary_metric
        for condition, reference in pairs:
            groups, model_name = [], None
            for lang in sorted({k[3] for k in records if k[:2] == (model_id, task)}):
                a, b = records.get((model_id, task, condition, lang)), records.get((model_id, task, reference, lang))
                if a is None or b is None:
                    continue
                if [e["id"] for e in replicates(a)[0]] != [e["id"] for e in replicates(b)[0]]:
                    raise ValueError(
                        f"{model_id}/{task}/{lang}: {condition} and {reference} are not scored on the same examples"
                    )
                model_name = a["model"]
                groups.append((lang, cell_terms(a, metric), cell_terms(b, metric)))
            if not groups:
                continue
            base = {
                "model": model_name,
                "model_id": model_id,
                "task": task,
                "condition": condition,
                "reference": reference,
                "metric": metric,
            }
            test_seed = stable_seed(seed, model_id, task, condition, reference)
            for lang, terms_a, terms_b in groups:
                result = paired_difference([terms_a], [terms_b], resamples, stable_seed(test_seed, lang))
                rows.append(base | {"language": lang} | _paired_row(result))
            result = paired_difference([g[1] for g in groups], [g[2] for g in groups], resamples, test_seed)
            rows.append(base | {"language": "avg"} | _paired_row(result))
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)


def _paired_row(result) -> dict[str, Any]:
    return {
        "difference": round(result.difference, 4),
        "ci_low": round(result.low, 4),
        "ci_high": round(result.high, 4),
        "p_value": round(result.p_value, 4),
        "significant": result.significant,
    }


def write_paired(
    metric_files: list[str | Path],
    pairs: list[tuple[str, str]],
    out_file: str | Path,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
):
    """:func:`paired_tests` written atomically to ``out_file`` (``paired.csv``)."""
    paired = paired_tests(metric_files, pairs, resamples, seed)
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(out_file) + ".tmp")
    paired.to_csv(tmp, index=False)
    tmp.replace(out_file)
    return paired
