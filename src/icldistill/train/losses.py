"""Training losses as small pure functions: CE on answer tokens and top-K distillation terms.

Shapes: ``T`` answer tokens (flattened over the batch), ``V`` vocabulary, ``K`` teacher top-K.
The KD terms come per answer token (``*_tokens``, shape [T]) so that a dynamic λ can weigh
each token; their mean is the seed's loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def answer_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens: ``logits`` [T, V] predict ``targets`` [T]."""
    return F.cross_entropy(logits.float(), targets)


def topk_mse_tokens(
    student_logits: torch.Tensor, teacher_values: torch.Tensor, teacher_ids: torch.Tensor
) -> torch.Tensor:
    """Per answer token: MSE between the student's logits gathered at the teacher's top-K ids
    and the teacher's top-K logits, averaged over the K entries ([T])."""
    gathered = student_logits.float().gather(-1, teacher_ids.long())
    return (gathered - teacher_values.float()).pow(2).mean(-1)


def topk_kl_tokens(
    student_logits: torch.Tensor, teacher_values: torch.Tensor, teacher_ids: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Per answer token: KL(teacher ‖ student) on the teacher's top-K ids, both renormalised
    over those K ids at ``temperature``, scaled by T² (Hinton et al.) ([T])."""
    gathered = student_logits.float().gather(-1, teacher_ids.long())
    log_q = F.log_softmax(gathered / temperature, dim=-1)
    log_p = F.log_softmax(teacher_values.float() / temperature, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1) * temperature**2


def topk_mse(student_logits: torch.Tensor, teacher_values: torch.Tensor, teacher_ids: torch.Tensor) -> torch.Tensor:
    """The seed's KD term: :func:`topk_mse_tokens` averaged over the answer tokens."""
    return topk_mse_tokens(student_logits, teacher_values, teacher_ids).mean()


def topk_kl(
    student_logits: torch.Tensor, teacher_values: torch.Tensor, teacher_ids: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """:func:`topk_kl_tokens` averaged over the answer tokens."""
    return topk_kl_tokens(student_logits, teacher_values, teacher_ids, temperature).mean()


KD_LOSSES = {"mse": topk_mse, "kl": topk_kl}


def kd_tokens(name: str, student_logits, teacher_values, teacher_ids, temperature: float = 1.0) -> torch.Tensor:
    """The configured KD term (``mse`` or ``kl``) per answer token ([T])."""
    if name == "mse":
        return topk_mse_tokens(student_logits, teacher_values, teacher_ids)
    if name == "kl":
        return topk_kl_tokens(student_logits, teacher_values, teacher_ids, temperature)
    raise ValueError(f"unknown kd_loss {name!r}; expected one of {', '.join(KD_LOSSES)}")


def kd_term(name: str, student_logits, teacher_values, teacher_ids, temperature: float = 1.0) -> torch.Tensor:
    """The configured KD term averaged over the answer tokens."""
    return kd_tokens(name, student_logits, teacher_values, teacher_ids, temperature).mean()
