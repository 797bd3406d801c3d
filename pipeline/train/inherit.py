"""The supernet's widest path starts as the teacher's own block (once-for-all's starting point).

Once-for-all trains its largest network first and shrinks from there; DynaBERT starts its widths
from the fine-tuned BERT. Here a block's sub-layers are BERT's own (post-LN attention and FFN,
pipeline.portable.ops), and a block of L sub-layers stands for L/2 teacher layers, so its
mha/ffn/mha/ffn path at the teacher's width can hold the teacher's weights as they are:

    sub-layer p (0-based)  <-  teacher layer lo + p // 2: its attention (mha) or its FFN (ffn)
    in_proj, out_proj      <-  the identity

Every mha at position p takes that layer's attention and every ffn its FFN, whatever path they are
drawn in; the convolutions start at random. Narrower paths use the leading channels of the same
weights (supernet.slice_param), so the FFN's neurons are first sorted by a magnitude importance
(|up row| * |down column|, a weight-only stand-in for DynaBERT's): a narrow path keeps the teacher's
strongest neurons. Sorting neurons changes nothing at full width.

Attention heads: the space's heads are 64 wide (opset.HEAD_DIM). A teacher with 64-wide heads is
copied exactly; one with narrower heads that divide 64 (MiniLM: 12 of 32) has k = 64 / d of them
merged into each of ours, queries scaled by sqrt(k) so that a merged score is the sum of its heads'
scores: its pattern is the normalised product of theirs, an approximation the training corrects.
Any other head size leaves attention at random. FFN neurons the teacher lacks (its intermediate
size below 4h) start with zero output weights, so the path still computes the teacher's block.

The teacher's own sub-layers (supernet.SuperLayer's teacher_ops: att<h>x<d>, ffn<n>) are copied
exactly, heads and neurons in the order of an importance (model/importance.py): the widest is the
teacher's sub-layer itself, a narrower one its most important heads or neurons (model/pruned.py
computes the same function on the teacher itself: tested).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pipeline.portable.opset import num_heads
from pipeline.train.supernet import SuperBlock


def ffn_order(up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """up [I, H], down [H, I] -> the neurons' indices by importance, largest first."""
    return torch.argsort(up.norm(dim=1) * down.norm(dim=0), descending=True)


@torch.no_grad()
def _copy_ffn(ffn: nn.Module, layer: nn.Module) -> None:
    up_w, up_b = layer.intermediate.dense.weight, layer.intermediate.dense.bias   # [I, H], [I]
    down_w = layer.output.dense.weight                                             # [H, I]
    n = min(ffn.up.weight.shape[0], up_w.shape[0])
    keep = ffn_order(up_w, down_w)[:n]
    ffn.up.weight[:n] = up_w[keep]
    ffn.up.bias[:n] = up_b[keep]
    ffn.down.weight.zero_()  # neurons beyond the teacher's: no output until they learn one
    ffn.down.weight[:, :n] = down_w[:, keep]
    ffn.down.bias.copy_(layer.output.dense.bias)


@torch.no_grad()
def _copy_attention(mha: nn.Module, layer: nn.Module, teacher_head_dim: int) -> None:
    att = layer.attention
    k = mha.head_dim // teacher_head_dim  # teacher heads merged into one of ours
    q_scale = math.sqrt(k)
    mha.qkv.weight.copy_(torch.cat([att.self.query.weight * q_scale, att.self.key.weight, att.self.value.weight]))
    mha.qkv.bias.copy_(torch.cat([att.self.query.bias * q_scale, att.self.key.bias, att.self.value.bias]))
    mha.out.weight.copy_(att.output.dense.weight)
    mha.out.bias.copy_(att.output.dense.bias)


def attention_fit(hidden: int, teacher_heads: int) -> str:
    """How the teacher's attention fits the space's at its width: exact, merged or none."""
    ours = hidden // num_heads(hidden)
    theirs = hidden // teacher_heads
    if theirs == ours:
        return "exact"
    if ours % theirs == 0:
        return "merged"
    return "none"


@torch.no_grad()
def copy_teacher_attention(mha: nn.Module, norm: nn.Module, layer: nn.Module, order: torch.Tensor) -> None:
    """An att<h>x<d> op at the teacher's full head count <- the teacher layer's attention, heads in `order`."""
    att, d = layer.attention, mha.head_dim
    rows = (order.view(-1, 1) * d + torch.arange(d)).flatten()  # every head's channels, most important first
    mha.qkv.weight.copy_(torch.cat([getattr(att.self, n).weight[rows] for n in ("query", "key", "value")]))
    mha.qkv.bias.copy_(torch.cat([getattr(att.self, n).bias[rows] for n in ("query", "key", "value")]))
    mha.out.weight.copy_(att.output.dense.weight[:, rows])
    mha.out.bias.copy_(att.output.dense.bias)
    norm.load_state_dict(att.output.LayerNorm.state_dict())


@torch.no_grad()
def copy_teacher_ffn(ffn: nn.Module, norm: nn.Module, layer: nn.Module, order: torch.Tensor) -> None:
    """An ffn<n> op at the teacher's full size <- the teacher layer's FFN, neurons in `order`."""
    ffn.up.weight.copy_(layer.intermediate.dense.weight[order])
    ffn.up.bias.copy_(layer.intermediate.dense.bias[order])
    ffn.down.weight.copy_(layer.output.dense.weight[:, order])
    ffn.down.bias.copy_(layer.output.dense.bias)
    norm.load_state_dict(layer.output.LayerNorm.state_dict())


@torch.no_grad()
def inherit(block: SuperBlock, layers: list[nn.Module], teacher_heads: int,
            orders: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict[str, object]:
    """Set block's shared weights from the teacher `layers` (BertLayer modules, the block's own, in
    order) as the module docstring says -> what was copied, for the block's result. `orders`: per
    layer, (its heads, its neurons) most important first, for the teacher's own sub-layers."""
    hmax = max(block.hidden_sizes)
    if hmax != block.teacher_hidden:
        return {"from": "random", "why": f"the teacher's width {block.teacher_hidden} is not one of the space's"}
    if len(block.layers) != 2 * len(layers):
        raise ValueError(f"a block of {len(block.layers)} sub-layers stands for {len(block.layers) // 2} teacher "
                         f"layers, got {len(layers)}")
    fit = attention_fit(hmax, teacher_heads)
    for p, sub in enumerate(block.layers):
        teacher_layer = layers[p // 2]
        if sub.teacher_ops:  # the widest of the position's family holds the teacher's sub-layer, sorted
            widest = sub.full[sub.teacher_ops[-1]]
            heads, neurons = orders[p // 2] if orders is not None else (
                torch.arange(teacher_heads), torch.arange(teacher_layer.intermediate.dense.out_features))
            if p % 2 == 0:
                copy_teacher_attention(widest.op, widest.norm, teacher_layer, heads)
            else:
                copy_teacher_ffn(widest.op, widest.norm, teacher_layer, neurons)
        _copy_ffn(sub.full["ffn"].op, teacher_layer)
        sub.full["ffn"].norm.load_state_dict(teacher_layer.output.LayerNorm.state_dict())
        if fit != "none":
            _copy_attention(sub.full["mha"].op, teacher_layer, hmax // teacher_heads)
            sub.full["mha"].norm.load_state_dict(teacher_layer.attention.output.LayerNorm.state_dict())
    eye = torch.eye(hmax)
    block.in_proj.weight.copy_(eye)
    block.in_proj.bias.zero_()
    block.out_proj.weight.copy_(eye)
    block.out_proj.bias.zero_()
    return {"from": "teacher", "attention": fit}
