"""NAS-KD's differentiable student search (Zhang et al., ICPR 2020), made hardware-aware.

The relaxed student (relaxed.py) learns from the teacher with NAS-KD's loss, task-agnostic as the
rest of the pipeline: the end-to-end distillation loss on the teacher's last states (distill.py's
relative MSE + 1 - cosine) plus `b` x the normalised intermediate term at the block boundaries
(||s/||s|| - t/||t|| ||^2 per token, against the teacher's state at the layer the block ends at).
Training is DARTS's bilevel optimisation, first-order: a step of the op weights on a training batch,
then a step of the architecture weights on a validation batch, whose loss adds the hardware term
`lam x |E[lat] / target - 1|` (TuNAS's absolute reward): E[lat] is the latency predictor's, in
expectation under the softmaxes (relaxed.LatencyTerms), so the penalty pulls the mixture to the
budget from both sides (NAS-KD itself has no notion of hardware). The one-sided hinge
`lam x relu(E[lat] / target - 1)` (FBNet / ProxylessNAS style, `penalty="hinge"`) only pushes down.
Measured on the default supernet (100 steps, benchmarks/results/2026-12-01-search-methods-cpu.md):
the softmaxes stay nearly flat, so the per-layer argmax follows the penalty's small tilt toward
identity and the narrowest width (a 0.25 ms student at 3.5 ms while the mixture sat at 4.9 ms), or,
with the penalty off, the loss's tilt toward the heavy ops (18 ms at 7.5 ms). Reading a flat mixture
out is the open problem; the two-sided penalty at least stops rewarding a mixture far under budget.

The discrete student takes the argmax width per block and the argmax op per layer. It is predicted
with the calibrated predictor; over budget, the architecture weights keep training with the
penalty doubled (at most `anneals` times), and if it still misses, the chosen op with the least
weight is dropped (identity) until it fits: a student over budget is never handed back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline.errors import PipelineError
from pipeline.latency import Predictor
from pipeline.search.relaxed import CHOICES, LatencyTerms, RelaxedStudent
from pipeline.space import Architecture, Block, Frame, canonical_layers, count_params


@dataclass(frozen=True)
class NasKdConfig:
    steps: int = 300              # bilevel steps (one weight step + one architecture step each)
    batch_size: int = 8           # chunks per step: the relaxed student runs every op of every width
    lr: float = 3e-4              # op weights: they start from the trained supernet, so a finishing rate
    arch_lr: float = 3e-3         # DARTS's rate for the architecture weights (Adam)
    arch_weight_decay: float = 1e-3  # DARTS's
    beta: float = 1.0             # weight of the intermediate term (NAS-KD's b); its terms are per-token cosines
    lam: float = 2.0              # hardware penalty per unit of relative excess latency: a 10% excess costs
                                  # 0.2, about the loss gap between a good and a poor block choice
    penalty: str = "absolute"     # |E/B - 1| uses the budget; the hinge is as content far under it (docstring)
    anneals: int = 3              # re-searches (penalty doubled) before dropping ops to fit
    anneal_steps: int = 50        # architecture steps per re-search
    seed: int = 0

    def __post_init__(self) -> None:
        if self.penalty not in PENALTIES:
            raise PipelineError(f"NAS-KD penalty must be one of {', '.join(PENALTIES)}, got {self.penalty!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise PipelineError(f"NAS-KD needs at least one step and one chunk a step, got steps={self.steps}, "
                                f"batch_size={self.batch_size}")


PENALTIES = ("absolute", "hinge")


def latency_penalty(expected_ms: torch.Tensor, budget_ms: float, kind: str) -> torch.Tensor:
    """The hardware term per unit of lam: absolute pulls E[lat] to the budget from both sides, hinge
    only pushes it down to the budget."""
    excess = expected_ms / budget_ms - 1
    return excess.abs() if kind == "absolute" else F.relu(excess)


def fastest_ms(predictor: Predictor, frame: Frame, hidden_sizes: tuple[int, ...], num_blocks: int,
               num_layers: int) -> float:
    """The predicted latency of the fastest student of the space: every layer an identity, the narrowest width."""
    h = min(hidden_sizes)
    blocks = tuple(Block(h, ("identity",) * num_layers) for _ in range(num_blocks))
    return predictor(Architecture(frame.teacher_hidden, frame.embed_dim, blocks, frame.vocab_size,
                                  frame.max_positions))


def naskd_loss(outs: list[torch.Tensor], targets: list[torch.Tensor], beta: float) -> torch.Tensor:
    """outs, targets: states [B, S, T] at every block boundary, the last = the output."""
    from pipeline.finetune.distill import distill_loss

    loss = distill_loss(outs[-1], targets[-1])
    inner = [(F.normalize(s, dim=-1) - F.normalize(t, dim=-1)).pow(2).sum(-1).mean()
             for s, t in zip(outs[:-1], targets[:-1], strict=True)]
    return loss + beta * sum(inner) / max(1, len(inner)) if inner else loss


def to_architecture(student: RelaxedStudent) -> Architecture:
    f = student.frame
    return Architecture(f.teacher_hidden, f.embed_dim, tuple(b.discrete() for b in student.blocks),
                        f.vocab_size, f.max_positions)


def fit_budget(arch: Architecture, student: RelaxedStudent, predictor: Predictor, target_ms: float
               ) -> tuple[Architecture, int]:
    """Drop the chosen op of least architecture weight (to identity) until the prediction fits."""
    dropped = 0
    blocks = [list(b.layers) for b in arch.blocks]
    while predictor(arch) > target_ms:
        best = None
        for n, (block, layers) in enumerate(zip(student.blocks, blocks, strict=True)):
            w = block.hidden_sizes.index(arch.blocks[n].hidden)
            probs = block.alpha[w].softmax(-1)
            for i, op in enumerate(layers):
                if op != "identity":
                    # the layer that chose this op: the alpha row whose argmax it is (canonical order kept)
                    p = float(probs[:, CHOICES.index(op)].max())
                    if best is None or p < best[0]:
                        best = (p, n, i)
        if best is None:
            break
        _, n, i = best
        blocks[n][i] = "identity"
        arch = Architecture(arch.teacher_hidden, arch.embed_dim,
                            tuple(Block(b.hidden, canonical_layers(ls)) for b, ls in zip(arch.blocks, blocks,
                                                                                        strict=True)),
                            arch.vocab_size, arch.max_positions)
        blocks = [list(b.layers) for b in arch.blocks]
        dropped += 1
    return arch, dropped


def nas_kd_search(student: RelaxedStudent, terms: LatencyTerms, predictor: Predictor, budget_ms: float,
                  train: tuple[torch.Tensor, list[torch.Tensor]], val: tuple[torch.Tensor, list[torch.Tensor]],
                  cfg: NasKdConfig = NasKdConfig(), progress: bool = False,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """train, val: (teacher embedding output x [N, S, T], teacher states at every block boundary [N, S, T]
    each). Returns the discrete student and the search's record."""
    floor = fastest_ms(predictor, student.frame, student.blocks[0].hidden_sizes, len(student.blocks),
                       student.blocks[0].num_layers)
    if budget_ms < floor:
        raise PipelineError(f"budget {budget_ms:g} ms is below the fastest student of the space "
                            f"({floor:.3f} ms predicted: every layer an identity at the narrowest width)")
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    w_opt = torch.optim.AdamW(student.weight_parameters(), lr=cfg.lr, weight_decay=0.01)
    a_opt = torch.optim.Adam(student.arch_parameters(), lr=cfg.arch_lr, betas=(0.5, 0.999),
                             weight_decay=cfg.arch_weight_decay)

    def batch(data):
        x, ys = data
        rows = torch.randint(0, x.shape[0], (cfg.batch_size,), generator=g)
        return x[rows], [y[rows] for y in ys], torch.ones(cfg.batch_size, x.shape[1], dtype=torch.int64)

    def arch_step(lam: float, kind: str, target_ms: float = budget_ms) -> tuple[float, float]:
        x, ys, mask = batch(val)
        loss = naskd_loss(student(x, mask), ys, cfg.beta)
        expected = terms.expected_ms(student)
        total = loss + lam * latency_penalty(expected, target_ms, kind)
        a_opt.zero_grad(set_to_none=True)
        total.backward()
        a_opt.step()
        return float(loss.detach()), float(expected.detach())

    start = time.perf_counter()
    curve: list[tuple[float, float, float]] = []
    student.train()
    for _ in tqdm(range(cfg.steps), desc=f"nas-kd {budget_ms:g} ms", unit="step", disable=not progress,
                  leave=False):
        x, ys, mask = batch(train)
        loss = naskd_loss(student(x, mask), ys, cfg.beta)
        w_opt.zero_grad(set_to_none=True)
        loss.backward()
        w_opt.step()
        val_loss, expected = arch_step(cfg.lam, cfg.penalty)
        curve.append((float(loss.detach()), val_loss, expected))
        if not math.isfinite(val_loss):
            raise PipelineError("the NAS-KD search diverged (non-finite loss); try a lower --naskd rate")
    arch = to_architecture(student)
    predicted = predictor(arch)
    anneals, lam = 0, cfg.lam
    while predicted > budget_ms and anneals < cfg.anneals:
        anneals += 1
        lam *= 2
        log(f"nas-kd: the discrete student is predicted at {predicted:.3f} ms, over {budget_ms:g} ms; "
            f"re-searching the architecture weights with the penalty at {lam:g} ({anneals}/{cfg.anneals})")
        # The mixture may sit under the budget while its argmax does not: the target shrinks by the discrete
        # student's overshoot, so that the penalty acts (measured: against the budget itself it did nothing).
        target = budget_ms * budget_ms / predicted
        for _ in range(cfg.anneal_steps):
            arch_step(lam, "hinge", target)  # over budget: push down only
        arch = to_architecture(student)
        predicted = predictor(arch)
    dropped = 0
    if predicted > budget_ms:
        arch, dropped = fit_budget(arch, student, predictor, budget_ms)
        predicted = predictor(arch)
        log(f"nas-kd: dropped {dropped} op(s) of least weight to fit {budget_ms:g} ms ({predicted:.3f} ms)")
    student.eval()
    tenth = max(1, len(curve) // 10)
    first = [sum(c[i] for c in curve[:tenth]) / tenth for i in range(3)]
    last = [sum(c[i] for c in curve[-tenth:]) / tenth for i in range(3)]
    return {"arch": arch, "predicted_ms": predicted, "params": count_params(arch), "steps": cfg.steps,
            "train_loss_first": first[0], "train_loss_last": last[0], "val_loss_first": first[1],
            "val_loss_last": last[1], "expected_ms_first": first[2], "expected_ms_last": last[2],
            "anneals": anneals, "dropped_ops": dropped, "seconds": time.perf_counter() - start,
            "fastest_ms": floor}
