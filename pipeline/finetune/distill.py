"""End-to-end distillation: a whole student learns the teacher's last hidden states.

Used by `export --finetune-steps N` to finish a searched student (after the block-wise training
its blocks have only ever seen the teacher's inputs, never each other's outputs), and by the
benchmark to train the hand-designed baselines for exactly as many steps, so that the comparison
isolates what the search and the supernet bought.

The loss is the MSE of the final states relative to their mean square, plus one minus their mean
cosine similarity. MSE alone is what block-wise training and the re-ranking use, but users read a
student by the direction of its states (fidelity is a cosine): on MiniLM with the pydoc corpus,
400 steps of this loss took a searched 3.5 ms student from 0.58 to 0.74 sentence cosine.

The rate is BERT-small's 1e-3, not a gentle "finishing" one: the student's blocks have never seen
each other's outputs, so there is much to relearn. On the same 3.5 ms student (pydoc + docstrings),
1500 steps reached 0.786 held-out sentence cosine at 3e-4 and 0.825 at 1e-3.

Each step also reads short padded spans of the text, labelled by the teacher on the fly, with terms
on their sentence embeddings and on the similarities between them (spans.py): what users send and
what they compare, which chunks of 128 real tokens never show.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function
from tqdm import tqdm

from pipeline.compute import CHOICES, PRECISIONS, adamw, autocast, compute_device, train_dtype
from pipeline.errors import PipelineError
from pipeline.finetune import labels
from pipeline.finetune.spans import SpanSampler, span_loss
from pipeline.options import opt
from pipeline.schedule import warmup_cosine

DEVICES = CHOICES  # where the steps may run (DistillConfig.device, --finetune-device): compute.py


@dataclass(frozen=True)
class DistillConfig:
    # 0 keeps the supernet's weights as they are; a user asks for fine-tuning and its cost.
    steps: int = opt(0, "end-to-end distillation steps after assembly", flag="--finetune-steps")
    batch_size: int = 8           # chunks per step: 1k tokens at sequence 128, as many as the spans hold
    # Short padded spans beside the chunks, labelled by the teacher on the fly (spans.py): the texts users
    # embed are short and padded, and their similarities are what a search reads. Twice the chunks' rows:
    # a span is on average a quarter of a chunk.
    span_rows: int = opt(16, "short padded spans of the training text per fine-tuning step, labelled by the "
                             "teacher on the fly (0: chunks only)", flag="--finetune-spans", metavar="N")
    span_tokens: tuple[int, int] = (6, 64)  # words of a query up to a long sentence (64 tokens ~ 50 words)
    relation: float = 10.0        # weight of the span batch's similarity-matrix MSE: its entries are cosines,
                                  # errors of ~0.1, so x10 brings it to the other terms' scale
    lr: float = 1e-3              # as block-wise training: the assembled student starts close to the teacher
    weight_decay: float = 0.01    # BERT's
    warmup_frac: float = 0.1      # linear warm-up over the first 10% of steps, then cosine to 10%
    seed: int = 0
    # Augmented views (augment.py) are made only for schedules that read the text many times, where the
    # student starts to overfit it; a few views are enough to break the repetition.
    views: int = opt(3, "at most this many augmented views of the training text for long fine-tuning (0: none)",
                     flag="--finetune-views")
    replace: float = 0.15         # share of a view's tokens replaced (BERT's masking rate)
    # Where the steps run, not the target: long schedules are what a GPU is for, so auto takes CUDA when present.
    device: str = opt("auto", "where fine-tuning runs (not the target): auto is CUDA when present",
                      flag="--finetune-device", choices=DEVICES)

    def __post_init__(self) -> None:
        self.check()  # a bad setting is refused where the config is made, before any work

    def check(self) -> None:
        if self.steps < 0:
            raise PipelineError(f"--finetune-steps must be 0 or more, got {self.steps}")
        if self.batch_size <= 0:
            raise PipelineError(f"the distillation batch size must be positive, got {self.batch_size}")
        if self.span_rows < 0:
            raise PipelineError(f"--finetune-spans must be 0 or more, got {self.span_rows}")
        if self.views < 0:
            raise PipelineError(f"--finetune-views must be 0 or more, got {self.views}")
        if not 0 <= self.replace < 1:
            raise PipelineError(f"the share of replaced tokens must be in [0, 1), got {self.replace}")
        if self.device not in DEVICES:
            raise PipelineError(f"unknown fine-tuning device {self.device!r}; use auto, cpu or gpu")


@dataclass(frozen=True)
class Loop:
    """How the steps run, not what they learn: none of it is part of an artifact's key, and each is
    measured against the plain loop by benchmarks/distill_speed.py (docs/method.md, "Distillation speed")."""
    # The teacher's states of the spans from labels.py's cache, labelled once for every model of a run, not
    # by a teacher pass on every step (a third of a step on 2 cores); the same states up to fp16 rounding.
    cached_labels: bool = True
    # The spans' batch split by length into this many forward passes, each padded to its own longest: random
    # lengths of 6-64 tokens pad ~40% of one batch's slots. The same loss (padding is masked everywhere), but
    # on 2 CPU cores two half batches cost as much as one padded batch (0.89-0.98x, distill_speed.py): off.
    buckets: int = 1
    fused: bool = True            # fused AdamW (compute.adamw): the same update up to rounding, one kernel
    # bf16 autocast of the forward passes where the hardware has bf16 arithmetic (compute.train_dtype), fp32
    # master weights and losses; fp32 elsewhere, where emulated bf16 is slower than fp32.
    precision: str = "auto"

    def __post_init__(self) -> None:
        if self.buckets < 1:
            raise PipelineError(f"the span buckets must be 1 or more, got {self.buckets}")
        if self.precision not in PRECISIONS:
            raise PipelineError(f"unknown training precision {self.precision!r}; use {', '.join(PRECISIONS)}")


LOOP = Loop()
PLAIN = Loop(cached_labels=False, buckets=1, fused=False, precision="fp32")  # the loop before any of it


def lr_at(step: int, cfg: DistillConfig) -> float:
    return warmup_cosine(step, cfg.steps, cfg.lr, int(cfg.steps * cfg.warmup_frac))


def distill(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor, cfg: DistillConfig,
            desc: str = "distil", progress: bool = False, spans: SpanSampler | None = None,
            loop: Loop = LOOP) -> dict[str, float]:
    """Train model(input_ids, attention_mask) -> [B, S, T] towards targets [N, S, T] for chunks
    ids [N, S] (no padding), both on the CPU, and, given spans, on cfg.span_rows spans a step too; the
    steps run on cfg.device and the model comes back on the CPU. Returns the mean loss of the first
    and last tenth of the steps and where they ran."""
    cfg.check()
    if cfg.steps == 0:
        return {"steps": 0, "loss_first": float("nan"), "loss_last": float("nan"), "seconds": 0.0}
    dev = compute_device(cfg.device)
    dtype = train_dtype(loop.precision, dev)
    rows_of_spans = cfg.span_rows if spans is not None else 0
    # Every step's draws first, in the order the steps read them (chunk rows, then spans) with one generator
    # on the CPU: the same batches wherever the steps run, and the spans known before the first step.
    # With cached labels the spans of whole blocks of steps (labels.py), the last block's beyond the schedule.
    g = torch.Generator().manual_seed(cfg.seed)
    cached = loop.cached_labels and rows_of_spans and spans.source_key() is not None
    chunk_rows, plan = [], []
    for _ in range(labels.planned_steps(cfg.steps) if cached else cfg.steps):
        chunk_rows.append(torch.randint(0, ids.shape[0], (cfg.batch_size,), generator=g))
        if rows_of_spans:
            plan.append(spans.draw(rows_of_spans, g))
    store = None
    if rows_of_spans:
        spans.to(dev)
        if cached:
            key = {**spans.source_key(), "seed": cfg.seed, "chunks": int(ids.shape[0]), "batch_size": cfg.batch_size,
                   "span_rows": rows_of_spans}
            store = labels.SpanLabels(spans, torch.stack(plan), key, dev)
    model.to(dev)
    opt = adamw(model.parameters(), cfg.lr, cfg.weight_decay, fused=loop.fused)
    # Per-step losses written into one buffer on the device: no synchronisation per step. Not a list of
    # loss.detach(): each kept loss pinned a small allocation among the step's large ones, glibc's heap
    # fragmented (torch 2.13, CPU), and a 20000-step fine-tune grew by 2 MB a step to 23 GB RSS.
    curve = torch.empty(cfg.steps, device=dev)
    start = time.perf_counter()
    model.train()
    for step in tqdm(range(cfg.steps), desc=desc, unit="step", disable=not progress, leave=False):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        rows = chunk_rows[step]
        # The parts of a step are named for the profiler (distill_speed.py --parts); free when none runs.
        with record_function("distill.chunks"):
            batch = ids[rows].to(dev)                                 # [B, S]
            with autocast(dev, dtype):
                out = model(batch, torch.ones_like(batch))            # [B, S, T]
            loss = distill_loss(out.float(), targets[rows].to(dev))
        if rows_of_spans:
            with record_function("distill.span_labels"):
                if store is not None:
                    span_ids, mask, target = store.at(step)                      # [R, L], [R, L], [R, L, T]
                else:
                    span_ids, mask = (t.to(dev) for t in spans.build(plan[step]))
                    target = spans.label(span_ids, mask)
            with record_function("distill.spans"):
                if loop.buckets > 1:  # rows by length (the loss is the same in any order of rows)
                    order = mask.sum(1).argsort(stable=True)
                    span_ids, mask, target = span_ids[order], mask[order], target[order]
                with autocast(dev, dtype):
                    out = bucketed(model, span_ids, mask, loop.buckets)           # [R, L, T]
                loss = loss + span_loss(out.float(), target, mask, cfg.relation)
        with record_function("distill.backward"):
            opt.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("distill.optimizer"):
            opt.step()
        curve[step] = loss.detach()
    model.eval().to("cpu")
    if spans is not None:
        spans.to(torch.device("cpu"))
    curve = curve.cpu()
    tenth = max(1, cfg.steps // 10)
    return {"steps": cfg.steps, "span_rows": rows_of_spans, "loss_first": float(curve[:tenth].mean()),
            "loss_last": float(curve[-tenth:].mean()), "seconds": time.perf_counter() - start, "device": dev.type,
            "precision": str(dtype).removeprefix("torch."),
            "span_labels": ("cached" if store is not None else "on the fly") if rows_of_spans else None}


def bucketed(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, buckets: int) -> torch.Tensor:
    """model on spans ids, mask [R, L] whose rows are sorted by real length, cut into `buckets` batches,
    each padded only to its own longest -> [R, L, T] (zero on padding beyond a batch's width). What
    model(ids, mask) gives, for a model whose real tokens never read padding (masked attention,
    convolutions on zeroed padding: ops.py)."""
    if buckets == 1:
        return model(ids, mask)
    width, outs = ids.shape[1], []
    for part, part_mask in zip(ids.tensor_split(buckets), mask.tensor_split(buckets), strict=True):
        if part.shape[0] == 0:
            continue
        w = int(part_mask.sum(1).max())
        out = model(part[:, :w], part_mask[:, :w])                                    # [r, w, T]
        outs.append(F.pad(out, (0, 0, 0, width - w)))
    return torch.cat(outs)


def distill_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """out, target [B, S, T] -> relative MSE + (1 - mean token cosine)."""
    relative = F.mse_loss(out, target) / target.pow(2).mean().clamp_min(1e-12)
    return relative + (1 - F.cosine_similarity(out, target, dim=-1).mean())


@torch.no_grad()
def outputs(model: nn.Module, ids: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """model's final states for chunks ids [N, S] -> [N, S, T], in eval mode."""
    model.eval()
    return torch.cat([model(b, torch.ones_like(b)) for b in ids.split(batch_size)])


def fidelity(student: torch.Tensor, teacher: torch.Tensor) -> dict[str, float]:
    """Cosine similarity to the teacher on [N, S, T] states (no padding): of mean-pooled sentence
    embeddings (how sentence-transformers use MiniLM) and of every token's state."""
    s, t = student.double(), teacher.double()
    sentence = F.cosine_similarity(s.mean(1), t.mean(1), dim=-1)      # [N]
    token = F.cosine_similarity(s, t, dim=-1)                         # [N, S]
    return {"sentence": float(sentence.mean()), "token": float(token.mean()),
            "sentence_min": float(sentence.min())}
