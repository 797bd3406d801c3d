"""NAS-KD's differentiable student search (Zhang et al., ICPR 2020), made hardware-aware.

The relaxed student (relaxed.py) learns from the teacher with NAS-KD's loss, task-agnostic as the
rest of the pipeline: the end-to-end distillation loss on the teacher's last states (distill.py's
relative MSE + 1 - cosine) plus `b` x the normalised intermediate term at the block boundaries
(||s/||s|| - t/||t|| ||^2 per token, against the teacher's state at the layer the block ends at).
Training is DARTS's bilevel optimisation, first-order: a step of the op weights on a training batch,
then a step of the architecture weights on a validation batch, whose loss adds the hardware term
`lam x |E[lat] / target - 1|` (TuNAS's absolute reward): E[lat] is the latency predictor's, in
expectation under the softmaxes (relaxed.LatencyTerms), so the penalty pulls the mixture to the
budget from both sides (NAS-KD itself has no notion of hardware). By default the penalty is on
discrete students drawn from the softmaxes (Gumbel-max with straight-through gradients, ProxylessNAS /
FBNet style) rather than on the mixture's expectation: measured at 3.5 ms, the expectation is met by
weight on identity everywhere and the mixture's mode is the empty student (fidelity 0.473 for the
student read out), the sampled penalty kept the students real (0.540; NAS-BERT's search 0.553).
The one-sided hinge `lam x relu(E[lat] / target - 1)` (`penalty="hinge"`) only pushes down; the
two-sided penalty stops rewarding a student far under the budget.

The discrete student is read out of the trained weights (discrete.py): by default the most probable
student under the softmaxes that the calibrated predictor puts within the budget (an exact search),
so it never misses; or, with `readout="argmax"`, DARTS's per-layer argmax, which ignores the budget
(measured: the empty student at 3.5 ms with the mixture at 4.9 ms). Over budget, the argmax readout
keeps training the architecture weights with the penalty doubled (at most `anneals` times), then
drops the chosen ops of least weight until it fits: a student over budget is never handed back.
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

from pipeline.compute import adamw
from pipeline.errors import PipelineError
from pipeline.latency import Predictor
from pipeline.options import opt
from pipeline.search.discrete import READOUTS, argmax_architecture, drop_to_fit, entropy, probable_architecture
from pipeline.search.relaxed import LatencyTerms, RelaxedStudent, sampled_weights
from pipeline.space import Architecture, Block, Frame, count_params

PENALTIES = ("absolute", "hinge")
LATENCIES = ("expected", "sampled")
WIDTHS = ("mixture", "per-width")


@dataclass(frozen=True)
class NasKdConfig:
    # Bilevel steps (one weight step + one architecture step each): at 100 the op softmaxes are still
    # undecided (entropy 0.99); each step runs every op of every layer, so more is for a GPU.
    steps: int = opt(300, "NAS-KD's bilevel steps per search (one weight and one architecture step each)",
                     flag="--naskd-steps", metavar="N")
    batch_size: int = 8           # chunks per step: the relaxed student runs every op of every width
    lr: float = 3e-4              # op weights: they start from the trained supernet, so a finishing rate
    arch_lr: float = 3e-3         # DARTS's rate for the architecture weights (Adam)
    arch_weight_decay: float = 1e-3  # DARTS's
    beta: float = 1.0             # weight of the intermediate term (NAS-KD's b); its terms are per-token cosines
    lam: float = 2.0              # hardware penalty per unit of relative excess latency: a 10% excess costs
                                  # 0.2, about the loss gap between a good and a poor block choice
    penalty: str = "absolute"     # |E/B - 1| uses the budget; the hinge is as content far under it (docstring)
    readout: str = "probable"     # discrete.py: the argmax of a flat mixture ignores the budget
    # The penalty is on the latency of discrete students drawn from the softmaxes (Gumbel-max, straight-
    # through), the mean over `samples`: students must meet the budget, not the mixture's expectation,
    # which is met most cheaply by weight on identity everywhere (an empty mode). "expected": on the mixture.
    latency: str = "sampled"
    samples: int = 4              # draws per step: the penalty's noise falls as 1/sqrt(samples), each is cheap
    # "per-width": one search per width with every block that width, the discrete student of least
    # validation loss kept: the mixture's width softmaxes never decide, so its widths are left to the
    # readout, while each width's run costs about 1/W of a mixture step. "mixture": per block a softmax
    # over the widths, as over the ops (one search).
    widths: str = opt("per-width", "NAS-KD's widths: per-width, one search per width (every block that width), the "
                      "least validation loss kept; mixture, a softmax over widths per block",
                      flag="--naskd-widths", choices=WIDTHS)
    anneals: int = 3              # argmax readout: re-searches (penalty doubled) before dropping ops to fit
    anneal_steps: int = 50        # architecture steps per re-search
    seed: int = 0

    def __post_init__(self) -> None:
        if self.penalty not in PENALTIES:
            raise PipelineError(f"NAS-KD penalty must be one of {', '.join(PENALTIES)}, got {self.penalty!r}")
        if self.latency not in LATENCIES:
            raise PipelineError(f"NAS-KD latency must be one of {', '.join(LATENCIES)}, got {self.latency!r}")
        if self.samples < 1:
            raise PipelineError(f"NAS-KD needs at least one sampled student a step, got samples={self.samples}")
        if self.widths not in WIDTHS:
            raise PipelineError(f"NAS-KD widths must be one of {', '.join(WIDTHS)}, got {self.widths!r}")
        if self.readout not in READOUTS:
            raise PipelineError(f"NAS-KD readout must be one of {', '.join(READOUTS)}, got {self.readout!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise PipelineError(f"NAS-KD needs at least one step and one chunk a step, got steps={self.steps}, "
                                f"batch_size={self.batch_size}")


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


def nas_kd_search(student: RelaxedStudent, terms: LatencyTerms, predictor: Predictor, budget_ms: float,
                  train: tuple[torch.Tensor, list[torch.Tensor]], val: tuple[torch.Tensor, list[torch.Tensor]],
                  cfg: NasKdConfig = NasKdConfig(), progress: bool = False,
                  log: Callable[[str], None] = print, min_use: float = 0.0) -> dict[str, Any]:
    """train, val: (teacher embedding output x [N, S, T], teacher states at every block boundary [N, S, T]
    each). Returns the discrete student and the search's record. `min_use`: the probable readout prefers
    students predicted at this share of the budget or more (discrete.py)."""
    floor = fastest_ms(predictor, student.frame, student.blocks[0].hidden_sizes, len(student.blocks),
                       student.blocks[0].num_layers)
    if budget_ms < floor:
        raise PipelineError(f"budget {budget_ms:g} ms is below the fastest student of the space "
                            f"({floor:.3f} ms predicted: every layer an identity at the narrowest width)")
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    w_opt = adamw(student.weight_parameters(), cfg.lr, 0.01)
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
        if cfg.latency == "sampled":
            penalty = sum(latency_penalty(terms.expected_ms(student, weights=sampled_weights(student)), target_ms,
                                          kind) for _ in range(cfg.samples)) / cfg.samples
        else:
            penalty = latency_penalty(expected, target_ms, kind)
        total = loss + lam * penalty
        a_opt.zero_grad(set_to_none=True)
        total.backward()
        a_opt.step()
        return float(loss.detach()), float(expected.detach())

    def anneal(arch: Architecture, predicted: float) -> tuple[Architecture, int, int]:
        """The argmax readout's bounded re-search, then the ops of least weight dropped until it fits."""
        anneals, lam = 0, cfg.lam
        while predicted > budget_ms and anneals < cfg.anneals:
            anneals += 1
            lam *= 2
            log(f"nas-kd: the discrete student is predicted at {predicted:.3f} ms, over {budget_ms:g} ms; "
                f"re-searching the architecture weights with the penalty at {lam:g} ({anneals}/{cfg.anneals})")
            # The mixture may sit under the budget while its argmax does not: the target shrinks by the
            # discrete student's overshoot, so that the penalty acts (against the budget itself it did nothing).
            target = budget_ms * budget_ms / predicted
            for _ in range(cfg.anneal_steps):
                arch_step(lam, "hinge", target)  # over budget: push down only
            arch = argmax_architecture(student)
            predicted = predictor(arch)
        dropped = 0
        if predicted > budget_ms:
            arch, dropped = drop_to_fit(arch, student, predictor, budget_ms)
            log(f"nas-kd: dropped {dropped} op(s) of least weight to fit {budget_ms:g} ms "
                f"({predictor(arch):.3f} ms)")
        return arch, anneals, dropped

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
    argmax = argmax_architecture(student)
    argmax_ms = predictor(argmax)
    anneals = dropped = 0
    if cfg.readout == "probable":
        arch = probable_architecture(student, predictor, budget_ms, min_use)
    else:
        arch, anneals, dropped = anneal(argmax, argmax_ms)
    predicted = predictor(arch)
    if arch != argmax:
        log(f"nas-kd: the per-layer argmax {argmax.describe()} is predicted at {argmax_ms:.3f} ms "
            f"(budget {budget_ms:g} ms); the {cfg.readout} readout gives {arch.describe()} at {predicted:.3f} ms")
    student.eval()
    tenth = max(1, len(curve) // 10)
    first = [sum(c[i] for c in curve[:tenth]) / tenth for i in range(3)]
    last = [sum(c[i] for c in curve[-tenth:]) / tenth for i in range(3)]
    return {"arch": arch, "predicted_ms": predicted, "params": count_params(arch), "steps": cfg.steps,
            "train_loss_first": first[0], "train_loss_last": last[0], "val_loss_first": first[1],
            "val_loss_last": last[1], "expected_ms_first": first[2], "expected_ms_last": last[2],
            "readout": cfg.readout, "argmax": argmax.describe(), "argmax_ms": argmax_ms,
            "entropy": entropy(student), "alphas": [b.alpha.detach().tolist() for b in student.blocks],
            "betas": [b.beta.detach().tolist() for b in student.blocks], "anneals": anneals, "dropped_ops": dropped,
            "seconds": time.perf_counter() - start, "fastest_ms": floor}


@torch.no_grad()
def readout_loss(student: RelaxedStudent, arch: Architecture, val: tuple[torch.Tensor, list[torch.Tensor]],
                 cfg: NasKdConfig = NasKdConfig()) -> float:
    """The discrete student's NAS-KD loss on all of `val` (the relaxed student set one-hot to `arch`, its
    architecture weights restored after): what per-width searches are compared by."""
    saved = [(b.alpha.detach().clone(), b.beta.detach().clone()) for b in student.blocks]
    for block, b in zip(student.blocks, arch.blocks, strict=True):
        block.set_one_hot(b)
    x, ys = val
    total = 0.0
    for i in range(0, x.shape[0], cfg.batch_size):
        xb = x[i:i + cfg.batch_size]
        mask = torch.ones(xb.shape[0], xb.shape[1], dtype=torch.int64)
        total += float(naskd_loss(student(xb, mask), [y[i:i + cfg.batch_size] for y in ys], cfg.beta)) * len(xb)
    for block, (alpha, beta) in zip(student.blocks, saved, strict=True):
        block.alpha.copy_(alpha)
        block.beta.copy_(beta)
    return total / x.shape[0]


def nas_kd_widths(make: Callable[[tuple[int, ...]], tuple[RelaxedStudent, LatencyTerms]],
                  hidden_sizes: tuple[int, ...], predictor: Predictor, budget_ms: float,
                  train: tuple[torch.Tensor, list[torch.Tensor]], val: tuple[torch.Tensor, list[torch.Tensor]],
                  cfg: NasKdConfig = NasKdConfig(), progress: bool = False,
                  log: Callable[[str], None] = print, min_use: float = 0.0) -> dict[str, Any]:
    """nas_kd_search over the widths as `cfg.widths` says: one relaxed student of all of them (`make`
    builds a warm-started student and its latency terms for given widths), or one per width, keeping
    the discrete student of least validation loss. The record says which widths each run had."""
    groups = [hidden_sizes] if cfg.widths == "mixture" else [(h,) for h in hidden_sizes]
    runs = []
    for widths in groups:
        student, terms = make(widths)
        if len(groups) > 1 and fastest_ms(predictor, student.frame, widths, len(student.blocks),
                                          student.blocks[0].num_layers) > budget_ms:
            log(f"nas-kd: no student {widths[0]} wide fits {budget_ms:g} ms; that width is skipped")
            continue
        found = nas_kd_search(student, terms, predictor, budget_ms, train, val, cfg, progress, log, min_use)
        found["widths"] = list(widths)
        found["readout_val_loss"] = readout_loss(student, found["arch"], val, cfg)
        runs.append(found)
    if not runs:  # per width: even the narrowest misses (the mixture raised in nas_kd_search already)
        raise PipelineError(f"budget {budget_ms:g} ms is below the fastest student of every width")
    return runs[0] if cfg.widths == "mixture" else best_of(runs, log)


def best_of(runs: list[dict[str, Any]], log: Callable[[str], None] = print) -> dict[str, Any]:
    """The per-width search of least discrete validation loss, with every run's summary and their total time."""
    best = min(runs, key=lambda r: r["readout_val_loss"])
    log("nas-kd per width: " + ", ".join(f"{r['widths'][0]}: {r['readout_val_loss']:.4f}" for r in runs)
        + f"; keeping {best['widths'][0]}")
    return {**best, "seconds": sum(r["seconds"] for r in runs),
            "per_width": [{"widths": r["widths"], "describe": r["arch"].describe(), "predicted_ms": r["predicted_ms"],
                           "readout_val_loss": r["readout_val_loss"], "val_loss_last": r["val_loss_last"],
                           "seconds": r["seconds"]} for r in runs]}
