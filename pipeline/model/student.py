"""A standalone student network built from an architecture JSON.

input_ids, attention_mask [B, S] -> hidden states [B, S, teacher_hidden]: a drop-in replacement
for the teacher's encoder output. Embeddings are factorised (vocab x E, then E -> H1); between
blocks the two supernet adapters are folded into one H_i -> H_{i+1} matrix.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.model.ops import Sublayer, masks
from pipeline.space import Architecture, Block


class Embeddings(nn.Module):
    def __init__(self, vocab_size: int, max_positions: int, dim: int):
        super().__init__()
        self.word = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(max_positions, dim)
        self.norm = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # [S]
        return self.norm(self.word(input_ids) + self.position(positions)[None])  # [B, S, E]


class Student(nn.Module):
    def __init__(self, arch: Architecture, dropout: float = 0.1):
        super().__init__()
        self.arch = arch
        hs = [b.hidden for b in arch.blocks]
        self.embeddings = Embeddings(arch.vocab_size, arch.max_positions, arch.embed_dim)
        self.in_proj = nn.Linear(arch.embed_dim, hs[0])
        self.blocks = nn.ModuleList(
            nn.ModuleList(Sublayer(op, b.hidden, dropout) for op in b.layers) for b in arch.blocks
        )
        self.adapters = nn.ModuleList(nn.Linear(a, b) for a, b in zip(hs, hs[1:], strict=False))
        self.out_proj = nn.Linear(hs[-1], arch.teacher_hidden)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.in_proj(self.embeddings(input_ids))  # [B, S, H1]
        keep, bias = masks(attention_mask, x.dtype)
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = self.adapters[i - 1](x)  # [B, S, H_i]
            for layer in block:
                x = layer(x, keep, bias)
        return self.out_proj(x)  # [B, S, teacher_hidden]


class BlockNet(nn.Module):
    """One standalone block as the supernet trains it: teacher width -> H, the block's layers, -> teacher width.

    x [B, S, teacher_hidden], attention_mask [B, S] -> [B, S, teacher_hidden]. In a whole Student the
    out_proj of block i and the in_proj of block i+1 become one adapter matrix.
    """

    def __init__(self, teacher_hidden: int, block: Block, dropout: float = 0.0):
        super().__init__()
        self.block = block
        self.in_proj = nn.Linear(teacher_hidden, block.hidden)
        self.layers = nn.ModuleList(Sublayer(op, block.hidden, dropout) for op in block.layers)
        self.out_proj = nn.Linear(block.hidden, teacher_hidden)

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
