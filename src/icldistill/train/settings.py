"""What a training run computes, as the trainer reads it: :class:`TrainSettings`.

Torch-free, so the workflow and the benchmarks can build and hash settings without loading the
trainer. Jobs receive the fields through ``params`` (:meth:`icldistill.grid.Grid.train_settings`
fills every result-relevant field from the validated config, whose schema owns the defaults);
the defaults below are the schema's, and ``tests/test_config.py`` keeps them equal.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: the LoRA targets of the schema's ``training.lora.target_modules`` default
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TrainSettings:
    """Everything a training run's result depends on (hashed into its checkpoints)."""

    method: str = "lora"  # lora | full
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    max_steps: int | None = None
    epochs: float | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    bf16: bool = True
    #: a micro-batch goes through the decoder as one right-padded batch when padding is at most
    #: this fraction of its positions, else row by row at each row's own length (ragged batches
    #: such as MLQA's: no compute or activations spent on padding). One batched call is faster
    #: on short, even rows; the two paths round differently and draw other dropout masks, so
    #: the limit is part of the run's fingerprint
    pad_limit: float = 0.25
    #: recompute each layer's activations in the backward pass instead of storing them: the
    #: gradients are bitwise the same (dropout's RNG state is replayed), so it is left out of
    #: the fingerprint; memory falls from activations × layers to one layer's. ``auto``: only
    #: for micro-batches of more than ``checkpoint_above_tokens`` positions (the recompute costs
    #: about a third of a step, and short batches have the memory to spare)
    activation_checkpointing: bool | str = "auto"
    checkpoint_above_tokens: int = 2048
    seed: int = 0
    checkpoint_every: int = 0
    loss: str = "ce"  # ce | kd
    kd_loss: str = "mse"  # mse | kl
    lam: float = 0.0
    temperature: float = 1.0
    #: fixed, or a dynamic-λ strategy of :mod:`icldistill.train.strategies` with its parameters
    strategy: str = "fixed"
    strategy_params: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if k not in RESULT_NEUTRAL}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


#: settings that change how a run computes, not what it computes
RESULT_NEUTRAL = ("activation_checkpointing", "checkpoint_above_tokens")
