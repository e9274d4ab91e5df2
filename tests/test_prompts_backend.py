"""Prompt building (chat template, shared prefix, seeded demonstrations) and the HF backend's
prefix KV reuse, on a tiny random Llama: reuse must not change a single greedy token."""

from __future__ import annotations

import json

import pytest

from icldistill.data import read_local
from icldistill.demos import draw_demonstrations, read_demonstrations, write_demonstrations
from icldistill.models import load_tokenizer
from icldistill.prompts import PromptSet, build_prompts, write_prompt_files
from icldistill.tasks import get_task

from .conftest import MINI


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def test_tokenizer_is_left_padded_after_reload(tokenizer):
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None


@pytest.mark.parametrize("task_id", ["nli", "qa", "ner"])
def test_few_shot_prompts_share_one_prefix_with_demonstrations(tokenizer, task_id):
    task = get_task(task_id)
    rows = read_local(MINI, task_id, "test", "de")[:4]
    pool = read_local(MINI, task_id, "train", "en")
    prompts = build_prompts(tokenizer, task, rows, draw_demonstrations(pool, task.id, "de", 3, 5))
    assert prompts.prefix.startswith("<|im_start|>system\n" + task.instruction)
    assert prompts.prefix.count("<|im_start|>assistant\n") == 3
    assert len({tuple(d) for d in prompts.demonstrations}) == 1 and len(prompts.demonstrations[0]) == 3
    for row, suffix in zip(rows, prompts.suffixes, strict=True):
        full = tokenizer.apply_chat_template(
            [{"role": "system", "content": task.instruction}]
            + [m for d in prompts.demonstrations[0] for m in _demo_messages(task, pool, d)]
            + [{"role": "user", "content": task.user_message(row)}],
            tokenize=False,
            add_generation_prompt=True,
        )
        assert prompts.prefix + suffix == full
        assert suffix.endswith("<|im_start|>assistant\n")
    again = build_prompts(tokenizer, task, rows, draw_demonstrations(pool, task.id, "de", 3, 5))
    assert again.prefix == prompts.prefix
    assert build_prompts(tokenizer, task, rows, draw_demonstrations(pool, task.id, "de", 3, 6)).prefix != prompts.prefix


def _demo_messages(task, pool, demo_id):
    row = next(r for r in pool if r["id"] == demo_id)
    return [{"role": "user", "content": task.user_message(row)}, {"role": "assistant", "content": task.answer(row)}]


def test_zero_shot_prefix_is_the_system_message(tokenizer):
    task = get_task("pos")
    rows = read_local(MINI, "pos", "test", "zh")[:2]
    prompts = build_prompts(tokenizer, task, rows, draw_demonstrations([], task.id, "zh", 0, 1))
    assert prompts.prefix == f"<|im_start|>system\n{task.instruction}<|im_end|>\n"
    assert prompts.demonstrations == [[], []]


def test_resampled_demonstrations_differ_per_example_and_share_the_system_prefix(tokenizer):
    task = get_task("nli")
    rows = read_local(MINI, "nli", "test", "en")[:6]
    pool = read_local(MINI, "nli", "train", "en")
    prompts = build_prompts(tokenizer, task, rows, draw_demonstrations(pool, task.id, "en", 2, 1, resample=True))
    assert len({tuple(d) for d in prompts.demonstrations}) > 1
    assert prompts.prefix == f"<|im_start|>system\n{task.instruction}<|im_end|>\n"


def test_plain_text_fallback_without_chat_template(tokenizer):
    tokenizer = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tokenizer.chat_template = None
    task = get_task("nli")
    rows = read_local(MINI, "nli", "test", "en")[:2]
    pool = read_local(MINI, "nli", "train", "en")
    prompts = build_prompts(tokenizer, task, rows, draw_demonstrations(pool, task.id, "en", 2, 1))
    assert not prompts.chat_template
    assert prompts.prefix.startswith(task.instruction) and prompts.suffixes[0] == task.user_message(rows[0])


def test_prompt_file_round_trip(tiny_model_dir, tmp_path):
    data_file = MINI / "qa" / "test.hi.jsonl"
    demos_file = tmp_path / "demos.json"
    write_demonstrations(demos_file, draw_demonstrations(read_local(MINI, "qa", "train", "en"), "qa", "hi", 2, 3))
    out = tmp_path / "hi.json"
    write_prompt_files(str(tiny_model_dir), "qa", ["hi"], [str(data_file)], [str(demos_file)], [str(out)])
    obj = json.loads(out.read_text(encoding="utf-8"))
    assert obj["meta"]["shots"] == 2 and obj["meta"]["language"] == "hi"
    assert obj["meta"]["demonstrations"] == str(demos_file)
    prompts = PromptSet.from_json(obj)
    assert len(prompts.suffixes) == len(prompts.ids) >= 24
    assert prompts.demonstrations[0] == [d["id"] for d in read_demonstrations(demos_file).rows]


# -- backend ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    import torch

    from icldistill.backends.hf import HFBackend

    torch.manual_seed(0)
    return HFBackend(tiny_model_dir, dtype="float32", batch_size=5, progress=False)


@pytest.mark.parametrize(("task_id", "k"), [("ner", 5), ("qa", 2), ("nli", 0)])
def test_prefix_reuse_gives_identical_greedy_outputs(backend, tokenizer, task_id, k):
    task = get_task(task_id)
    rows = read_local(MINI, task_id, "test", "es")[:7]
    pool = read_local(MINI, task_id, "train", "en")
    prompts = build_prompts(tokenizer, task, rows, draw_demonstrations(pool, task.id, "es", k, 2))
    budgets = [12] * len(rows)
    backend.reuse_prefix = True
    with_reuse = backend.generate(prompts, budgets)
    backend.reuse_prefix = False
    without = backend.generate(prompts, budgets)
    assert with_reuse == without
    assert all(isinstance(o, str) for o in with_reuse)


def test_prefix_ids_are_an_exact_prefix_of_every_prompt(backend, tokenizer):
    """Prefix and suffixes are tokenised apart and concatenated; the result must be the ids of
    the whole prompt text, so that reusing the prefix's KV cache changes nothing."""
    task = get_task("pa")
    rows = read_local(MINI, "pa", "test", "fr")[:3]
    pool = read_local(MINI, "pa", "train", "en")
    prompts = build_prompts(tokenizer, task, rows, draw_demonstrations(pool, task.id, "fr", 2, 2))
    prefix, suffixes = backend.encode(prompts)
    assert prefix == tokenizer(prompts.prefix, add_special_tokens=False).input_ids
    assert len(prefix) > 50 and all(suffixes)
    for suffix_text, suffix in zip(prompts.suffixes, suffixes, strict=True):
        whole = tokenizer(prompts.prefix + suffix_text, add_special_tokens=False).input_ids
        assert prefix + suffix == whole


def test_loglik_with_and_without_reuse_agree(backend, tokenizer):
    task = get_task("nli")
    rows = read_local(MINI, "nli", "test", "fr")[:4]
    prompts = build_prompts(
        tokenizer, task, rows, draw_demonstrations(read_local(MINI, "nli", "train", "en"), task.id, "fr", 2, 2)
    )
    backend.reuse_prefix = True
    a = backend.loglik(prompts, list(task.choices()))
    backend.reuse_prefix = False
    b = backend.loglik(prompts, list(task.choices()))
    assert len(a) == 4 and all(len(r) == 3 for r in a)
    assert all(x < 0 for r in a for x in r)
    assert [x for r in a for x in r] == pytest.approx([x for r in b for x in r], abs=1e-4)


def test_cut_at_stop_takes_the_earliest_stop_string():
    from icldistill.backends.base import cut_at_stop

    assert cut_at_stop("B-PER O\nnext", ["\n"]) == "B-PER O"
    assert cut_at_stop("a;b\nc", ["\n", ";"]) == "a"
    assert cut_at_stop("no stop here", ["###"]) == "no stop here"
    assert cut_at_stop("text", None) == "text"
    assert cut_at_stop("###", ["###"]) == ""


def test_generation_stops_at_a_stop_string(backend, tokenizer):
    task = get_task("qa")
    rows = read_local(MINI, "qa", "test", "de")[:4]
    prompts = build_prompts(
        tokenizer, task, rows, draw_demonstrations(read_local(MINI, "qa", "train", "en"), task.id, "de", 0, 2)
    )
    free = backend.generate(prompts, [16] * 4)
    # stop at a piece of text the model really generates
    stop = next(o[len(o) // 2 : len(o) // 2 + 2] for o in free if len(o) >= 4)
    cut = backend.generate(prompts, [16] * 4, stop=[stop])
    for full, short in zip(free, cut, strict=True):
        assert stop not in short
        assert full.startswith(short)
        assert short == (full[: full.index(stop)] if stop in full else full)
    assert sum(map(len, cut)) < sum(map(len, free))


def test_a_row_stops_once_its_output_is_settled_and_cuts_to_the_same_text(backend, tokenizer):
    """``settled`` only saves time: each row stops once its own predicate holds (here: its
    output has 3 + 4·i characters; a tagger's is "n complete words, one a tag"), and the
    outputs cut to their settled prefix equal those of a generation that ran to the budget.
    Fewer decoding steps run."""
    task = get_task("qa")
    rows = read_local(MINI, "qa", "test", "de")[:5]
    prompts = build_prompts(
        tokenizer, task, rows, draw_demonstrations(read_local(MINI, "qa", "train", "en"), task.id, "de", 0, 2)
    )

    def first(n):
        return lambda text: text[:n] if len(text) >= n else None

    settled = [first(3 + 4 * i) for i in range(5)]
    steps = []
    hook = backend.model.register_forward_hook(lambda *_: steps.append(1))
    try:
        free = backend.generate(prompts, [40] * 5)
        n_free = len(steps)
        early = backend.generate(prompts, [40] * 5, settled=settled)
        n_early = len(steps) - n_free
    finally:
        hook.remove()
    assert all(len(o) > 3 + 4 * 4 for o in free), "the tiny model's outputs are too short to stop early"
    assert [d(o) for d, o in zip(settled, early, strict=True)] == [d(o) for d, o in zip(settled, free, strict=True)]
    assert [len(o) for o in early] != [len(o) for o in free]
    assert n_early < n_free


def test_a_tagger_output_is_settled_at_its_n_th_complete_word_with_a_tag():
    pos = get_task("pos")
    row = {"tokens": ["Das", "Haus", "."], "pos_tags": ["DET", "NOUN", "PUNCT"]}
    assert pos.settled("DET NOUN PUNCT NOUN VERB", row) == "DET NOUN PUNCT"
    assert pos.settled("DET NOUN PUNCT", row) is None  # the third word may still grow ("PUNCTX")
    assert pos.settled("DET NOUN PUNCT ", row) == "DET NOUN PUNCT"
    # no tag among the first three words: a later tag still makes the output parse
    assert pos.settled("la la la NOUN ", row) is None
    assert pos.parse("la la la NOUN", row) is not None and pos.parse("la la la", row) is None
    # the settled prefix parses as the whole output does
    looping = "DET  NOUN\nPUNCT NOUN NOUN NOUN NOUN"
    assert pos.parse(pos.settled(looping, row), row) == pos.parse(looping, row) == ["DET", "NOUN", "PUNCT"]
    # a think block counts for nothing, and the prefix keeps it
    assert pos.settled("<think>a b c d</think> DET NOUN PUNCT X", row) == "<think>a b c d</think> DET NOUN PUNCT"
    assert pos.settled("<think>DET NOUN PUNCT X ", row) is None
    ner = get_task("ner")
    assert ner.settled("B-PER I-PER O O O", {"tokens": ["a", "b"], "ner_tags": ["O", "O"]}) == "B-PER I-PER"
    assert get_task("qa").settled("Berlin is the answer ", {"question": "q"}) is None


# -- trained adapters at full precision -----------------------------------------------------------
@pytest.fixture(scope="module")
def small_adapter(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter with small random updates, the size a few training steps give."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 2e-4)
    out = tmp_path_factory.mktemp("adapter") / "adapter"
    peft_model.save_pretrained(out)
    return out


def _answer_logits(backend, prompts):
    prefix, suffixes = backend.encode(prompts)
    return {i: logits for i, logits in backend.continuation_logits(prefix, suffixes, [1] * len(suffixes))}


def test_adapters_are_evaluated_unmerged_and_match_the_fp32_merge(tiny_model_dir, tokenizer, small_adapter, tmp_path):
    """The HF backend applies the adapter unmerged (PEFT keeps it in fp32 next to bf16 weights);
    in fp32 its logits equal those of the model merged in fp32 (the vLLM path, models.merge_adapter).
    In bf16 the unmerged path keeps the fine-tuning shift of the logits; merging into bf16
    weights rounds most of the update away."""
    import torch

    from icldistill.backends.hf import HFBackend
    from icldistill.models import merge_adapter

    task = get_task("nli")
    prompts = build_prompts(tokenizer, task, read_local(MINI, "nli", "test", "de")[:4])
    merged_dir = merge_adapter(tiny_model_dir, small_adapter, tmp_path / "merged")
    unmerged = _answer_logits(HFBackend(tiny_model_dir, "float32", adapter=small_adapter, progress=False), prompts)
    merged = _answer_logits(HFBackend(merged_dir, "float32", progress=False), prompts)
    base = _answer_logits(HFBackend(tiny_model_dir, "float32", progress=False), prompts)
    # the adapter moves the logits by far more than the tolerance below (3.8e-4 here)
    assert max(float((unmerged[i] - base[i]).abs().max()) for i in base) > 1e-4
    for i in unmerged:
        torch.testing.assert_close(unmerged[i], merged[i], atol=1e-6, rtol=1e-5)

    # in bf16 the backend keeps the adapter in fp32, unmerged
    bf16 = HFBackend(tiny_model_dir, "bfloat16", adapter=small_adapter, progress=False)
    lora = [p for n, p in bf16.model.named_parameters() if "lora_" in n]
    assert lora and all(p.dtype == torch.float32 for p in lora)
    # the fp32 merge keeps every entry of the update; a merge into bf16 weights rounds many away
    name = "model.layers.0.self_attn.q_proj.weight"
    base = _weights(tiny_model_dir)[name]
    kept = (_weights(merged_dir)[name] != base).float().mean().item()
    rounded = (
        _weights(_merged_in_bf16(tiny_model_dir, small_adapter, tmp_path))[name].float() != base.bfloat16().float()
    )
    assert kept > 0.99 and rounded.float().mean().item() < 0.9 * kept


def test_the_output_layer_of_a_frozen_adapted_model_reads_contiguous_rows(tiny_model_dir, tokenizer, small_adapter):
    """transformers hands the output layer a strided view (``hidden[:, -k:, :]``); with PEFT's
    frozen base weights, torch's CPU bf16 ``linear`` runs such a view through a ``bmm`` that
    copies the weight once per row (34 s instead of 0.06 s per 16-row step at Gemma-3's 262k
    vocabulary). The backend makes the input contiguous, in generation and in scoring, with
    the greedy outputs unchanged."""
    from icldistill.backends.hf import HFBackend

    task = get_task("nli")
    prompts = build_prompts(tokenizer, task, read_local(MINI, "nli", "test", "de")[:4])
    backend = HFBackend(tiny_model_dir, "bfloat16", adapter=small_adapter, progress=False)
    head = backend.model.get_output_embeddings()
    assert not head.weight.requires_grad  # the case that takes the slow kernel
    seen = []
    head.register_forward_hook(lambda module, args, out: seen.append(args[0].is_contiguous()))
    outputs = backend.generate(prompts, [4] * 4)
    _answer_logits(backend, prompts)
    assert seen and all(seen), seen
    # the hook changes the layout of the input, not the result
    unhooked = HFBackend(tiny_model_dir, "bfloat16", adapter=small_adapter, progress=False)
    unhooked.model.get_output_embeddings()._forward_pre_hooks.clear()
    assert unhooked.generate(prompts, [4] * 4) == outputs


def _weights(model_dir):
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def _merged_in_bf16(model_dir, adapter, tmp_path):
    """What merging did before: adapter merged into bf16 weights."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(tmp_path / "bf16-merged")
    load_tokenizer(model_dir).save_pretrained(tmp_path / "bf16-merged")
    return tmp_path / "bf16-merged"


# -- label scoring ----------------------------------------------------------------------------------
class _FixedScores:
    """A backend stub returning given label log-likelihoods."""

    def __init__(self, scores):
        self.scores = scores

    def loglik(self, prompts, choices):
        return [list(self.scores) for _ in prompts.ids]


def _label_prompts(chat: bool) -> PromptSet:
    return PromptSet(prefix="p", suffixes=["a", "b"], ids=["x1", "x2"], demonstrations=[[], []], chat_template=chat)


def test_loglik_norm_divides_by_the_label_length_in_characters():
    from icldistill.inference import predict_cell

    rows = [{"id": "x1"}, {"id": "x2"}]
    # entailment / neutral / contradiction: 10 / 7 / 13 characters (11 / 8 / 14 after the space
    # the plain-text layout puts before an answer)
    scores = [-20.0, -15.0, -22.0]
    summed = predict_cell(_FixedScores(scores), "nli", _label_prompts(True), rows, {"scoring": "loglik"})
    assert [p["output"] for p in summed] == ["neutral", "neutral"]
    normed = predict_cell(_FixedScores(scores), "nli", _label_prompts(True), rows, {"scoring": "loglik_norm"})
    assert normed[0]["output"] == "contradiction"
    assert normed[0]["scores"] == pytest.approx([-2.0, -15 / 7, -22 / 13])
    plain = predict_cell(_FixedScores(scores), "nli", _label_prompts(False), rows, {"scoring": "loglik_norm"})
    assert plain[0]["scores"] == pytest.approx([-20 / 11, -15 / 8, -22 / 14])


def test_a_nan_label_score_is_an_error_naming_the_example():
    from icldistill.inference import predict_cell

    rows = [{"id": "x1"}, {"id": "x2"}]
    with pytest.raises(ValueError, match="nli example x1: label log-likelihoods are not finite"):
        predict_cell(_FixedScores([-1.0, float("nan"), -3.0]), "nli", _label_prompts(True), rows, {"scoring": "loglik"})
