"""A standalone student network built from an architecture.

input_ids, attention_mask [B, S] -> hidden states [B, S, teacher_hidden]: a drop-in replacement
for the teacher's encoder output. Embeddings are factorised (vocab x E, then E -> H1); between
blocks the two supernet adapters are folded into one H_i -> H_{i+1} matrix.

The network reads only the fields of `Spec` (teacher_hidden, embed_dim, vocab_size, max_positions,
blocks of hidden and layers), which pipeline.space.Architecture has too: the pipeline builds it from
its validated Architecture, a student folder from `Spec.from_dict` of config.json's "architecture".
Copied verbatim into every student folder (see pipeline/portable/__init__.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .ops import Sublayer, masks
from .opset import teacher_block


@dataclass(frozen=True)
class BlockSpec:
    hidden: int
    layers: tuple[str, ...]


@dataclass(frozen=True)
class Spec:
    """An architecture as a student folder's config.json states it, without the pipeline's checks:
    the folder was written from a checked one, and its weights must fit these shapes to load at all."""

    teacher_hidden: int
    embed_dim: int
    vocab_size: int
    max_positions: int
    blocks: tuple[BlockSpec, ...]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Spec:
        blocks = tuple(BlockSpec(int(b["hidden"]), tuple(b["layers"])) for b in d["blocks"])
        return cls(int(d["teacher_hidden"]), int(d["embed_dim"]), int(d["vocab_size"]), int(d["max_positions"]),
                   blocks)


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
    def __init__(self, arch: Spec, dropout: float = 0.1):  # or anything with Spec's fields (Architecture)
        super().__init__()
        self.arch = arch
        hs = [b.hidden for b in arch.blocks]
        self.embeddings = Embeddings(arch.vocab_size, arch.max_positions, arch.embed_dim)
        self.in_proj = nn.Linear(arch.embed_dim, hs[0])
        self.blocks = nn.ModuleList(
            nn.ModuleList(Sublayer(op, b.hidden, dropout) for op in b.layers) for b in arch.blocks
        )
        # Between two blocks of the teacher's own layers, and after the last one, the states are the
        # teacher's: no adapter (opset.teacher_block).
        kinds = [teacher_block(b.hidden, b.layers, arch.teacher_hidden) for b in arch.blocks]
        self.adapters = nn.ModuleList(nn.Identity() if ka and kb else nn.Linear(a, b)
                                      for a, b, ka, kb in zip(hs, hs[1:], kinds, kinds[1:], strict=False))
        self.out_proj = nn.Identity() if kinds[-1] else nn.Linear(hs[-1], arch.teacher_hidden)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return block_outputs(self, input_ids, attention_mask)[-1]

    def block_outputs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Each block's output [B, S, H_i] (its natural intermediate layer), then the final states
        [B, S, teacher_hidden]."""
        return block_outputs(self, input_ids, attention_mask)


def block_outputs(net: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """The forward pass over a Student's children, for any module that holds them (the Hugging Face
    model of modeling_nasbert.py adopts them)."""
    x = net.in_proj(net.embeddings(input_ids))  # [B, S, H1]
    keep, bias = masks(attention_mask, x.dtype)
    outs = []
    for i, block in enumerate(net.blocks):
        if i > 0:
            x = net.adapters[i - 1](x)  # [B, S, H_i]
        for layer in block:
            x = layer(x, keep, bias)
        outs.append(x)
    return [*outs, net.out_proj(x)]
