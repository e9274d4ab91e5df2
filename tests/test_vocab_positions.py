"""Nothing projects a long prompt's every position onto the vocabulary.

At a 262,144-token vocabulary (Gemma-3) the output layer dominates the cost of a forward pass,
and full logits of a 5-shot prompt would be T x V floats. The teacher cache, the trainer and
log-likelihood scoring only need the positions that predict answer tokens: a hook on the output
layer of every model the code loads records how many positions it projected, against the length
of the sequence fed in.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from icldistill.data import read_jsonl
from icldistill.demos import read_demonstrations
from icldistill.teacher import build_teacher_cache
from icldistill.train.run import run_training

from .conftest import training_files


@pytest.fixture
def projected(monkeypatch):
    """(input length, positions projected by the output layer) for every forward pass of
    every model loaded while the test runs; ``grad`` marks the passes that build a graph
    (training steps, not the trainer's one-time check of its answer head)."""
    seen: list[tuple[int, int]] = []
    original = AutoModelForCausalLM.from_pretrained

    def load(*args, **kwargs):
        model = original(*args, **kwargs)
        length = {}
        model.get_input_embeddings().register_forward_hook(lambda m, i, o: length.__setitem__("T", o.shape[1]))

        def projected(module, inputs, output):
            # [B, T', V] from a forward (positions per row), [N, V] from the trainer's answer
            # head (answer tokens of the whole batch)
            n = output.shape[1] if output.dim() == 3 else output.shape[0]
            seen.append((length["T"], n, torch.is_grad_enabled()))

        model.get_output_embeddings().register_forward_hook(projected)
        return model

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", load)
    return seen


@pytest.fixture(scope="module")
def nli_files(tmp_path_factory):
    return training_files(tmp_path_factory.mktemp("nli"), "nli", 5, 12)


def _answer_tokens(tiny_model_dir, rows_file):
    """The longest answer (ids after the prompt) among the rows, as training builds them."""
    from icldistill.models import load_tokenizer
    from icldistill.train.examples import build_sequences

    _, examples = build_sequences(load_tokenizer(tiny_model_dir), "nli", read_jsonl(rows_file))
    return max(len(e.answer_ids) for e in examples)


def test_teacher_cache_projects_only_answer_positions(tiny_model_dir, nli_files, projected, tmp_path):
    rows, demos = nli_files
    settings = {"backend": "hf", "dtype": "float32", "batch_size": 4}
    build_teacher_cache(
        str(tiny_model_dir), "nli", str(rows), str(demos), str(tmp_path / "t.safetensors"), 8, settings, "tiny"
    )
    assert len(read_demonstrations(demos).rows) == 5
    # the 5-shot prefix is encoded once with one projected position; each batch projects its
    # longest answer's positions, plus one (the slice keeps the position after the answer)
    budget = _answer_tokens(tiny_model_dir, rows) + 1
    assert projected and max(p for _, p, _ in projected) <= budget, projected
    assert max(t for t, _, _ in projected) > 10 * budget, projected  # the prompt itself was long


def test_training_projects_only_answer_positions(tiny_model_dir, nli_files, projected, tmp_path):
    rows, _ = nli_files
    settings = {"max_steps": 2, "batch_size": 4, "lr": 1e-3, "warmup_steps": 0, "checkpoint_every": 0}
    out = tmp_path / "adapter"
    run_training(str(tiny_model_dir), ["nli"], [str(rows)], [], str(out), str(out) + ".csv", settings)
    steps = [(t, p) for t, p, grad in projected if grad]
    assert len(steps) == 2, projected
    # at most the 4 rows' answer tokens (each row's own positions; never a prompt position)
    budget = 4 * _answer_tokens(tiny_model_dir, rows)
    assert all(p <= budget < t for t, p in steps), steps


def test_loglik_scoring_projects_only_choice_positions(tiny_model_dir, nli_files, projected):
    from icldistill.backends.hf import HFBackend
    from icldistill.models import load_tokenizer
    from icldistill.prompts import build_prompts
    from icldistill.tasks import get_task

    rows, demos = nli_files
    task = get_task("nli")
    prompts = build_prompts(load_tokenizer(tiny_model_dir), task, read_jsonl(rows)[:4], read_demonstrations(demos))
    backend = HFBackend(tiny_model_dir, dtype="float32", batch_size=6, progress=False)
    scores = backend.loglik(prompts, list(task.labels))
    assert len(scores) == 4 and all(len(s) == len(task.labels) for s in scores)
    budget = _answer_tokens(tiny_model_dir, rows) + 1
    batches = [(t, p) for t, p, _ in projected if t > 1]
    assert batches and all(p <= budget for _, p in batches), batches
