"""This project's evaluation against lm-evaluation-harness on the same model, rows and prompts.

For each task and shot count, the prompts are built once by this project (``build_prompts``: the
model's chat template, the k English demonstrations as earlier turns) and evaluated twice:

- here, with ``icldistill.inference.predict_cell`` (what the workflow's inference job runs: the
  prompts' shared prefix encoded once and its KV cache reused; log-likelihood of the label words
  for NLI and PA, greedy generation for QA);
- by ``lm_eval`` (its ``HFLM``), from a task config written to a scratch folder that reads the
  same prompt text from a local JSON file (``doc_to_text``: the whole prompt, demonstrations
  included, so ``num_fewshot`` is 0 there), the same label words as choices (``target_delimiter``
  "" as the label follows the assistant header directly) or ``generate_until`` with the same
  budget. lm-eval runs in its own virtual environment (``--lm-eval-python``; not a dependency of
  this project), in a subprocess that loads the model once and times each task's evaluation.

Both sides: fp32 by default, the same batch size and threads, model loading not timed. Prints per
(task, shots): examples/s of each, the ratio, how many predictions agree, and each side's score
(accuracy; QA: F1 / exact match by this project's MLQA metric for both sides' outputs).

    python -m venv /tmp/lm-eval && /tmp/lm-eval/bin/pip install torch==2.13.0 lm_eval==0.4.13 accelerate
    python benchmarks/lm_eval_side_by_side.py --model results/models/smollm2-135m \\
        --lm-eval-python /tmp/lm-eval/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from icldistill.backends.base import choice_text
from icldistill.backends.hf import HFBackend
from icldistill.data import read_local, sample_rows
from icldistill.demos import draw_demonstrations
from icldistill.inference import predict_cell
from icldistill.metrics import score
from icldistill.prompts import build_prompts, end_of_turn_ids
from icldistill.tasks import get_task

LOGLIK_TASKS = ("nli", "pa")

LM_EVAL = r"""
import json, sys, time, torch
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
job = json.load(open(sys.argv[1]))
torch.set_num_threads(job["threads"])
lm = HFLM(pretrained=job["model"], dtype=job["dtype"], batch_size=job["batch_size"], device="cpu")
manager = TaskManager(include_path=job["include"])
out = {}
for name in job["tasks"]:
    began = time.perf_counter()
    result = simple_evaluate(model=lm, tasks=[name], task_manager=manager, num_fewshot=0, log_samples=True,
                             bootstrap_iters=0)
    seconds = time.perf_counter() - began
    samples = sorted(result["samples"][name], key=lambda s: s["doc_id"])
    out[name] = {"seconds": seconds, "responses": [s["filtered_resps"] for s in samples]}
print(json.dumps(out))
"""


def lm_eval_config(name: str, data_file: Path, task_id: str, budget: int, until: list[str]) -> str:
    head = (
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data_file}\n"
        "test_split: test\ndoc_to_text: '{{text}}'\n"
    )
    if task_id in LOGLIK_TASKS:
        return head + (
            "output_type: multiple_choice\ndoc_to_choice: '{{choices}}'\ndoc_to_target: '{{gold}}'\n"
            "target_delimiter: ''\nmetric_list:\n  - metric: acc\n"
        )
    return head + (
        "output_type: generate_until\ndoc_to_target: '{{gold}}'\ntarget_delimiter: ''\n"
        f"generation_kwargs:\n  until: {json.dumps(until)}\n  max_gen_toks: {budget}\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Hugging Face folder")
    parser.add_argument("--lm-eval-python", required=True, help="python of a venv with lm_eval installed")
    parser.add_argument("--tasks", nargs="+", default=["nli", "pa", "qa"])
    parser.add_argument("--shots", nargs="+", type=int, default=[0, 5])
    parser.add_argument("--lang", default="de", help="the test language (demonstrations are English)")
    parser.add_argument("--data", default="resources/xtreme-mini")
    parser.add_argument("--examples", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    backend = HFBackend(args.model, dtype=args.dtype, batch_size=args.batch_size, progress=False)
    work = Path(tempfile.mkdtemp(prefix="lm-eval-bench-"))
    ours: dict[str, dict] = {}
    names = []
    for task_id in args.tasks:
        task = get_task(task_id)
        rows = sample_rows(read_local(args.data, task_id, "test", args.lang), args.examples, seed=0)
        pool = read_local(args.data, task_id, "train", "en")
        for shots in args.shots:
            name = f"icl_{task_id}_{shots}shot"
            names.append(name)
            prompts = build_prompts(backend.tokenizer, task, rows, draw_demonstrations(pool, task_id, "en", shots, 0))
            settings = {"scoring": "loglik"} if task_id in LOGLIK_TASKS else {}
            began = time.perf_counter()
            predictions = [p["output"] for p in predict_cell(backend, task_id, prompts, rows, settings)]
            seconds = time.perf_counter() - began
            budget = max(task.generation_budget(r) for r in rows)
            until = [backend.tokenizer.decode(end_of_turn_ids(backend.tokenizer))]
            docs = []
            for row, suffix in zip(rows, prompts.suffixes, strict=True):
                doc = {"text": prompts.prefix + suffix}
                if task_id in LOGLIK_TASKS:
                    labels = list(task.choices())
                    doc |= {"choices": [choice_text(c, prompts.chat_template) for c in labels],
                            "gold": labels.index(task.gold_label(row))}  # fmt: skip
                else:
                    doc["gold"] = task.answer(row)
                docs.append(doc)
            data_file = work / f"{name}.jsonl"
            data_file.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
            (work / f"{name}.yaml").write_text(lm_eval_config(name, data_file, task_id, budget, until))
            ours[name] = {"task": task, "rows": rows, "predictions": predictions, "seconds": seconds}

    job = work / "job.json"
    job.write_text(json.dumps({"model": args.model, "dtype": args.dtype, "batch_size": args.batch_size,
                               "threads": args.threads, "include": str(work), "tasks": names}))  # fmt: skip
    result = subprocess.run([args.lm_eval_python, "-c", LM_EVAL, str(job)], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"lm_eval failed:\n{result.stderr[-4000:]}")
    theirs = json.loads(result.stdout.splitlines()[-1])

    print(f"model={args.model} lang={args.lang} examples={args.examples} dtype={args.dtype} "
          f"batch={args.batch_size} threads={args.threads}")  # fmt: skip
    print(f"{'task':<16} {'ours ex/s':>9} {'lm-eval ex/s':>12} {'ratio':>6} {'agree':>7}  {'score ours / lm-eval':>22}")
    for name in names:
        mine, other = ours[name], theirs[name]
        task, rows = mine["task"], mine["rows"]
        if task.id in LOGLIK_TASKS:
            labels = list(task.choices())
            their_predictions = [
                labels[max(range(len(r)), key=lambda j, r=r: float(r[j][0]))] for r in other["responses"]
            ]
        else:
            their_predictions = [r[0] if isinstance(r, list) else r for r in other["responses"]]
        agree = sum(a.strip() == b.strip() for a, b in zip(mine["predictions"], their_predictions, strict=True))
        a, b = score(task.id, args.lang, mine["predictions"], rows), score(task.id, args.lang, their_predictions, rows)
        key = "f1" if task.id == "qa" else "accuracy"
        n = len(rows)
        print(
            f"{name:<16} {n / mine['seconds']:>9.2f} {n / other['seconds']:>12.2f} "
            f"{other['seconds'] / mine['seconds']:>6.2f} {agree:>3}/{n:<3}  {a[key]:>10.3f} / {b[key]:<10.3f}"
        )


if __name__ == "__main__":
    main()
