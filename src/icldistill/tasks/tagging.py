"""Sequence labelling tasks: NER (PAN-X/WikiANN) and POS (Universal Dependencies)."""

from __future__ import annotations

import re
from typing import Any

from .base import HFSource, Row, RowError, Task

#: Tag that never equals a gold tag, used to pad short or fill unparsable predictions.
NO_MATCH = "_"


class TaggingTask(Task):
    """One tag per input token; the answer is the space-separated tag sequence."""

    answer_format = "tags"
    family = "sequence_labelling"
    max_new_tokens = 256
    tag_field: str = ""
    #: tag used for positions the prediction does not cover
    pad_tag: str = NO_MATCH
    #: generation budget per input token (a tag and its separator, in model tokens)
    tokens_per_tag: int = 4

    @property
    def fields(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("tokens", self.tag_field)

    def check_row(self, row: Row) -> None:
        super().check_row(row)
        tokens, tags = row["tokens"], row[self.tag_field]
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t for t in tokens):
            raise RowError("field 'tokens' must be a non-empty list of non-empty strings")
        if not isinstance(tags, list) or len(tags) != len(tokens):
            raise RowError(
                f"{self.tag_field} has {len(tags) if isinstance(tags, list) else '?'} tags for {len(tokens)} tokens"
            )
        # by repr: a tag may be any JSON value, and lists and objects are not hashable
        unknown = sorted({repr(t) for t in tags if t not in self.labels})
        if unknown:
            raise RowError(f"unknown tags [{', '.join(unknown)}]")

    def from_hf(self, row: Row, features: Any = None) -> Row:
        tags = row[self.tag_field]
        if tags and isinstance(tags[0], int):
            names = features[self.tag_field].feature.names if features is not None else self.labels
            tags = [names[t] for t in tags]
        return {"tokens": list(row["tokens"]), self.tag_field: list(tags)}

    def user_message(self, row: Row) -> str:
        tokens = row["tokens"]
        return f"Tokens ({len(tokens)}): {' '.join(tokens)}\nTags:"

    def answer(self, row: Row) -> str:
        return " ".join(row[self.tag_field])

    def generation_budget(self, row: Row, default: int | None = None) -> int:
        # never more than the configured cap
        cap = default if default is not None else self.max_new_tokens
        return min(cap, self.tokens_per_tag * len(row["tokens"]) + 8)

    def parse_answer(self, answer: str, row: Row) -> list[str] | None:
        """Tags aligned by position to the input tokens, padded or cut to its length.

        Words that are not tags of the inventory become :data:`NO_MATCH`; an output with no
        valid tag at all does not parse.
        """
        words = [w.strip(".,;:!?()[]{}\"'`") for w in answer.split()]
        words = [w.upper() for w in words if w]
        if not any(w in self.labels for w in words):
            return None
        n = len(row["tokens"])
        tags = [w if w in self.labels else NO_MATCH for w in words[:n]]
        return tags + [self.pad_tag] * (n - len(tags))

    def settled_answer(self, answer: str, row: Row) -> str | None:
        """Up to the end of the n-th word, once n words are complete (each followed by white
        space) and one of them is a tag: :meth:`parse_answer` reads the first n words only, and
        the rest only for whether any word is a tag. A looping model (tag after tag until the
        budget) then stops at n tags instead of running to 4·n + 8 tokens."""
        n = len(row["tokens"])
        ends = [m.end() for m in _COMPLETE_WORD.finditer(answer)]
        if len(ends) < n:
            return None
        head = answer[: ends[n - 1]]
        return head if self.parse_answer(head, row) is not None else None


#: a word followed by white space (generation has moved past it)
_COMPLETE_WORD = re.compile(r"\S+(?=\s)")


class NER(TaggingTask):
    id = "ner"
    scoring = "entities"
    dataset = "WikiANN/PAN-X"
    title = "NER (F1 %)"
    languages = ("en", "hi", "es", "de", "fr", "zh")
    metrics = ("f1", "precision", "recall")
    primary_metric = "f1"
    tag_field = "ner_tags"
    labels = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")
    # entity-level F1 ignores "O": padding with it adds no false positives
    pad_tag = "O"
    instruction = (
        "You are a named entity tagger. For each token of the input, output its tag in IOB2 "
        "format: B-PER, I-PER (person), B-ORG, I-ORG (organisation), B-LOC, I-LOC (location) "
        "or O (no entity). Output exactly one tag per token, separated by spaces, and nothing else."
    )
    hf_sources = {
        "test": HFSource("google/xtreme", "PAN-X.{lang}", "test"),
        "dev": HFSource("google/xtreme", "PAN-X.{lang}", "validation"),
        "train": HFSource("google/xtreme", "PAN-X.en", "train"),
    }

    def parse_answer(self, answer: str, row: Row) -> list[str] | None:
        tags = super().parse_answer(answer, row)
        # seqeval reads any non-IOB word as an entity; the no-match filler must be "O" here
        return None if tags is None else [t if t != NO_MATCH else "O" for t in tags]


class POS(TaggingTask):
    id = "pos"
    scoring = "tokens"
    dataset = "UDPOS"
    title = "POS (Acc %)"
    languages = ("en", "hi", "es", "de", "fr", "zh")
    metrics = ("accuracy",)
    primary_metric = "accuracy"
    tag_field = "pos_tags"
    # UPOS tags are one or two tokens with their leading space (NER's B-/I- tags take up to four)
    tokens_per_tag = 3
    labels = (
        "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
        "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
    )  # fmt: skip
    instruction = (
        "You are a part-of-speech tagger. For each token of the input, output its Universal "
        "Dependencies tag (ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ "
        "SYM VERB X). Output exactly one tag per token, separated by spaces, and nothing else."
    )
    LANG_NAMES = {"en": "English", "hi": "Hindi", "es": "Spanish", "de": "German", "fr": "French", "zh": "Chinese"}
    hf_sources = {
        "test": HFSource("google/xtreme", "udpos.{lang_name}", "test"),
        "dev": HFSource("google/xtreme", "udpos.{lang_name}", "validation"),
        "train": HFSource("google/xtreme", "udpos.English", "train"),
    }
