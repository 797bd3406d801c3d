"""Training on a labelled task: the teacher by plain fine-tuning, the students by PKD from it.

The training split is tokenised once; a step draws a random batch and pads it to its longest
example. The teacher's logits and pooled states at every layer are computed once for the whole
training split (dropout off: PKD's soft targets are the teacher's predictions), so a student's
step costs only its own forward and backward.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from pipeline.compute import CHOICES, adamw, autocast, compute_device, placed, train_dtype
from pipeline.errors import PipelineError
from pipeline.options import opt
from pipeline.schedule import warmup_linear
from pipeline.task.data import Split
from pipeline.task.models import POOLS
from pipeline.task.pkd import MAPS, METHODS, method_weights, pkd_loss

HEADS = ("random", "teacher")  # where a distilled student's task head starts (TaskConfig.student_head)


@dataclass(frozen=True)
class TaskConfig:
    method: str = opt("pkd", "how students learn the task: pkd (labels, soft targets and intermediate states), "
                      "kd (soft targets only), ce (labels only)", choices=METHODS)
    pkd: str = opt("skip", "which teacher layers a student's intermediate layers learn: skip (evenly spaced) or "
                   "last (the last ones)", choices=MAPS)
    # PKD's released presets: a = 0.7, T = 10, b = 500 on normalised states; the paper searched
    # T in {5, 10, 20}, a in {0.2, 0.5, 0.7}, b in {10, 100, 500, 1000}.
    # PKD matches [CLS] states because BERT's classifier reads [CLS]; the heads here read the mean over
    # the tokens (the default teacher's own pooling), so its states at each layer are the analogue.
    # tokens: every token's state, as TinyBERT's task distillation; too many to hold for a whole training
    # split, so the teacher runs beside each step (about twice the step time of a small student).
    pkd_states: str = opt("cls", "which state of a layer the intermediate term matches: cls (PKD's), "
                          "mean (over the real tokens, what the heads read) or tokens (every token's)",
                          choices=POOLS)
    alpha: float = opt(0.7, "weight of the soft targets against the labels (a)")
    temperature: float = opt(10.0, "temperature of the soft targets (T)")
    beta: float = opt(500.0, "weight of the normalised intermediate states (b)")
    # A distilled student's final states are in the teacher's width and imitate them, so the fine-tuned
    # teacher's head reads them as they are; a random head sends noise into the blocks at the first steps.
    # PKD's own student (the teacher's first k layers) starts from the teacher's head too.
    student_head: str = opt("teacher", "where a distilled student's head starts: teacher (the fine-tuned "
                            "teacher's) or random", choices=HEADS)
    # PKD's students (the teacher's first k layers) learn the task with BERT's dropout inside; a distilled
    # student was distilled without any (its states imitate the teacher's exactly), so none by default.
    student_dropout: float = opt(0.0, "dropout inside a distilled student's layers while it learns the task "
                                 "(BERT's 0.1 is what the PKD baselines train with)")
    # The student was distilled to the base teacher; the task teacher is fine-tuned. First its final states
    # become the fine-tuned teacher's on the task's text, then it learns the predictions (TinyBERT's two
    # stages); as many steps as the task's, each stage its own schedule as in TinyBERT.
    adapt_steps: int = opt(1500, "steps in which a distilled student's final states learn the fine-tuned "
                           "teacher's on the task's text (its unlabelled text too) before the task (0: none)")
    steps: int = opt(1500, "training steps per student (the baselines get as many)", flag="--task-steps")
    # The teacher learns the task first when it has no head for it: it starts pretrained, so fewer steps.
    teacher_steps: int = opt(1000, "fine-tuning steps of the teacher when it has no head for the task")
    batch_size: int = 32          # BERT's fine-tuning batch
    # Three times BERT-small's fine-tuning rate 1e-4: a distilled student starts adapted, with the teacher's
    # head, but its blocks were never trained as a classifier's and have a task's worth of way to go in
    # 1500 steps; small students bear larger steps than the teacher's 5e-5 (the export's 1e-3 did not
    # diverge). Measured ahead of 1e-4 on both students tried, by less than noise each (benchmarks/results).
    lr: float = opt(3e-4, "learning rate of the students and baselines on the task", flag="--task-lr")
    # The task's rate, not the export's 1e-3: adapting moves the final states only, and a fast move pulls
    # them away from the intermediate states that the task's patient term reads.
    adapt_lr: float = 1e-4
    teacher_lr: float = 5e-5      # BERT's fine-tuning rate for a pretrained model
    warmup_frac: float = 0.1      # BERT's linear warm-up, then linear decay to 0
    weight_decay: float = 0.01    # BERT's
    max_length: int = 128         # tokens per example: the profile's sequence length, what latency is measured at
    seed: int = opt(0, "random seed of the students' heads and batches")
    # Apart from the students' seed: students of several seeds then learn from one teacher, fine-tuned
    # (and cached) once, so that their spread is the students' own.
    teacher_seed: int = opt(0, "random seed of the teacher's fine-tuning on the task")
    # Where the task has unlabelled text (the default task's extra glosses, --unlabeled), the students also
    # learn the teacher's predictions and states on it, a batch of it beside each labelled batch: a small
    # labelled set is few examples of what the teacher knows, and its predictions on more text of the kind are
    # free labels (Tang et al. 2019, TinyBERT's task distillation). It costs 1.7x the task's steps; a task
    # without unlabelled text is not affected.
    transfer: bool = opt(True, "do not also distil on the task's unlabelled text (a second batch beside each "
                         "labelled one)", flag="--no-transfer")
    # The teacher's states at every layer on each example are held in memory: 50k examples x 11 layers
    # x 768 floats is 1.7 GB for BERT-base. A larger unlabelled set is sampled down (seeded).
    max_unlabeled: int = 50_000
    # Where the steps run, not the target (as the export's --finetune-device): the teacher's fine-tuning, the
    # students' adaptation and task training are long step loops, what a GPU is for; the batches are drawn on
    # the CPU (the same batches wherever they run) and the models come back to the CPU to be exported.
    device: str = opt("auto", "where task training runs (not the target): auto is CUDA when present",
                      flag="--task-device", choices=CHOICES)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise PipelineError(f"unknown --method {self.method!r}; use pkd, kd or ce")
        if self.pkd not in MAPS:
            raise PipelineError(f"unknown --pkd {self.pkd!r}; use skip or last")
        if self.pkd_states not in POOLS:
            raise PipelineError(f"unknown --pkd-states {self.pkd_states!r}; use cls, mean or tokens")
        if self.student_head not in HEADS:
            raise PipelineError(f"unknown --student-head {self.student_head!r}; use random or teacher")
        if not 0 <= self.student_dropout < 1:
            raise PipelineError(f"--student-dropout must be in [0, 1), got {self.student_dropout}")
        if self.lr <= 0:
            raise PipelineError(f"--task-lr must be positive, got {self.lr}")
        if self.adapt_steps < 0:
            raise PipelineError(f"--adapt-steps must be 0 or more, got {self.adapt_steps}")
        if not 0 <= self.alpha <= 1:
            raise PipelineError(f"--alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0 or self.beta < 0:
            raise PipelineError("--temperature must be positive and --beta 0 or more")
        if self.steps < 1 or self.teacher_steps < 0:
            raise PipelineError("--task-steps must be positive and --teacher-steps 0 or more")
        if self.device not in CHOICES:
            raise PipelineError(f"unknown --task-device {self.device!r}; use {', '.join(CHOICES)}")

    def quick(self) -> TaskConfig:
        from dataclasses import replace

        return replace(self, steps=300, teacher_steps=300, adapt_steps=300)


Encoded = list[list[int]]


def encode(tokenizer, split: Split, max_length: int) -> Encoded:
    """Token ids of every example ([CLS] text [SEP] (pair [SEP])), truncated to max_length."""
    if split.pairs is None:
        enc = tokenizer(split.texts, truncation=True, max_length=max_length)
    else:
        enc = tokenizer(split.texts, split.pairs, truncation=True, max_length=max_length)
    return enc["input_ids"]


def pad(rows: Encoded, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged ids -> (ids [B, S], mask [B, S]) padded to the longest."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.int64)
    mask = torch.zeros(len(rows), width, dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return ids, mask


def batches(rows: Encoded, pad_id: int, size: int = 64):
    """(ids, mask) batches in order, each sorted-free and padded to its own longest."""
    for i in range(0, len(rows), size):
        yield pad(rows[i:i + size], pad_id)


def lr_at(step: int, steps: int, lr: float, warmup_frac: float) -> float:
    return warmup_linear(step, steps, lr, int(steps * warmup_frac))


def run_steps(params, steps: int, lr: float, warmup_frac: float, weight_decay: float,
              step_loss: Callable[[], torch.Tensor], desc: str, progress: bool,
              device: torch.device | None = None) -> torch.Tensor:
    """AdamW on params for `steps` steps of step_loss() (which draws its own batch) under BERT's schedule
    (linear warm-up, then linear decay); the loss of every step [steps], on the CPU. The callers set
    train/eval and place the model; on `device` the forward passes run in bf16 where it has bf16
    arithmetic (compute.train_dtype), fp32 weights and losses."""
    opt_ = adamw(params, lr, weight_decay)
    dtype = train_dtype("auto", device) if device is not None else torch.float32
    curve = None  # on the loss's device: no synchronisation per step on a GPU
    for step in tqdm(range(steps), desc=desc, unit="step", disable=not progress, leave=False):
        for group in opt_.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup_frac)
        with autocast(device or torch.device("cpu"), dtype):
            loss = step_loss().float()
        opt_.zero_grad(set_to_none=True)
        loss.backward()
        opt_.step()
        if curve is None:
            curve = torch.empty(steps, device=loss.device)
        curve[step] = loss.detach()
    return curve.cpu() if curve is not None else torch.empty(0)


@torch.no_grad()
def predict(model, rows: Encoded, pad_id: int) -> torch.Tensor:
    """logits [N, C] of a module or deployed artifact (input_ids, attention_mask) -> [B, C] (modules in eval mode)."""
    if isinstance(model, nn.Module):
        model.eval()
    return torch.cat([model(ids, mask).float() for ids, mask in batches(rows, pad_id)])


@torch.no_grad()
def teacher_targets(teacher, rows: Encoded, pad_id: int, progress: bool = False,
                    pool: str = "cls", device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's (logits [N, C], pooled states of its intermediate layers [N, L - 1, T]) in eval mode,
    computed on `device` (a compute.CHOICES name) and returned on the CPU; for pool="tokens" no states
    ([N, 0, C]): `fit` runs the teacher beside each step for them."""
    dev = compute_device(device)
    teacher.eval()
    logits, states = [], []
    with placed(dev, teacher):
        for ids, mask in tqdm(batches(rows, pad_id), desc="teacher targets", unit="batch",
                              total=-(-len(rows) // 64), disable=not progress, leave=False):
            lg, pooled = teacher.features(ids.to(dev), mask.to(dev), [] if pool == "tokens" else None, pool=pool)
            logits.append(lg.float().cpu())
            states.append(torch.stack(pooled, 1).float().cpu() if pooled else torch.zeros(len(ids), 0, lg.shape[1]))
    return torch.cat(logits), torch.cat(states)


def curve_ends(curve: torch.Tensor, desc: str, advice: str) -> tuple[float, float]:
    """Mean loss over the first and the last tenth of a run's steps; a one-line error when it diverged."""
    tenth = max(1, len(curve) // 10)
    first, last = float(curve[:tenth].mean()), float(curve[-tenth:].mean())
    if not math.isfinite(last):
        raise PipelineError(f"{desc}: the loss diverged (last {last}); {advice}")
    return first, last


def fit(model, rows: Encoded, labels: list, pad_id: int, cfg: TaskConfig, regression: bool,
        targets: tuple[torch.Tensor, torch.Tensor] | None = None, layer_map: list[int] | None = None,
        steps: int | None = None, lr: float | None = None, desc: str = "task", progress: bool = False,
        transfer: Encoded | None = None, teacher: nn.Module | None = None) -> dict[str, float]:
    """Train a TaskModel on (rows, labels): with targets (teacher logits [N, C], teacher pooled states
    [N, L - 1, T], pooled as cfg.pkd_states) by cfg.method and the layer map (student layer i -> teacher
    layer layer_map[i-1]); without, by plain cross-entropy (or MSE). `transfer`: unlabelled rows, learnt
    from the targets only (targets then cover rows + transfer, in that order); each step adds a batch of
    them to the labelled batch (measured: drawn from the union instead, the labels were diluted and
    accuracy fell). `teacher`: for cfg.pkd_states "tokens", run beside each step for its states. The steps run
    on cfg.device; the model comes back on the CPU. Returns the loss at the start and the end, the time and
    where the steps ran."""
    steps = cfg.steps if steps is None else steps
    lr = cfg.lr if lr is None else lr
    if steps == 0:
        return {"steps": 0, "seconds": 0.0}
    alpha, beta = method_weights(cfg.method, cfg.alpha, cfg.beta) if targets is not None else (0.0, 0.0)
    n_labeled, transfer = len(rows), transfer or []
    if targets is not None and len(targets[0]) != n_labeled + len(transfer):
        raise ValueError(f"{len(targets[0])} teacher targets for {n_labeled} + {len(transfer)} examples")
    if transfer and (alpha or beta):  # plain fine-tuning has nothing to learn from text without labels
        rows = rows + transfer
        labels = list(labels) + [0] * len(transfer)  # placeholders, masked out of the label term
    y = torch.tensor(labels, dtype=torch.float32 if regression else torch.int64)
    has_label = torch.arange(len(rows)) < n_labeled
    mapped = layer_map or []
    tokens = cfg.pkd_states == "tokens" and bool(beta and mapped)
    if tokens and teacher is None:
        raise ValueError("--pkd-states tokens needs the teacher beside the student")
    if tokens:
        teacher.eval()
    dev = compute_device(cfg.device)
    g = torch.Generator().manual_seed(cfg.seed)  # on the CPU: the same batches wherever the steps run

    def step_loss() -> torch.Tensor:
        rows_ = torch.randint(0, n_labeled, (cfg.batch_size,), generator=g)
        if len(rows) > n_labeled:  # as many unlabelled rows beside them: the labels are seen as often as without
            rows_ = torch.cat([rows_, torch.randint(n_labeled, len(rows), (cfg.batch_size,), generator=g)])
        ids, mask = (t.to(dev) for t in pad([rows[i] for i in rows_.tolist()], pad_id))    # [B, S] each
        labels_ = y[rows_].to(dev)
        if targets is None:
            logits = model(ids, mask)
            loss = pkd_loss(logits, labels_, logits.detach(), [], [], 0.0, 1.0, 0.0, regression)
        else:
            use = mapped if beta else []
            logits, states = model.features(ids, mask, list(range(1, len(use) + 1)), pool=cfg.pkd_states)
            if tokens:
                with torch.no_grad():
                    teacher_states = teacher.features(ids, mask, use, pool="tokens")[1]   # [B, S, T] each
            else:
                teacher_states = [targets[1][rows_, k - 1].to(dev) for k in use]
            loss = pkd_loss(logits, labels_, targets[0][rows_].to(dev), states, teacher_states, alpha,
                            cfg.temperature, beta, regression, labeled=has_label[rows_].to(dev), mask=mask)
        return loss

    start = time.perf_counter()
    with placed(dev, model, *([teacher] if tokens else [])):
        model.train()
        curve = run_steps(model.parameters(), steps, lr, cfg.warmup_frac, cfg.weight_decay, step_loss, desc,
                          progress, dev)
        model.eval()
    first, last = curve_ends(curve, desc, "try a lower rate or fewer steps")
    return {"steps": steps, "loss_first": first, "loss_last": last, "seconds": time.perf_counter() - start,
            "unlabeled": len(rows) - n_labeled, "device": dev.type}
