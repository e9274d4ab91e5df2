"""The training stage: from the workflow's files to a trained adapter (one task or many)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..data import read_jsonl
from ..models import load_tokenizer
from .examples import build_sequences, tokenizer_hash, training_rows
from .trainer import TaskData, TrainSettings, train

log = logging.getLogger(__name__)


def load_task_data(
    tokenizer: Any,
    task_id: str,
    train_file: str,
    teacher_file: str | None,
    demo_shots: int,
    seed: int,
    max_examples: int | None,
    dev_file: str | None = None,
) -> TaskData:
    """The student's sequences (zero-shot prompt + answer), for KD the checked teacher cache,
    and, when ``dev_file`` is given, the held-out English dev sequences (``meta`` strategy)."""
    from ..teacher import load_teacher_cache

    pool = read_jsonl(train_file)
    rows = training_rows(pool, task_id, demo_shots, seed, max_examples)
    _, examples = build_sequences(tokenizer, task_id, rows, pool, 0, seed)
    dev_examples = []
    if dev_file:
        dev_rows = read_jsonl(dev_file)
        _, dev_examples = build_sequences(tokenizer, task_id, dev_rows, dev_rows, 0, seed)
    teacher = load_teacher_cache(teacher_file, examples, tokenizer_hash(tokenizer)) if teacher_file else None
    if teacher is not None:
        log.info(
            "%s: teacher cache %s, %.0f bytes per answer token", task_id, teacher_file, teacher.bytes_per_answer_token()
        )
    return TaskData(task_id, examples, teacher, dev_examples)


def run_training(
    model_path: str,
    task_ids: list[str],
    train_files: list[str],
    teacher_files: list[str],
    out_dir: str,
    log_csv: str,
    settings: dict[str, Any],
    data_settings: dict[str, dict[str, Any]],
    trust_remote_code: bool = False,
    dev_files: list[str] | None = None,
) -> dict[str, Any]:
    """Train one condition on one task (``per_task``) or on several (``multitask``);
    ``data_settings`` maps each task to its :func:`~icldistill.config.train_data_settings`;
    ``dev_files`` (English dev, one per task) feed the ``meta`` strategy's look-ahead."""
    tokenizer = load_tokenizer(model_path, trust_remote_code)
    teachers = teacher_files or [None] * len(task_ids)
    devs = dev_files or [None] * len(task_ids)
    tasks = [
        load_task_data(
            tokenizer,
            task_id,
            train_file,
            teacher_file,
            data_settings[task_id]["demo_shots"],
            data_settings[task_id]["seed"],
            data_settings[task_id].get("max_examples"),
            dev_file,
        )
        for task_id, train_file, teacher_file, dev_file in zip(task_ids, train_files, teachers, devs, strict=True)
    ]
    train_settings = TrainSettings(**settings)
    checkpoints = Path(out_dir).with_name(Path(out_dir).name + ".checkpoints")
    summary = train(
        model_path, tasks, train_settings, out_dir, checkpoints, log_csv, tokenizer.pad_token_id, trust_remote_code
    )
    if train_settings.method == "full":
        tokenizer.save_pretrained(out_dir)
    (Path(out_dir) / "summary.json").write_text(json.dumps(summary, indent=1))
    log.info("training done: %s", summary)
    return summary
