"""The trainer's throughput against a bare PyTorch + peft LoRA step of the same shapes.

Both train the same model with the same LoRA (r, α, dropout, target modules), AdamW, bf16
autocast where the CPU has bf16 kernels, on the same micro-batches (the trainer's own seeded
``batch_plan`` over the same training sequences). The bare step is what a minimal script would do:
``model(input_ids, attention_mask, labels)`` with labels on the answer tokens only (logits of every
position), ``loss.backward()``, clip, ``optimizer.step()``. The trainer runs SFT and KD (with a
cached 5-shot teacher) with the default settings, SFT row by row (``pad_limit`` 0), and both with
activation checkpointing on every batch. Each run has its own process (its own peak RSS); the
first ``--warmup`` steps are left out of tokens/s.

    python benchmarks/trainer_vs_bare.py --model results/models/smollm2-135m --task nli

Tokens are the batch's real (unpadded) tokens, as the trainer counts them. Uses the shipped mini
data by default; ``--data ../shared/xtreme-real`` reads the real sample.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import training_data, training_parser

TRAINER = """
import csv, json, resource, sys, torch
from icldistill.train.run import run_training
job = json.load(open(sys.argv[1]))
torch.set_num_threads(job["threads"])
run_training(job["model"], [job["task"]], [job["train"]], [job["teacher"]] if job["teacher"] else [],
             job["out"], job["out"] + ".csv", job["settings"])
rows = list(csv.DictReader(open(job["out"] + ".csv")))[job["warmup"]:]
seconds = sum(int(r["tokens"]) / float(r["tokens_per_s"]) for r in rows)
print(json.dumps({"tokens": sum(int(r["tokens"]) for r in rows), "seconds": seconds,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

BARE = """
import json, resource, sys, time, torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM
from icldistill.models import load_tokenizer
from icldistill.train.run import load_task_data
from icldistill.train.trainer import TrainSettings, batch_plan, collate
job = json.load(open(sys.argv[1]))
torch.set_num_threads(job["threads"])
settings = TrainSettings(**job["settings"])
tokenizer = load_tokenizer(job["model"])
data = load_task_data(tokenizer, job["task"], job["train"], None, None, None)
torch.manual_seed(settings.seed)
model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=torch.float32)
model = get_peft_model(model, LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha,
                       lora_dropout=settings.lora_dropout, target_modules=settings.target_modules,
                       task_type="CAUSAL_LM"))
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
autocast = settings.bf16 and torch.ops.mkldnn._is_mkldnn_bf16_supported()
pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
model.train()
tokens = seconds = 0.0
for step, (_, indices) in enumerate(batch_plan([data], settings)):
    began = time.perf_counter()
    batch = collate([data.examples[i] for i in indices], pad)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[batch["rows"], batch["positions"] + 1] = batch["targets"]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if step >= job["warmup"]:
        tokens += int(batch["attention_mask"].sum())
        seconds += time.perf_counter() - began
print(json.dumps({"tokens": tokens, "seconds": seconds,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = training_parser(__doc__, steps=8)
    parser.add_argument("--warmup", type=int, default=2, help="first steps left out of tokens/s")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="trainer-bench-"))
    files = training_data(args, work)
    rows, teacher = files["rows"], files["teacher"]

    base = {"max_steps": args.steps, "batch_size": args.batch_size, "lr": 1e-3, "warmup_steps": 1}
    base |= {"checkpoint_every": 0, "lora_dropout": 0.05}
    runs = {
        "bare peft step": (BARE, {}, None),
        # the defaults: batched when padding ≤ pad_limit, checkpointing above checkpoint_above_tokens
        "trainer SFT": (TRAINER, {"loss": "ce"}, None),
        "trainer KD": (TRAINER, {"loss": "kd", "lam": 0.5}, teacher),
        # every batch row by row (pad_limit 0), as for ragged batches
        "trainer SFT, rows": (TRAINER, {"loss": "ce", "pad_limit": 0.0, "activation_checkpointing": False}, None),
        # every batch checkpointed (activation_checkpointing: true)
        "trainer SFT, ckpt": (TRAINER, {"loss": "ce", "activation_checkpointing": True}, None),
        "trainer KD, ckpt": (TRAINER, {"loss": "kd", "lam": 0.5, "activation_checkpointing": True}, teacher),
    }
    print(f"task={args.task} steps={args.steps} (first {args.warmup} not timed) batch={args.batch_size} "
          f"K={args.top_k} threads={args.threads}")  # fmt: skip
    print(f"{'run':<19} {'tokens/s':>9} {'÷ bare':>7} {'÷ SFT':>6} {'peak RSS MB':>12}")
    rates: dict[str, float] = {}
    for name, (code, settings, cache) in runs.items():
        out = work / name.replace(" ", "_").replace(",", "")
        job = {
            "model": args.model, "task": args.task, "train": str(rows), "teacher": str(cache) if cache else None,
            "out": str(out), "settings": base | settings, "threads": args.threads, "warmup": args.warmup,
        }  # fmt: skip
        spec = work / f"{out.name}.json"
        spec.write_text(json.dumps(job))
        result = subprocess.run([sys.executable, "-c", code, str(spec)], capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{name} failed:\n{result.stderr[-3000:]}")
        figures = json.loads(result.stdout.splitlines()[-1])
        rates[name] = figures["tokens"] / figures["seconds"]
        sft = rates.get(name.replace("KD", "SFT")) if "KD" in name else None
        print(
            f"{name:<19} {rates[name]:>9.0f} {rates[name] / rates['bare peft step']:>7.2f} "
            f"{(f'{rates[name] / sft:.2f}' if sft else ''):>6} {figures['max_rss_mb']:>12.0f}"
        )


if __name__ == "__main__":
    main()
