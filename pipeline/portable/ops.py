"""The candidate ops of the search space as torch modules.

Every op sits in a `Sublayer`: out = LayerNorm(x + op(x)) (post-LN, as BERT), except identity,
which is nothing at all. Masks are computed once per forward by `masks()` and handed to every
layer: attention takes an additive bias, convolutions a 0/1 multiplier on padding positions.
Copied verbatim into every student folder (see pipeline/portable/__init__.py): torch and .opset only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .opset import op_shape


def masks(attention_mask: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """attention_mask [B, S] of 1 (token) / 0 (padding) -> (keep [B, S, 1], bias [B, 1, 1, S])."""
    keep = attention_mask.to(dtype).unsqueeze(-1)
    # finfo.min rather than -1e4 so that fp16 and fp32 both zero out padding exactly.
    bias = (1.0 - attention_mask.to(dtype))[:, None, None, :] * torch.finfo(dtype).min
    return keep, bias


class MultiHeadAttention(nn.Module):
    """`heads` heads of size `head_dim` (the space's mha: hidden/64 of 64; a pruned teacher's: its own)."""

    def __init__(self, hidden: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.qkv = nn.Linear(hidden, 3 * inner)  # one matmul instead of three: fewer kernel calls
        self.out = nn.Linear(inner, hidden)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        qkv = self.qkv(x).view(b, s, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # [3, B, nh, S, hd]
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + bias  # [B, nh, S, S]
        ctx = scores.softmax(-1) @ v  # [B, nh, S, hd]
        return self.out(ctx.transpose(1, 2).reshape(b, s, self.heads * self.head_dim))


class FeedForward(nn.Module):
    def __init__(self, hidden: int, inner: int):
        super().__init__()
        self.up = nn.Linear(hidden, inner)
        self.down = nn.Linear(inner, hidden)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class SepConv(nn.Module):
    """Depthwise 1-D convolution over the sequence, then a pointwise projection and GELU."""

    def __init__(self, hidden: int, kernel: int):
        super().__init__()
        self.depthwise = nn.Conv1d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden)
        self.pointwise = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        # Zero padding positions first so that they never leak into real tokens' windows.
        y = self.depthwise((x * keep).transpose(1, 2)).transpose(1, 2)  # [B, S, H]
        return F.gelu(self.pointwise(y))


def make_op(op: str, hidden: int) -> nn.Module:
    shape = op_shape(op, hidden)  # ValueError for an unknown name
    if shape.kind == "mha":
        return MultiHeadAttention(hidden, shape.heads, shape.head_dim)
    if shape.kind == "ffn":
        return FeedForward(hidden, shape.inner)
    if shape.kind == "sepconv":
        return SepConv(hidden, shape.kernel)
    raise ValueError(f"op {op!r} has no module (identity is no layer at all)")


class Sublayer(nn.Module):
    """One supernet layer: op + residual + post-LayerNorm; identity is a pass-through."""

    def __init__(self, op: str, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.op_name = op
        if op != "identity":
            self.op = make_op(op, hidden)
            self.dropout = nn.Dropout(dropout)
            self.norm = nn.LayerNorm(hidden, eps=1e-12)  # BERT's epsilon

    def forward(self, x: torch.Tensor, keep: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if self.op_name == "identity":
            return x
        return self.norm(x + self.dropout(self.op(x, keep, bias)))
