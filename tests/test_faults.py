"""Recoverable faults recover; the others stop with an error naming the file.

- A checkpoint that cannot be fully loaded (cut short, overwritten, changed after it was
  written, tensors that do not fit the model or optimizer) is named with the reason and skipped:
  training resumes from an older checkpoint or starts fresh, and ends where an uninterrupted run
  ends, bitwise.
- A teacher cache that is not a readable cache is reported with its path and removed, so the
  next run rebuilds it (one small Snakemake case).
- A data row holding a lone surrogate is rejected with ``<file>:<line>``, and a writer that fails
  leaves no temporary file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from icldistill import data
from icldistill.teacher import build_teacher_cache
from icldistill.train import trainer
from icldistill.train.run import run_training
from icldistill.train.teacher_cache import TeacherCacheError, load_teacher_cache, save_teacher_cache

from .conftest import MINI, ROOT, training_files

LOGGER = "icldistill.train.trainer"


# -- checkpoints, on a one-layer model: every way a checkpoint can be damaged ---------------------
def _objects(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (s + 1))
    return model, optimizer, scheduler


def _step(model, optimizer, scheduler) -> None:
    model(torch.ones(4, 3)).pow(2).sum().backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad()


FINGERPRINT = {"settings": "s", "data": "d"}


@pytest.fixture
def two_checkpoints(tmp_path) -> Path:
    """step-000001 and step-000002 of a three-step run (the older one kept, as when a job dies
    between writing a checkpoint and removing the one before)."""
    model, optimizer, scheduler = _objects()
    directory = tmp_path / "checkpoints"
    for step in (1, 2):
        _step(model, optimizer, scheduler)
        saved = trainer.save_checkpoint(directory, model, optimizer, scheduler, step, FINGERPRINT, [{}] * step)
        if step == 1:
            shutil.copytree(saved, tmp_path / "keep")
    shutil.copytree(tmp_path / "keep", directory / "step-000001")
    return directory


def _rewrite_state(path: Path, change) -> None:
    state = torch.load(path / "state.pt", weights_only=True)
    change(state)
    torch.save(state, path / "state.pt")


def _cut_in_half(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def _flip_last_byte(file: Path) -> None:
    raw = bytearray(file.read_bytes())
    raw[-1] ^= 0xFF
    file.write_bytes(bytes(raw))


def _weights_transposed(path: Path) -> None:
    """Weights of the wrong shape, with a matching recorded hash (a checkpoint of another model)."""
    file = path / "trainable.safetensors"
    weights = load_file(str(file))
    save_file({k: v.T.contiguous() if v.dim() == 2 else v for k, v in weights.items()}, str(file))
    _rewrite_state(path, lambda s: s.update(weights_sha256=trainer._sha256(file)))


def _optimizer_moment_reshaped(state) -> None:
    moments = state["optimizer"]["state"][0]
    moments["exp_avg"] = moments["exp_avg"].flatten()


#: (damage to step-000002, the file and reason the warning names)
DAMAGES = {
    "weights-cut-in-half": (lambda p: _cut_in_half(p / "trainable.safetensors"), "trainable.safetensors unreadable"),
    "weights-garbage": (
        lambda p: (p / "trainable.safetensors").write_bytes(b"\x00garbage" * 50),
        "trainable.safetensors unreadable",
    ),
    "weights-missing": (lambda p: (p / "trainable.safetensors").unlink(), "trainable.safetensors unreadable"),
    "weights-changed-after-writing": (
        lambda p: _flip_last_byte(p / "trainable.safetensors"),
        "trainable.safetensors changed since it was written",
    ),
    "weights-of-another-shape": (_weights_transposed, "weight has shape [3, 2], the model's [2, 3]"),
    "state-cut-in-half": (lambda p: _cut_in_half(p / "state.pt"), "state.pt unreadable"),
    "state-not-a-dict": (lambda p: torch.save([1, 2], p / "state.pt"), "state.pt holds no checkpoint state"),
    "optimizer-moment-of-another-shape": (
        lambda p: _rewrite_state(p, _optimizer_moment_reshaped),
        "state.pt: optimizer exp_avg of parameter 0 has shape [6], the parameter [2, 3]",
    ),
    "rng-state-not-bytes": (
        lambda p: _rewrite_state(p, lambda s: s.update(torch_rng=torch.zeros(3))),
        "state.pt does not load into the optimizer, scheduler or RNG",
    ),
    "log-rows-missing": (lambda p: _rewrite_state(p, lambda s: s.update(log_rows=[])), "0 log rows for step 2"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_newest_checkpoint_is_named_and_the_older_one_resumed(two_checkpoints, damage, caplog):
    newest = two_checkpoints / "step-000002"
    change, reason = DAMAGES[damage]
    change(newest)
    model, optimizer, scheduler = _objects()
    with caplog.at_level("WARNING", logger=LOGGER):
        path, step, rows = trainer.resume(two_checkpoints, FINGERPRINT, model, optimizer, scheduler)
    assert (path, step, len(rows)) == (two_checkpoints / "step-000001", 1, 1)
    assert f"ignoring checkpoint {newest}: " in caplog.text and reason in caplog.text
    # what a run that stopped after its first step holds, written out again here
    reference, ref_optimizer, ref_scheduler = _objects()
    _step(reference, ref_optimizer, ref_scheduler)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reference.parameters(), strict=True))
    assert scheduler.last_epoch == 1
    assert int(optimizer.state_dict()["state"][0]["step"]) == 1


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_lone_damaged_checkpoint_is_named_and_leaves_everything_fresh(two_checkpoints, damage, caplog):
    """Nothing of the damaged checkpoint stays behind in the model, optimizer, scheduler or RNG,
    even when the damage shows only after part of it was loaded."""
    shutil.rmtree(two_checkpoints / "step-000001")
    change, reason = DAMAGES[damage]
    change(two_checkpoints / "step-000002")
    model, optimizer, scheduler = _objects(seed=5)
    torch.manual_seed(123)
    rng = torch.get_rng_state()
    with caplog.at_level("WARNING", logger=LOGGER):
        assert trainer.resume(two_checkpoints, FINGERPRINT, model, optimizer, scheduler) == (None, 0, [])
    assert reason in caplog.text and str(two_checkpoints / "step-000002") in caplog.text
    assert torch.equal(torch.get_rng_state(), rng)
    fresh, _, _ = _objects(seed=5)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters(), strict=True))
    assert optimizer.state_dict()["state"] == {}
    assert scheduler.last_epoch == 0 and scheduler.get_last_lr() == [0.1]


def test_a_failed_checkpoint_write_leaves_no_temporary_folder(tmp_path, monkeypatch):
    model, optimizer, scheduler = _objects()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        trainer.save_checkpoint(tmp_path, model, optimizer, scheduler, 1, FINGERPRINT, [{}])
    assert list(tmp_path.iterdir()) == []


def test_a_failed_adapter_write_leaves_no_temporary_folder(tmp_path):
    class FullDisk:
        def save_pretrained(self, directory):
            Path(directory).mkdir()
            (Path(directory) / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        trainer._save_model(FullDisk(), tmp_path / "adapter", trainer.TrainSettings())
    assert list(tmp_path.iterdir()) == []


# -- checkpoints, in a real training run on the tiny model --------------------------------------
SETTINGS = {"max_steps": 4, "batch_size": 4, "checkpoint_every": 1}


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory) -> Path:
    return training_files(tmp_path_factory.mktemp("faults-data"), "nli", 3, 12)[0]


def _train_to(model_dir: Path, rows_file: Path, out: Path) -> None:
    run_training(str(model_dir), ["nli"], [str(rows_file)], [], str(out), str(out) + ".csv", SETTINGS)


def _adapter(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, rows_file, tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("faults-uninterrupted") / "adapter"
    _train_to(tiny_model_dir, rows_file, out)
    return _adapter(out)


@pytest.fixture(scope="module")
def killed_at_step_2(tiny_model_dir, rows_file, tmp_path_factory) -> Path:
    """The checkpoint folder of a run stopped right after its step-2 checkpoint, with its step-1
    checkpoint put back (a job that died before removing it)."""
    root = tmp_path_factory.mktemp("faults-killed")
    save = trainer.save_checkpoint

    def save_keep_stop(directory, model, optimizer, scheduler, step, *args, **kwargs):
        saved = save(directory, model, optimizer, scheduler, step, *args, **kwargs)
        shutil.copytree(saved, root / "kept" / saved.name)
        if step == 2:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(trainer, "save_checkpoint", save_keep_stop)
        _train_to(tiny_model_dir, rows_file, root / "adapter")
    return root / "kept"


def _with_checkpoints(killed: Path, out: Path, *names: str) -> Path:
    directory = out.with_name(out.name + ".checkpoints")
    for name in names:
        shutil.copytree(killed / name, directory / name)
    return directory


def test_training_resumes_from_the_older_checkpoint_and_ends_as_an_uninterrupted_run(
    tiny_model_dir, rows_file, uninterrupted, killed_at_step_2, tmp_path, caplog
):
    out = tmp_path / "adapter"
    directory = _with_checkpoints(killed_at_step_2, out, "step-000001", "step-000002")
    _cut_in_half(directory / "step-000002" / "trainable.safetensors")
    with caplog.at_level("INFO", logger=LOGGER):
        _train_to(tiny_model_dir, rows_file, out)
    damaged = directory / "step-000002" / "trainable.safetensors"
    assert f"ignoring checkpoint {directory / 'step-000002'}: {damaged} unreadable" in caplog.text
    assert f"resumed from {directory / 'step-000001'} (step 1 of 4)" in caplog.text
    result = _adapter(out)
    assert result.keys() == uninterrupted.keys()
    assert all(torch.equal(result[k], uninterrupted[k]) for k in result)


def test_training_from_a_lone_unfitting_checkpoint_starts_fresh_and_ends_as_a_fresh_run(
    tiny_model_dir, rows_file, uninterrupted, killed_at_step_2, tmp_path, caplog
):
    """The damage shows only after the optimizer and scheduler states were loaded: they are put
    back, so the run is a fresh one, bitwise."""
    out = tmp_path / "adapter"
    directory = _with_checkpoints(killed_at_step_2, out, "step-000002")
    _rewrite_state(directory / "step-000002", lambda s: s.update(torch_rng=torch.zeros(3)))
    with caplog.at_level("INFO", logger=LOGGER):
        _train_to(tiny_model_dir, rows_file, out)
    assert f"ignoring checkpoint {directory / 'step-000002'}: {directory / 'step-000002' / 'state.pt'}" in caplog.text
    assert "resumed from" not in caplog.text
    result = _adapter(out)
    assert all(torch.equal(result[k], uninterrupted[k]) for k in result)


# -- the teacher cache ------------------------------------------------------------------------------
def _garbage(file: Path) -> None:
    file.write_bytes(b"this is not a safetensors file\n" * 40)


def _empty(file: Path) -> None:
    file.write_bytes(b"")


def _header_not_an_object(file: Path) -> None:
    tensors = {name: torch.zeros(1, 1) for name in ("values", "ids", "offsets", "answer_ids")}
    save_file(tensors, str(file), metadata={"header": "[1, 2]"})


@pytest.mark.parametrize("damage", [_cut_in_half, _garbage, _empty, _header_not_an_object])
def test_a_teacher_cache_that_is_not_a_cache_is_a_teacher_cache_error_naming_it(tmp_path, damage):
    file = tmp_path / "nli" / "teacher" / "3shot.safetensors"
    save_teacher_cache(file, {"values": torch.zeros(4, 2), "ids": torch.zeros(4, 2, dtype=torch.int32)}, {})
    damage(file)
    with pytest.raises(TeacherCacheError) as err:
        load_teacher_cache(file, [], "0" * 16)
    assert str(err.value).startswith(f"{file}: not a readable teacher cache (")


def test_a_teacher_cache_with_misshapen_ids_is_rejected(tmp_path):
    from icldistill.train.examples import TrainExample
    from icldistill.train.teacher_cache import FORMAT_VERSION

    file = tmp_path / "cache.safetensors"
    tensors = {
        "values": torch.zeros(2, 4, dtype=torch.bfloat16),
        "ids": torch.zeros(2, 3, dtype=torch.int32),
        "offsets": torch.tensor([0, 2]),
        "answer_ids": torch.tensor([7, 8], dtype=torch.int32),
    }
    header = {"format_version": FORMAT_VERSION, "tokenizer_hash": "t", "example_ids": ["a"]}
    save_teacher_cache(file, tensors, header)
    with pytest.raises(TeacherCacheError, match=r"misshapen \(values \[2, 4\], ids \[2, 3\]"):
        load_teacher_cache(file, [TrainExample("a", [1, 2], [7, 8])], "t")


def test_a_failed_teacher_cache_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    import safetensors.torch

    def half_then_full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 64)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half_then_full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_teacher_cache(tmp_path / "c.safetensors", {"values": torch.zeros(2)}, {})
    assert list(tmp_path.iterdir()) == []


def test_training_on_a_truncated_teacher_cache_fails_naming_it_and_removes_it(tiny_model_dir, rows_file, tmp_path):
    cache = tmp_path / "nli.3shot.safetensors"
    build_teacher_cache(
        str(tiny_model_dir), "nli", str(rows_file), None, str(cache), 8, {"dtype": "float32", "batch_size": 4}, "tiny"
    )
    _cut_in_half(cache)
    out = tmp_path / "adapter"
    settings = SETTINGS | {"loss": "kd", "lam": 0.5}
    with pytest.raises(TeacherCacheError) as err:
        run_training(
            str(tiny_model_dir), ["nli"], [str(rows_file)], [str(cache)], str(out), str(out) + ".csv", settings
        )
    assert str(err.value).startswith(f"{cache}: not a readable teacher cache (")
    assert str(err.value).endswith("; removed it, the next run rebuilds it")
    assert not cache.exists() and not out.exists()


SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TEACHER = "results/teacher/tiny/nli/2shot.safetensors"
ADAPTER = "results/training/tiny/nli/distilled/adapter"


def _snakemake(workdir: Path, *targets: str) -> subprocess.CompletedProcess:
    command = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    command += ["--configfile", str(workdir / "config.yaml"), "--cores", "1", *targets]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.e2e
def test_a_truncated_teacher_cache_fails_one_run_naming_it_and_is_rebuilt_by_the_next(tiny_model_dir, tmp_path):
    config = {
        "models": {"tiny": {"display_name": "Tiny-Llama", "path": str(tiny_model_dir), "dtype": "float32"}},
        "tasks": ["nli"],
        "languages": ["en"],
        "conditions": {"distilled": {"kind": "train", "loss": "kd", "teacher_few_shot": True, "lambda": 0.5}},
        "data": {"source": "local", "path": str(MINI)},
        "eval": {"split": "test", "max_examples": 4, "seed": 1},
        "few_shot": {"k": 2, "seed": 1},
        "generation": {"backend": "hf", "batch_size": 4},
        "training": {"max_steps": 1, "batch_size": 4, "max_examples": 8, "checkpoint_every": 0},
        "teacher": {"top_k": 8},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    first = _snakemake(tmp_path, TEACHER)
    assert first.returncode == 0, first.stderr[-3000:]
    cache = tmp_path / TEACHER
    intact = cache.read_bytes()
    _cut_in_half(cache)

    failed = _snakemake(tmp_path, ADAPTER)
    assert failed.returncode != 0
    logs = (tmp_path / "results" / "logs" / "train" / "tiny.nli.distilled.log").read_text()
    assert f"{TEACHER}: not a readable teacher cache (" in logs and "removed it, the next run rebuilds it" in logs
    assert not cache.exists() and not (tmp_path / ADAPTER).exists()

    rebuilt = _snakemake(tmp_path, ADAPTER)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert "rule teacher_cache:" in rebuilt.stdout + rebuilt.stderr
    assert cache.read_bytes() == intact and (tmp_path / ADAPTER / "adapter_model.safetensors").is_file()


# -- undecodable text in a data file, and writers that fail -----------------------------------------
GOOD = {"premise": "A man sleeps.", "hypothesis": "A man is awake.", "label": "contradiction"}


def _data_with_surrogate(root: Path) -> Path:
    path = root / "nli" / "train.en.jsonl"
    path.parent.mkdir(parents=True)
    # json.dumps writes the lone surrogate as the ASCII escape \ud800: valid JSON, invalid text
    lines = [json.dumps(GOOD), json.dumps(GOOD | {"premise": "broken \ud800 text"}), json.dumps(GOOD)]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def test_a_lone_surrogate_is_rejected_with_file_and_line(tmp_path):
    path = _data_with_surrogate(tmp_path)
    assert "\\ud800" in path.read_text(encoding="ascii")
    with pytest.raises(data.DataError) as err:
        data.read_local(tmp_path, "nli", "train", "en")
    assert str(err.value) == f"{path}:2: text is not valid Unicode (surrogates not allowed: '\\ud800')"


def test_preparing_a_split_with_a_lone_surrogate_fails_with_file_and_line_and_leaves_no_file(tmp_path):
    path = _data_with_surrogate(tmp_path / "data")
    out = tmp_path / "prepared"
    with pytest.raises(data.DataError, match=f"^{path}:2: text is not valid Unicode"):
        data.prepare_split(
            {"source": "local", "path": str(tmp_path / "data")}, "nli", "train", "en", None, 1,
            out / "train.en.jsonl", out / "train.en.manifest.json",
        )  # fmt: skip
    assert not out.exists() or list(out.iterdir()) == []


def test_writers_that_fail_leave_no_temporary_file_and_the_old_file_intact(tmp_path):
    rows, obj = tmp_path / "rows.jsonl", tmp_path / "obj.json"
    data.write_jsonl(rows, [GOOD])
    data.write_json(obj, GOOD)
    before = rows.read_bytes(), obj.read_bytes()
    with pytest.raises(UnicodeEncodeError):
        data.write_jsonl(rows, [GOOD, GOOD | {"premise": "\ud800"}])
    with pytest.raises(UnicodeEncodeError):
        data.write_json(obj, GOOD | {"premise": "\udfff"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj.json", "rows.jsonl"]
    assert (rows.read_bytes(), obj.read_bytes()) == before
