"""The discrete student of a relaxed one (NAS-KD's search, naskd.py): two readouts.

- `argmax` (DARTS's, NAS-KD's): the argmax width per block and, in it, the argmax op per layer.
  Nothing ties it to the budget: the penalty acts on the mixture's expected latency, and a nearly
  flat mixture's argmax follows whatever small tilt the weights have. Measured on the default
  supernet after 100 steps (benchmarks/results/2026-12-01-search-methods-cpu.md): the empty
  student (0.25 ms) at a 3.5 ms budget while the mixture sat at 4.9 ms, and 18 ms at 7.5 ms.
- `probable` (the default): the most probable student under the softmaxes that the predictor puts
  within the budget, and at MIN_USE of it or more where any such student exists, as the NAS-BERT
  search prefers (search/job.py). The architecture weights rank; the budget is met exactly rather
  than hoped for from the expected latency. It is the exact search (exact.py) over per-block pools
  in which every block the relaxed block can become is a candidate and its "loss" is its negative
  log-probability: log softmax(beta)[width] + sum over layers of log softmax(alpha[width, layer])[op],
  the most probable spelling where several give the same block (identities anywhere = at the end).
  Where the argmax fits and uses the budget, the two readouts agree.

`entropy` says how decided the weights are (1 = uniform, 0 = one-hot), the number that tells
whether a readout chooses or guesses.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import torch

from pipeline.errors import PipelineError
from pipeline.latency import Predictor
from pipeline.search.exact import search
from pipeline.search.relaxed import CHOICES, RelaxedBlock, RelaxedStudent
from pipeline.space import Architecture, Block, canonical_layers

READOUTS = ("probable", "argmax")
THIN = 0.01  # latency resolution of the probable readout's pools, a share of the budget: ~100 blocks per width


def argmax_architecture(student: RelaxedStudent) -> Architecture:
    f = student.frame
    return Architecture(f.teacher_hidden, f.embed_dim, tuple(b.discrete() for b in student.blocks),
                        f.vocab_size, f.max_positions)


@torch.no_grad()
def block_pool(block: RelaxedBlock) -> list[dict[str, Any]]:
    """Every block `block` can become, once each: {"hidden", "layers", "val_loss": -log-probability}."""
    log_ops = block.alpha.log_softmax(-1).double().numpy()        # [W, L, C]
    log_widths = block.beta.log_softmax(-1).double().numpy()      # [W]
    spellings = np.array(list(itertools.product(range(len(CHOICES)), repeat=block.num_layers)))  # [C^L, L]
    layer = np.arange(block.num_layers)
    best: dict[tuple[int, tuple[str, ...]], float] = {}
    for w, h in enumerate(block.hidden_sizes):
        logp = log_widths[w] + log_ops[w][layer, spellings].sum(1)  # [C^L]
        for row, lp in zip(spellings, logp, strict=True):
            key = (h, canonical_layers([CHOICES[j] for j in row]))
            if lp > best.get(key, -math.inf):
                best[key] = float(lp)
    return [{"hidden": h, "layers": list(layers), "val_loss": -lp} for (h, layers), lp in best.items()]


def log_probability(student: RelaxedStudent, arch: Architecture) -> float:
    """log P(arch) under the student's softmaxes (the most probable spelling of each block)."""
    total = 0.0
    for block, b in zip(student.blocks, arch.blocks, strict=True):
        pool = {(e["hidden"], tuple(e["layers"])): -e["val_loss"] for e in block_pool(block)}
        total += pool[(b.hidden, b.layers)]
    return total


def thin(pool: list[dict[str, Any]], predictor: Predictor, step_ms: float) -> list[dict[str, Any]]:
    """The most probable block of each width in each step_ms of the block's own predicted latency, and
    the fastest of each width (so that the space's floor stays reachable)."""
    terms = np.array([predictor.block_terms(Block(e["hidden"], tuple(e["layers"]))) for e in pool])  # [P, TERMS]
    ms = predictor.predict_terms(terms) - predictor.predict_terms(np.zeros(terms.shape[1]))
    best: dict[tuple[int, int], int] = {}
    fastest: dict[int, int] = {}
    for i, e in enumerate(pool):
        key = (e["hidden"], int(ms[i] // step_ms))
        if key not in best or e["val_loss"] < pool[best[key]]["val_loss"]:
            best[key] = i
        if e["hidden"] not in fastest or ms[i] < ms[fastest[e["hidden"]]]:
            fastest[e["hidden"]] = i
    return [pool[i] for i in sorted(set(best.values()) | set(fastest.values()))]


def probable_architecture(student: RelaxedStudent, predictor: Predictor, budget_ms: float,
                          min_use: float) -> Architecture:
    """The most probable student predicted within budget_ms (at min_use of it or more where any is)."""
    # Not the exact search's pruning: the most probable block (all identities, under budget pressure)
    # is also the cheapest and would prune every other, leaving nothing that uses the budget. Thinned
    # instead to the most probable block per 1% of the budget, the search is exact to within that.
    pools = [thin(block_pool(b), predictor, budget_ms * THIN) for b in student.blocks]
    try:
        (choice,) = search(pools, student.frame, predictor, [budget_ms], top_t=1, min_use=min_use, prune=False)
    except PipelineError as e:  # the caller checked the floor; say what failed if it is something else
        raise PipelineError(f"the NAS-KD readout found no student within {budget_ms:g} ms: {e}") from None
    return choice.arch


def entropy(student: RelaxedStudent) -> dict[str, float]:
    """Mean normalised entropies (0 one-hot .. 1 uniform) of the op softmaxes and the width softmaxes."""
    with torch.no_grad():
        ops = [b.alpha.softmax(-1) for b in student.blocks]       # [W, L, C] each
        widths = [b.beta.softmax(-1) for b in student.blocks]     # [W] each

        def h(p: torch.Tensor) -> torch.Tensor:
            return -(p * p.clamp_min(1e-12).log()).sum(-1) / math.log(p.shape[-1])

        return {"ops": float(torch.stack([h(p).mean() for p in ops]).mean()),
                "widths": float(torch.stack([h(p) for p in widths]).mean()) if len(widths[0]) > 1 else 0.0}


@torch.no_grad()
def drop_to_fit(arch: Architecture, student: RelaxedStudent, predictor: Predictor, target_ms: float
                ) -> tuple[Architecture, int]:
    """The argmax readout's last resort: drop the chosen op of least weight (to identity) until it fits."""
    dropped = 0
    while predictor(arch) > target_ms:
        best = None
        for n, (block, chosen) in enumerate(zip(student.blocks, arch.blocks, strict=True)):
            probs = block.alpha[block.hidden_sizes.index(chosen.hidden)].softmax(-1)
            for i, op in enumerate(chosen.layers):
                if op != "identity":
                    # the layer that chose this op: the alpha row whose weight on it is largest
                    p = float(probs[:, CHOICES.index(op)].max())
                    if best is None or p < best[0]:
                        best = (p, n, i)
        if best is None:
            break
        _, n, i = best
        layers = list(arch.blocks[n].layers)
        layers[i] = "identity"
        blocks = list(arch.blocks)
        blocks[n] = Block(blocks[n].hidden, canonical_layers(layers))
        arch = Architecture(arch.teacher_hidden, arch.embed_dim, tuple(blocks), arch.vocab_size, arch.max_positions)
        dropped += 1
    return arch, dropped
