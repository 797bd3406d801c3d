"""A searched architecture becomes a standalone `Student` holding the supernet's weights.

The student's blocks are the supernet's paths (`SuperBlock.get`). Between blocks, the output
adapter of block i and the input adapter of block i+1 are folded into one matrix (exact: two
linears in a row are one linear). The embeddings are factorised (vocab x E, then E -> H1) while the
teacher's are vocab x teacher_hidden: they start from the truncated SVD of the teacher's word
embeddings and are then fitted, with a projection E -> teacher_hidden, to the teacher's embedding
output Y[0] (a few hundred cheap steps); that projection is folded into block 1's input adapter.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from pipeline.compute import adamw
from pipeline.model.student import Embeddings, Student
from pipeline.space import Architecture
from pipeline.train.trained import TrainedSupernet


class FactorisedEmbedding(nn.Module):
    """ids [B, S] -> [B, S, teacher_hidden] through E: the student's embeddings plus a projection."""

    def __init__(self, vocab_size: int, max_positions: int, embed_dim: int, teacher_hidden: int):
        super().__init__()
        self.embeddings = Embeddings(vocab_size, max_positions, embed_dim)
        self.proj = nn.Linear(embed_dim, teacher_hidden)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embeddings(input_ids))


@torch.no_grad()
def svd_init(teacher, embed_dim: int) -> FactorisedEmbedding:
    """Word and position tables projected on the top `embed_dim` right singular vectors of the
    teacher's word embeddings; the projection maps them back."""
    emb = teacher.embeddings
    word = emb.word_embeddings.weight.float()          # [V, T]
    pos = emb.position_embeddings.weight.float()       # [P, T]
    v, t = word.shape
    f = FactorisedEmbedding(v, pos.shape[0], embed_dim, t)
    _, _, vh = torch.linalg.svd(word - word.mean(0), full_matrices=False)  # vh [T, T]
    basis = vh[:embed_dim]                             # [E, T]
    f.embeddings.word.weight.copy_(word @ basis.T)
    f.embeddings.position.weight.copy_(pos @ basis.T)
    f.proj.weight.copy_(basis.T)                       # [T, E]
    f.proj.bias.zero_()
    return f


def fit_embedding(f: FactorisedEmbedding, teacher, ids: torch.Tensor, steps: int = 300, batch_size: int = 32,
                  lr: float = 2e-3, seed: int = 0, progress: bool = False) -> float:
    """Fit f(ids) to the teacher's embedding output on chunks ids [N, S]; returns the last batch's MSE."""
    opt = adamw(f.parameters(), lr, 0.0)
    g = torch.Generator().manual_seed(seed)
    loss = torch.tensor(float("nan"))
    f.train()
    for _ in tqdm(range(steps), desc="fit embeddings", unit="step", disable=not progress, leave=False):
        batch = ids[torch.randint(0, ids.shape[0], (batch_size,), generator=g)]
        with torch.no_grad():
            target = teacher.embeddings(input_ids=batch)  # [B, S, T], dropout off in eval mode
        loss = F.mse_loss(f(batch), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return float(loss.detach())


def fitted_embedding(teacher, embed_dim: int, ids: torch.Tensor, steps: int = 300, seed: int = 0,
                     progress: bool = False) -> tuple[FactorisedEmbedding, float]:
    """svd_init + fit_embedding, kept in $PIPELINE_CACHE/embeddings under the hash of the teacher's
    weights, the chunks and the settings: export and the benchmark's baselines need the same fit
    (~10 s on 2 CPU cores), and the fit is deterministic (seeded batches, no dropout)."""
    from pipeline.artifacts import disk_cached
    from pipeline.model.teacher import chunks_hash, weights_hash

    key = {"teacher": weights_hash(teacher), "ids": chunks_hash(ids), "embed_dim": embed_dim, "steps": steps,
           "seed": seed, "format": 1}
    f = svd_init(teacher, embed_dim)
    initial = {k: v.clone() for k, v in f.state_dict().items()}

    def fit() -> dict:
        f.load_state_dict(initial)  # a rejected entry may have been half loaded
        loss = fit_embedding(f, teacher, ids, steps=steps, seed=seed, progress=progress)
        return {"state": f.state_dict(), "loss": loss}

    def fits(saved: dict) -> bool:
        try:
            f.load_state_dict(saved["state"])
            float(saved["loss"])
        except Exception:  # not this embedding's state: refitted
            return False
        return True

    saved = disk_cached("embeddings", key, fit, valid=fits)
    return f.eval(), float(saved["loss"])


@torch.no_grad()
def assemble(arch: Architecture, trained: TrainedSupernet, embedding: FactorisedEmbedding) -> Student:
    """The deployable student: embeddings, blocks with shared weights, folded adapters."""
    student = Student(arch, dropout=0.0).eval()
    nets = trained.chain(arch).blocks
    student.embeddings.load_state_dict(embedding.embeddings.state_dict())
    _fold(student.in_proj, embedding.proj, nets[0].in_proj)
    for i, (net, layers) in enumerate(zip(nets, student.blocks, strict=True)):
        for src, dst in zip(net.layers, layers, strict=True):
            dst.load_state_dict(src.state_dict())
        if i > 0:
            _fold(student.adapters[i - 1], nets[i - 1].out_proj, net.in_proj)
    student.out_proj.load_state_dict(nets[-1].out_proj.state_dict())  # nothing for an Identity
    return student


def _fold(dst: nn.Module, first: nn.Module, second: nn.Module) -> None:
    """dst(x) = second(first(x)) for all x: W = W2 W1, b = W2 b1 + b2 (in float64 to keep it exact). An
    Identity (the adapters of a block of the teacher's own layers) is the identity matrix; a dst that is one
    had two of them."""
    if isinstance(dst, nn.Identity):
        return
    if isinstance(first, nn.Identity) or isinstance(second, nn.Identity):
        dst.load_state_dict((second if isinstance(first, nn.Identity) else first).state_dict())
        return
    w1, b1 = first.weight.double(), first.bias.double()
    w2, b2 = second.weight.double(), second.bias.double()
    dst.weight.copy_((w2 @ w1).to(dst.weight.dtype))
    dst.bias.copy_((w2 @ b1 + b2).to(dst.bias.dtype))
