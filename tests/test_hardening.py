"""Hardening: what the workflow does with bad input and with interruptions, asserted exactly.

- A malformed config value stops the real Snakefile before any job, with one error naming the key.
- A malformed data row fails its split's job with ``<file>:<line>`` and the reason, and leaves no
  prepared file behind; unit level, QA offsets outside the context and undecodable lines too.
- Empty, garbage and endless outputs score with every parse failure counted; the tiny random
  model, which never stops on its own, is cut at ``max_new_tokens`` and its cell still scores.
- The same grid run twice gives a byte-identical ``cells.csv``, and so does a run killed with
  SIGKILL during inference and during training and then completed.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from icldistill import data, fingerprint
from icldistill.metrics import score
from icldistill.models import eos_token_ids
from icldistill.tasks import get_task

from .conftest import MINI, ROOT, SAMPLE_ROWS, small_grid_config

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def _command(workdir: Path, *args: str) -> list[str]:
    snakefile, config = str(ROOT / "Snakefile"), str(workdir / "config.yaml")
    return [SNAKEMAKE, "-s", snakefile, "--directory", str(workdir), "--configfile", config, *args]


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1")


def _write_config(workdir: Path, config: dict) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return workdir


def _write_jsonl(path: Path, rows: list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


# -- runs that must fail at their start: all started together ------------------------------------
# Snakemake takes seconds to start (on this machine its SLURM plugin waits 10 s for a
# controller), and these runs do almost nothing else, so side by side they take as long as one.
def _set(path: str, value):
    def change(config):
        *parents, last = path.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[last] = value

    return change


def _drop_model_path(config):
    del config["models"]["tiny"]["path"]


#: (case, change to a complete config, what stderr says once)
CONFIG_CASES = [
    ("unknown-task", _set("tasks", ["nli", "bogus"]), "config key 'tasks[1]': unknown task 'bogus'"),
    ("unknown-language", _set("languages", ["en", "xx"]), "config key 'languages[1]': unknown language 'xx'"),
    # enums and bounds are the schema's (snakemake.utils.validate): its error names the key
    ("unknown-condition-kind", _set("conditions.base.kind", "magic"), "On instance['conditions']['base']['kind']"),
    ("negative-k", _set("few_shot.k", -1), "On instance['few_shot']['k']"),
    ("negative-lambda", _set("conditions.distilled.lambda", -0.5), "On instance['conditions']['distilled']['lambda']"),
    ("no-models", _set("models", {}), "On instance['models']"),
    (
        "model-without-path",
        _drop_model_path,
        "config key 'models.tiny': give exactly one of 'path' (Hugging Face id or folder) or 'gguf'",
    ),
]


def _answer_past_the_context(row):
    row["answers"]["answer_start"][0] = len(row["context"]) + 10


#: one malformed row per task, in its German test split: its line, the damage, the reason given
BAD_ROWS = {
    "pa": (4, lambda row: row.pop("sentence2"), lambda row: "missing field 'sentence2'"),
    "nli": (5, lambda row: row.update(label="maybe"), lambda row: "label 'maybe' out of range"),
    "ner": (
        2,
        lambda row: row["ner_tags"].pop(),
        lambda row: f"ner_tags has {len(row['ner_tags'])} tags for {len(row['tokens'])} tokens",
    ),
    "qa": (
        3,
        _answer_past_the_context,
        lambda row: (
            f"answer {row['answers']['text'][0]!r} is not at offset {row['answers']['answer_start'][0]} of the context"
        ),
    ),
}


def _damaged_data(root: Path) -> dict[str, str]:
    """A copy of the mini data of the BAD_ROWS tasks with one bad row in each German test
    file; returns each task's expected error line."""
    expected = {}
    for task, (line, change, reason) in BAD_ROWS.items():
        shutil.copytree(MINI / task, root / task)
        path = root / task / "test.de.jsonl"
        rows = path.read_text(encoding="utf-8").splitlines()
        row = json.loads(rows[line - 1])
        change(row)
        rows[line - 1] = json.dumps(row, ensure_ascii=False)
        path.write_text("\n".join(rows) + "\n", encoding="utf-8")
        expected[task] = f"{path}:{line}: {task} row rejected: {reason(row)}"
    return expected


@pytest.fixture(scope="module")
def failed_runs(tiny_model_dir, tmp_path_factory):
    """Each CONFIG_CASES config, and a grid over the damaged data (``--keep-going``, so that
    every task's data job runs), through the real Snakefile: name → (workdir, rc, output)."""
    root = tmp_path_factory.mktemp("failing")
    valid = small_grid_config(tiny_model_dir, 3, {"nli": 4, "ner": 8})
    runs = {}
    for name, change, _ in CONFIG_CASES:
        config = copy.deepcopy(valid)
        change(config)
        runs[name] = (_write_config(root / name, config), ["--cores", "1"])
    expected = _damaged_data(root / "data")
    bad_data = copy.deepcopy(valid) | {
        "tasks": list(BAD_ROWS),
        "conditions": {"base": {"kind": "infer", "few_shot": False}},
        "data": {"source": "local", "path": str(root / "data")},
    }
    runs["bad-data"] = (_write_config(root / "bad-data", bad_data), ["--cores", "1", "--keep-going"])
    procs = {
        name: subprocess.Popen(
            _command(workdir, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()
        )
        for name, (workdir, args) in runs.items()
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        results[name] = (runs[name][0], proc.returncode, out + err)
    results["bad-data-expected"] = expected
    return results


@pytest.mark.parametrize(("case", "message"), [(c, m) for c, _, m in CONFIG_CASES], ids=[c for c, *_ in CONFIG_CASES])
def test_malformed_config_value_fails_once_naming_the_key_before_any_job(failed_runs, case, message):
    workdir, rc, output = failed_runs[case]
    assert rc == 1, output
    assert output.count(message) == 1, output
    if message.startswith("On instance"):
        assert output.count("Error validating config file") == 1
    else:
        assert output.count("WorkflowError") == 1 and "Traceback" not in output
    assert not (workdir / "results").exists()
    assert "Building DAG of jobs" not in output


@pytest.mark.parametrize("task", list(BAD_ROWS))
def test_malformed_data_row_fails_its_split_with_file_and_line(failed_runs, task):
    workdir, rc, output = failed_runs["bad-data"]
    error = failed_runs["bad-data-expected"][task]
    assert rc == 1
    log = workdir / "results" / "logs" / "prepare_split" / f"{task}.test.de.log"
    assert log.read_text(encoding="utf-8").count(error) == 1
    # Snakemake's own output names the failed job's log (its message is in the log only)
    assert f"log: results/logs/prepare_split/{task}.test.de.log (check log file(s) for error details)" in output
    prepared = workdir / "results" / "data" / task
    # the damaged split leaves nothing behind, not even a temporary file; its English split is complete
    assert sorted(p.name for p in prepared.iterdir()) == ["test.en.jsonl", "test.en.manifest.json"]
    assert len(data.read_jsonl(prepared / "test.en.jsonl")) == 3
    # no job read the data: no prompts, no predictions
    assert not (workdir / "results" / "tiny").exists()


def test_every_damaged_split_failed_and_nothing_else(failed_runs):
    _, _, output = failed_runs["bad-data"]
    assert output.count("Error in rule prepare_split:") == len(BAD_ROWS)
    assert output.count("Error in rule") == len(BAD_ROWS)


# -- malformed rows, unit level: QA offsets outside the context, types, bytes ----------------------
QA_GOOD = {"id": "q0", "context": "abc def", "question": "q?", "answers": {"text": ["abc"], "answer_start": [0]}}


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ({"text": ["def"], "answer_start": [50]}, "answer 'def' is not at offset 50 of the context"),
        ({"text": ["def"], "answer_start": [7]}, "answer 'def' is not at offset 7 of the context"),  # == len
        ({"text": ["def"], "answer_start": [6]}, "answer 'def' is not at offset 6 of the context"),  # runs past
        ({"text": ["def"], "answer_start": [-3]}, "answer 'def' is not at offset -3 of the context"),
        ({"text": ["def"], "answer_start": [True]}, "answer 'def' is not at offset True of the context"),
        ({"text": ["def"], "answer_start": ["4"]}, "answer 'def' is not at offset 4 of the context"),
        # an empty answer "matched" at any offset, even outside the context
        ({"text": [""], "answer_start": [99]}, "answer '' is not a non-empty string"),
        ({"text": [4], "answer_start": [0]}, "answer 4 is not a non-empty string"),
        ({"text": "def", "answer_start": [4, 5, 6]}, "field 'answers' needs a non-empty 'text' list"),
        ({"text": ["def"], "answer_start": 4}, "answers 'answer_start' must be a list as long as 'text'"),
        ({"text": ["def", "abc"], "answer_start": [4]}, "answers 'answer_start' must be a list as long as 'text'"),
    ],
)
def test_qa_answer_outside_the_context_is_rejected_with_file_and_line(tmp_path, answers, message):
    path = tmp_path / "qa" / "test.de.jsonl"
    _write_jsonl(path, [QA_GOOD, QA_GOOD | {"id": "q1", "answers": answers}])
    with pytest.raises(data.DataError) as err:
        data.read_local(tmp_path, "qa", "test", "de")
    assert str(err.value) == f"{path}:2: qa row rejected: {message}"


def test_qa_answer_ending_at_the_context_end_is_accepted(tmp_path):
    _write_jsonl(tmp_path / "qa" / "test.de.jsonl", [QA_GOOD | {"answers": {"text": ["def"], "answer_start": [4]}}])
    assert data.read_local(tmp_path, "qa", "test", "de")[0]["answers"]["answer_start"] == [4]


@pytest.mark.parametrize(
    ("task", "tags", "message"),
    [
        ("ner", [["O"], "O"], "unknown tags [['O']]"),
        ("pos", [None, "NOUN"], "unknown tags [None]"),
        ("pos", [None, "nope"], "unknown tags ['nope', None]"),
    ],
)
def test_tags_that_are_not_strings_are_rejected_with_file_and_line(tmp_path, task, tags, message):
    field = f"{task}_tags"
    path = tmp_path / task / "test.en.jsonl"
    good = {"tokens": ["a", "b"], field: ["O", "O"] if task == "ner" else ["X", "X"]}
    _write_jsonl(path, [good, {"tokens": ["a", "b"], field: tags}])
    with pytest.raises(data.DataError) as err:
        data.read_local(tmp_path, task, "test", "en")
    assert str(err.value) == f"{path}:2: {task} row rejected: {message}"


def test_a_line_that_is_not_utf8_is_rejected_with_file_and_line(tmp_path):
    path = tmp_path / "nli" / "test.en.jsonl"
    path.parent.mkdir()
    good = json.dumps({"premise": "a", "hypothesis": "b", "label": "neutral"}).encode()
    path.write_bytes(good + b"\n" + good + b"\n" + b'{"premise": "\xff", "hypothesis": "b", "label": "neutral"}\n')
    with pytest.raises(data.DataError) as err:
        data.read_local(tmp_path, "nli", "test", "en")
    assert str(err.value) == f"{path}:3: not UTF-8 (invalid start byte at byte 13)"


# -- outputs that do not parse, and endless ones ------------------------------------------------
REFS = SAMPLE_ROWS
UNPARSABLE = ["", "§§ ~~ 12 zz", "the " * 5000]
#: what each unparsable output scores, per example
ZERO = {
    "nli": {"correct": 0.0},
    "pa": {"correct": 0.0},
    "qa": {"f1": 0.0, "exact_match": 0.0},
    "ner": {"true_pos": 0, "pred": 0, "gold": 2},
    "pos": {"correct": 0, "tokens": 4},
}
METRICS = {
    "nli": ("accuracy",),
    "pa": ("accuracy",),
    "qa": ("f1", "exact_match"),
    "ner": ("f1", "precision", "recall"),
    "pos": ("accuracy",),
}


def _refs(task: str, n: int) -> list[dict]:
    return [REFS[task] | {"id": f"{task}-{i}"} for i in range(n)]


def test_reference_rows_are_valid():
    for task, row in REFS.items():
        get_task(task).check_row(row | {"id": "x"})


@pytest.mark.parametrize("task", list(REFS))
def test_empty_garbage_and_endless_filler_outputs_score_zero_with_failures_counted(task):
    result = score(task, "en", UNPARSABLE, _refs(task, 3))
    expected = {metric: 0.0 for metric in METRICS[task]} | {"n": 3, "think_blocks": 0}
    # QA's parser takes any non-empty first line as the answer: only "" does not parse; the
    # other two normalise to "12 zz" and to nothing ("the" is an article) and score 0
    expected["parse_failures"] = 1 if task == "qa" else 3
    if task in ("ner", "pos"):
        expected["length_mismatches"] = 0  # counted for parsed outputs only
    assert result == expected | {"per_example": [ZERO[task]] * 3}


@pytest.mark.parametrize(
    ("task", "output", "expected", "per_example"),
    [
        ("nli", "contradiction " * 1500, {"accuracy": 100.0}, {"correct": 1.0}),
        ("pa", "yes " * 5000, {"accuracy": 100.0}, {"correct": 1.0}),
        # one line, 2500 tokens once "the" is dropped, 2 of them gold: precision 1/1250, recall 1
        ("qa", "the Caspian Sea " * 1250, {"f1": 100 * 2 * (1 / 1250) / (1 / 1250 + 1), "exact_match": 0.0}, None),
        # cut to the 4 tokens: PER at 0 right, PER at 1-3 wrong, LOC missed
        (
            "ner",
            "B-PER " * 5000,
            {"f1": 100 / 3, "precision": 25.0, "recall": 50.0},
            {"true_pos": 1, "pred": 4, "gold": 2},
        ),
        ("pos", "PROPN " * 5000, {"accuracy": 50.0}, {"correct": 2, "tokens": 4}),
    ],
)
def test_endless_repeated_answer_is_parsed_cut_and_scored_exactly(task, output, expected, per_example):
    assert len(output) >= 20000
    result = score(task, "en", [output], _refs(task, 1))
    assert result.pop("n") == 1 and result.pop("parse_failures") == 0 and result.pop("think_blocks") == 0
    if task in ("ner", "pos"):
        assert result.pop("length_mismatches") == 1
    examples = result.pop("per_example")
    assert result == pytest.approx(expected, abs=1e-9)
    if per_example is not None:
        assert examples == [per_example]
    else:
        assert examples == [pytest.approx({"f1": expected["f1"] / 100, "exact_match": 0.0}, abs=1e-12)]


@pytest.mark.parametrize("task", ["nli", "pa", "qa", "ner", "pos"])
def test_endless_generation_is_cut_at_max_new_tokens_and_the_cell_still_scores(
    tiny_model_dir, tmp_path, monkeypatch, task
):
    """The workflow's inference and scoring entry points on the tiny random model, which
    repeats one newline token and never emits its end-of-turn token."""
    from icldistill.aggregate import score_cell
    from icldistill.backends import hf
    from icldistill.inference import infer
    from icldistill.models import load_tokenizer
    from icldistill.prompts import build_prompts

    budget = 5
    generated = []

    class Recording(hf.HFBackend):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            generate = self.model.generate

            def record(*a, **kw):
                out = generate(*a, **kw)
                generated.append(out[:, kw["input_ids"].shape[1] :])
                return out

            self.model.generate = record

    monkeypatch.setattr(hf, "HFBackend", Recording)
    tokenizer = load_tokenizer(tiny_model_dir)
    rows = data.read_local(MINI, task, "test", "de")[:3]
    prompts = build_prompts(tokenizer, get_task(task), rows)
    prompt_file, data_file = tmp_path / "de.json", tmp_path / "test.de.jsonl"
    data.write_json(prompt_file, prompts.to_json({"task": task, "language": "de", "shots": 0}))
    data.write_jsonl(data_file, rows)
    out_file = tmp_path / "predictions" / "de.jsonl"
    settings = {"backend": "hf", "dtype": "float32", "batch_size": 2, "max_new_tokens": budget, "scoring": "generate"}
    infer(str(tiny_model_dir), task, [str(prompt_file)], [str(data_file)], [str(out_file)], settings)

    # two batches, every row generated to the budget: no end-of-turn, no padding
    assert [g.shape for g in generated] == [(2, budget), (1, budget)]
    stops = {tokenizer.pad_token_id, *eos_token_ids(tiny_model_dir, tokenizer)}
    assert not any(t in stops for g in generated for t in g.flatten().tolist())
    outputs = [p["output"] for p in data.read_jsonl(out_file)]
    decoded = sorted(
        tokenizer.decode(g[i].tolist(), skip_special_tokens=True) for g in generated for i in range(len(g))
    )
    assert sorted(outputs) == decoded and all(not o.strip() for o in outputs)
    assert all(len(tokenizer(o, add_special_tokens=False).input_ids) <= budget for o in outputs)

    meta = {"model": "Tiny", "model_id": "tiny", "task": task, "condition": "base", "language": "de"}
    record = score_cell(out_file, data_file, tmp_path / "metrics.json", meta)
    assert record == json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert (record["n"], record["parse_failures"]) == (3, 3)
    assert record["metrics"] == {metric: 0.0 for metric in METRICS[task]}
    assert [e["id"] for e in record["per_example"]] == [r["id"] for r in rows]


# -- determinism and interrupted runs ---------------------------------------------------------------
TRAIN_STEPS = 8


def _grid(model_dir: Path) -> dict:
    """NLI (scored by log-likelihood, so that its values depend on every weight) and NER, in
    English and German, Base, Fine-Tuned and Distilled, trained long enough to be killed."""
    config = small_grid_config(
        model_dir,
        3,
        {"nli": 4, "ner": 8},
        scoring={"nli": "loglik"},
        training={"max_steps": TRAIN_STEPS, "batch_size": 4, "max_examples": 8, "checkpoint_every": 2, "lr": 1e-3},
    )
    del config["conditions"]["fewshot"]
    return config


def _start(workdir: Path, out: Path, *args: str) -> subprocess.Popen:
    """The grid on one core, in its own process group (Snakemake and its job die together)."""
    with out.open("w") as f:
        return subprocess.Popen(
            _command(workdir, "--cores", "1", *args),
            stdout=f,
            stderr=subprocess.STDOUT,
            env=_env(),
            start_new_session=True,
        )


def _finish(proc: subprocess.Popen, out: Path, timeout: float = 900) -> str:
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = out.read_text(encoding="utf-8")
    assert proc.returncode == 0, text[-3000:]
    return text


def _kill_when(workdir: Path, out: Path, ready, *args: str):
    """Run the grid and SIGKILL its whole process group as soon as ``ready()`` returns
    something, which is returned."""
    proc = _start(workdir, out, *args)
    try:
        while proc.poll() is None:
            found = ready()
            if found is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return found
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    raise AssertionError(f"the run ended (rc {proc.returncode}) before it was killed:\n{out.read_text()[-3000:]}")


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(_command(workdir, *args), capture_output=True, text=True, env=_env(), timeout=300)


def _files(workdir: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(workdir)): p.read_bytes() for p in sorted(workdir.glob(pattern))}


@pytest.fixture(scope="module")
def interrupted(tiny_model_dir, tmp_path_factory):
    """Runs A and C: the grid, uninterrupted, in two fresh folders (side by side). Run B, in
    the meantime: killed at the start of its first inference job; rerun as it is (refused:
    Snakemake's lock outlives SIGKILL); unlocked; given a half-written copy of the killed
    job's output and rerun as it is (refused: incomplete); rerun with --rerun-incomplete and
    killed after a training job's first checkpoint; unlocked and completed with
    --rerun-incomplete. Every step's observations are returned."""
    root = tmp_path_factory.mktemp("interrupted")
    logs = root / "snakemake-output"
    logs.mkdir()
    config = _grid(tiny_model_dir)
    a, b, c = (_write_config(root / name, config) for name in "ABC")
    background = {name: _start(workdir, logs / f"{name}.out") for name, workdir in (("A", a), ("C", c))}
    seen = {}
    try:
        # 1. killed as soon as its first inference job has started
        infer_log = _kill_when(b, logs / "B1.out", lambda: next(iter(sorted(b.glob("results/logs/infer/*.log"))), None))
        _, task, condition, split = infer_log.stem.split(".")
        predictions = b / "results" / "predictions" / split / "tiny" / task / condition
        seen["infer_log"] = infer_log.read_text(encoding="utf-8")
        seen["predictions_after_kill"] = predictions.exists()
        seen["logs_after_kill"] = sorted(b.glob("results/logs/*/*.log"))
        # 2. the same command again
        seen["rerun_locked"] = _snakemake(b, "--cores", "1")
        seen["logs_after_locked"] = sorted(b.glob("results/logs/*/*.log"))
        seen["unlock"] = _snakemake(b, "--unlock")
        # 3. as if killed between its two languages: English written, German not
        ids = [r["id"] for r in data.read_jsonl(b / "results" / "data" / task / "test.en.jsonl")]
        _write_jsonl(predictions / "en.jsonl", [{"id": i, "output": "half-written"} for i in ids])
        # with a manifest, so that the workflow's own check passes it and Snakemake's is tested
        # (a folder without one is dated to 1970 and rerun: tests/test_faults_invalidation.py)
        fingerprint.write_manifest(predictions)
        seen["partial"] = str(predictions.relative_to(b))
        seen["rerun_incomplete"] = _snakemake(b, "--cores", "1")
        seen["partial_after_refusal"] = sorted(p.name for p in predictions.iterdir())

        # 4. killed after a training job's first checkpoint, before its adapter is written
        def checkpointed():
            steps = b.glob("results/training/tiny/*/*/adapter.checkpoints/step-*")
            return next((s for s in sorted(steps) if not (s.parent.parent / "adapter").exists()), None)

        for attempt in range(3):  # a kill that lands after the job finished is tried again
            checkpoint = _kill_when(b, logs / f"B2-{attempt}.out", checkpointed, "--rerun-incomplete")
            run = checkpoint.parent.parent
            seen.setdefault("unlock_after_training", []).append(_snakemake(b, "--unlock"))
            if not (run / "adapter").exists():
                break
        seen["killed_run"] = run
        seen["adapter_after_kill"] = (run / "adapter").exists()
        seen["checkpoints_after_kill"] = sorted(p.name for p in checkpoint.parent.glob("step-*"))
        # 5. to completion
        _finish(_start(b, logs / "B3.out", "--rerun-incomplete"), logs / "B3.out")
        seen["reruns"] = "".join(p.read_text(encoding="utf-8") for p in sorted(logs.glob("B[23]*.out")))
        seen["train_log"] = (b / "results" / "logs" / "train" / f"tiny.{run.parent.name}.{run.name}.log").read_text(
            encoding="utf-8"
        )
        for name, proc in background.items():
            _finish(proc, logs / f"{name}.out")
    finally:
        for proc in background.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return {"A": a, "B": b, "C": c} | seen


@pytest.mark.e2e
def test_the_same_config_run_twice_gives_byte_identical_cells(interrupted):
    cells = (interrupted["A"] / "results" / "tables" / "cells.csv").read_bytes()
    assert cells == (interrupted["C"] / "results" / "tables" / "cells.csv").read_bytes()
    # not trivially equal: the loglik NLI cells have values, every cell has its examples
    lines = cells.decode().splitlines()
    assert len(lines) == 1 + 2 * 3 * (1 + 3)  # header; 2 languages x 3 conditions x (NLI + NER's 3 metrics)
    assert any(line.startswith("Tiny-Llama,nli,") and ",accuracy,0.0," not in line for line in lines[1:])


@pytest.mark.e2e
def test_a_killed_run_leaves_a_lock_that_only_unlock_clears(interrupted):
    locked = interrupted["rerun_locked"]
    assert locked.returncode == 1
    assert "LockException" in locked.stdout + locked.stderr
    assert "It can be removed with the --unlock argument" in locked.stdout + locked.stderr
    assert interrupted["logs_after_locked"] == interrupted["logs_after_kill"]  # no job ran
    assert interrupted["unlock"].returncode == 0
    assert "Unlocked working directory" in interrupted["unlock"].stdout + interrupted["unlock"].stderr


@pytest.mark.e2e
def test_a_killed_inference_job_leaves_no_output_and_a_partial_one_is_refused(interrupted):
    # killed while running: no predictions folder (it is moved into place only when complete)
    assert "examples in" not in interrupted["infer_log"]
    assert interrupted["predictions_after_kill"] is False
    # a half-written output folder is not taken as complete: the run stops before any job
    refused = interrupted["rerun_incomplete"]
    output = refused.stdout + refused.stderr
    assert refused.returncode == 1
    assert "IncompleteFilesException" in output and "The files below seem to be incomplete." in output
    assert output.split("Incomplete files:\n")[1].splitlines()[0] == interrupted["partial"]
    assert interrupted["partial_after_refusal"] == ["MANIFEST.json", "en.jsonl"]
    # with --rerun-incomplete it is deleted and predicted again (the comparison with run A is below)
    job = next(j for j in interrupted["reruns"].split("\n\n") if f"output: {interrupted['partial']}\n" in j)
    assert "localrule infer:" in job and "reason: Forced execution" in job


@pytest.mark.e2e
def test_a_killed_training_job_resumes_from_its_last_checkpoint(interrupted):
    assert interrupted["adapter_after_kill"] is False
    step = int(interrupted["checkpoints_after_kill"][-1].removeprefix("step-"))
    assert step in range(2, TRAIN_STEPS, 2)
    assert f"(step {step} of {TRAIN_STEPS})" in interrupted["train_log"]
    assert interrupted["train_log"].count("resumed from") == 1
    assert not (interrupted["killed_run"] / "adapter.checkpoints").exists()  # removed once trained
    assert all(u.returncode == 0 for u in interrupted["unlock_after_training"])


@pytest.mark.e2e
def test_the_interrupted_run_completes_with_byte_identical_results(interrupted):
    a, b = interrupted["A"], interrupted["B"]
    assert (b / "results" / "tables" / "cells.csv").read_bytes() == (
        a / "results" / "tables" / "cells.csv"
    ).read_bytes()
    # and beneath the table: every prediction (loglik scores included) and every trained weight
    counts = {
        "results/predictions/test/tiny/*/*/*.jsonl": 12,
        "results/training/tiny/*/*/adapter/adapter_model.safetensors": 4,
    }
    for pattern, count in counts.items():
        assert _files(b, pattern) == _files(a, pattern)
        assert len(_files(a, pattern)) == count
    for leftover in ("*.tmp", "*.partial", "*.checkpoints"):
        assert not list(b.glob(f"results/**/{leftover}")), leftover
