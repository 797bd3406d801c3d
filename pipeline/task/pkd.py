"""Patient knowledge distillation (PKD; Sun, Cheng, Gan, Liu 2019) for a labelled task.

    L = (1 - a) CE(labels) + a T^2 KL(teacher soft targets at T || student at T)
        + b mean_k || s_k / ||s_k|| - t_k / ||t_k|| ||^2 / D

over the [CLS] states s_k of the student's intermediate layers and t_k of the teacher's layers
they are mapped to (`layer_map`): PKD-Skip takes every (L/n)-th teacher layer, PKD-Last the last
ones. The last layer is left out of the intermediate term, as in PKD: the soft targets teach it.
For regression the soft term is the MSE to the teacher's prediction (no temperature).

Methods (`--method`): `pkd` (all three terms), `kd` (soft targets only: a = 1, b = 0), `ce` (plain
fine-tuning on the labels: a = 0, b = 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

METHODS = ("pkd", "kd", "ce")
MAPS = ("skip", "last")


def layer_map(student_layers: int, teacher_layers: int, mode: str = "skip") -> list[int]:
    """Teacher layers (1-based) for the student's intermediate layers 1 .. student_layers - 1.

    skip: evenly spaced, layer i -> i * L / n rounded half up (PKD's {2, 4, 6, 8, 10} for 6 of 12);
    last: the layers just below the teacher's last, L - n + 1 .. L - 1 ({7, ..., 11} for 6 of 12)."""
    n, big = student_layers, teacher_layers
    if mode not in MAPS:
        raise ValueError(f"unknown PKD layer map {mode!r}; use skip or last")
    if n < 1 or big < 1:
        raise ValueError(f"layer counts must be positive, got {n} and {big}")
    if n > big:
        raise ValueError(f"a student of {n} layers has more layers than its teacher ({big}) to map to")
    if mode == "skip":
        return [max(1, min(big - 1, int(i * big / n + 0.5))) for i in range(1, n)]
    return [big - n + i for i in range(1, n)]


def normalised_distance(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """s, t [B, D] -> || s/||s|| - t/||t|| ||^2 averaged over the batch and the D dimensions: PKD's code
    takes the MSE of the normalised states, and its b = 500 is set for that scale. s, t [B, S, D] (every
    token's state) with mask [B, S]: the same averaged over the real tokens only."""
    d = (F.normalize(s, dim=-1) - F.normalize(t, dim=-1)).pow(2)
    if s.dim() == 2:
        return d.mean()
    m = mask.unsqueeze(-1).to(d.dtype)                                   # [B, S, 1]
    return (d * m).sum() / (m.sum() * d.shape[-1]).clamp(min=1)


def pkd_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor,
             student_states: list[torch.Tensor], teacher_states: list[torch.Tensor],
             alpha: float, temperature: float, beta: float, regression: bool = False,
             labeled: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
    """logits, teacher_logits [B, C] ([B, 1] for regression); labels [B] (class indices or floats);
    student_states, teacher_states: mapped pooled states [B, D] each, pairwise, or every token's [B, S, D]
    with the attention mask [B, S]. labeled [B] bool: the rows that have a label (the others are
    unlabelled text: soft and intermediate terms only); None: all."""
    if len(student_states) != len(teacher_states):
        raise ValueError(f"{len(student_states)} student states against {len(teacher_states)} teacher states")
    rows = labeled if labeled is not None else torch.ones(len(logits), dtype=torch.bool, device=logits.device)
    if not bool(rows.any()):
        hard = logits.sum() * 0.0  # a batch of unlabelled rows only: no label term
    elif regression:
        hard = F.mse_loss(logits.squeeze(-1)[rows], labels[rows].float())
    else:
        hard = F.cross_entropy(logits[rows], labels[rows])
    if regression:
        soft = F.mse_loss(logits, teacher_logits)
    else:
        soft = F.kl_div(F.log_softmax(logits / temperature, dim=-1), F.softmax(teacher_logits / temperature, dim=-1),
                        reduction="batchmean") * temperature ** 2
    loss = (1 - alpha) * hard + alpha * soft
    if beta and student_states:
        # PKD's code averages over the mapped layers too (one MSE of the stacked states)
        distance = sum(normalised_distance(s, t, mask) for s, t in zip(student_states, teacher_states, strict=True))
        loss = loss + beta * distance / len(student_states)
    return loss


def method_weights(method: str, alpha: float, beta: float) -> tuple[float, float]:
    """(a, b) of `method`: pkd keeps the given ones, kd is soft targets alone, ce labels alone."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use pkd, kd or ce")
    return {"pkd": (alpha, beta), "kd": (1.0, 0.0), "ce": (0.0, 0.0)}[method]
