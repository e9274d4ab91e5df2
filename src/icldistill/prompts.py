"""Zero- and k-shot prompts built with the model's own chat template.

Every prompt of a cell is ``prefix + suffix``: the prefix (system message and
demonstrations) is shared by all prompts of the cell, so the backends encode it once and
reuse its KV cache. Prefix and suffix are tokenised separately and concatenated, so the
prefix ids are an exact prefix of every prompt's ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .demos import Demonstrations, read_demonstrations
from .tasks import Row, Task

log = logging.getLogger(__name__)


@dataclass
class PromptSet:
    """The prompts of one cell: a shared prefix and one suffix per example."""

    prefix: str
    suffixes: list[str]
    ids: list[str]
    #: per-example demonstration ids (all equal unless demonstrations are resampled)
    demonstrations: list[list[str]] = field(default_factory=list)
    chat_template: bool = True
    #: per-example characters cut from the start of the example's own text to fit the model's
    #: context (:func:`build_prompts` with ``max_tokens``); empty when nothing was checked
    cut: list[int] = field(default_factory=list)

    def over_length(self) -> int:
        """How many examples were cut to fit the context."""
        return sum(1 for c in self.cut if c)

    def to_json(self, meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "meta": meta | {"chat_template": self.chat_template},
            "prefix": self.prefix,
            "examples": [
                {"id": i, "suffix": s, "demonstrations": d, "cut_chars": c}
                for i, s, d, c in zip(
                    self.ids, self.suffixes, self.demonstrations, self.cut or [0] * len(self.ids), strict=True
                )
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
            cut=[e.get("cut_chars", 0) for e in ex],
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


def end_of_turn_ids(tokenizer: Any, template_kwargs: dict[str, Any] | None = None) -> list[int]:
    """Token ids that close an assistant turn (``<|im_end|>``, ``<|eot_id|>``, …), read off the
    chat template; the EOS token for models without one. Training targets end with them so
    that trained models stop after their answer."""
    if not has_chat_template(tokenizer):
        return [tokenizer.eos_token_id]
    marker = "XQZANSWERXQZ"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}],
        tokenize=False,
        **(template_kwargs or {}),
    )
    tail = text[text.index(marker) + len(marker) :].rstrip()
    ids = tokenizer(tail, add_special_tokens=False).input_ids if tail else []
    special = set(tokenizer.all_special_ids)
    ids = [i for i in ids[:1] if i in special]
    return ids or [tokenizer.eos_token_id]


def has_chat_template(tokenizer: Any) -> bool:
    """Whether prompts use the tokenizer's chat template (else the plain-text layout)."""
    return getattr(tokenizer, "chat_template", None) is not None


#: a demonstration in the plain-text layout; the answer follows ``Answer:`` after one space
PLAIN_DEMO = "{message} {answer}\n\n"
#: where an answer ends in the plain-text layout (the blank line after it): the stop string of
#: plain-text completions
PLAIN_STOP = ("\n\n",)


def _messages(task: Task, demos: list[Row]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": task.instruction}]
    for demo in demos:
        messages.append({"role": "user", "content": task.user_message(demo)})
        messages.append({"role": "assistant", "content": task.answer(demo)})
    return messages


def _split_chat(
    tokenizer: Any, task: Task, demos: list[Row], message: str, template_kwargs: dict[str, Any]
) -> tuple[str, str]:
    """(prefix, suffix) of the chat-templated prompt; prefix is empty when the template
    does not render the demonstrations as a prefix of the full prompt. Templates without a
    system role (Gemma) fold the system message into the first user turn themselves."""
    head = _messages(task, demos)
    full = tokenizer.apply_chat_template(
        head + [{"role": "user", "content": message}],
        tokenize=False,
        add_generation_prompt=True,
        **template_kwargs,
    )
    prefix = tokenizer.apply_chat_template(head, tokenize=False, **template_kwargs)
    if not full.startswith(prefix):
        return "", full
    return prefix, full[len(prefix) :]


def _split_plain(task: Task, demos: list[Row], message: str) -> tuple[str, str]:
    shots = "".join(PLAIN_DEMO.format(message=task.user_message(d), answer=task.answer(d)) for d in demos)
    return task.instruction + "\n\n" + shots, message


#: what replaces the start of an example's text cut to fit the context
CUT_MARK = "…"


def fit_to_context(
    split: Callable[[str], tuple[str, str]], message: str, count: Callable[[str, str], int], budget: int
) -> tuple[str, str, int]:
    """``(prefix, suffix, cut)``: the prompt of ``message`` (``split`` makes it), with the fewest
    characters ``cut`` from the start of ``message`` (replaced by :data:`CUT_MARK`) such that its
    token ``count`` is at most ``budget``. The instruction, the demonstrations and the end of the
    example (its question and answer cue) are kept. Raises ``ValueError`` when even the whole
    message cut does not fit (the demonstrations alone overflow the context)."""
    prefix, suffix = split(message)
    if count(prefix, suffix) <= budget:
        return prefix, suffix, 0
    if count(*split(CUT_MARK)) > budget:
        raise ValueError(f"the instruction and demonstrations alone exceed {budget} tokens")
    low, high = 1, len(message)  # fits at high; find the smallest cut that fits
    while low < high:
        mid = (low + high) // 2
        if count(*split(CUT_MARK + message[mid:])) <= budget:
            high = mid
        else:
            low = mid + 1
    return *split(CUT_MARK + message[low:]), low


def build_prompts(
    tokenizer: Any,
    task: Task,
    rows: list[Row],
    demos: Demonstrations | None = None,
    template_kwargs: dict[str, Any] | None = None,
    max_tokens: int | None = None,
    max_new_tokens: int | None = None,
) -> PromptSet:
    """Prompts of ``rows``: the task's system message, each row's demonstrations (``demos``,
    none for zero-shot) and the row's user turn, through the tokenizer's own chat template
    (with ``template_kwargs``, e.g. ``enable_thinking``) or the plain-text layout for models
    without one. Evaluation prompts, teacher prompts and training sequences all come from
    here.

    With ``max_tokens`` (the model's context), an example whose prompt leaves fewer than its
    answer budget (:meth:`~icldistill.tasks.base.Task.generation_budget` with
    ``max_new_tokens``) of free tokens is cut to fit (:func:`fit_to_context`); ``cut`` records
    the characters cut per example."""
    chat = has_chat_template(tokenizer)
    kwargs = dict(template_kwargs or {})
    prefixes, suffixes, demo_ids, cut = [], [], [], []

    def count(prefix: str, suffix: str) -> int:
        ids = encode_prompts(tokenizer, PromptSet(prefix, [suffix], ["x"], chat_template=chat))
        return len(ids[0]) + len(ids[1][0])

    for row in rows:
        shots = demos.for_row(row) if demos is not None else []

        def split(message: str, shots: list[Row] = shots) -> tuple[str, str]:
            return _split_chat(tokenizer, task, shots, message, kwargs) if chat else _split_plain(task, shots, message)

        message = task.user_message(row)
        if max_tokens is None:
            (prefix, suffix), n_cut = split(message), 0
        else:
            budget = max_tokens - task.generation_budget(row, max_new_tokens)
            try:
                prefix, suffix, n_cut = fit_to_context(split, message, count, budget)
            except ValueError as err:
                raise ValueError(f"{task.id} example {row['id']}: {err} (context {max_tokens} tokens)") from err
        prefixes.append(prefix)
        suffixes.append(suffix)
        demo_ids.append([d["id"] for d in shots])
        cut.append(n_cut)
    shared = prefixes[0] if prefixes and all(p == prefixes[0] for p in prefixes) else ""
    if not shared and rows:
        # resampled demonstrations: only the system message is shared, at a message boundary
        first = task.user_message(rows[0])
        system = _split_chat(tokenizer, task, [], first, kwargs)[0] if chat else _split_plain(task, [], first)[0]
        shared = system if all(p.startswith(system) for p in prefixes) else ""
    suffixes = [p[len(shared) :] + s for p, s in zip(prefixes, suffixes, strict=True)]
    return PromptSet(
        prefix=shared,
        suffixes=suffixes,
        ids=[r["id"] for r in rows],
        demonstrations=demo_ids,
        chat_template=chat,
        cut=cut if max_tokens is not None else [],
    )


def answer_ids(
    tokenizer: Any, task: Task, row: Row, suffix: str, chat: bool, template_kwargs: dict[str, Any] | None = None
) -> list[int]:
    """Token ids of ``row``'s gold answer as they follow its prompt (whose last part is
    ``suffix``): with a chat template the answer text and the end-of-turn token; in the
    plain-text layout the answer exactly as the demonstrations show it after ``Answer:``
    (leading space and the blank line after it included), tokenised in context so that
    ``prompt ids + answer ids`` are the ids of the whole text."""
    answer = task.answer(row)
    if chat:
        return tokenizer(answer, add_special_tokens=False).input_ids + end_of_turn_ids(tokenizer, template_kwargs)
    tail = PLAIN_DEMO.format(message="", answer=answer)
    head = tokenizer(suffix, add_special_tokens=False).input_ids
    whole = tokenizer(suffix + tail, add_special_tokens=False).input_ids
    if whole[: len(head)] != head:
        raise ValueError(
            f"{task.id} row {row['id']}: the tokenizer merges the prompt's last token with the answer "
            f"{tail!r}; the answer cannot be appended token for token"
        )
    return whole[len(head) :]


def write_prompt_files(
    model_path: str,
    task_id: str,
    languages: list[str],
    data_files: list[str],
    demo_files: list[str],
    out_files: list[str],
    template_kwargs: dict[str, Any] | None = None,
    trust_remote_code: bool = False,
    context_length: int | None = None,
    max_new_tokens: int | None = None,
) -> None:
    """Write the prompt file of every language of one (model, task, shots).

    ``demo_files`` holds the demonstrations file of every language
    (:mod:`icldistill.demos`), or is empty for zero-shot prompts. Prompts are fitted to
    ``context_length`` tokens (default: the model's :func:`~icldistill.models.context_length`)
    with room for each answer (``max_new_tokens``, default the task's budget); the examples cut
    to fit are counted in the log and in each file (``cut_chars``).
    """
    from .data import read_jsonl, write_json
    from .models import load_tokenizer, model_context_length
    from .tasks import get_task

    tokenizer = load_tokenizer(model_path, trust_remote_code)
    task = get_task(task_id)
    limit = context_length or model_context_length(model_path, trust_remote_code)  # None: unchecked
    demo_paths = demo_files or [None] * len(languages)
    for lang, data_file, demo_file, out_file in zip(languages, data_files, demo_paths, out_files, strict=True):
        rows = read_jsonl(data_file)
        demos = read_demonstrations(demo_file) if demo_file else None
        prompts = build_prompts(tokenizer, task, rows, demos, template_kwargs, limit, max_new_tokens)
        if prompts.over_length():
            log.warning(
                "%s %s: %d of %d examples cut to fit the context of %s tokens",
                task_id,
                lang,
                prompts.over_length(),
                len(rows),
                limit,
            )
        meta = {
            "task": task_id,
            "language": lang,
            "shots": demos.shots if demos else 0,
            "demonstrations": demo_file,
            "chat_template_kwargs": template_kwargs or {},
            "context_length": limit,
        }
        write_json(out_file, prompts.to_json(meta))
