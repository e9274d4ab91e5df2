"""The loader on the real XTREME sample in ../shared/xtreme-real (skipped where it is absent)."""

from __future__ import annotations

import pytest

from icldistill.data import local_path, read_local
from icldistill.metrics import score
from icldistill.tasks import TASKS, get_task

from .conftest import SHARED

REAL = SHARED / "xtreme-real"
pytestmark = pytest.mark.skipif(not REAL.is_dir(), reason=f"real XTREME sample not found at {REAL}")


@pytest.mark.parametrize("task", list(TASKS))
def test_every_real_row_loads_in_the_local_layout(task):
    spec = get_task(task)
    for lang in spec.languages:
        for split in ("dev", "test"):
            if local_path(REAL, task, split, lang).exists():
                assert read_local(REAL, task, split, lang)
    assert len(read_local(REAL, task, "train", "en")) >= 120


@pytest.mark.parametrize("task", list(TASKS))
def test_gold_answers_score_100_on_real_rows(task):
    spec = get_task(task)
    lang = "zh" if task != "pa" else "de"
    rows = read_local(REAL, task, "test", lang)[:50]
    result = score(task, lang, [spec.answer(r) for r in rows], rows)
    primary = {"nli": "accuracy", "pa": "accuracy", "qa": "exact_match", "ner": "f1", "pos": "accuracy"}[task]
    assert result[primary] == pytest.approx(100.0)
    assert result["parse_failures"] == 0
