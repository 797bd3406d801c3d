"""NAS-KD's relaxed student over the project's search space, and its expected latency.

Each layer of each block is a softmax-weighted mixture of the space's ops (identity included, so
depth is searched too): `MixedLayer`. Each block is a softmax-weighted mixture of its hidden
sizes, one `RelaxedPath` of mixed layers per width, each with its own projections to and from the
teacher's width (as the supernet's blocks): `RelaxedBlock`. The relaxed student maps the
teacher's embedding output to its last states through the blocks, so a block boundary is in the
teacher's width, where NAS-KD's intermediate term compares it with the teacher's state.

The op weights start from the trained supernet's shared weights at each width (a warm start the
supernet was trained for); the architecture weights (alphas) start at zero: a uniform mixture.

`expected_terms` is the predictor's term vector (latency.Predictor.block_terms and friends) in
expectation under the softmaxes, as a differentiable tensor; `Predictor.predict_terms` of it is
the expected latency. On one-hot weights it is exactly the predictor's latency of that student.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.latency import TERMS, Predictor
from pipeline.model.ops import Sublayer, masks
from pipeline.space import Block, Frame
from pipeline.train.supernet import REAL_OPS, SuperBlock

CHOICES = (*REAL_OPS, "identity")  # what a mixed layer mixes; identity last, as canonical blocks end


class MixedLayer(nn.Module):
    """x [B, S, H] -> sum_j w_j op_j(x); identity's term is w x."""

    def __init__(self, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.ops = nn.ModuleDict({op: Sublayer(op, hidden, dropout) for op in REAL_OPS})

    def forward(self, x: torch.Tensor, keep: torch.Tensor, bias: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        out = w[-1] * x
        for j, op in enumerate(REAL_OPS):
            if float(w[j].detach()) != 0.0:  # a one-hot weight: the ops it leaves out cost nothing
                out = out + w[j] * self.ops[op](x, keep, bias)
        return out


class RelaxedPath(nn.Module):
    """One width of a block: teacher width -> H, mixed layers, -> teacher width."""

    def __init__(self, teacher_hidden: int, hidden: int, num_layers: int, dropout: float = 0.0):
        super().__init__()
        self.hidden = hidden
        self.in_proj = nn.Linear(teacher_hidden, hidden)
        self.layers = nn.ModuleList(MixedLayer(hidden, dropout) for _ in range(num_layers))
        self.out_proj = nn.Linear(hidden, teacher_hidden)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        """alphas [L, len(CHOICES)] already softmaxed."""
        keep, bias = masks(mask, x.dtype)
        x = self.in_proj(x)
        for layer, w in zip(self.layers, alphas, strict=True):
            x = layer(x, keep, bias, w)
        return self.out_proj(x)

    @torch.no_grad()
    def load_supernet(self, block: SuperBlock) -> None:
        """The supernet block's shared weights at this width (its path's leading slices)."""
        h = self.hidden
        self.in_proj.weight.copy_(block.in_proj.weight[:h])
        self.in_proj.bias.copy_(block.in_proj.bias[:h])
        self.out_proj.weight.copy_(block.out_proj.weight[:, :h])
        self.out_proj.bias.copy_(block.out_proj.bias)
        for mixed, layer in zip(self.layers, block.layers, strict=True):
            for op in REAL_OPS:
                mixed.ops[op].load_state_dict(layer.weights(op, h))


class RelaxedBlock(nn.Module):
    def __init__(self, teacher_hidden: int, hidden_sizes: tuple[int, ...], num_layers: int, dropout: float = 0.0):
        super().__init__()
        self.hidden_sizes, self.num_layers = tuple(hidden_sizes), num_layers
        self.paths = nn.ModuleList(RelaxedPath(teacher_hidden, h, num_layers, dropout) for h in hidden_sizes)
        # architecture weights: per width, per layer, per op; and per width
        self.alpha = nn.Parameter(torch.zeros(len(hidden_sizes), num_layers, len(CHOICES)))
        self.beta = nn.Parameter(torch.zeros(len(hidden_sizes)))

    def weights(self, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """(op weights [W, L, C], width weights [W])."""
        return (self.alpha / temperature).softmax(-1), (self.beta / temperature).softmax(-1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        ops, widths = self.weights(temperature)
        out = 0
        for path, a, b in zip(self.paths, ops, widths, strict=True):
            if float(b.detach()) != 0.0:
                out = out + b * path(x, mask, a)
        return out

    def discrete(self) -> Block:
        """The argmax width and, in it, the argmax op per layer, identities moved last."""
        from pipeline.space import canonical_layers

        w = int(self.beta.argmax())
        layers = [CHOICES[int(j)] for j in self.alpha[w].argmax(-1)]
        return Block(self.hidden_sizes[w], canonical_layers(layers))

    def set_one_hot(self, block: Block) -> None:
        """Weights that pick `block` (large logits): the mixture then computes exactly that block."""
        with torch.no_grad():
            self.alpha.fill_(-1e4)
            self.beta.fill_(-1e4)
            w = self.hidden_sizes.index(block.hidden)
            self.beta[w] = 0.0
            for i, op in enumerate(block.layers):
                self.alpha[w, i, CHOICES.index(op)] = 0.0


class RelaxedStudent(nn.Module):
    """Teacher embedding output x [B, S, T] -> block boundaries [B, S, T] each (the last = the output)."""

    def __init__(self, frame: Frame, hidden_sizes: tuple[int, ...], num_layers: int, num_blocks: int):
        super().__init__()
        self.frame = frame
        self.blocks = nn.ModuleList(RelaxedBlock(frame.teacher_hidden, hidden_sizes, num_layers)
                                    for _ in range(num_blocks))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> list[torch.Tensor]:
        outs = []
        for block in self.blocks:
            x = block(x, mask, temperature)
            outs.append(x)
        return outs

    def arch_parameters(self) -> list[nn.Parameter]:
        return [p for b in self.blocks for p in (b.alpha, b.beta)]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for b in self.blocks for p in b.paths.parameters()]


class LatencyTerms:
    """The predictor's terms of every choice, as tensors, for the expected latency of a relaxed student."""

    def __init__(self, predictor: Predictor, frame: Frame, hidden_sizes: tuple[int, ...]):
        self.predictor, self.hidden_sizes = predictor, tuple(hidden_sizes)
        import numpy as np

        op = np.zeros((len(hidden_sizes), len(CHOICES), len(TERMS)))
        for i, h in enumerate(hidden_sizes):
            for j, name in enumerate(REAL_OPS):
                op[i, j] = predictor.block_terms(Block(h, (name,)))
        self.op = torch.tensor(op, dtype=torch.float64)                        # [W, C, TERMS]
        self.first = torch.tensor(np.stack([predictor.link_terms(frame.embed_dim, h) for h in hidden_sizes]))
        self.link = torch.tensor(np.stack([[predictor.link_terms(a, b) for b in hidden_sizes]
                                           for a in hidden_sizes]))          # [W, W, TERMS]
        self.last = torch.tensor(np.stack([predictor.link_terms(h, frame.teacher_hidden) for h in hidden_sizes]))
        self.base = torch.tensor(predictor.base_terms(frame.teacher_hidden, frame.vocab_size, frame.embed_dim,
                                                      frame.max_positions))
        c = predictor.calibration
        self.coefs = torch.tensor(c.coefs, dtype=torch.float64)
        self.offset = float(c.offset_ms)

    def expected_terms(self, student: RelaxedStudent, temperature: float = 1.0,
                       weights: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        """E[terms] [TERMS] under the student's softmaxes (width, then ops within it), or under `weights`
        (per block: op weights [W, L, C], width weights [W]; one-hot ones: that student's terms)."""
        total = self.base.clone()
        widths = []
        for n, block in enumerate(student.blocks):
            ops, b = block.weights(temperature) if weights is None else weights[n]
            ops, b = ops.double(), b.double()
            per_width = torch.einsum("wlc,wct->wt", ops, self.op)                 # [W, TERMS] this block's ops
            total = total + (b[:, None] * per_width).sum(0)
            widths.append(b)
        total = total + (widths[0][:, None] * self.first).sum(0) + (widths[-1][:, None] * self.last).sum(0)
        for a, b in zip(widths, widths[1:], strict=False):
            total = total + torch.einsum("v,w,vwt->t", a, b, self.link)
        return total

    def expected_ms(self, student: RelaxedStudent, temperature: float = 1.0,
                    weights: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        """Predictor.predict_terms of the expected terms (exact on one-hot weights)."""
        t = self.expected_terms(student, temperature, weights)
        n = len(self.coefs) - 1                                                    # the families
        fam = t[:n]
        return fam @ self.coefs[:n] + self.coefs[n] * fam.sum() * t[4] + self.offset


def sampled_weights(student: RelaxedStudent) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One discrete student drawn from the softmaxes (Gumbel-max), as one-hot weights per block whose
    gradient is the softmax's (straight-through): [W, L, C] and [W] each."""
    import torch.nn.functional as F

    return [(F.gumbel_softmax(b.alpha, hard=True, dim=-1), F.gumbel_softmax(b.beta, hard=True, dim=-1))
            for b in student.blocks]
