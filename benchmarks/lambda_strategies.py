"""Cost of the λ strategies: seconds per step, tokens/s and peak memory of each, against fixed λ.

Builds one teacher cache (``--shots``-shot, top-``--top-k``) for ``--task`` from the English training
split, then trains each strategy for ``--steps`` steps in its own process (so each peak RSS is its
own) and prints a table: s/step, tokens/s, peak RSS, the λ_eff trace's range, and the trainable
parameter count (the unit of the extra gradient buffers of grad_conflict and meta).

    python benchmarks/lambda_strategies.py --model results/models/smollm2-135m --task nli

Uses the shipped mini data by default; ``--data ../shared/xtreme-real`` reads the real sample.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import training_data, training_parser

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
    args = training_parser(__doc__, steps=6).parse_args()
    work = Path(tempfile.mkdtemp(prefix="lambda-bench-"))
    files = training_data(args, work)
    teacher = files["teacher"]

    base = {
        "max_steps": args.steps,
        "batch_size": args.batch_size,
        "lr": 1e-3,
        "warmup_steps": 1,
        "checkpoint_every": 0,
    }
    runs = {"ce (SFT)": {"loss": "ce"}, "fixed λ 0.5": {"loss": "kd", "lam": 0.5}}
    for name, declared in STRATEGIES.items():
        params = {"lambdas": {args.task: 1.0}} if name == "task_prior" else dict(declared.defaults)
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
