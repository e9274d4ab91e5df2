"""Sentence-pair classification tasks: NLI (XNLI) and paraphrase adversaries (PAWS-X)."""

from __future__ import annotations

from typing import Any

from .base import HFSource, Row, RowError, Task, first_label


class LabelTask(Task):
    """A task whose answer is one label word."""

    answer_format = "label"
    scoring = "label"
    family = "classification"
    metrics = ("accuracy",)
    primary_metric = "accuracy"
    max_new_tokens = 8
    supports_loglik = True

    def gold_label(self, row: Row) -> str:
        return str(row["label"])

    def answer(self, row: Row) -> str:
        return self.gold_label(row)

    def choices(self) -> tuple[str, ...]:
        return self.labels

    #: other surface forms of a label (e.g. "contradicts") that the parser accepts
    aliases: dict[str, tuple[str, ...]] = {}

    def parse_answer(self, answer: str, row: Row) -> str | None:
        forms = {label: (label, *self.aliases.get(label, ())) for label in self.labels}
        found = first_label(answer, tuple(f for fs in forms.values() for f in fs))
        return next((label for label, fs in forms.items() if found in fs), None)

    def check_row(self, row: Row) -> None:
        super().check_row(row)
        for name in self.fields:
            if name != "label" and (not isinstance(row[name], str) or not row[name].strip()):
                raise RowError(f"field {name!r} must be a non-empty string")
        try:
            self.gold_label(row)
        except (KeyError, ValueError, TypeError) as err:
            raise RowError(f"label {row.get('label')!r} out of range") from err


class NLI(LabelTask):
    id = "nli"
    dataset = "XNLI"
    title = "NLI (Acc %)"
    languages = ("en", "hi", "es", "de", "fr", "zh")
    fields = ("premise", "hypothesis", "label")
    labels = ("entailment", "neutral", "contradiction")

    def keep_hf_row(self, row: Row) -> bool:
        # MultiNLI marks pairs without annotator consensus with label -1
        return row["label"] in self.labels

    aliases = {
        "entailment": ("entails", "entailed"),
        "contradiction": ("contradicts", "contradictory", "contradicted"),
    }
    instruction = (
        "You are a natural language inference classifier. Given a premise and a hypothesis, "
        "decide whether the premise entails the hypothesis, contradicts it, or is neutral. "
        "Answer with exactly one word: entailment, neutral or contradiction."
    )
    hf_sources = {
        "test": HFSource("google/xtreme", "XNLI", "test", filter_language=True),
        "dev": HFSource("google/xtreme", "XNLI", "validation", filter_language=True),
        # XTREME trains XNLI models on MultiNLI; google/xtreme ships no NLI train split
        "train": HFSource("nyu-mll/multi_nli", None, "train"),
    }

    def gold_label(self, row: Row) -> str:
        label = row["label"]
        if label not in self.labels:
            raise ValueError(label)
        return label

    def user_message(self, row: Row) -> str:
        return f"Premise: {row['premise']}\nHypothesis: {row['hypothesis']}\nAnswer:"

    def from_hf(self, row: Row, features: Any = None) -> Row:
        if "sentence1" in row:  # google/xtreme XNLI
            return {"premise": row["sentence1"], "hypothesis": row["sentence2"], "label": row["gold_label"]}
        label = row["label"]  # nyu-mll/multi_nli: ClassLabel ints, -1 without annotator consensus
        if isinstance(label, int):
            label = self.labels[label] if 0 <= label < len(self.labels) else None
        return {"premise": row["premise"], "hypothesis": row["hypothesis"], "label": label}


class PA(LabelTask):
    id = "pa"
    dataset = "PAWS-X"
    title = "PA (Acc %)"
    languages = ("en", "es", "de", "fr", "zh")
    fields = ("sentence1", "sentence2", "label")
    #: verbalizers of labels 0 (not a paraphrase) and 1 (paraphrase)
    labels = ("no", "yes")
    instruction = (
        "You are a paraphrase classifier. Given two sentences, decide whether they mean the "
        "same thing. Answer with exactly one word: yes or no."
    )
    hf_sources = {
        "test": HFSource("google/xtreme", "PAWS-X.{lang}", "test"),
        "dev": HFSource("google/xtreme", "PAWS-X.{lang}", "validation"),
        "train": HFSource("google/xtreme", "PAWS-X.en", "train"),
    }

    def gold_label(self, row: Row) -> str:
        label = row["label"]
        if isinstance(label, bool) or int(label) not in (0, 1) or str(label) not in ("0", "1"):
            raise ValueError(label)
        return self.labels[int(label)]

    def user_message(self, row: Row) -> str:
        return (
            f"Sentence 1: {row['sentence1']}\nSentence 2: {row['sentence2']}\n"
            "Do the two sentences mean the same thing?\nAnswer:"
        )

    def from_hf(self, row: Row, features: Any = None) -> Row:
        return {"sentence1": row["sentence1"], "sentence2": row["sentence2"], "label": int(row["label"])}
