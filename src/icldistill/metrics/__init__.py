"""Per-cell metrics.

Public API::

    score(task, lang, predictions, references) -> dict

``predictions`` are raw model outputs (parsed here with the task's parser), ``references`` are
rows in the local data layout (``google/xtreme`` field names). The result holds the task's
metrics on a 0–100 scale (``accuracy``; ``exact_match`` and ``f1``; or entity ``f1`` with
``precision`` and ``recall``), ``n``, ``parse_failures``, ``think_blocks`` (outputs opening with a
``<think>`` block, which the parser drops first: see :func:`icldistill.tasks.strip_think`; an
unclosed one is also a parse failure), for tag tasks ``length_mismatches``, and ``per_example``
scores. Outputs that do not parse count as wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..tasks import NO_MATCH, get_task, starts_with_think, strip_think
from . import mlqa


def _label_scores(task, lang, predictions, references):
    parsed = [task.parse(p, r) for p, r in zip(predictions, references, strict=True)]
    correct = [float(p is not None and p == task.gold_label(r)) for p, r in zip(parsed, references, strict=True)]
    return parsed, {"accuracy": _mean(correct)}, [{"correct": c} for c in correct]


def _qa_scores(task, lang, predictions, references):
    parsed = [task.parse(p, r) for p, r in zip(predictions, references, strict=True)]
    per_example = []
    for answer, ref in zip(parsed, references, strict=True):
        golds = ref["answers"]["text"]
        if answer is None:
            per_example.append({"f1": 0.0, "exact_match": 0.0})
            continue
        per_example.append(
            {
                "f1": mlqa.metric_max_over_ground_truths(mlqa.f1_score, answer, golds, lang),
                "exact_match": mlqa.metric_max_over_ground_truths(mlqa.exact_match_score, answer, golds, lang),
            }
        )
    metrics = {name: _mean([e[name] for e in per_example]) for name in ("f1", "exact_match")}
    return parsed, metrics, per_example


def _tag_sequences(task, predictions, references):
    parsed = [task.parse(p, r) for p, r in zip(predictions, references, strict=True)]
    pred_tags = [
        p if p is not None else [task.pad_tag] * len(r["tokens"]) for p, r in zip(parsed, references, strict=True)
    ]
    gold_tags = [r[task.tag_field] for r in references]
    return parsed, pred_tags, gold_tags


def _ner_scores(task, lang, predictions, references):
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.metrics.sequence_labeling import get_entities

    parsed, pred_tags, gold_tags = _tag_sequences(task, predictions, references)
    metrics = {
        "f1": 100.0 * float(f1_score(gold_tags, pred_tags, zero_division=0)),
        "precision": 100.0 * float(precision_score(gold_tags, pred_tags, zero_division=0)),
        "recall": 100.0 * float(recall_score(gold_tags, pred_tags, zero_division=0)),
    }
    per_example = []
    for pred, gold in zip(pred_tags, gold_tags, strict=True):
        p, g = set(get_entities(pred)), set(get_entities(gold))
        per_example.append({"true_pos": len(p & g), "pred": len(p), "gold": len(g)})
    return parsed, metrics, per_example


def _pos_scores(task, lang, predictions, references):
    parsed, pred_tags, gold_tags = _tag_sequences(task, predictions, references)
    per_example = [
        {"correct": sum(p == g and p != NO_MATCH for p, g in zip(pred, gold, strict=True)), "tokens": len(gold)}
        for pred, gold in zip(pred_tags, gold_tags, strict=True)
    ]
    total = sum(e["tokens"] for e in per_example)
    accuracy = 100.0 * sum(e["correct"] for e in per_example) / total if total else 0.0
    return parsed, {"accuracy": accuracy}, per_example


def _mean(values: Sequence[float]) -> float:
    return 100.0 * sum(values) / len(values) if values else 0.0


def score(task: str, lang: str, predictions: Sequence[str], references: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Score raw model outputs of one cell against its reference rows (see module docstring)."""
    spec = get_task(task)
    if len(predictions) != len(references):
        raise ValueError(f"{task}/{lang}: {len(predictions)} predictions for {len(references)} references")
    # the scorer of each ``Task.scoring``: (task, lang, predictions, references) → (parsed
    # answers, cell metrics, per-example scores). Named here, not at module level, so that
    # importing this module (the report's jobs do) reaches no scorer's dependencies (seqeval)
    scorers = {"label": _label_scores, "span": _qa_scores, "entities": _ner_scores, "tokens": _pos_scores}
    parsed, metrics, per_example = scorers[spec.scoring](spec, lang, predictions, references)
    result: dict[str, Any] = dict(metrics)
    result["n"] = len(references)
    result["parse_failures"] = sum(p is None for p in parsed)
    result["think_blocks"] = sum(starts_with_think(o) for o in predictions)
    if spec.answer_format == "tags":
        result["length_mismatches"] = sum(
            p is not None and len(_raw_tags(strip_think(o))) != len(r["tokens"])
            for p, o, r in zip(parsed, predictions, references, strict=True)
        )
    result["per_example"] = per_example
    return result


def _raw_tags(output: str) -> list[str]:
    return [w for w in output.split() if w.strip(".,;:!?()[]{}\"'`")]


__all__ = ["score"]
