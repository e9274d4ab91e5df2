"""How much the KD term weighs: a fixed λ or one of the seed report's five dynamic strategies.

The arithmetic is in small pure functions (each with a unit test on a hand-computed case);
the classes below only keep the state a strategy carries from step to step (EMAs, a learned
λ), which goes into checkpoints so a resumed run is exact.

Two families:

* **loss weights** (``fixed``, ``entropy``, ``loss_ratio``, ``task_prior``): the loss is
  ``CE + mean_i(λ_i · KD_i)`` over the batch's answer tokens; one backward pass.
* **gradient mixes** (``grad_conflict``, ``meta``): the step's CE and KD gradients over the
  trainable parameters are taken separately (``torch.autograd.grad``; with LoRA these are the
  adapter weights only) and combined as ``g_CE + λ_eff · g_KD`` before clipping and the
  optimizer step. Cost: a second backward pass over the same graph and two gradient buffers
  the size of the trainable parameters; ``meta`` adds a copy of them and one forward/backward
  pass on a held-out English dev batch per step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

#: guards a division by a vanishing KD loss or gradient
EPS = 1e-12


# -- arithmetic -------------------------------------------------------------------------------
def teacher_entropy(teacher_values: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy (nats) of the softmax over the teacher's cached top-K logits at each answer
    token ([T, K] → [T]): the top-K mass renormalised to 1, so at most ``log K``."""
    log_p = F.log_softmax(teacher_values.float() / temperature, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def entropy_lambdas(
    teacher_values: torch.Tensor,
    lambda_max: float,
    vocab_size: int,
    normalizer: str = "vocab",
    temperature: float = 1.0,
    full_entropy: torch.Tensor | None = None,
) -> torch.Tensor:
    """``λ_i = λ_max · (1 − H_i / log N)`` per answer token ([T]).

    ``normalizer: vocab`` (the seed's formula): ``H_i`` is the entropy of the teacher's
    full-vocabulary distribution (``full_entropy``, stored in the teacher cache when it is
    built) and ``N`` the vocabulary size, so λ_i spans ``[0, λ_max]``. ``top_k``: ``H_i`` is the
    entropy of the renormalised cached top-K logits and ``N = K`` (a uniform top-K teacher gets
    λ_i = 0).
    """
    if normalizer == "vocab":
        if full_entropy is None:
            raise ValueError(
                "entropy-λ with normalizer 'vocab' needs the teacher's full-vocabulary entropy, which this "
                "teacher cache does not hold (vLLM teachers see only the top K): use teacher.backend: hf, "
                "or normalizer: top_k"
            )
        entropy, n = full_entropy.float(), vocab_size
    else:
        entropy, n = teacher_entropy(teacher_values, temperature), teacher_values.shape[-1]
    if n <= 1:
        return torch.full(teacher_values.shape[:-1], float(lambda_max))
    return lambda_max * (1.0 - entropy / math.log(n)).clamp(min=0.0)


def flat_dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """``⟨a, b⟩`` of two gradients given as lists of per-parameter tensors."""
    return sum((x.double() * y.double()).sum() for x, y in zip(a, b, strict=True))


def gradient_cosine(g_ce: Sequence[torch.Tensor], g_kd: Sequence[torch.Tensor]) -> float:
    """Cosine of the angle between the CE and KD gradients over all trainable parameters."""
    norm = math.sqrt(float(flat_dot(g_ce, g_ce)) * float(flat_dot(g_kd, g_kd)))
    return float(flat_dot(g_ce, g_kd)) / norm if norm > EPS else 0.0


def conflict_lambda(lam: float, cosine: float) -> float:
    """``λ_eff = λ · max(0, cos(∇L_CE, ∇L_KD))``: no distillation on a step where it opposes CE."""
    return lam * max(0.0, cosine)


def ema(previous: float | None, value: float, decay: float) -> float:
    """Exponential moving average; the first value starts it."""
    return value if previous is None else decay * previous + (1.0 - decay) * value


def ratio_lambda(lambda_0: float, ema_ce: float, ema_kd: float, lambda_max: float | None = None) -> float:
    """``λ_t = λ_0 · EMA(L_CE) / EMA(L_KD)``: the KD term held at λ_0 times the CE term,
    capped at ``lambda_max`` when given (a student that already matches its teacher has a
    vanishing KD loss and an unbounded ratio)."""
    lam = lambda_0 * ema_ce / max(ema_kd, EPS)
    return lam if lambda_max is None else min(lam, lambda_max)


def meta_hypergradient(g_val: Sequence[torch.Tensor], g_kd: Sequence[torch.Tensor], lr: float) -> float:
    """``∂L_val(θ')/∂λ`` for the look-ahead ``θ' = θ − lr·(g_CE + λ·g_KD)``: by the chain rule
    ``−lr · ⟨∇L_val(θ'), g_KD⟩``. First-order: the look-ahead is a plain SGD step (not AdamW),
    and ``g_KD`` is taken at θ, so no second derivatives are needed."""
    return -lr * float(flat_dot(g_val, g_kd))


def meta_lambda(
    lam: float,
    hypergradient: float,
    meta_lr: float,
    lambda_max: float,
    scale: float = 1.0,
) -> float:
    """One gradient step on λ, ``λ − meta_lr · hypergradient / scale``, kept in ``[0, λ_max]``.

    The trainer passes ``scale = lr·‖∇L_val‖·‖g_KD‖`` (the hypergradient's largest possible
    size), so the step is ``meta_lr · cos(∇L_val, g_KD)``: ``meta_lr`` is then the most λ can
    move in one step, whatever the model's gradient scale (raw hypergradients differ by orders
    of magnitude between a 135M and an 8B model).
    """
    step = meta_lr * hypergradient / scale if scale > EPS else 0.0
    return min(max(lam - step, 0.0), lambda_max)


def prior_lambda(lambdas: dict[str, float], task: str) -> float:
    """``task_prior``: the λ of the batch's task (multitask runs; per-task runs are a fixed λ)."""
    return float(lambdas[task])


# -- strategies with state ----------------------------------------------------------------------
#: the training class of every strategy by name, filled as the classes below are defined
STRATEGY_CLASSES: dict[str, type[Strategy]] = {}


class Strategy:
    """A fixed λ. Subclasses override :meth:`token_weights` (loss weights) or set
    ``mixes_gradients`` and override :meth:`mix` (gradient mixes)."""

    name = "fixed"
    mixes_gradients = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # a strategy class is known by its ``name`` once defined (its declaration, label and
        # parameters are in icldistill.train.registry)
        super().__init_subclass__(**kwargs)
        STRATEGY_CLASSES[cls.name] = cls

    def __init__(self, lam: float = 0.0, **params: Any):
        self.lam = float(lam)
        self.params = params

    @property
    def nominal(self) -> float | None:
        """The configured λ (the log's ``lambda`` column)."""
        return self.lam

    def token_weights(
        self,
        task: str,
        ce: float,
        kd: torch.Tensor,
        teacher_values: torch.Tensor,
        vocab_size: int,
        entropy: torch.Tensor | None = None,
    ):
        """λ per answer token of a micro-batch: a float (one λ for all) or a [T] tensor;
        ``entropy`` is the teacher's full-vocabulary entropy per token when the cache has it."""
        return self.lam

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


STRATEGY_CLASSES[Strategy.name] = Strategy


class Entropy(Strategy):
    name = "entropy"

    @property
    def nominal(self) -> float:
        return float(self.params["lambda_max"])

    def token_weights(self, task, ce, kd, teacher_values, vocab_size, entropy=None):
        p = self.params
        return entropy_lambdas(
            teacher_values, p["lambda_max"], vocab_size, p["normalizer"], p.get("temperature", 1.0), entropy
        ).to(kd.device)


class LossRatio(Strategy):
    name = "loss_ratio"

    def __init__(self, lam: float = 0.0, **params: Any):
        super().__init__(lam, **params)
        self.ema_ce: float | None = None
        self.ema_kd: float | None = None

    @property
    def nominal(self) -> float:
        return float(self.params["lambda_0"])

    def token_weights(self, task, ce, kd, teacher_values, vocab_size, entropy=None):
        self.ema_ce = ema(self.ema_ce, ce, self.params["ema"])
        self.ema_kd = ema(self.ema_kd, float(kd.mean()), self.params["ema"])
        return ratio_lambda(self.params["lambda_0"], self.ema_ce, self.ema_kd, self.params.get("lambda_max"))

    def state_dict(self):
        return {"ema_ce": self.ema_ce, "ema_kd": self.ema_kd}

    def load_state_dict(self, state):
        self.ema_ce, self.ema_kd = state["ema_ce"], state["ema_kd"]


class TaskPrior(Strategy):
    name = "task_prior"

    @property
    def nominal(self) -> None:
        return None  # one λ per task, logged as lambda_eff

    def token_weights(self, task, ce, kd, teacher_values, vocab_size, entropy=None):
        return prior_lambda(self.params["lambdas"], task)


class GradConflict(Strategy):
    name = "grad_conflict"
    mixes_gradients = True

    @property
    def nominal(self) -> float:
        return float(self.params["lambda"])

    def mix(self, g_ce, g_kd, **_: Any) -> dict[str, float]:
        """λ_eff of the step and the cosine it came from."""
        cosine = gradient_cosine(g_ce, g_kd)
        return {"lambda_eff": conflict_lambda(self.nominal, cosine), "cos": cosine}


class Meta(Strategy):
    """λ as a learned scalar: each step, a look-ahead SGD step with the current λ, the
    validation CE there, and one gradient step on λ (:func:`meta_hypergradient`)."""

    name = "meta"
    mixes_gradients = True

    def __init__(self, lam: float = 0.0, **params: Any):
        super().__init__(lam, **params)
        self.current = float(params["lambda_init"])

    @property
    def nominal(self) -> float:
        return float(self.params["lambda_init"])

    def mix(self, g_ce, g_kd, *, lr: float, val_gradient, **_: Any) -> dict[str, float]:
        """Update λ with the gradient of the validation loss after a look-ahead step;
        ``val_gradient(step)`` applies ``step`` (a list of parameter updates) temporarily and
        returns ∇L_val there."""
        step = [-lr * (c + self.current * k) for c, k in zip(g_ce, g_kd, strict=True)]
        g_val = val_gradient(step)
        hypergradient = meta_hypergradient(g_val, g_kd, lr)
        scale = lr * math.sqrt(float(flat_dot(g_val, g_val)) * float(flat_dot(g_kd, g_kd)))
        p = self.params
        self.current = meta_lambda(self.current, hypergradient, p["meta_lr"], p["lambda_max"], scale)
        return {"lambda_eff": self.current, "meta_grad": hypergradient}

    def state_dict(self):
        return {"lambda": self.current}

    def load_state_dict(self, state):
        self.current = state["lambda"]


def make_strategy(strategy: str, lam: float, params: dict[str, Any], temperature: float = 1.0) -> Strategy:
    """The strategy object of a KD run's settings."""
    if strategy not in STRATEGY_CLASSES:
        raise ValueError(f"unknown λ strategy {strategy!r}; known: {', '.join(STRATEGY_CLASSES)}")
    extra = {"temperature": temperature} if strategy == "entropy" else {}
    return STRATEGY_CLASSES[strategy](lam, **params, **extra)
