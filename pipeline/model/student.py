"""A standalone student network built from an architecture JSON.

input_ids, attention_mask [B, S] -> hidden states [B, S, teacher_hidden]: a drop-in replacement
for the teacher's encoder output. The network itself is pipeline.portable.network, the source that
every student folder carries; here it takes the pipeline's Architecture, and the supernet's
standalone blocks and example inputs are added.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.model.ops import Sublayer, masks
from pipeline.portable import network
from pipeline.portable.network import Embeddings
from pipeline.portable.opset import teacher_block
from pipeline.space import Architecture, Block

__all__ = ["BlockNet", "Embeddings", "Student", "example_inputs"]


class Student(network.Student):
    """The portable network, typed with the pipeline's checked Architecture (its key, describe...)."""

    arch: Architecture

    def __init__(self, arch: Architecture, dropout: float = 0.1):
        super().__init__(arch, dropout)


class BlockNet(nn.Module):
    """One standalone block as the supernet trains it: teacher width -> H, the block's layers, -> teacher width.

    x [B, S, teacher_hidden], attention_mask [B, S] -> [B, S, teacher_hidden]. In a whole Student the
    out_proj of block i and the in_proj of block i+1 become one adapter matrix.
    """

    def __init__(self, teacher_hidden: int, block: Block, dropout: float = 0.0):
        super().__init__()
        self.block = block
        # A block of the teacher's own layers reads and writes the teacher's states as they are.
        own = teacher_block(block.hidden, block.layers, teacher_hidden)
        self.in_proj = nn.Identity() if own else nn.Linear(teacher_hidden, block.hidden)
        self.layers = nn.ModuleList(Sublayer(op, block.hidden, dropout) for op in block.layers)
        self.out_proj = nn.Identity() if own else nn.Linear(block.hidden, teacher_hidden)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep, bias = masks(attention_mask, x.dtype)
        x = self.in_proj(x)  # [B, S, H]
        for layer in self.layers:
            x = layer(x, keep, bias)
        return self.out_proj(x)  # [B, S, teacher_hidden]


def example_inputs(batch: int, seq: int, vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random token ids with the last quarter of the second row padded (masking gets exercised)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.int64)
    if batch > 1:
        mask[1, seq - seq // 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}
