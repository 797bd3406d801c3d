"""The teacher's states of the fine-tuning spans, computed once and shared by every model that distils.

Every model of a run distils from the same spans: a step's spans follow from the seed, the chunks'
count, the batch and the span recipe only (distill.py draws them all before the first step), so
the re-ranked candidates, the exported students and the benchmark's baselines read the same span
labels step for step. Labelling them on the fly cost a teacher forward pass on every step of every
model (about a third of a step on 2 CPU cores); here they are labelled once, in blocks of
SHARD_STEPS steps, and kept in $PIPELINE_CACHE/span-labels: real tokens only (no padding), in fp16
(half the bytes; the states' rounding, 1e-3 relative, is far below what a student learns to).

A block is keyed by everything its spans depend on, and by its index, not by the schedule's length:
a 150-step re-rank and a 200-step export share the first three blocks. The spans of a block are
labelled sorted by length in batches of LABEL_BATCH, so the teacher pads far less than a step's
batch of random lengths does.
"""

from __future__ import annotations

from typing import Any

import torch

from pipeline.finetune.spans import SpanSampler

SHARD_STEPS = 50   # steps per cached block: 22 MB at 16 spans of MiniLM's 384 dims; a short re-rank shares them
LABEL_BATCH = 64   # spans per teacher batch when labelling a block (sorted by length, little padding)


def planned_steps(steps: int) -> int:
    """How many steps' spans to draw for a schedule of `steps`: whole blocks, so that a block in the cache is
    always the same whole block whichever schedule labelled it first (a longer one reads on)."""
    return -(-steps // SHARD_STEPS) * SHARD_STEPS


class SpanLabels:
    """The teacher's states of planned spans: `at(step)` -> [n, L, T] fp32 for the spans of that step."""

    def __init__(self, sampler: SpanSampler, plan: torch.Tensor, key: dict[str, Any], device: torch.device,
                 progress: bool = False):
        """plan [planned_steps(steps), n, 3]: every step's spans as SpanSampler.draw gives them, whole blocks;
        key: what the plan and the teacher's states depend on besides the block's index (teacher weights,
        chunks, seed, recipe)."""
        if plan.shape[0] % SHARD_STEPS:
            raise ValueError(f"a plan of {plan.shape[0]} steps is not whole blocks of {SHARD_STEPS}")
        self.sampler, self.plan, self.key, self.device = sampler, plan, key, device
        self.progress = progress
        self._block: int | None = None
        self._states: torch.Tensor | None = None   # [real tokens of the block, T] fp16
        self._offsets: torch.Tensor | None = None  # [steps of the block + 1]: where each step's tokens begin
        self.labelled = 0                          # blocks this object labelled (the rest came from the cache)

    def at(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids [n, L], mask [n, L], teacher states [n, L, T] fp32, zero on padding) of step's spans on
        the device; the same ids and mask as SpanSampler.build of the step's plan."""
        block = step // SHARD_STEPS
        if block != self._block:
            self._load(block)
        ids, mask = self.sampler.build(self.plan[step])
        i = step - block * SHARD_STEPS
        states = self._states[self._offsets[i]:self._offsets[i + 1]]           # [real tokens of the step, T]
        target = torch.zeros(*ids.shape, states.shape[-1])                      # [n, L, T]
        target[mask.bool()] = states.float()                                     # real tokens lead every row
        return ids.to(self.device), mask.to(self.device), target.to(self.device)

    def _load(self, block: int) -> None:
        from pipeline.artifacts import disk_cached

        steps = self.plan[block * SHARD_STEPS:(block + 1) * SHARD_STEPS]           # [k, n, 3]
        key = {**self.key, "block": block, "block_steps": SHARD_STEPS, "format": 1}

        def valid(v: Any) -> bool:
            return (isinstance(v, dict) and isinstance(v.get("states"), torch.Tensor)
                    and isinstance(v.get("offsets"), torch.Tensor) and v["offsets"].shape[0] == steps.shape[0] + 1
                    and int(v["offsets"][-1]) == v["states"].shape[0])

        found = disk_cached("span-labels", key, lambda: self._label(steps), valid)
        self._block, self._states, self._offsets = block, found["states"], found["offsets"]

    def _label(self, steps: torch.Tensor) -> dict[str, torch.Tensor]:
        """The teacher's states of every span of `steps` [k, n, 3], real tokens only, step after step."""
        self.labelled += 1
        drawn = steps.reshape(-1, 3)                                              # [k * n, 3]
        real = drawn[:, 1] + 2                                                    # [CLS] + body + [SEP]
        order = torch.argsort(real, stable=True)
        pieces: list[torch.Tensor | None] = [None] * drawn.shape[0]
        for batch in order.split(LABEL_BATCH):
            ids, mask = self.sampler.build(drawn[batch])
            states = self.sampler.label(ids.to(self.device), mask.to(self.device)).cpu().half()  # [b, L, T]
            for j, row in enumerate(batch.tolist()):
                pieces[row] = states[j, :int(real[row])]
        per_step = real.view(steps.shape[0], -1).sum(1)                           # [k]
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), per_step.cumsum(0)])
        return {"states": torch.cat(pieces), "offsets": offsets}
