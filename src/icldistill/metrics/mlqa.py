"""Exact match and F1 exactly as the official MLQA evaluation script (``mlqa_evaluation_v1.py``).

Ported rather than imported: the script is not published as a package. Normalisation lower-
cases, removes Unicode punctuation, removes the language's articles and splits on whitespace,
except for Chinese, whose CJK characters and punctuation are separate tokens (mixed
segmentation).
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
from collections import Counter
from functools import lru_cache

WHITESPACE_LANGS = ("en", "es", "hi", "vi", "de", "ar")
MIXED_SEGMENTATION_LANGS = ("zh",)

_ARTICLES = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "ar": r"\sال^|ال",
}


@lru_cache(maxsize=1)
def punctuation() -> frozenset[str]:
    """Every Unicode punctuation character plus ASCII ``string.punctuation``."""
    chars = {chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")}
    return frozenset(chars.union(string.punctuation))


def _check_lang(lang: str) -> None:
    if lang not in WHITESPACE_LANGS + MIXED_SEGMENTATION_LANGS:
        raise ValueError(f"MLQA evaluation has no rules for language {lang!r}")


def mixed_segmentation(text: str) -> list[str]:
    """Split CJK characters and punctuation into single tokens, the rest on whitespace."""
    punct = punctuation()
    segs: list[str] = []
    temp = ""
    for char in text:
        if re.search(r"[\u4e00-\u9fa5]", char) or char in punct:
            if temp:
                segs.extend(temp.split())
                temp = ""
            segs.append(char)
        else:
            temp += char
    if temp:
        segs.extend(temp.split())
    return segs


def normalize_answer(s: str, lang: str) -> str:
    """Lower-case, strip punctuation and articles, and re-join the language's tokens."""
    _check_lang(lang)
    punct = punctuation()
    text = "".join(ch for ch in s.lower() if ch not in punct)
    if lang in _ARTICLES:
        text = re.sub(_ARTICLES[lang], " ", text)
    tokens = text.split() if lang in WHITESPACE_LANGS else mixed_segmentation(text)
    return " ".join(t for t in tokens if t.strip() != "")


def f1_score(prediction: str, ground_truth: str, lang: str) -> float:
    """Token-overlap F1 (0–1) between normalised prediction and answer."""
    pred_tokens = normalize_answer(prediction, lang).split()
    gold_tokens = normalize_answer(ground_truth, lang).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str, lang: str) -> float:
    """1.0 when the normalised prediction equals the normalised answer."""
    return float(normalize_answer(prediction, lang) == normalize_answer(ground_truth, lang))


def metric_max_over_ground_truths(metric, prediction: str, ground_truths: list[str], lang: str) -> float:
    """The best score of ``prediction`` against any of the gold answers."""
    return max(metric(prediction, gt, lang) for gt in ground_truths)
