"""Cost of the λ strategies: seconds per step, tokens/s and peak memory of each, against fixed λ.

Builds one teacher cache (``--shots``-shot, top-``--top-k``) for ``--task`` from the English training
split, then trains each strategy for ``--steps`` steps in its own process (so each peak RSS is its
own) and prints a table: s/step, tokens/s, peak RSS, the λ_eff trace's range, and the trainable
parameter count (the unit of the extra gradient buffers of grad_conflict and meta).

    python benchmarks/lambda_strategies.py --model results/models/smollm2-135m --task nli

Uses the shipped mini data by default; ``--data ../shared/xtreme-real`` reads the real sample.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from icldistill.train.registry import STRATEGIES

RUN = """
import json, resource, sys, torch
from icldistill.train.run import run_training
job = json.load(open(sys.argv[1]))
torch.set_num_threads(job["threads"])
summary = run_training(job["model"], [job["task"]], [job["train"]], [job["teacher"]], job["out"], job["out"] + ".csv",
                       job["settings"], dev_files=[job["dev"]])
summary["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(summary))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Hugging Face folder")
    parser.add_argument("--task", default="nli")
    parser.add_argument("--data", default="resources/xtreme-mini")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--top-k", type=int, default=256)
    parser.add_argument("--max-examples", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from icldistill.data import prepare_split, read_jsonl, write_jsonl
    from icldistill.demos import draw_demonstrations, training_rows, write_demonstrations
    from icldistill.teacher import build_teacher_cache

    work = Path(tempfile.mkdtemp(prefix="lambda-bench-"))
    source = {"source": "local", "path": args.data}
    files = {}
    for split in ("train", "dev"):
        files[split] = work / f"{split}.jsonl"
        prepare_split(source, args.task, split, "en", None, 1234, files[split], work / f"{split}.manifest.json")
    # the workflow's data stage: English demonstrations, and the training rows without them
    pool = read_jsonl(files["train"])
    demos = draw_demonstrations(pool, args.task, "en", args.shots, 1234)
    write_demonstrations(work / "demos.json", demos)
    files["rows"] = work / "rows.jsonl"
    write_jsonl(files["rows"], training_rows(pool, demos.held_out, 1234, args.task, args.max_examples))
    teacher = work / "teacher.safetensors"
    build_teacher_cache(
        args.model, args.task, str(files["rows"]), str(work / "demos.json"), str(teacher), args.top_k,
        {"dtype": "auto", "batch_size": 8}, args.model,
    )  # fmt: skip

    base = {
        "max_steps": args.steps,
        "batch_size": args.batch_size,
        "lr": 1e-3,
        "warmup_steps": 1,
        "checkpoint_every": 0,
    }
    runs = {"ce (SFT)": {"loss": "ce"}, "fixed λ 0.5": {"loss": "kd", "lam": 0.5}}
    for name, spec in STRATEGIES.items():
        params = {"lambdas": {args.task: 1.0}} if name == "task_prior" else dict(spec.defaults)
        if name == "meta":
            params["val_batch_size"] = args.batch_size
        runs[name] = {"loss": "kd", "strategy": name, "strategy_params": params}

    print(f"task={args.task} steps={args.steps} batch={args.batch_size} K={args.top_k} threads={args.threads}")
    print(f"{'run':<14} {'s/step':>7} {'tokens/s':>9} {'peak RSS MB':>12} {'λ_eff min..max':>20}")
    trainable = None
    for name, settings in runs.items():
        out = work / name.split()[0]
        job = {
            "model": args.model, "task": args.task, "train": str(files["rows"]), "dev": str(files["dev"]),
            "teacher": str(teacher), "out": str(out), "settings": base | settings,
            "threads": args.threads,
        }  # fmt: skip
        spec = work / f"{out.name}.json"
        spec.write_text(json.dumps(job))
        result = subprocess.run(
            [sys.executable, "-c", RUN, str(spec)], capture_output=True, text=True, check=True
        ).stdout.splitlines()[-1]
        summary = json.loads(result)
        with open(str(out) + ".csv", newline="") as f:
            log = list(csv.DictReader(f))
        seconds = sum(int(r["tokens"]) / float(r["tokens_per_s"]) for r in log) / len(log)
        lams = [float(r["lambda_eff"]) for r in log]
        print(
            f"{name:<14} {seconds:>7.2f} {summary['tokens_per_s']:>9.0f} {summary['max_rss_mb']:>12.0f} "
            f"{min(lams):>9.3g}..{max(lams):<9.3g}"
        )
        if trainable is None:
            from safetensors.torch import load_file

            trainable = sum(t.numel() for t in load_file(str(out / "adapter_model.safetensors")).values())
    print(f"trainable (LoRA) parameters: {trainable / 1e6:.2f} M = {trainable * 4 / 2**20:.1f} MiB per fp32 copy")


if __name__ == "__main__":
    main()
