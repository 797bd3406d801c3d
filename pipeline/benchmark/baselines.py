"""Hand-designed students of similar latency, to show what the search bought.

- `narrow`: a uniformly narrowed BERT: every block at one hidden size with BERT's alternation
  (mha, ffn, mha, ffn); the width (then the depth, if even the narrowest is too slow) is the one
  whose predicted latency is closest to the searched student's without passing it by more than 5%.
  Random weights drawn as BERT draws them (normal, std 0.02; zero biases), embeddings initialised
  like the searched student's (SVD of the teacher's, fitted). PyTorch's default draws made a
  12-sublayer post-LN narrow BERT collapse under distillation at 1e-3 (fidelity 0.21, news
  spearman 0.04 after 300 steps, against 0.47 / 0.42 with BERT's draws: docs/experiments.md).
- `pkd`: the teacher's first k layers at full width, as PKD initialises its students (handmade.py
  builds one at every depth).

Both are then distilled end to end for as many steps as the searched student was (distill.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from pipeline.model.student import Student
from pipeline.space import Architecture, Block, op_flops

TOLERANCE = 1.05  # a baseline may be this much slower than its target: "similar", not strictly under


@dataclass(frozen=True)
class Baseline:
    name: str        # narrow_<H>x<layers>
    kind: str        # narrow
    target_ms: float  # the predicted latency it was matched to
    arch: Architecture | None = None  # it lives in the search space


def narrow_candidates(frame_arch: Architecture, hidden_sizes: tuple[int, ...], layers_per_block: int
                      ) -> list[Architecture]:
    """Uniform students: each hidden size x BERT layers per block (full depth down to one)."""
    out = []
    for h in hidden_sizes:
        for pairs in range(layers_per_block // 2, 0, -1):
            layers = ("mha", "ffn") * pairs + ("identity",) * (layers_per_block - 2 * pairs)
            blocks = tuple(Block(h, layers) for _ in frame_arch.blocks)
            out.append(Architecture(frame_arch.teacher_hidden, frame_arch.embed_dim, blocks,
                                    frame_arch.vocab_size, frame_arch.max_positions))
    return out


def pick_narrow(target_ms: float, candidates: list[Architecture], predict) -> Baseline:
    scored = [(predict(a), a) for a in candidates]
    fitting = [(ms, a) for ms, a in scored if ms <= target_ms * TOLERANCE]
    ms, arch = max(fitting, key=lambda t: t[0]) if fitting else min(scored, key=lambda t: t[0])
    b = arch.blocks[0]
    pairs = sum(op == "mha" for op in b.layers) * len(arch.blocks)
    return Baseline(f"narrow_{b.hidden}x{pairs}", "narrow", target_ms, arch=arch)


def teacher_flops(hidden: int, layers: int, seq: int, batch: int = 1) -> int:
    """BERT encoder layers counted as the space counts its ops (BERT's FFN is 4x wide too)."""
    return batch * layers * (op_flops("mha", hidden, seq) + op_flops("ffn", hidden, seq))


BERT_INIT_STD = 0.02  # BERT's initializer_range: the narrow baseline is a BERT, initialised as one


def build_narrow(b: Baseline, embeddings: nn.Module | None = None, seed: int = 0) -> Student:
    """BERT's random weights (seeded); the embedding tables from `embeddings` (a fitted
    extract.FactorisedEmbedding)."""
    import torch

    torch.manual_seed(seed)
    student = Student(b.arch, dropout=0.0)
    for module in student.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=BERT_INIT_STD)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    if embeddings is not None:
        student.embeddings.load_state_dict(embeddings.embeddings.state_dict())
    return student


def build_pkd(teacher, layers: int) -> nn.Module:
    """The teacher's first `layers` layers as an Encoder (PKD's student, before distillation)."""
    from pipeline.model.teacher import Encoder, truncated_teacher

    return Encoder(truncated_teacher(teacher, layers))
