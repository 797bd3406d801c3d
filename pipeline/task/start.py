"""Where a distilled student starts its task training: closer to the fine-tuned teacher.

A searched (or narrowed) student was distilled to produce the base teacher's final states; the task
teacher is that teacher fine-tuned, with a head that reads the mean of its final states. PKD's own
student (the fine-tuned teacher's first k layers, head included) starts from the fine-tuned weights;
a searched student starts from the base teacher's features and a random head, whose first gradients
reach the blocks as noise. Two ways to close that gap, both before `fit`:

- `head_from_teacher`: the student's head starts as the teacher's. The student's final states are in
  the teacher's width and imitate its final states, so the teacher's head reads them as they are.
- `adapt`: the student's final states learn the fine-tuned teacher's, token by token, on the task's
  own text (training examples and any unlabelled text, no labels), as TinyBERT's task distillation
  learns the hidden states before the predictions. The teacher's states of every text are computed
  once per task run (`held_states`, eval mode) and shared by its students; where they would take more
  than `HOLD_BYTES` the teacher runs beside each step instead. An adapted encoder is kept in the cache
  under the content of the student, the teacher, the text and the recipe (`adapted`): a second task run
  on the same student (another task rate, method or head) starts from it at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pipeline.artifacts import disk_cached, short_hash
from pipeline.compute import compute_device, placed
from pipeline.errors import PipelineError
from pipeline.task.models import TaskModel
from pipeline.task.train import Encoded, TaskConfig, batches, curve_ends, pad, run_steps

# The default task's 30,000 texts (544k tokens) hold about 0.8 GB of teacher states (384 floats a token); a
# user's larger unlabelled set (up to TaskConfig.max_unlabeled) would not fit beside training on a small machine.
HOLD_BYTES = 2 * 1024 ** 3
ADAPT_FORMAT = 1  # bump when adapt's recipe changes what an adapted encoder is
Held = list[torch.Tensor] | None | Callable[[], list[torch.Tensor] | None]  # the states, or how to get them


def head_from_teacher(student: TaskModel, teacher: nn.Module) -> bool:
    """Copy the teacher's head into the student's where it reads the same thing (a TaskModel teacher:
    mean-pooled final states of the student's width); False (nothing copied) for a teacher whose own
    head reads [CLS] through a pooler (HeadedTeacher) or of another width."""
    head = getattr(teacher, "head", None)
    if not isinstance(teacher, TaskModel) or head is None or head.weight.shape != student.head.weight.shape:
        return False
    student.head.load_state_dict(head.state_dict())
    return True


def final_states_loss(s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """s, t [B, S, T], mask [B, S] -> relative MSE + (1 - mean cosine) over the real tokens: the export
    stage's distillation loss (finetune/distill.py), with padding left out."""
    m = mask.to(s.dtype)                                                  # [B, S]
    sq = (s - t).pow(2).sum(-1)                                           # [B, S]
    relative = (sq * m).sum() / (t.pow(2).sum(-1) * m).sum().clamp_min(1e-12)
    cos = (F.cosine_similarity(s, t, dim=-1) * m).sum() / m.sum().clamp_min(1)
    return relative + (1 - cos)


def final_states(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The encoder's final states [B, S, T] of a TaskModel (Student or BERT encoder)."""
    if model.is_student:
        return model.encoder(ids, mask)
    return model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state


@torch.no_grad()
def held_states(teacher: TaskModel, rows: Encoded, pad_id: int, limit: int = HOLD_BYTES,
                progress: bool = False, device: str = "cpu") -> list[torch.Tensor] | None:
    """The teacher's final states of every row ([len_i, T] each, eval mode, computed on `device` and held on
    the CPU), to adapt every student of a run on without running the teacher again; None when they would
    take more than `limit` bytes."""
    width = teacher.encoder.config.hidden_size
    if sum(map(len, rows)) * width * 4 > limit:
        return None
    dev = compute_device(device)
    teacher.eval()
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))  # batches of like lengths: little padding to run
    held: list[torch.Tensor | None] = [None] * len(rows)
    size = 64  # rows a batch: inference only, no gradients to hold
    with placed(dev, teacher):
        for b, (ids, mask) in enumerate(tqdm(batches([rows[i] for i in order], pad_id, size),
                                             desc="teacher states", unit="batch", total=-(-len(rows) // size),
                                             disable=not progress, leave=False)):
            states = final_states(teacher, ids.to(dev), mask.to(dev))                # [B, S, T]
            for i, s, n in zip(order[size * b:size * (b + 1)], states, mask.sum(1).tolist(), strict=True):
                held[i] = s[:n].to("cpu", copy=True)                               # no padding kept, one copy
    return held


def adapt(student: TaskModel, teacher: TaskModel, rows: Encoded, pad_id: int, steps: int,
          batch_size: int, lr: float, weight_decay: float, warmup_frac: float, seed: int,
          desc: str = "adapt", progress: bool = False, held: list[torch.Tensor] | None = None,
          device: str = "cpu") -> dict[str, float]:
    """Train the student's encoder for `steps` towards the teacher's final states on batches of `rows`
    (token ids, padded per batch); the head and the projections are not touched. `held`: the teacher's
    states of the rows (held_states), else the teacher runs beside each step. The steps run on `device`
    (a compute.CHOICES name); the models come back on the CPU. Returns the loss over the first and last
    tenth of the steps, the time and where the steps ran."""
    if steps <= 0:
        return {"steps": 0, "seconds": 0.0}
    if not rows:
        raise PipelineError("no text to adapt the students on")
    dev = compute_device(device)
    g = torch.Generator().manual_seed(seed)  # on the CPU: the same batches wherever the steps run

    def step_loss() -> torch.Tensor:
        picks = torch.randint(0, len(rows), (batch_size,), generator=g).tolist()
        ids, mask = (t.to(dev) for t in pad([rows[i] for i in picks], pad_id))     # [B, S] each
        if held is None:
            with torch.no_grad():
                target = final_states(teacher, ids, mask)                   # [B, S, T]
        else:  # zeros at the padding, which the loss leaves out
            target = nn.utils.rnn.pad_sequence([held[i] for i in picks], batch_first=True).to(dev)
        return final_states_loss(final_states(student, ids, mask), target, mask)

    start = time.perf_counter()
    teacher.eval()
    with placed(dev, student, *([teacher] if held is None else [])):
        student.train()
        curve = run_steps(student.encoder.parameters(), steps, lr, warmup_frac, weight_decay, step_loss, desc,
                          progress, dev)
        student.eval()
    first, last = curve_ends(curve, desc, "try fewer --adapt-steps")
    return {"steps": steps, "loss_first": first, "loss_last": last, "seconds": time.perf_counter() - start,
            "rows": len(rows), "device": dev.type}


def adapted(student: TaskModel, teacher: TaskModel, rows: Encoded, pad_id: int, cfg: TaskConfig,
            desc: str = "adapt", progress: bool = False, held: Held = None) -> dict[str, object]:
    """adapt(student, ...) as cfg asks, reused from $PIPELINE_CACHE/task-adapt when this student's encoder was
    adapted to this teacher on these rows with this recipe before (the record then says `reused`). `held`:
    the teacher's states (see adapt), or a function that computes them, called only when the steps run."""
    from pipeline.model.teacher import weights_hash

    dropout = max((m.p for m in student.encoder.modules() if isinstance(m, nn.Dropout)), default=0.0)
    # Where the steps run is left out: the batches are drawn on the CPU, the same wherever they run.
    key = {"student": weights_hash(student.encoder), "teacher": weights_hash(teacher), "rows": short_hash(rows),
           "pad": pad_id, "steps": cfg.adapt_steps, "batch": cfg.batch_size, "lr": cfg.adapt_lr,
           "weight_decay": cfg.weight_decay, "warmup": cfg.warmup_frac, "seed": cfg.seed, "dropout": dropout,
           "format": ADAPT_FORMAT}
    record: dict[str, object] = {}

    def run() -> dict[str, object]:
        states = held() if callable(held) else held
        record.update(adapt(student, teacher, rows, pad_id, cfg.adapt_steps, cfg.batch_size, cfg.adapt_lr,
                            cfg.weight_decay, cfg.warmup_frac, cfg.seed, desc=desc, progress=progress,
                            held=states, device=cfg.device))
        return {"encoder": {k: v.detach().clone() for k, v in student.encoder.state_dict().items()},
                "record": dict(record)}

    names = set(student.encoder.state_dict())
    entry = disk_cached("task-adapt", key, run, valid=lambda e: isinstance(e, dict) and isinstance(
        e.get("encoder"), dict) and set(e["encoder"]) == names and isinstance(e.get("record"), dict))
    if record:  # adapted just now
        return record
    student.encoder.load_state_dict(entry["encoder"])
    student.eval()
    return {**entry["record"], "reused": True}


def prepare(student: TaskModel, teacher: nn.Module, rows: Encoded, pad_id: int, cfg: TaskConfig,
            desc: str = "adapt", progress: bool = False, held: Held = None) -> dict[str, object]:
    """A distilled student's start as cfg asks (adapted for cfg.adapt_steps, reused by content where it was
    before, then the teacher's head when cfg.student_head is "teacher") -> what was done, for the report.
    `held`: see adapted."""
    record: dict[str, object] = {"head": "random"}
    if cfg.adapt_steps:
        if not isinstance(teacher, TaskModel):  # a headed teacher's final states feed a pooler, not the head
            record["adapt"] = {"steps": 0, "why": "the teacher's own head reads [CLS]: nothing to adapt to"}
        else:
            record["adapt"] = adapted(student, teacher, rows, pad_id, cfg, desc=desc, progress=progress, held=held)
    if cfg.student_head == "teacher" and head_from_teacher(student, teacher):
        record["head"] = "teacher"
    return record
