"""The weight-sharing supernet block of NAS-BERT, with once-for-all's sample / set / get.

A `SuperBlock` maps the teacher's hidden states at one block boundary to the next:
x [B, S, teacher_hidden] -> in_proj -> L layers -> out_proj -> [B, S, teacher_hidden].
Every layer holds every candidate op once, at the block's largest hidden size. A path of hidden
size h uses the leading h channels of every weight (once-for-all's elastic width), so all hidden
sizes share weights. The forward of a path runs the standalone `Sublayer` code itself
(`torch.func.functional_call` on a weightless template fed the sliced weights), so the supernet and
the extracted student cannot disagree.
"""

from __future__ import annotations

import itertools
import random

import torch
from torch import nn
from torch.func import functional_call

from pipeline.model.ops import Sublayer, masks
from pipeline.model.student import BlockNet
from pipeline.portable.opset import teacher_block
from pipeline.space import OPS, Block, SearchSpace, canonical_layers

REAL_OPS = tuple(op for op in OPS if op != "identity")


def slice_param(name: str, full: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The leading part of `full` that a width-h copy of the parameter named `name` uses.

    The fused qkv projection is three matrices stacked on dim 0, so each of q, k and v is sliced on
    its own (that keeps the first h/64 heads); everything else takes leading indices on every dim.
    """
    if name.endswith("qkv.weight") or name.endswith("qkv.bias"):
        stacked = full.view(3, full.shape[0] // 3, *full.shape[1:])
        index = (slice(None), slice(0, shape[0] // 3), *(slice(0, s) for s in shape[1:]))
        return stacked[index].reshape(shape)
    return full[tuple(slice(0, s) for s in shape)]


class SuperLayer(nn.Module):
    """All candidate ops of one layer at width `hmax`; a path of width h uses their leading slices.

    `teacher_ops`: the teacher's pruned sub-layers this position may hold (one family, sorted from the
    narrowest: att3x32 .. att12x32, or ffn384 .. ffn1536), at width hmax only. They share the widest
    one's weights, whose heads and neurons are sorted by importance (inherit.py), so a narrower one is
    its leading heads or neurons: DynaBERT's width-adaptive sub-networks.
    """

    def __init__(self, hmax: int, hidden_sizes: tuple[int, ...], dropout: float = 0.0,
                 teacher_ops: tuple[str, ...] = ()):
        super().__init__()
        self.full = nn.ModuleDict({op: Sublayer(op, hmax, dropout) for op in REAL_OPS})
        self._source = {op: op for op in REAL_OPS}  # whose weights an op slices
        if teacher_ops:
            self.full[teacher_ops[-1]] = Sublayer(teacher_ops[-1], hmax, dropout)
            self._source.update({op: teacher_ops[-1] for op in teacher_ops})
        # Weightless copies of the standalone layer at every width: the code a path runs. Kept in a
        # plain dict so that they are not submodules (no parameters, not in the state dict).
        with torch.device("meta"):
            self._templates = {(op, h): Sublayer(op, h, dropout) for op in REAL_OPS for h in hidden_sizes}
            self._templates.update({(op, hmax): Sublayer(op, hmax, dropout) for op in teacher_ops})

    @property
    def teacher_ops(self) -> tuple[str, ...]:
        return tuple(op for op in self._source if op not in REAL_OPS)

    def weights(self, op: str, h: int) -> dict[str, torch.Tensor]:
        """The shared weights of `op` at width h, named as in a standalone `Sublayer(op, h)`."""
        template = self._templates[(op, h)]
        full = dict(self.full[self._source[op]].named_parameters())
        return {name: slice_param(name, full[name], p.shape) for name, p in template.named_parameters()}

    def forward(self, x: torch.Tensor, op: str, keep: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        if op == "identity":
            return x
        template = self._templates[(op, x.shape[-1])]
        template.train(self.training)  # dropout follows the supernet's mode
        return functional_call(template, self.weights(op, x.shape[-1]), (x, keep, bias))


class SuperBlock(nn.Module):
    def __init__(self, teacher_hidden: int, hidden_sizes: tuple[int, ...], num_layers: int, dropout: float = 0.0,
                 teacher_attention: tuple[str, ...] = (), teacher_ffn: tuple[str, ...] = ()):
        super().__init__()
        self.teacher_hidden, self.hidden_sizes, self.num_layers = teacher_hidden, tuple(hidden_sizes), num_layers
        self.dropout = dropout
        hmax = max(hidden_sizes)
        if (teacher_attention or teacher_ffn) and hmax != teacher_hidden:
            raise ValueError(f"the teacher's sub-layers need a block at its width {teacher_hidden}, widest is {hmax}")
        self.in_proj = nn.Linear(teacher_hidden, hmax)   # a path of width h uses rows [:h]
        # As the teacher's layers alternate, attention at even positions and FFNs at odd ones (space.py).
        self.layers = nn.ModuleList(
            SuperLayer(hmax, self.hidden_sizes, dropout, tuple(teacher_attention if p % 2 == 0 else teacher_ffn))
            for p in range(num_layers))
        self.out_proj = nn.Linear(hmax, teacher_hidden)  # and columns [:h] here
        self.active = Block(hmax, tuple(["mha", "ffn"] * (num_layers // 2) + ["mha"] * (num_layers % 2)))

    @classmethod
    def for_space(cls, space: SearchSpace, dropout: float = 0.0) -> SuperBlock:
        return cls(space.teacher_hidden, space.hidden_sizes, space.layers_per_block, dropout,
                   space.teacher_attention, space.teacher_ffn)

    # ---- once-for-all's interface ----
    def candidates(self) -> list[Block]:
        """Every distinct path in canonical form (identities last): sum_k 5^k op lists per width; then the
        teacher's shapes: each position one of its grid or dropped (prod over positions of grid + 1)."""
        out = []
        for h in self.hidden_sizes:
            for k in range(self.num_layers + 1):
                out += [Block(h, canonical_layers(list(ops) + ["identity"] * (self.num_layers - k)))
                        for ops in itertools.product(REAL_OPS, repeat=k)]
        grids = [("identity", *layer.teacher_ops) for layer in self.layers]
        if any(len(g) > 1 for g in grids):
            out += [Block(self.teacher_hidden, ops) for ops in itertools.product(*grids)
                    if any(op != "identity" for op in ops)]  # all identities: already a NAS path
        return out

    def sample(self, rng: random.Random, candidates: list[Block] | None = None) -> Block:
        """Set and return a uniformly drawn path (from `candidates` when given)."""
        block = rng.choice(candidates if candidates is not None else self.candidates())
        self.set(block)
        return block

    def set(self, block: Block) -> None:
        if block.hidden not in self.hidden_sizes:
            raise ValueError(f"hidden size {block.hidden} is not one of {self.hidden_sizes}")
        if len(block.layers) != self.num_layers:
            raise ValueError(f"a path has {self.num_layers} layers, got {len(block.layers)}")
        self.active = Block(block.hidden, canonical_layers(block.layers))

    def get(self) -> BlockNet:
        """A standalone copy of the active path holding the shared weights' current values."""
        h = self.active.hidden
        net = BlockNet(self.teacher_hidden, self.active, self.dropout).to(self.in_proj.weight.device)
        with torch.no_grad():
            if isinstance(net.in_proj, nn.Linear):  # a block of the teacher's own layers has none
                net.in_proj.weight.copy_(self.in_proj.weight[:h])
                net.in_proj.bias.copy_(self.in_proj.bias[:h])
                net.out_proj.weight.copy_(self.out_proj.weight[:, :h])
                net.out_proj.bias.copy_(self.out_proj.bias)
            for layer, sub in zip(self.layers, net.layers, strict=True):
                if sub.op_name != "identity":
                    sub.load_state_dict(layer.weights(sub.op_name, h))
        return net.train(self.training)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """x [B, S, teacher_hidden] through the active path -> [B, S, teacher_hidden]."""
        h = self.active.hidden
        keep, bias = masks(attention_mask, x.dtype)
        own = teacher_block(h, self.active.layers, self.teacher_hidden)  # the teacher's states in and out
        if not own:
            x = nn.functional.linear(x, self.in_proj.weight[:h], self.in_proj.bias[:h])  # [B, S, h]
        for layer, op in zip(self.layers, self.active.layers, strict=True):
            x = layer(x, op, keep, bias)
        return x if own else nn.functional.linear(x, self.out_proj.weight[:, :h], self.out_proj.bias)  # [B, S, T]
