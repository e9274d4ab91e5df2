"""Prefix KV reuse: examples/s of zero- and k-shot inference with and without reuse.

Prints, for one task and a set of languages, examples/s for each (shots, reuse) setting, the
k-shot / 0-shot cost ratio with and without reuse, and whether reuse changed any greedy output.

    python benchmarks/prefix_reuse.py --model results/models/smollm2-135m --task ner --langs en de zh

Uses the shipped mini data by default; ``--data ../shared/xtreme-real`` reads the real sample.
"""

from __future__ import annotations

import time

import torch
from common import inference_parser

from icldistill.backends.hf import HFBackend
from icldistill.data import read_local, sample_rows
from icldistill.demos import draw_demonstrations
from icldistill.prompts import build_prompts
from icldistill.tasks import get_task


def main() -> None:
    parser = inference_parser(__doc__)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    backend = HFBackend(args.model, dtype=args.dtype, batch_size=args.batch_size, progress=False)
    pool = read_local(args.data, args.task, "train", "en")
    cells = {}
    for lang in args.langs:
        rows = sample_rows(read_local(args.data, args.task, "test", lang), args.examples, seed=0)
        cells[lang] = (rows, [task.generation_budget(r) for r in rows])

    seconds, outputs, prefix_tokens = {}, {}, {}
    for shots in (0, args.shots):
        for reuse in (True, False):
            backend.reuse_prefix = reuse
            total, outs, n = 0.0, [], 0
            for lang, (rows, budgets) in cells.items():
                prompts = build_prompts(
                    backend.tokenizer, task, rows, draw_demonstrations(pool, task.id, lang, shots, 0)
                )
                prefix_tokens.setdefault(shots, len(backend.encode(prompts)[0]))
                start = time.perf_counter()
                outs += backend.generate(prompts, budgets)
                total += time.perf_counter() - start
                n += len(rows)
            seconds[shots, reuse], outputs[shots, reuse] = total, outs

    print(f"task={args.task} langs={','.join(args.langs)} examples={n} dtype={args.dtype} threads={args.threads}")
    print(
        f"shared prefix tokens: 0-shot {prefix_tokens[0]}, {args.shots}-shot {prefix_tokens[args.shots]} (first language)"
    )
    print(f"{'shots':>5} {'reuse':>5} {'seconds':>8} {'examples/s':>10}")
    for (shots, reuse), s in seconds.items():
        print(f"{shots:>5} {str(reuse):>5} {s:>8.1f} {n / s:>10.2f}")
    for reuse in (True, False):
        print(
            f"{args.shots}-shot / 0-shot cost ratio, reuse={reuse}: {seconds[args.shots, reuse] / seconds[0, reuse]:.2f}"
        )
    print(f"speed-up of reuse at {args.shots}-shot: {seconds[args.shots, False] / seconds[args.shots, True]:.2f}x")
    for shots in (0, args.shots):
        same = sum(a == b for a, b in zip(outputs[shots, True], outputs[shots, False], strict=True))
        print(f"{shots}-shot predictions identical with and without reuse: {same}/{len(outputs[shots, True])}")


if __name__ == "__main__":
    main()
