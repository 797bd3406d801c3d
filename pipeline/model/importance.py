"""How much each of the teacher's attention heads and FFN neurons matters: what pruning keeps first.

Three measures, each a score per head [L, heads] and per neuron [L, inner], larger = keep first:
- `magnitude`: weights only. A head's |Q|, |K|, |V| rows and |out| columns; a neuron's |up row| x |down
  column| (train/inherit.py's order). Needs no text.
- `activation` (Minitron, 2024): on the training text, a head's output (its context vector, before the
  output projection) by its L2 norm over the head's channels, a neuron's |GELU output|, both averaged
  over tokens, then scaled by the norm of the weights that carry them into the residual (the output
  projection's columns), since an activation with no weight behind it changes nothing.
- `sensitivity` (Michel et al. 2019, DynaBERT): the loss's first-order change when a unit is removed,
  -dL/dm of a mask m on each head and neuron. The loss is the distance of the masked teacher's final
  states to the whole teacher's; at the whole teacher that distance and its gradient are zero, so the
  gradient is taken on random sub-networks (every unit kept with probability p, p drawn per batch
  from SENS_KEEP): the expected benefit of a unit inside the narrower networks pruning makes.
`benchmarks/prune_start.py` measures which ranks better (what the pruned teacher keeps, untrained).

All three read a transformers BertModel through hooks on its modules, so they work on any BERT-family
teacher whose layers have `attention.self`, `attention.output.dense`, `intermediate` and `output.dense`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

METHODS = ("magnitude", "activation", "sensitivity")
SENS_KEEP = (0.25, 0.75)  # the range of keep probabilities of the random sub-networks (sensitivity)


@dataclass(frozen=True)
class Importance:
    method: str
    heads: torch.Tensor    # [L, H] one score per attention head of each teacher layer
    neurons: torch.Tensor  # [L, I] one score per FFN inner neuron

    def head_order(self, layer: int) -> torch.Tensor:
        """The heads of `layer`, most important first [H]."""
        return torch.argsort(self.heads[layer], descending=True, stable=True)

    def neuron_order(self, layer: int) -> torch.Tensor:
        return torch.argsort(self.neurons[layer], descending=True, stable=True)


def _head_dim(layer) -> int:
    return layer.attention.self.attention_head_size


def _heads_of(weight_cols: torch.Tensor, d: int) -> torch.Tensor:
    """A [out, H*d] (or [H*d, in] transposed) weight's per-head Frobenius norms [H]."""
    return weight_cols.reshape(weight_cols.shape[0], -1, d).pow(2).sum((0, 2)).sqrt()


@torch.no_grad()
def magnitude(teacher) -> Importance:
    heads, neurons = [], []
    for layer in teacher.encoder.layer:
        d, att = _head_dim(layer), layer.attention
        qkv = sum(_heads_of(getattr(att.self, n).weight.T, d) for n in ("query", "key", "value"))
        heads.append(qkv * _heads_of(att.output.dense.weight, d))
        up, down = layer.intermediate.dense.weight, layer.output.dense.weight  # [I, H], [H, I]
        neurons.append(up.norm(dim=1) * down.norm(dim=0))
    return Importance("magnitude", torch.stack(heads).float().cpu(), torch.stack(neurons).float().cpu())


@contextmanager
def _taps(teacher, head_masks: torch.Tensor | None = None, neuron_masks: torch.Tensor | None = None
          ) -> Iterator[tuple[list, list]]:
    """Hooks on every layer: the head contexts [B, S, H*d] entering the output projection and the GELU
    outputs [B, S, I], recorded per layer; multiplied by the masks [L, H] / [L, I] where given."""
    contexts: list = [None] * len(teacher.encoder.layer)
    inner: list = [None] * len(teacher.encoder.layer)
    handles = []
    for i, layer in enumerate(teacher.encoder.layer):
        d = _head_dim(layer)

        def pre(module, args, i=i, d=d):
            x = args[0]                                                     # [B, S, H*d]
            if head_masks is not None:
                b, s, _ = x.shape
                x = (x.view(b, s, -1, d) * head_masks[i].view(1, 1, -1, 1)).view(b, s, -1)
            contexts[i] = x
            return (x, *args[1:])

        def post(module, args, out, i=i):                                   # out [B, S, I]
            if neuron_masks is not None:
                out = out * neuron_masks[i]
            inner[i] = out
            return out

        handles.append(layer.attention.output.dense.register_forward_pre_hook(pre))
        handles.append(layer.intermediate.register_forward_hook(post))
    try:
        yield contexts, inner
    finally:
        for h in handles:
            h.remove()


def _batches(ids: torch.Tensor, batch: int) -> Iterator[torch.Tensor]:
    yield from ids.split(batch)


@torch.no_grad()
def activation(teacher, ids: torch.Tensor, batch: int = 16) -> Importance:
    """ids [N, S] unpadded chunks of training text."""
    layers = teacher.encoder.layer
    heads = torch.zeros(len(layers), layers[0].attention.self.num_attention_heads)
    neurons = torch.zeros(len(layers), layers[0].intermediate.dense.out_features)
    tokens, device = 0, next(teacher.parameters()).device
    with _taps(teacher) as (contexts, inner):
        for b in _batches(ids.to(device), batch):
            teacher(input_ids=b, attention_mask=torch.ones_like(b))
            tokens += b.numel()
            for i, layer in enumerate(layers):
                c = contexts[i]
                heads[i] += c.view(*c.shape[:2], -1, _head_dim(layer)).norm(dim=-1).sum((0, 1)).float().cpu()
                neurons[i] += inner[i].abs().sum((0, 1)).float().cpu()
    for i, layer in enumerate(layers):  # carried into the residual by the output projections' columns
        heads[i] *= _heads_of(layer.attention.output.dense.weight, _head_dim(layer)).float().cpu()
        neurons[i] *= layer.output.dense.weight.norm(dim=0).float().cpu()
    return Importance("activation", heads / tokens, neurons / tokens)


def sensitivity(teacher, ids: torch.Tensor, batch: int = 16, seed: int = 0) -> Importance:
    """ids [N, S] unpadded chunks; one random sub-network per batch."""
    layers = teacher.encoder.layer
    g = torch.Generator().manual_seed(seed)
    shape_h = (len(layers), layers[0].attention.self.num_attention_heads)
    shape_n = (len(layers), layers[0].intermediate.dense.out_features)
    heads, neurons = torch.zeros(shape_h), torch.zeros(shape_n)
    device = next(teacher.parameters()).device
    was_grad = [p.requires_grad for p in teacher.parameters()]
    for p in teacher.parameters():
        p.requires_grad_(False)
    try:
        for b in _batches(ids.to(device), batch):
            mask = torch.ones_like(b)
            with torch.no_grad():
                target = teacher(input_ids=b, attention_mask=mask).last_hidden_state  # [B, S, T]
            lo, hi = SENS_KEEP
            keep = lo + (hi - lo) * float(torch.rand((), generator=g))
            hm = (torch.rand(shape_h, generator=g) < keep).float().to(device).requires_grad_(True)
            nm = (torch.rand(shape_n, generator=g) < keep).float().to(device).requires_grad_(True)
            with _taps(teacher, hm, nm):
                out = teacher(input_ids=b, attention_mask=mask).last_hidden_state
            loss = (out - target).pow(2).mean()
            gh, gn = torch.autograd.grad(loss, (hm, nm))
            heads -= gh.cpu()
            neurons -= gn.cpu()
    finally:
        for p, r in zip(teacher.parameters(), was_grad, strict=True):
            p.requires_grad_(r)
    return Importance("sensitivity", heads, neurons)


def importance(teacher, method: str, ids: torch.Tensor | None = None, seed: int = 0) -> Importance:
    """The scores of `method` (METHODS); the text-based ones read ids [N, S]."""
    if method == "magnitude":
        return magnitude(teacher)
    if ids is None:
        raise ValueError(f"importance {method!r} reads training text: give ids")
    if method == "activation":
        return activation(teacher, ids)
    if method == "sensitivity":
        return sensitivity(teacher, ids, seed=seed)
    raise ValueError(f"unknown importance {method!r}; use {', '.join(METHODS)}")


def cached_importance(teacher, method: str, ids: torch.Tensor, seed: int = 0) -> Importance:
    """importance(), kept in $PIPELINE_CACHE/importance under the teacher's weights, the text, the
    method and the seed (the text-based measures take minutes on 2 cores for the default teacher)."""
    from pipeline.artifacts import disk_cached
    from pipeline.model.teacher import chunks_hash, weights_hash

    if method == "magnitude":
        return magnitude(teacher)
    layers = teacher.encoder.layer
    shapes = ((len(layers), layers[0].attention.self.num_attention_heads),
              (len(layers), layers[0].intermediate.dense.out_features))
    key = {"teacher": weights_hash(teacher), "ids": chunks_hash(ids), "method": method, "seed": seed,
           "keep": list(SENS_KEEP), "format": 1}
    saved = disk_cached("importance", key, lambda: vars(importance(teacher, method, ids, seed)),
                        valid=lambda e: isinstance(e, dict) and tuple(e["heads"].shape) == shapes[0]
                        and tuple(e["neurons"].shape) == shapes[1])
    return Importance(method, saved["heads"], saved["neurons"])
