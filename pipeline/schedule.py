"""Learning-rate schedules, one place for every stage that trains: a linear warm-up, then a decay.

- `warmup_cosine`: cosine decay to a floor (block-wise supernet training, end-to-end distillation):
  the floor keeps the last steps learning, where a student still closes on the teacher.
- `warmup_linear`: BERT's fine-tuning schedule, linear decay to zero (the task stage), as PKD and
  the BERT paper fine-tune.
"""

from __future__ import annotations

import math

COSINE_FLOOR = 0.1  # the cosine ends at 10% of the peak rate, not at zero (see above)


def warmup_cosine(step: int, total: int, lr: float, warm: int, floor: float = COSINE_FLOOR) -> float:
    """The rate of step (0-based) of total: lr * (step+1)/warm during the warm-up, then a half cosine from lr
    to floor * lr at the last step (held there past total)."""
    warm = max(1, warm)
    if step < warm:
        return lr * (step + 1) / warm
    t = min(1.0, (step - warm) / max(1, total - warm))
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def warmup_linear(step: int, total: int, lr: float, warm: int) -> float:
    """The rate of step (0-based) of total: the same warm-up, then a straight line from lr to 0 at total."""
    warm = max(1, warm)
    if step < warm:
        return lr * (step + 1) / warm
    return lr * max(0.0, (total - step) / max(1, total - warm))
