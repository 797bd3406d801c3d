"""Short padded spans of the training text, labelled by the teacher.

Users embed short texts (a query, a sentence, a line) padded in batches; the training chunks are 128
real tokens with no padding. A student fine-tuned on chunks alone never sees a text begin and end
within a few dozen tokens, nor padding beside it. So every fine-tuning step also reads a batch of
random spans of the training text, each wrapped in [CLS] ... [SEP] like a tokenised sentence and
padded to the longest of the batch, and labelled by the teacher: on the fly (`__call__`), or once
for every model that draws the same spans (labels.py; distill.py draws a schedule's spans before
its first step).

On spans the loss also compares what users compare (span_loss): the mean-pooled sentence
embeddings, and their cosine similarities to each other within the batch (relational
distillation: the ranking a user's search sees). Measured on the 7.5 ms student of `run --quick`,
400 more steps with half the rows as spans against chunks alone (docs/experiments.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SpanSampler:
    """Draws n spans of chunks ids [N, S] ([CLS] body [SEP], no padding) with the teacher's states."""

    def __init__(self, ids: torch.Tensor, teacher: nn.Module, cls_id: int, sep_id: int, pad_id: int,
                 tokens: tuple[int, int] = (6, 64), teacher_key: str | None = None):
        """teacher_key: a hash of the teacher's weights, which lets labels.py cache its states of the spans
        (None: labelled on the fly)."""
        body = ids.shape[1] - 2
        if body < 1 or not 1 <= tokens[0] <= tokens[1]:
            raise ValueError(f"no spans of {tokens} tokens in chunks of {ids.shape[1]}")
        high = min(tokens[1], body)             # short chunks (--seq-len) hold shorter spans
        low = min(tokens[0], high)
        self.ids, self.teacher = ids, teacher
        self.cls_id, self.sep_id, self.pad_id, self.tokens = cls_id, sep_id, pad_id, (low, high)
        self.teacher_key = teacher_key
        self._ids_key: str | None = None

    def source_key(self) -> dict | None:
        """What every span's tokens and states depend on besides the draws: the teacher, the text, the
        recipe. None without a teacher_key."""
        if self.teacher_key is None:
            return None
        if self._ids_key is None:
            from pipeline.model.teacher import chunks_hash

            self._ids_key = chunks_hash(self.ids)  # once: the training split is tens of MB
        return {"teacher": self.teacher_key, "ids": self._ids_key, "shape": list(self.ids.shape),
                "tokens": list(self.tokens), "special": [self.cls_id, self.sep_id, self.pad_id]}

    def to(self, device: torch.device) -> SpanSampler:
        self.teacher.to(device)
        return self

    def draw(self, n: int, g: torch.Generator) -> torch.Tensor:
        """Which n spans: [n, 3] of (chunk row, body tokens, first token), drawn with g on the CPU."""
        low, high = self.tokens
        rows = torch.randint(0, self.ids.shape[0], (n,), generator=g)
        lengths = torch.randint(low, high + 1, (n,), generator=g)                  # body tokens per span
        body = self.ids.shape[1] - 2
        starts = 1 + (torch.rand(n, generator=g) * (body - lengths + 1)).long()    # within the body
        return torch.stack([rows, lengths, starts], 1)

    def build(self, drawn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """drawn [n, 3] -> (ids [n, L], mask [n, L]) on the CPU; L = the longest span + 2."""
        rows, lengths, starts = drawn.unbind(1)
        n = drawn.shape[0]
        width = int(lengths.max()) + 2
        pos = torch.arange(width)                                                  # [L]
        src = (starts.unsqueeze(1) + pos - 1).clamp(max=self.ids.shape[1] - 1)     # [n, L]: token i-1 of the span
        ids = self.ids[rows.unsqueeze(1), src]
        inside = (pos >= 1) & (pos <= lengths.unsqueeze(1))                        # [n, L]
        ids = torch.where(inside, ids, torch.full_like(ids, self.pad_id))
        ids[:, 0] = self.cls_id
        ids[torch.arange(n), lengths + 1] = self.sep_id
        mask = (pos <= lengths.unsqueeze(1) + 1).long()                            # [CLS] + body + [SEP]
        return ids, mask

    @torch.no_grad()
    def label(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The teacher's states of spans ids, mask [n, L] (on its device) -> [n, L, T] fp32."""
        self.teacher.eval()
        return self.teacher(ids, mask).float()

    def __call__(self, n: int, g: torch.Generator, device: torch.device | str = "cpu"
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids [n, L], mask [n, L], teacher states [n, L, T]) on device, labelled now.
        Drawn with g on the CPU, so the spans are the same wherever the steps run."""
        ids, mask = self.build(self.draw(n, g))
        ids, mask = ids.to(device), mask.to(device)
        return ids, mask, self.label(ids, mask)


def pooled(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """states [B, L, T], mask [B, L] -> normalised mean over the real tokens [B, T]."""
    m = mask.unsqueeze(-1).to(states.dtype)
    return F.normalize((states * m).sum(1) / m.sum(1).clamp(min=1), dim=-1)


def span_loss(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, relation: float) -> torch.Tensor:
    """out, target [B, L, T] over mask [B, L]: the chunk loss on real tokens (relative MSE + 1 - token
    cosine), plus 1 - cosine of the pooled embeddings, plus `relation` x the MSE of the batch's
    pooled similarity matrices [B, B]."""
    m = mask.to(out.dtype)                                                         # [B, L]
    relative = ((out - target).pow(2).sum(-1) * m).sum() / (target.pow(2).sum(-1) * m).sum().clamp_min(1e-12)
    token = (F.cosine_similarity(out, target, dim=-1) * m).sum() / m.sum()
    s, t = pooled(out, mask), pooled(target, mask)                                 # [B, T]
    sentence = (s * t).sum(1).mean()
    return relative + (1 - token) + (1 - sentence) + relation * F.mse_loss(s @ s.T, t @ t.T)
