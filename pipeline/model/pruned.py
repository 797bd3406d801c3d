"""The teacher pruned: layers kept or dropped, h of a layer's heads, d of its FFN neurons, weights sliced.

A `Shape` says, for every teacher layer, how many heads and neurons it keeps (0 heads: no attention
sub-layer; 0 neurons: no FFN; both 0: the layer is dropped). The kept units are the most important by
an `importance.Importance`; their weights are the teacher's rows and columns, so a layer that keeps
everything is the teacher's layer exactly, and the pruned model is the teacher's function minus the
units removed (Minitron, DynaBERT, CoFi prune this way before they distil).

The result is a transformers BertModel whose layers were sliced in place: it runs, trains, exports to
ONNX and computes in memory as any BERT. transformers 5 no longer has `pruned_heads` in its config, so
a folder of it loads as a plain BERT only when no heads were pruned and every kept layer has one FFN
size (`plain_bert`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.errors import PipelineError
from pipeline.model.importance import Importance


@dataclass(frozen=True)
class Shape:
    heads: tuple[int, ...]    # per teacher layer: heads kept (0 .. the teacher's)
    neurons: tuple[int, ...]  # per teacher layer: FFN inner neurons kept (0 .. the teacher's)

    @classmethod
    def uniform(cls, layers: int, heads: int, neurons: int, keep: int | None = None) -> Shape:
        """The first `keep` (all) of `layers` layers at h heads and d neurons each; the rest dropped."""
        keep = layers if keep is None else keep
        return cls(tuple(heads if i < keep else 0 for i in range(layers)),
                   tuple(neurons if i < keep else 0 for i in range(layers)))

    @property
    def kept_layers(self) -> list[int]:
        return [i for i, (h, d) in enumerate(zip(self.heads, self.neurons, strict=True)) if h or d]

    def describe(self) -> str:
        """`h12/d1536 x6`, or per layer `h6/d768, h6/d768, -`."""
        parts = [f"h{h}/d{d}" if h or d else "-" for h, d in zip(self.heads, self.neurons, strict=True)]
        if len(set(parts)) == 1:
            return f"{parts[0]} x{len(parts)}"
        return ", ".join(parts)


def _rows(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    """linear with only its output features `keep`."""
    out = nn.Linear(linear.in_features, len(keep), bias=linear.bias is not None)
    out.weight.data = linear.weight.data[keep].clone()
    if linear.bias is not None:
        out.bias.data = linear.bias.data[keep].clone()
    return out


def _cols(linear: nn.Linear, keep: torch.Tensor) -> nn.Linear:
    """linear reading only its input features `keep`."""
    out = nn.Linear(len(keep), linear.out_features, bias=linear.bias is not None)
    out.weight.data = linear.weight.data[:, keep].clone()
    if linear.bias is not None:
        out.bias.data = linear.bias.data.clone()
    return out


class _SkipOutput(nn.Module):
    """The output of a sub-layer pruned to no units: its residual branch adds only the bias of the output
    projection, so (branch, residual) -> LN(residual + bias), where BertOutput computes
    LN(residual + dense(branch))."""

    def __init__(self, output: nn.Module):
        super().__init__()
        self.bias = nn.Parameter(output.dense.bias.data.clone())
        self.LayerNorm = output.LayerNorm

    def forward(self, branch: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.bias)


class _NoSelfAttention(nn.Module):
    """BertSelfAttention with no heads: a branch of nothing (the output reads only the residual)."""

    def forward(self, hidden_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, None]:
        return hidden_states, None


@torch.no_grad()
def prune_attention(attention: nn.Module, keep: torch.Tensor) -> nn.Module:
    """BertAttention with only the heads `keep` (indices), in place; none: LN(x + bias)."""
    if len(keep) == 0:
        attention.self, attention.output = _NoSelfAttention(), _SkipOutput(attention.output)
        return attention
    sa = attention.self
    d = sa.attention_head_size
    cols = (keep.sort().values.view(-1, 1) * d + torch.arange(d)).flatten()  # the heads' channels, in order
    for name in ("query", "key", "value"):
        setattr(sa, name, _rows(getattr(sa, name), cols))
    attention.output.dense = _cols(attention.output.dense, cols)
    # transformers' forward views the projections as (-1 heads, head size) and scales by the head
    # size, so the module runs at any head count once these agree with the weights.
    sa.num_attention_heads = len(keep)
    sa.all_head_size = len(keep) * d
    return attention


@torch.no_grad()
def prune_ffn(layer: nn.Module, keep: torch.Tensor) -> None:
    """A BertLayer's FFN with only the inner neurons `keep`, in place; none: output = LN(x + bias)."""
    if len(keep) == 0:
        layer.intermediate, layer.output = nn.Identity(), _SkipOutput(layer.output)
        return
    keep = keep.sort().values
    layer.intermediate.dense = _rows(layer.intermediate.dense, keep)
    layer.output.dense = _cols(layer.output.dense, keep)


def pruned_teacher(teacher, shape: Shape, importance: Importance):  # -> transformers.BertModel
    """A copy of the teacher pruned to `shape`, keeping the most important units of each layer."""
    layers = teacher.encoder.layer
    if len(shape.heads) != len(layers) or len(shape.neurons) != len(layers):
        raise PipelineError(f"a shape for {len(shape.heads)} layers does not fit a teacher of {len(layers)}")
    if not shape.kept_layers:
        raise PipelineError("a pruned teacher must keep at least one layer")
    model = copy.deepcopy(teacher)
    kept = []
    for i in shape.kept_layers:
        layer = model.encoder.layer[i]
        h_all = layer.attention.self.num_attention_heads
        i_all = layer.intermediate.dense.out_features
        h, d = shape.heads[i], shape.neurons[i]
        if not (0 <= h <= h_all and 0 <= d <= i_all):
            raise PipelineError(f"layer {i}: {h} heads and {d} neurons, the teacher has {h_all} and {i_all}")
        if h < h_all:
            layer.attention = prune_attention(layer.attention, importance.head_order(i)[:h])
        if d < i_all:
            prune_ffn(layer, importance.neuron_order(i)[:d])
        kept.append(layer)
    model.encoder.layer = nn.ModuleList(kept)
    model.config.num_hidden_layers = len(kept)
    return model.eval()


def plain_bert(teacher, shape: Shape) -> bool:
    """Whether the pruned model is a plain BERT config (transformers loads it with no code): every kept
    layer has all the teacher's heads and one FFN size above 0."""
    h_all = teacher.config.num_attention_heads
    kept = shape.kept_layers
    return (all(shape.heads[i] == h_all for i in kept) and len({shape.neurons[i] for i in kept}) == 1
            and shape.neurons[kept[0]] > 0)
