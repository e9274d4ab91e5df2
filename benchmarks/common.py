"""Command-line options shared by the inference benchmarks."""

from __future__ import annotations

import argparse


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
