"""Shared fixtures: a tiny randomly initialised Llama with a real (small) BPE tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icldistill.data import prepare_split, read_jsonl, write_jsonl
from icldistill.demos import draw_demonstrations, training_rows, write_demonstrations

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "resources" / "xtreme-mini"
SHARED = ROOT.parent / "shared"

#: one hand-written valid row per task (QA needs an ``id`` added), with known answers
SAMPLE_ROWS = {
    "nli": {"premise": "A man sleeps.", "hypothesis": "A man is awake.", "label": "contradiction"},
    "pa": {"sentence1": "Anna lives in Paris.", "sentence2": "Paris is where Anna lives.", "label": 1},
    "qa": {
        "context": "The river Volga flows into the Caspian Sea.",
        "question": "Where does the Volga flow?",
        "answers": {"text": ["the Caspian Sea"], "answer_start": [27]},
    },
    "ner": {"tokens": ["Anna", "lives", "in", "Paris"], "ner_tags": ["B-PER", "O", "O", "B-LOC"]},
    "pos": {"tokens": ["Anna", "lives", "in", "Paris"], "pos_tags": ["PROPN", "VERB", "ADP", "PROPN"]},
}

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


SCHEMA = ROOT / "config" / "schema" / "config.schema.yaml"


def validated(config: dict) -> dict:
    """``config`` checked against the workflow's schema with its defaults filled in, as the
    workflow reads it (``snakemake.utils.validate``, in place)."""
    from snakemake.utils import validate

    validate(config, str(SCHEMA))
    return config


def _corpus():
    for path in sorted(MINI.glob("*/*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            yield " ".join(
                str(v) if not isinstance(v, (list, dict)) else json.dumps(v, ensure_ascii=False) for v in row.values()
            )


def build_tiny_model(
    out: Path, vocab_size: int = 2000, seed: int = 0, hidden_size: int = 32, num_attention_heads: int = 4
) -> Path:
    """A randomly initialised 2-layer Llama and a BPE tokenizer trained on the mini data,
    with a ChatML chat template: a few MB, built in about a second. (vLLM's CPU attention
    needs a head size of at least 32: ``hidden_size=64, num_attention_heads=2``.)"""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHATML
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=max(1, num_attention_heads // 2),
        max_position_embeddings=4096,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = fast.eos_token_id
    model.generation_config.pad_token_id = fast.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


def small_grid_config(model_dir: Path, max_examples: int, max_new_tokens: dict, **sections) -> dict:
    """A 2-task x 2-language grid of Base, Few-Shot, Fine-Tuned and Distilled on a tiny model
    (the vLLM and SLURM tiers); ``sections`` add or replace top-level keys."""
    return {
        "models": {"tiny": {"display_name": "Tiny-Llama", "path": str(model_dir), "dtype": "float32"}},
        "tasks": ["nli", "ner"],
        "languages": ["en", "de"],
        "conditions": {
            "base": {"kind": "infer", "few_shot": False},
            "fewshot": {"kind": "infer", "few_shot": True},
            "finetuned": {"kind": "train", "loss": "ce"},
            "distilled": {"kind": "train", "loss": "kd", "teacher_few_shot": True, "lambda": 0.5},
        },
        "data": {"source": "local", "path": str(MINI)},
        "eval": {"split": "test", "max_examples": max_examples, "seed": 1},
        "few_shot": {"k": 2, "seed": 1},
        "generation": {"backend": "hf", "batch_size": 4, "max_new_tokens": max_new_tokens},
        "training": {"max_steps": 2, "batch_size": 4, "max_examples": 8, "checkpoint_every": 1},
        "teacher": {"top_k": 8},
    } | sections


def training_files(directory: Path, task: str, shots: int, cap: int) -> tuple[Path, Path]:
    """The workflow's data stage for one task: English train split, its English demonstrations
    and the training rows without them (``rows``, ``demos`` files)."""
    split = directory / f"{task}.train.en.jsonl"
    prepare_split({"source": "local", "path": str(MINI)}, task, "train", "en", None, 1, split, directory / "m.json")
    pool = read_jsonl(split)
    demos = draw_demonstrations(pool, task, "en", shots, seed=1)
    write_demonstrations(directory / f"{task}.demos.json", demos)
    write_jsonl(directory / f"{task}.rows.jsonl", training_rows(pool, demos.held_out, 1, task, cap))
    return directory / f"{task}.rows.jsonl", directory / f"{task}.demos.json"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED
