"""How close a student can get at all: the read-out cap of its last block's width.

A student's output is out_proj(h), h its last block's H-wide state: its states lie in an
H-dimensional affine subspace of the teacher's T-dimensional space. No training brings them closer
to the teacher than the teacher's states projected onto that subspace, and it learns the subspace
on its training text. So the cap is measured that way: the top-H principal subspace of the
teacher's states on training text, the projection onto it judged on held-out text. On MiniLM
(pydoc; 512 training chunks; validation split) its sentence cosine is 0.883 at H=128, 0.938 at 192,
0.972 at 256 and 1 at 384 (fit and judged on the same validation text: 0.960, 0.984, 0.994, which
would say width hardly matters; the states' lesser directions change from text to text).

The block losses barely see it. Relative MSE is dominated by the states' large mean, which any
width reproduces (MiniLM's last block, quick supernet: 0.027 at 192 wide, 0.026 at 256), while the
cosine of mean-pooled embeddings lives in the directions around it. Short re-ranking does not see it
either: after 150 steps a 192-wide and a 256-wide last block tied at 0.723. After 2000 steps of
fine-tuning at 3.5 ms (cpu) the search's favourite with a 192-wide last block reached 0.825, and two
students of the same predicted latency with a 256-wide one 0.843 and 0.852. So the search prefers
last blocks whose cap reaches MIN_READOUT (search.py's `last_widths`) and falls back to narrower
ones only under budgets that nothing wider meets.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from pipeline.finetune.distill import fidelity

# A student that should reach a sentence cosine near 0.9 needs a last block whose best linear read-out
# into the teacher's width reaches more than that: the read-out is an upper bound of what it can learn.
MIN_READOUT = 0.95


def readout_caps(fit: torch.Tensor, states: torch.Tensor, widths: Iterable[int]) -> dict[int, float]:
    """{H: mean sentence cosine to the teacher's held-out states [N, S, T] of their projection onto the
    top-H principal subspace of its states on the training text, fit [M, S, T]}: about the best a
    student with an H-wide last block, which learns its read-out on that text, can do on new text."""
    t = states.shape[-1]
    x = fit.double().reshape(-1, t)                                        # [M * S, T]
    mean = x.mean(0)
    _, _, v = torch.linalg.svd(x - mean, full_matrices=False)              # v [T, T], rows by variance
    y = states.double().reshape(-1, t) - mean                              # [N * S, T]
    caps = {}
    for h in sorted(set(widths)):
        basis = v[: min(h, t)]                                             # [H, T]
        projected = y @ basis.T @ basis + mean                             # [N * S, T]
        caps[h] = fidelity(projected.view(states.shape), states)["sentence"]
    return caps


def wide_enough(caps: dict[int, float], floor: float = MIN_READOUT) -> set[int]:
    """The widths whose cap reaches `floor`."""
    return {h for h, cap in caps.items() if cap >= floor}
