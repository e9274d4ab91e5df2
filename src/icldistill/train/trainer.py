"""The training loop: SFT (CE on answer tokens) and top-K logit distillation (CE + λ·KD).

A plain PyTorch loop rather than ``transformers.Trainer``: the KD term needs per-example
teacher rows aligned to answer tokens, resumption must be exact (bitwise on CPU), and the
loop is short enough to read top to bottom — batch, forward, loss, backward, step, log,
checkpoint.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import logging
import math
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data import stable_seed
from ..vocab import TRAIN_LOG_COLUMNS
from .examples import TrainExample, sequences_hash
from .losses import answer_ce, kd_tokens
from .settings import TrainSettings
from .strategies import make_strategy

log = logging.getLogger(__name__)

LOG_COLUMNS = list(TRAIN_LOG_COLUMNS)


@dataclass
class TaskData:
    """One task's training sequences and, for KD, its teacher cache (aligned by index)."""

    task: str
    examples: list[TrainExample]
    teacher: Any = None  # icldistill.train.teacher_cache.TeacherCache
    #: held-out English dev sequences (the ``meta`` strategy's validation batches)
    dev_examples: list[TrainExample] = field(default_factory=list)

    def fingerprint(self) -> str:
        """What the run learns from besides its settings: the training and dev sequences and
        the teacher's (its prompts, demonstrations and cache)."""
        teacher = self.teacher.header.get("sequences_hash") if self.teacher is not None else None
        parts = [self.task, sequences_hash(self.examples), sequences_hash(self.dev_examples), teacher]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def data_fingerprint(tasks: list[TaskData]) -> str:
    """The fingerprint of every task's data (:meth:`TaskData.fingerprint`)."""
    return hashlib.sha256(json.dumps([t.fingerprint() for t in tasks]).encode()).hexdigest()[:16]


# -- batches -----------------------------------------------------------------------------------
def batch_plan(tasks: list[TaskData], settings: TrainSettings) -> list[tuple[int, list[int]]]:
    """(task index, example indices) of every micro-batch of the run, fixed by the seed.

    Each task walks through seeded permutations of its examples, epoch after epoch; with
    several tasks each micro-batch picks its task uniformly at random. Computed up front, so a
    resumed run sees exactly the batches it would have seen.
    """
    rng = random.Random(settings.seed)
    total = total_steps(tasks, settings) * settings.grad_accum
    streams = [_permutation_stream(len(t.examples), settings.seed, "train", i) for i, t in enumerate(tasks)]
    plan = []
    for _ in range(total):
        t = rng.randrange(len(tasks)) if len(tasks) > 1 else 0
        plan.append((t, [next(streams[t]) for _ in range(min(settings.batch_size, len(tasks[t].examples)))]))
    return plan


def validation_plan(
    tasks: list[TaskData], settings: TrainSettings, plan: list[tuple[int, list[int]]]
) -> list[tuple[int, list[int]]]:
    """(task index, dev example indices) of the held-out batch of every optimizer step: the
    task of the step's first micro-batch, its dev examples walked in seeded permutations."""
    batch = int(settings.strategy_params.get("val_batch_size", settings.batch_size))
    streams = [_permutation_stream(len(t.dev_examples), settings.seed, "dev", i) for i, t in enumerate(tasks)]
    out = []
    for step in range(len(plan) // settings.grad_accum):
        t = plan[step * settings.grad_accum][0]
        if not tasks[t].dev_examples:
            raise ValueError(f"strategy 'meta' needs English dev examples of task {tasks[t].task}")
        out.append((t, [next(streams[t]) for _ in range(min(batch, len(tasks[t].dev_examples)))]))
    return out


def _permutation_stream(n: int, *key: Any):
    """Indices ``0..n-1`` in a new seeded permutation every epoch. Each epoch's seed is a hash
    of (``key``, epoch), so no seed's order is another seed's shifted by an epoch."""
    epoch = 0
    while True:
        order = list(range(n))
        random.Random(stable_seed(*key, "epoch", epoch)).shuffle(order)
        yield from order
        epoch += 1


def total_steps(tasks: list[TaskData], settings: TrainSettings) -> int:
    """Optimizer steps: ``max_steps``, or ``epochs`` over the examples of all tasks."""
    if settings.max_steps:
        return settings.max_steps
    n = sum(len(t.examples) for t in tasks)
    return max(1, math.ceil(settings.epochs * n / (settings.batch_size * settings.grad_accum)))


def collate(examples: list[TrainExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ids and mask; ``keep``: the sorted positions whose logits predict an answer
    token in some row (only these are projected to the vocabulary); ``rows``/``slots`` locate
    each answer token's logits in the kept ones, ``targets`` are the answer tokens."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    rows, positions, targets = [], [], []
    for r, e in enumerate(examples):
        seq = e.input_ids
        ids[r, : len(seq)] = torch.tensor(seq)
        mask[r, : len(seq)] = 1
        start = len(e.prompt_ids)
        for j, token in enumerate(e.answer_ids):
            rows.append(r)
            positions.append(start + j - 1)  # logits at p predict token p + 1
            targets.append(token)
    keep = sorted(set(positions))
    slot = {p: i for i, p in enumerate(keep)}
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "keep": torch.tensor(keep),
        "rows": torch.tensor(rows),
        "slots": torch.tensor([slot[p] for p in positions]),
        "positions": torch.tensor(positions),
        "targets": torch.tensor(targets),
    }


# -- model -------------------------------------------------------------------------------------
def prepare_model(model_path: str, settings: TrainSettings, trust_remote_code: bool = False):
    """The base model with LoRA adapters (``method: lora``) or all weights trainable (``full``)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(settings.seed)
    on_gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if on_gpu and settings.method == "lora" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, trust_remote_code=trust_remote_code)
    model.to("cuda" if on_gpu else "cpu")
    if settings.method == "lora":
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            target_modules=settings.target_modules,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, config)
    elif settings.method != "full":
        raise ValueError(f"training.method: unknown method {settings.method!r} (lora or full)")
    model.config.use_cache = False
    if settings.activation_checkpointing not in (True, False, "auto"):
        raise ValueError(
            f"training.activation_checkpointing: {settings.activation_checkpointing!r} (true, false or auto)"
        )
    set_checkpointing(model, settings.activation_checkpointing is True)
    return model


def set_checkpointing(model, on: bool) -> None:
    """Turn activation checkpointing of ``model``'s decoder layers on or off (a no-op when it
    already is): between micro-batches under ``activation_checkpointing: auto``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    state = getattr(base, "is_activation_checkpointing", None)
    state = base.is_gradient_checkpointing if state is None else state
    if state == on:
        return
    new_api = hasattr(base, "activation_checkpointing_enable")  # transformers ≥ 5.x
    if on:
        # non-reentrant: the frozen embeddings' output needs no grad, and dropout masks replay
        kwargs = {"use_reentrant": False}
        if new_api:
            base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    else:
        if new_api:
            base.activation_checkpointing_disable()
        else:
            base.gradient_checkpointing_disable()
        if hasattr(base, "disable_input_require_grads"):
            base.disable_input_require_grads()  # enable's hook on the embeddings, not needed without


class AnswerHead:
    """The logits of the answer tokens only, [answer tokens, V], in the order of ``rows``.

    A causal LM's forward projects every kept position of every row to the vocabulary; with
    ``logits_to_keep`` = the union of the batch's answer positions that is rows × union, most of
    it padding or prompt (8 rows × 59 positions × 262,144 for Gemma-3 on MLQA: 0.5 GB of fp32
    logits, as much again for their gradient). Here the decoder's last hidden states are picked
    at exactly the (row, position) pairs and only those go through the output layer (and
    Gemma's final soft-capping, where the config has one).

    Architectures whose head does more than that (a logit scale, say) would silently train on
    other logits, so the first use compares this path with the model's own forward on one
    short sequence and, if they disagree, falls back to the forward with ``logits_to_keep``.
    """

    def __init__(self, model, pad_limit: float = 0.25):
        self.model = model
        self.pad_limit = pad_limit
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.decoder = base.base_model if base.base_model is not base else None
        self.output = base.get_output_embeddings()
        self.cap = getattr(base.config, "final_logit_softcapping", None)
        self.checked = self.decoder is None or self.output is None
        self.gathered = not self.checked

    def by_rows(self, mask) -> bool:
        """Whether a batch goes through the decoder row by row: when its padding is more than
        ``pad_limit`` of its positions (see ``TrainSettings.pad_limit``)."""
        real = int(mask.sum())
        return real < (1 - self.pad_limit) * mask.numel()

    def positions(self, mask) -> int:
        """The positions the decoder processes for a batch (padding included when batched):
        what its activations' memory grows with."""
        return int(mask.sum()) if self.gathered and self.by_rows(mask) else mask.numel()

    def _gathered(self, ids, mask, rows, positions):
        if not self.by_rows(mask):
            hidden = self.decoder(input_ids=ids, attention_mask=mask).last_hidden_state
            return self._project(hidden[rows, positions])
        # one row at a time at its own length: no activations of padding (a batch of MLQA rows
        # of 120-690 tokens would otherwise store 8 × 690 positions per layer); the graphs of
        # all rows stay alive until the one backward, so the loss is the batch's as before
        lengths = mask.sum(dim=1).tolist()
        picked = []
        for r, n in enumerate(lengths):
            at = positions[rows == r]
            if len(at):
                hidden = self.decoder(input_ids=ids[r : r + 1, :n]).last_hidden_state[0]
                picked.append(hidden[at])
        return self._project(torch.cat(picked))

    def _project(self, hidden):
        logits = self.output(hidden)
        if self.cap is not None:
            logits = torch.tanh(logits / self.cap) * self.cap
        return logits

    def check(self, device) -> None:
        """Compare with the model's forward once (eval mode, outside autocast); tolerant of
        rounding (bf16 on GPU), not of a scale or cap this path misses."""
        if self.checked:
            return
        self.checked = True
        ids = torch.arange(3, 11, device=device).unsqueeze(0)
        mask = torch.ones_like(ids)
        positions = torch.tensor([2, 7], device=device)
        rows = torch.zeros_like(positions)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                ours = self._gathered(ids, mask, rows, positions).float()
                theirs = self.model(input_ids=ids, attention_mask=mask).logits[0, positions].float()
        finally:
            self.model.train(was_training)
        if not torch.allclose(ours, theirs, rtol=1e-2, atol=1e-2 * float(theirs.abs().max())):
            log.warning(
                "the decoder + output layer do not reproduce %s's logits (max difference %.3g): training "
                "projects the union of answer positions with logits_to_keep instead",
                type(self.model).__name__,
                float((ours - theirs).abs().max()),
            )
            self.gathered = False

    def __call__(self, batch, device):
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        rows = batch["rows"].to(device)
        if self.gathered:
            return self._gathered(ids, mask, rows, batch["positions"].to(device))
        logits = self.model(input_ids=ids, attention_mask=mask, logits_to_keep=batch["keep"].to(device)).logits
        return logits[rows, batch["slots"].to(device)]


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


# -- checkpoints -------------------------------------------------------------------------------
class CheckpointError(RuntimeError):
    """A checkpoint that cannot be fully read, or whose tensors do not fit the model and optimizer."""


def save_checkpoint(
    directory: Path,
    model,
    optimizer,
    scheduler,
    step: int,
    fingerprint: dict[str, str],
    log_rows: list,
    strategy_state: dict | None = None,
) -> Path:
    """Trainable weights + optimizer + scheduler + RNG state at ``step``, written atomically;
    older checkpoints are removed once the new one is complete."""
    from safetensors.torch import save_file

    final = directory / f"step-{step:06d}"
    tmp = directory / f".step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        weights = tmp / "trainable.safetensors"
        save_file({k: v.contiguous() for k, v in trainable_state(model).items()}, str(weights))
        state = {
            "step": step,
            "fingerprint": fingerprint,
            # checked on load: a weights file damaged after it was written is not resumed from
            "weights_sha256": _sha256(weights),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "log_rows": log_rows,
            "strategy": strategy_state or {},
        }
        torch.save(state, tmp / "state.pt")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(final, ignore_errors=True)  # a checkpoint of other settings or data, ignored on resume
    tmp.rename(final)
    for old in directory.glob("step-*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def matching_checkpoints(directory: Path, fingerprint: dict[str, str]) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Newest first, each complete checkpoint (and its state) made with the same settings from
    the same data (``fingerprint``: ``settings`` and ``data`` hashes); others are ignored,
    saying why."""
    for path in sorted(directory.glob("step-*"), reverse=True):
        try:
            state = _load_state(path)
        except Exception as err:  # any damage: the checkpoint is skipped, named
            log.warning("ignoring checkpoint %s: %s unreadable (%s)", path, path / "state.pt", err)
            continue
        if not isinstance(state, dict):
            log.warning("ignoring checkpoint %s: %s holds no checkpoint state", path, path / "state.pt")
            continue
        made = state.get("fingerprint")
        if made == fingerprint:
            yield path, state
        elif not isinstance(made, dict) or made.get("settings") != fingerprint["settings"]:
            log.warning("ignoring checkpoint %s: made with other settings; training starts fresh", path)
        else:
            log.warning(
                "ignoring checkpoint %s: made from other training rows, demonstrations or teacher cache; "
                "training starts fresh",
                path,
            )


def latest_checkpoint(directory: Path, fingerprint: dict[str, str]) -> Path | None:
    """The newest checkpoint of :func:`matching_checkpoints` (not yet checked to load)."""
    return next((path for path, _ in matching_checkpoints(directory, fingerprint)), None)


def _load_state(path: Path) -> dict[str, Any]:
    """A checkpoint's optimizer, scheduler, RNG and log state (tensors and plain values only)."""
    return torch.load(path / "state.pt", map_location="cpu", weights_only=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resume(
    directory: Path, fingerprint: dict[str, str], model, optimizer, scheduler, strategy=None
) -> tuple[Path | None, int, list]:
    """``(path, step, log rows)`` of the newest matching checkpoint that loads completely into
    ``model``, ``optimizer``, ``scheduler`` and ``strategy``; ``(None, 0, [])`` when none does. A
    checkpoint that does not load is named with the reason and skipped for an older one, and
    leaves the objects as they were, so falling back to a fresh start is a fresh run."""
    for path, state in matching_checkpoints(directory, fingerprint):
        try:
            step, log_rows = load_checkpoint(path, model, optimizer, scheduler, strategy, state)
        except CheckpointError as err:
            log.warning("ignoring checkpoint %s: %s; trying an older one, else training starts fresh", path, err)
            continue
        return path, step, log_rows
    return None, 0, []


def load_checkpoint(path: Path, model, optimizer, scheduler, strategy=None, state=None) -> tuple[int, list]:
    """Load the checkpoint at ``path`` (``state``: its state, when already read) into the
    objects; returns ``(step, log rows)``. Everything is read and checked against the model and
    optimizer before anything is changed: a damaged or unfitting checkpoint raises
    :class:`CheckpointError` naming the file and leaves the objects as they were."""
    from safetensors.torch import load_file

    file = path / "trainable.safetensors"
    # whatever the damage, the checkpoint is skipped, naming the file
    try:
        weights = load_file(str(file))
    except Exception as err:
        raise CheckpointError(f"{file} unreadable ({err})") from None
    try:
        state = _load_state(path) if state is None else state
    except Exception as err:
        raise CheckpointError(f"{path / 'state.pt'} unreadable ({err})") from None
    recorded = state.get("weights_sha256")
    if recorded is not None and recorded != _sha256(file):
        raise CheckpointError(f"{file} changed since it was written (its SHA-256 is not the one recorded)")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(weights) != set(params):
        raise CheckpointError(f"{file} holds other parameters than the model trains")
    for name, value in weights.items():
        if value.shape != params[name].shape:
            raise CheckpointError(
                f"{file}: {name} has shape {list(value.shape)}, the model's {list(params[name].shape)}"
            )
    _check_state(path / "state.pt", state, optimizer)
    before = (
        copy.deepcopy(optimizer.state_dict()),
        copy.deepcopy(scheduler.state_dict()),
        strategy.state_dict() if strategy is not None else None,
        torch.get_rng_state(),
        torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    )
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if strategy is not None:
            strategy.load_state_dict(state.get("strategy", {}))
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
    except Exception as err:  # the objects are restored, the checkpoint skipped
        optimizer.load_state_dict(before[0])
        scheduler.load_state_dict(before[1])
        if strategy is not None:
            strategy.load_state_dict(before[2])
        torch.set_rng_state(before[3])
        if before[4]:
            torch.cuda.set_rng_state_all(before[4])
        raise CheckpointError(
            f"{path / 'state.pt'} does not load into the optimizer, scheduler or RNG ({err!r})"
        ) from None
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    return state["step"], state["log_rows"]


def _check_state(file: Path, state: dict[str, Any], optimizer) -> None:
    """Raise :class:`CheckpointError` unless ``state`` has every entry and its optimizer state
    has a tensor of each parameter's shape where AdamW keeps one."""
    missing = {"step", "optimizer", "scheduler", "torch_rng", "cuda_rng", "log_rows"} - set(state)
    if missing:
        raise CheckpointError(f"{file} lacks {sorted(missing)}")
    if not isinstance(state["step"], int) or not isinstance(state["log_rows"], list):
        raise CheckpointError(f"{file}: step or log rows of the wrong type")
    if len(state["log_rows"]) != state["step"]:
        raise CheckpointError(f"{file}: {len(state['log_rows'])} log rows for step {state['step']}")
    saved = state["optimizer"]
    try:
        ids = [i for group in saved["param_groups"] for i in group["params"]]
        per_param = saved["state"]
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{file}: optimizer state malformed ({err!r})") from None
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if len(ids) != len(params):
        raise CheckpointError(f"{file}: optimizer state of {len(ids)} parameters, the model trains {len(params)}")
    for i, p in zip(ids, params, strict=True):
        for key, value in per_param.get(i, {}).items():
            if torch.is_tensor(value) and value.dim() > 0 and value.shape != p.shape:
                raise CheckpointError(
                    f"{file}: optimizer {key} of parameter {i} has shape {list(value.shape)}, the parameter "
                    f"{list(p.shape)}"
                )


# -- the loop ----------------------------------------------------------------------------------
def train(
    model_path: str,
    tasks: list[TaskData],
    settings: TrainSettings,
    out_dir: str | Path,
    checkpoint_dir: str | Path,
    log_csv: str | Path,
    pad_id: int,
    trust_remote_code: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train, checkpointing every ``checkpoint_every`` steps and resuming from the newest
    matching checkpoint; write the adapter (or full model) to ``out_dir`` and the per-step log
    to ``log_csv``. Returns summary figures (final losses, tokens/s)."""
    if settings.loss == "kd" and any(t.teacher is None for t in tasks):
        raise ValueError("loss 'kd' needs a teacher cache for every task")
    if (
        settings.strategy == "entropy"
        and settings.strategy_params.get("normalizer", "vocab") == "vocab"
        and any(t.teacher.entropy is None for t in tasks)
    ):
        raise ValueError(
            "entropy-λ (normalizer 'vocab') needs the teacher's full-vocabulary entropy; the teacher cache "
            "has none (built by the vLLM backend): use teacher.backend: hf, or normalizer: top_k"
        )
    torch.manual_seed(settings.seed)
    began = time.perf_counter()
    model = prepare_model(model_path, settings, trust_remote_code)
    load_seconds = time.perf_counter() - began
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps = total_steps(tasks, settings)
    warmup = min(settings.warmup_steps, steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup))
    )
    plan = batch_plan(tasks, settings)
    strategy = (
        make_strategy(settings.strategy, settings.lam, settings.strategy_params, settings.temperature)
        if settings.loss == "kd"
        else None
    )
    val_plan = validation_plan(tasks, settings, plan) if settings.strategy == "meta" else None
    checkpoint_dir = Path(checkpoint_dir)
    fingerprint = {"settings": settings.fingerprint(), "data": data_fingerprint(tasks)}
    resumed, start, log_rows = resume(checkpoint_dir, fingerprint, model, optimizer, scheduler, strategy)
    if resumed is not None:
        log.info("resumed from %s (step %d of %d)", resumed, start, steps)
    autocast = settings.bf16 and (device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported())

    head = AnswerHead(model, settings.pad_limit)
    head.check(device)

    def answer_logits_of(batch):
        if settings.activation_checkpointing == "auto":
            set_checkpointing(model, head.positions(batch["attention_mask"]) > settings.checkpoint_above_tokens)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            return head(batch, device)

    def val_gradient(update):
        """∇ of the dev-batch CE at θ + ``update`` (restored afterwards; no dropout)."""
        task_index, indices = val_plan[step]
        dev = tasks[task_index].dev_examples
        batch = collate([dev[i] for i in indices], pad_id)
        backup = [p.detach().clone() for p in params]
        model.eval()
        try:
            with torch.no_grad():
                for p, u in zip(params, update, strict=True):
                    p.add_(u)
            val_ce = answer_ce(answer_logits_of(batch), batch["targets"].to(device))
            return torch.autograd.grad(val_ce, params)
        finally:
            with torch.no_grad():
                for p, b in zip(params, backup, strict=True):
                    p.copy_(b)
            model.train()

    model.train()
    loop_began = time.perf_counter()
    bar = tqdm(range(start, steps), desc="train", file=sys.stderr, disable=not progress, mininterval=5)
    for step in bar:
        began, tokens, ce_sum, kd_sum, loss_sum, lam_sum = time.perf_counter(), 0, 0.0, 0.0, 0.0, 0.0
        mixed = strategy is not None and strategy.mixes_gradients
        g_ce = [torch.zeros_like(p) for p in params] if mixed else None
        g_kd = [torch.zeros_like(p) for p in params] if mixed else None
        for micro in range(settings.grad_accum):
            task_index, indices = plan[step * settings.grad_accum + micro]
            data = tasks[task_index]
            batch = collate([data.examples[i] for i in indices], pad_id)
            tokens += int(batch["attention_mask"].sum())
            answer_logits = answer_logits_of(batch)
            ce = answer_ce(answer_logits, batch["targets"].to(device))
            loss, kd = ce, torch.zeros((), device=device)
            check_finite(ce, "CE loss", step, data.task, out_dir)
            if strategy is not None:
                values, ids = zip(*(data.teacher.example(i) for i in indices), strict=True)
                values = torch.cat(values).to(device)
                per_token = kd_tokens(
                    settings.kd_loss, answer_logits, values, torch.cat(ids).to(device), settings.temperature
                )
                kd = per_token.mean()
                check_finite(kd, "KD loss", step, data.task, out_dir)
                if mixed:
                    for acc, g in zip(g_ce, torch.autograd.grad(ce, params, retain_graph=True), strict=True):
                        acc.add_(g, alpha=1 / settings.grad_accum)
                    for acc, g in zip(g_kd, torch.autograd.grad(kd, params), strict=True):
                        acc.add_(g, alpha=1 / settings.grad_accum)
                else:
                    entropy = None
                    if data.teacher.entropy is not None:
                        entropy = torch.cat([data.teacher.example_entropy(i) for i in indices]).to(device)
                    weights = strategy.token_weights(
                        data.task, ce.item(), per_token.detach(), values, answer_logits.shape[-1], entropy
                    )
                    weighted = weights * kd if isinstance(weights, float) else (weights * per_token).mean()
                    loss = ce + weighted
                    lam_sum += float(torch.as_tensor(weights, dtype=torch.float32).mean()) / settings.grad_accum
                    loss_sum += weighted.item() / settings.grad_accum
            if not mixed:
                (loss / settings.grad_accum).backward()
            ce_sum += ce.item() / settings.grad_accum
            kd_sum += kd.item() / settings.grad_accum
        stats = {}
        if mixed:
            stats = strategy.mix(g_ce, g_kd, lr=scheduler.get_last_lr()[0], val_gradient=val_gradient)
            lam_sum = stats["lambda_eff"]
            loss_sum = lam_sum * kd_sum
            for p, c, k in zip(params, g_ce, g_kd, strict=True):
                p.grad = c + lam_sum * k
        grad_norm = torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm).item()
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - began
        row = {
            "step": step + 1,
            "task": tasks[plan[step * settings.grad_accum][0]].task,
            "ce": sig(ce_sum),
            "kd": sig(kd_sum),
            "lambda": strategy.nominal if strategy is not None else 0.0,  # None: per task (task_prior)
            "lambda_eff": sig(lam_sum),
            "loss": sig(ce_sum + loss_sum),
            "lr": lr,
            "grad_norm": sig(grad_norm),
            "tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1),
            "cos": sig(stats["cos"]) if "cos" in stats else None,
            "meta_grad": stats.get("meta_grad"),
        }
        log_rows.append(row)
        log.info(
            "step %(step)d task %(task)s ce %(ce).4f kd %(kd).4f lambda_eff %(lambda_eff)g loss %(loss).4f "
            "tok/s %(tokens_per_s).0f",
            row,
        )
        bar.set_postfix(ce=f"{ce_sum:.3f}", kd=f"{kd_sum:.3f}", lam=f"{lam_sum:.3g}")
        if settings.checkpoint_every and (step + 1) % settings.checkpoint_every == 0 and step + 1 < steps:
            state = strategy.state_dict() if strategy is not None else {}
            save_checkpoint(checkpoint_dir, model, optimizer, scheduler, step + 1, fingerprint, log_rows, state)
    _write_log(log_csv, log_rows)
    _save_model(model, out_dir, settings)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    measured = [r["tokens_per_s"] for r in log_rows]
    return {
        "steps": steps,
        "final_ce": log_rows[-1]["ce"],
        "final_kd": log_rows[-1]["kd"],
        "tokens_per_s": sum(measured) / len(measured),
        # for the Compute section: this job's steps (a resumed run: those after the checkpoint)
        "tokens": sum(r["tokens"] for r in log_rows[start:]),
        "seconds": round(time.perf_counter() - loop_began, 2),
        "load_seconds": round(load_seconds, 2),
    }


def check_finite(value: torch.Tensor, what: str, step: int, task: str, out_dir: str | Path) -> None:
    """Stop the run with an error naming the step, task and run when ``value`` is NaN or inf."""
    if not torch.isfinite(value).all():
        raise FloatingPointError(
            f"{what} is {value.item()} at step {step + 1} of task {task} ({out_dir}): training diverged or "
            "its inputs hold non-finite numbers; lower training.lr or check the teacher cache"
        )


def sig(value: float, digits: int = 7) -> float:
    """``value`` to ``digits`` significant digits (a KD loss of 1e-5 keeps its precision)."""
    return float(f"{value:.{digits}g}")


def _write_log(path: str | Path, rows: list[dict]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _save_model(model, out_dir: str | Path, settings: TrainSettings) -> None:
    """The LoRA adapter (or the full model) written atomically to ``out_dir``."""
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        (tmp / "training.json").write_text(json.dumps(asdict(settings), indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
