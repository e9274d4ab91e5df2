"""Command-line options and data preparation shared by the benchmarks."""

from __future__ import annotations

import argparse
from pathlib import Path


def inference_parser(doc: str) -> argparse.ArgumentParser:
    """A parser with the model, task, languages, data and sizing options of the benchmarks."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", required=True, help="Hugging Face folder or id")
    parser.add_argument("--task", default="ner")
    parser.add_argument("--langs", nargs="+", default=["en", "de", "zh"])
    parser.add_argument("--data", default="resources/xtreme-mini")
    parser.add_argument("--examples", type=int, default=16, help="examples per language")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16, help="HF batch size")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    return parser


def training_parser(doc: str, steps: int) -> argparse.ArgumentParser:
    """A parser with the model, task, data and sizing options of the training benchmarks."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--model", required=True, help="Hugging Face folder")
    parser.add_argument("--task", default="nli")
    parser.add_argument("--data", default="resources/xtreme-mini")
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--top-k", type=int, default=256)
    parser.add_argument("--max-examples", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    return parser


def training_data(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    """The workflow's data stage and teacher job for one task, in ``work``: the English train and
    dev splits, ``--shots`` English demonstrations, the training rows without them (``rows``) and
    the ``--shots``-shot teacher cache of those rows (``teacher``)."""
    from icldistill.data import prepare_split, read_jsonl, write_jsonl
    from icldistill.demos import draw_demonstrations, training_rows, write_demonstrations
    from icldistill.teacher import build_teacher_cache

    source = {"source": "local", "path": args.data}
    files = {}
    for split in ("train", "dev"):
        files[split] = work / f"{split}.jsonl"
        prepare_split(source, args.task, split, "en", None, 1234, files[split], work / f"{split}.manifest.json")
    pool = read_jsonl(files["train"])
    demos = draw_demonstrations(pool, args.task, "en", args.shots, 1234)
    files["demos"] = work / "demos.json"
    write_demonstrations(files["demos"], demos)
    files["rows"] = work / "rows.jsonl"
    write_jsonl(files["rows"], training_rows(pool, demos.held_out, 1234, args.task, args.max_examples))
    files["teacher"] = work / "teacher.safetensors"
    build_teacher_cache(
        args.model, args.task, str(files["rows"]), str(files["demos"]), str(files["teacher"]), args.top_k,
        {"dtype": "auto", "batch_size": 8}, args.model,
    )  # fmt: skip
    return files
