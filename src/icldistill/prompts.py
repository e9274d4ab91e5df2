"""Zero- and k-shot prompts built with the model's own chat template.

Every prompt of a cell is ``prefix + suffix``: the prefix (system message and
demonstrations) is shared by all prompts of the cell, so the backends encode it once and
reuse its KV cache. Prefix and suffix are tokenised separately and concatenated, so the
prefix ids are an exact prefix of every prompt's ids.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from .data import stable_seed
from .tasks import Row, Task


@dataclass
class PromptSet:
    """The prompts of one cell: a shared prefix and one suffix per example."""

    prefix: str
    suffixes: list[str]
    ids: list[str]
    #: per-example demonstration ids (all equal unless demonstrations are resampled)
    demonstrations: list[list[str]] = field(default_factory=list)
    chat_template: bool = True

    def to_json(self, meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "meta": meta | {"chat_template": self.chat_template},
            "prefix": self.prefix,
            "examples": [
                {"id": i, "suffix": s, "demonstrations": d}
                for i, s, d in zip(self.ids, self.suffixes, self.demonstrations, strict=True)
            ],
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> PromptSet:
        ex = obj["examples"]
        return cls(
            prefix=obj["prefix"],
            suffixes=[e["suffix"] for e in ex],
            ids=[e["id"] for e in ex],
            demonstrations=[e["demonstrations"] for e in ex],
            chat_template=obj["meta"].get("chat_template", True),
        )


def encode_prompts(tokenizer: Any, prompts: PromptSet) -> tuple[list[int], list[list[int]]]:
    """Prefix ids and suffix ids, tokenised separately, so the prefix ids are an exact prefix
    of every prompt's ids. Chat templates carry their own special tokens; plain-text prompts
    get the tokenizer's (e.g. BOS) at their start."""
    if prompts.prefix:
        prefix = tokenizer(prompts.prefix, add_special_tokens=not prompts.chat_template).input_ids
        suffixes = [tokenizer(s, add_special_tokens=False).input_ids for s in prompts.suffixes]
        return prefix, suffixes
    add = not prompts.chat_template
    return [], [tokenizer(s, add_special_tokens=add).input_ids for s in prompts.suffixes]


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """Token ids that close an assistant turn (``<|im_end|>``, ``<|eot_id|>``, …), read off the
    chat template; the EOS token for models without one. Training targets end with them so
    that trained models stop after their answer."""
    if getattr(tokenizer, "chat_template", None) is None:
        return [tokenizer.eos_token_id]
    marker = "XQZANSWERXQZ"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}], tokenize=False
    )
    tail = text[text.index(marker) + len(marker) :].rstrip()
    ids = tokenizer(tail, add_special_tokens=False).input_ids if tail else []
    special = set(tokenizer.all_special_ids)
    ids = [i for i in ids[:1] if i in special]
    return ids or [tokenizer.eos_token_id]


def sample_demonstrations(pool: list[Row], k: int, seed: int, exclude_id: str | None = None) -> list[Row]:
    """``k`` demonstrations drawn with ``seed`` from ``pool`` (never the example itself)."""
    candidates = [r for r in pool if r["id"] != exclude_id]
    if k > len(candidates):
        raise ValueError(f"{k} demonstrations requested but the pool has {len(candidates)} rows")
    return random.Random(seed).sample(candidates, k)


def _messages(task: Task, demos: list[Row]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": task.instruction}]
    for demo in demos:
        messages.append({"role": "user", "content": task.user_message(demo)})
        messages.append({"role": "assistant", "content": task.answer(demo)})
    return messages


def _split_chat(tokenizer: Any, task: Task, demos: list[Row], row: Row) -> tuple[str, str]:
    """(prefix, suffix) of the chat-templated prompt; prefix is empty when the template
    does not render the demonstrations as a prefix of the full prompt."""
    head = _messages(task, demos)
    full = tokenizer.apply_chat_template(
        head + [{"role": "user", "content": task.user_message(row)}], tokenize=False, add_generation_prompt=True
    )
    prefix = tokenizer.apply_chat_template(head, tokenize=False)
    if not full.startswith(prefix):
        return "", full
    return prefix, full[len(prefix) :]


def _split_plain(task: Task, demos: list[Row], row: Row) -> tuple[str, str]:
    prefix = task.instruction + "\n\n" + "".join(f"{task.user_message(d)} {task.answer(d)}\n\n" for d in demos)
    return prefix, task.user_message(row)


def build_prompts(
    tokenizer: Any,
    task: Task,
    rows: list[Row],
    pool: list[Row],
    k: int,
    seed: int,
    lang: str,
    resample: bool = False,
) -> PromptSet:
    """Prompts of one cell. Demonstrations come from ``pool`` (seeded once per (task,
    language), or per example with ``resample``); the chat template is the tokenizer's own,
    with a plain-text layout for models that have none."""
    chat = getattr(tokenizer, "chat_template", None) is not None
    cell_demos = sample_demonstrations(pool, k, stable_seed(seed, task.id, lang)) if k and not resample else []
    prefixes, suffixes, demo_ids = [], [], []
    for row in rows:
        demos = cell_demos
        if k and resample:
            demos = sample_demonstrations(pool, k, stable_seed(seed, task.id, lang, row["id"]), exclude_id=row["id"])
        prefix, suffix = _split_chat(tokenizer, task, demos, row) if chat else _split_plain(task, demos, row)
        prefixes.append(prefix)
        suffixes.append(suffix)
        demo_ids.append([d["id"] for d in demos])
    shared = prefixes[0] if prefixes and all(p == prefixes[0] for p in prefixes) else ""
    if not shared and rows:
        # resampled demonstrations: only the system message is shared, at a message boundary
        system = _split_chat(tokenizer, task, [], rows[0])[0] if chat else _split_plain(task, [], rows[0])[0]
        shared = system if all(p.startswith(system) for p in prefixes) else ""
    suffixes = [p[len(shared) :] + s for p, s in zip(prefixes, suffixes, strict=True)]
    return PromptSet(
        prefix=shared, suffixes=suffixes, ids=[r["id"] for r in rows], demonstrations=demo_ids, chat_template=chat
    )


def write_prompt_files(
    model_path: str,
    task_id: str,
    languages: list[str],
    data_files: list[str],
    pool_files: list[str],
    out_files: list[str],
    k: int,
    seed: int,
    resample: bool = False,
    trust_remote_code: bool = False,
) -> None:
    """Write the prompt file of every language of one (model, task, shots).

    ``pool_files`` holds one demonstration pool per language (the same English train file
    for every language by default), or is empty for zero-shot prompts.
    """
    from .data import read_jsonl, write_json
    from .models import load_tokenizer
    from .tasks import get_task

    tokenizer = load_tokenizer(model_path, trust_remote_code)
    task = get_task(task_id)
    pools = pool_files or [None] * len(languages)
    for lang, data_file, pool_file, out_file in zip(languages, data_files, pools, out_files, strict=True):
        rows = read_jsonl(data_file)
        pool = read_jsonl(pool_file) if pool_file else []
        prompts = build_prompts(tokenizer, task, rows, pool, k, seed, lang, resample)
        meta = {"task": task_id, "language": lang, "shots": k, "seed": seed, "resample": resample, "pool": pool_file}
        write_json(out_file, prompts.to_json(meta))
