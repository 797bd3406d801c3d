"""Embedding quality as users use embeddings: against the teacher's sentence embeddings.

A sentence-transformers user compares and searches texts by the cosine of their embeddings, so a
student stands in for the teacher when it orders texts the way the teacher does:
- `fidelity_cosine`: mean cosine of the model's sentence embedding to the teacher's (needs the
  teacher's width; the student's output is in it, and so is the peer's);
- `similarity_spearman`: rank correlation of the model's and the teacher's cosine similarities over
  random pairs of texts (STS-style: does it say "more similar" where the teacher does);
- `neighbour_recall_at_10`: the share of each text's 10 nearest neighbours under the teacher that
  the model also ranks in its top 10 (search: does it return the teacher's results).
Sentence embeddings are mean-pooled over the real tokens and normalised, as the default teacher's
own sentence-transformers modules do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAIRS = 20_000  # random pairs for the rank correlation: its standard error is then ~0.005
K = 10


def sentence_embeddings(states: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """states [N, S, T], mask [N, S] (1 = token) -> normalised mean over the real tokens [N, T]."""
    if mask is None:
        pooled = states.double().mean(1)
    else:
        m = mask.to(states.device).unsqueeze(-1).double()                  # [N, S, 1]
        pooled = (states.double() * m).sum(1) / m.sum(1).clamp(min=1)
    return F.normalize(pooled, dim=-1)


def _ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of x [n] (continuous similarities: ties are negligible)."""
    r = torch.empty_like(x)
    r[x.argsort()] = torch.arange(x.numel(), dtype=x.dtype)
    return r


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = _ranks(a.double()), _ranks(b.double())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()).clamp(min=1e-12))


def random_pairs(n: int, count: int = PAIRS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` pairs (i, j), i != j, of n texts; every pair once where there are fewer than count."""
    if n * (n - 1) // 2 <= count:
        i, j = torch.triu_indices(n, n, offset=1)
        return i, j
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n, (count,), generator=g)
    j = (i + torch.randint(1, n, (count,), generator=g)) % n  # never i itself
    return i, j


def neighbour_recall(model: torch.Tensor, teacher: torch.Tensor, k: int = K) -> float:
    """Mean share of each text's k nearest neighbours (itself left out) under the teacher found in the
    model's k nearest; model [N, D] and teacher [N, T] normalised."""
    n = teacher.shape[0]
    k = min(k, n - 1)
    eye = torch.eye(n, dtype=torch.bool)
    sim_t = (teacher @ teacher.T).masked_fill(eye, -2.0)                  # [N, N]
    sim_m = (model @ model.T).masked_fill(eye, -2.0)
    top_t, top_m = sim_t.topk(k, dim=1).indices, sim_m.topk(k, dim=1).indices  # [N, k]
    hits = (top_t.unsqueeze(2) == top_m.unsqueeze(1)).any(2).double()         # [N, k]
    return float(hits.mean())


def embedding_quality(model: torch.Tensor, teacher: torch.Tensor, seed: int = 0) -> dict[str, float | None]:
    """The three measures for sentence embeddings model [N, D] and teacher [N, T], both normalised."""
    model, teacher = model.double(), teacher.double()
    if teacher.shape[0] < 3:
        raise ValueError("embedding quality needs at least 3 texts")
    i, j = random_pairs(teacher.shape[0], seed=seed)
    same_space = model.shape[1] == teacher.shape[1]
    return {
        "fidelity_cosine": float((model * teacher).sum(1).mean()) if same_space else None,
        "similarity_spearman": spearman((model[i] * model[j]).sum(1), (teacher[i] * teacher[j]).sum(1)),
        "neighbour_recall_at_10": neighbour_recall(model, teacher),
    }
