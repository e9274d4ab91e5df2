"""The training stage: from the workflow's files to a trained adapter (one task or many)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..data import read_jsonl, staged_dir
from ..models import load_tokenizer
from .examples import build_sequences, tokenizer_hash
from .teacher_cache import TeacherCacheError
from .trainer import TaskData, TrainSettings, train

log = logging.getLogger(__name__)


def load_task_data(
    tokenizer: Any,
    task_id: str,
    rows_file: str,
    teacher_file: str | None,
    template_kwargs: dict[str, Any] | None = None,
    dev_file: str | None = None,
) -> TaskData:
    """The student's sequences (each training row's Base evaluation prompt + answer), for KD
    the checked teacher cache, and, when ``dev_file`` is given, the English dev sequences
    built the same way (``meta`` strategy)."""
    from .teacher_cache import load_teacher_cache

    _, examples = build_sequences(tokenizer, task_id, read_jsonl(rows_file), None, template_kwargs)
    dev_examples = []
    if dev_file:
        _, dev_examples = build_sequences(tokenizer, task_id, read_jsonl(dev_file), None, template_kwargs)
    teacher = load_teacher_cache(teacher_file, examples, tokenizer_hash(tokenizer)) if teacher_file else None
    if teacher is not None:
        log.info(
            "%s: teacher cache %s, %.0f bytes per answer token", task_id, teacher_file, teacher.bytes_per_answer_token()
        )
    return TaskData(task_id, examples, teacher, dev_examples)


def run_training(
    model_path: str,
    task_ids: list[str],
    rows_files: list[str],
    teacher_files: list[str],
    out_dir: str,
    log_csv: str,
    settings: dict[str, Any],
    template_kwargs: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    dev_files: list[str] | None = None,
) -> dict[str, Any]:
    """Train one condition on one task (``per_task``) or on several (``multitask``) from each
    task's training rows (``rows_files``); ``dev_files`` (English dev, one per task) feed the
    ``meta`` strategy's look-ahead. A teacher cache that fails its checks is removed before
    the error is raised: it is derived data, and without the file the teacher rule rebuilds it
    on the next run (kept, it would look up to date and fail every run the same way)."""
    tokenizer = load_tokenizer(model_path, trust_remote_code)
    teachers = teacher_files or [None] * len(task_ids)
    devs = dev_files or [None] * len(task_ids)
    tasks = []
    for task_id, rows_file, teacher_file, dev_file in zip(task_ids, rows_files, teachers, devs, strict=True):
        try:
            tasks.append(load_task_data(tokenizer, task_id, rows_file, teacher_file, template_kwargs, dev_file))
        except TeacherCacheError as err:
            Path(teacher_file).unlink(missing_ok=True)
            raise TeacherCacheError(f"{err}; removed it, the next run rebuilds it") from None
    train_settings = TrainSettings(**settings)
    checkpoints = Path(out_dir).with_name(Path(out_dir).name + ".checkpoints")
    # the adapter, tokenizer, summary and (last) manifest appear in ``out_dir`` at once
    with staged_dir(out_dir) as staging:
        summary = train(
            model_path, tasks, train_settings, staging, checkpoints, log_csv, tokenizer.pad_token_id, trust_remote_code
        )
        if train_settings.method == "full":
            tokenizer.save_pretrained(staging)
        (staging / "summary.json").write_text(json.dumps(summary, indent=1))
    log.info("training done: %s", summary)
    return summary
