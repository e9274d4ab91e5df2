"""What a large vocabulary costs: generation, teacher-cache and training throughput and peak memory
of several models side by side (Gemma-3-270M's 262,144-token output layer against SmolLM2-135M's
49,152), each measurement in its own process so each peak RSS is its own.

    python benchmarks/vocab_cost.py --models results/models/smollm2-135m results/models/gemma-3-270m \\
        --data ../shared/xtreme-real

Per model it prints:

* ``generate``: greedy generation of ``--task`` at 0 and ``--shots`` shots (new tokens/s, examples/s);
* ``teacher``: building a top-K teacher cache at ``--shots`` shots (answer tokens/s, sequence tokens/s);
* ``train SFT`` / ``train KD``: LoRA training steps without and with the cached teacher (tokens/s,
  s/step);
* ``generate 0, LoRA``: zero-shot generation again, through the SFT run's adapter (unmerged, as the
  trained conditions are evaluated: PEFT freezes the base weights, which changes torch's kernels);

and the process's peak RSS for each. Uses the shipped mini data by default.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(job: dict) -> dict:
    """One measurement (run in a fresh process by :func:`main`)."""
    from icldistill.data import read_jsonl

    kind, model = job["kind"], job["model"]
    if kind == "generate":
        from icldistill.backends.hf import HFBackend
        from icldistill.demos import read_demonstrations
        from icldistill.prompts import PLAIN_STOP, build_prompts
        from icldistill.tasks import get_task

        task = get_task(job["task"])
        backend = HFBackend(
            model, dtype=job["dtype"], batch_size=job["batch_size"], adapter=job.get("adapter"), progress=False
        )
        rows = read_jsonl(job["rows"])
        demos = read_demonstrations(job["demos"]) if job["shots"] else None
        prompts = build_prompts(backend.tokenizer, task, rows, demos)
        budgets = [task.generation_budget(r, job["max_new_tokens"]) for r in rows]
        stop = [] if prompts.chat_template else list(PLAIN_STOP)
        start = time.perf_counter()
        outputs = backend.generate(prompts, budgets, stop)
        seconds = time.perf_counter() - start
        new_tokens = sum(len(backend.tokenizer(o, add_special_tokens=False).input_ids) for o in outputs)
        return {"seconds": seconds, "examples": len(rows), "new_tokens": new_tokens}
    if kind == "teacher":
        from icldistill.teacher import build_teacher_cache

        stats = build_teacher_cache(
            model, job["task"], job["rows"], job["demos"], job["out"], job["top_k"],
            {"dtype": job["dtype"], "batch_size": job["batch_size"]}, "bench",
        )  # fmt: skip
        return {"seconds": stats["seconds"], "answer_tokens": stats["answer_tokens"], "examples": stats["examples"]}
    from icldistill.train.run import run_training

    out = job["out"]
    teacher = [job["teacher"]] if kind == "train KD" else []
    run_training(model, [job["task"]], [job["rows"]], teacher, out, out + ".csv", job["settings"])
    import csv

    with open(out + ".csv", newline="") as f:
        log = list(csv.DictReader(f))
    tokens = sum(int(r["tokens"]) for r in log)
    seconds = sum(int(r["tokens"]) / float(r["tokens_per_s"]) for r in log)
    return {"seconds": seconds, "tokens": tokens, "steps": len(log)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True, help="Hugging Face folders")
    parser.add_argument("--task", default="nli")
    parser.add_argument("--lang", default="de")
    parser.add_argument("--data", default="resources/xtreme-mini")
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the task's budget")
    parser.add_argument("--top-k", type=int, default=256)
    parser.add_argument("--train-rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from icldistill.data import read_local, sample_rows, write_jsonl
    from icldistill.demos import draw_demonstrations, training_rows, write_demonstrations

    work = Path(tempfile.mkdtemp(prefix="vocab-cost-"))
    pool = read_local(args.data, args.task, "train", "en")
    demos = draw_demonstrations(pool, args.task, args.lang, args.shots, 1234)
    write_demonstrations(work / "demos.json", demos)
    write_jsonl(work / "test.jsonl", sample_rows(read_local(args.data, args.task, "test", args.lang), args.examples, 0))
    en_demos = draw_demonstrations(pool, args.task, "en", args.shots, 1234)
    write_demonstrations(work / "demos.en.json", en_demos)
    write_jsonl(work / "rows.jsonl", training_rows(pool, en_demos.held_out, 1234, args.task, args.train_rows))

    common = {"task": args.task, "dtype": args.dtype, "batch_size": args.batch_size, "threads": args.threads}
    train = {
        "max_steps": args.steps,
        "batch_size": args.batch_size,
        "lr": 1e-3,
        "warmup_steps": 1,
        "checkpoint_every": 0,
    }
    print(
        f"task={args.task} lang={args.lang} examples={args.examples} shots={args.shots} K={args.top_k} "
        f"train rows={args.train_rows} steps={args.steps} batch={args.batch_size} threads={args.threads}"
    )
    print(f"{'model':<28} {'measurement':<16} {'throughput':>34} {'seconds':>8} {'peak RSS MB':>12}")
    for model in args.models:
        name = Path(model).name
        teacher = work / f"{name}.teacher.safetensors"
        jobs = [
            ("generate 0-shot", {"kind": "generate", "rows": str(work / "test.jsonl"), "demos": None, "shots": 0}),
            (
                f"generate {args.shots}-shot",
                {"kind": "generate", "rows": str(work / "test.jsonl"), "demos": str(work / "demos.json"), "shots": args.shots},
            ),
            (
                f"teacher {args.shots}-shot",
                {"kind": "teacher", "rows": str(work / "rows.jsonl"), "demos": str(work / "demos.en.json"),
                 "out": str(teacher), "top_k": args.top_k},
            ),
            ("train SFT", {"kind": "train SFT", "rows": str(work / "rows.jsonl"), "settings": train | {"loss": "ce"}}),
            (
                "generate 0, LoRA",
                {"kind": "generate", "rows": str(work / "test.jsonl"), "demos": None, "shots": 0,
                 "adapter": str(work / f"{name}-train-SFT")},
            ),
            (
                "train KD",
                {"kind": "train KD", "rows": str(work / "rows.jsonl"), "teacher": str(teacher),
                 "settings": train | {"loss": "kd", "lam": 0.5}},
            ),
        ]  # fmt: skip
        for label, spec in jobs:
            job = common | spec | {"model": model, "max_new_tokens": args.max_new_tokens}
            job.setdefault("out", str(work / f"{name}-{label.replace(' ', '-')}"))
            path = work / f"{name}-{label.replace(' ', '-')}.json"
            path.write_text(json.dumps(job))
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, __file__, "--job", str(path)], capture_output=True, text=True, check=False
            )
            if done.returncode != 0:
                print(f"{name:<28} {label:<16} failed after {time.perf_counter() - start:.0f} s: {done.stderr[-800:]}")
                continue
            result = json.loads(done.stdout.splitlines()[-1])
            print(f"{name:<28} {label:<16} {_throughput(spec['kind'], result):>34} {result['seconds']:>8.1f} "
                  f"{result['max_rss_mb']:>12.0f}")  # fmt: skip


def _throughput(kind: str, r: dict) -> str:
    if kind == "generate":
        return f"{r['new_tokens'] / r['seconds']:.1f} new tok/s, {r['examples'] / r['seconds']:.2f} ex/s"
    if kind == "teacher":
        return f"{r['answer_tokens'] / r['seconds']:.1f} answer tok/s, {r['examples'] / r['seconds']:.2f} ex/s"
    return f"{r['tokens'] / r['seconds']:.0f} tok/s, {r['seconds'] / r['steps']:.2f} s/step"


def run_job(path: str) -> None:
    """``--job FILE``: one measurement in this process; prints its result and peak RSS as JSON."""
    import resource

    import torch

    job = json.loads(Path(path).read_text())
    torch.set_num_threads(job["threads"])
    result = measure(job)
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--job":
        run_job(sys.argv[2])
    else:
        main()
