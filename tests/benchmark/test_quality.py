import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from pipeline.benchmark.quality import (
    embedding_quality,
    neighbour_recall,
    random_pairs,
    sentence_embeddings,
    spearman,
)


def _emb(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1)


def test_the_teacher_against_itself_scores_one_and_noise_scores_little():
    t = _emb(200, 16, 0)
    q = embedding_quality(t, t)
    assert q == pytest.approx({"fidelity_cosine": 1.0, "similarity_spearman": 1.0, "neighbour_recall_at_10": 1.0})
    noise = embedding_quality(_emb(200, 16, 1), t)
    assert abs(noise["similarity_spearman"]) < 0.1 and noise["neighbour_recall_at_10"] < 0.15
    # another width: no cosine to the teacher, the orderings still compare
    rotated = embedding_quality(F.normalize(t @ torch.randn(16, 24, dtype=torch.float64), dim=-1), t)
    assert rotated["fidelity_cosine"] is None and rotated["similarity_spearman"] > 0.5


def test_spearman_matches_scipy_and_random_pairs_are_never_self():
    a, b = torch.randn(500, dtype=torch.float64), torch.randn(500, dtype=torch.float64)
    b = a + 0.5 * b
    assert spearman(a, b) == pytest.approx(spearmanr(a.numpy(), b.numpy()).statistic, abs=1e-9)
    i, j = random_pairs(1000, 5000)
    assert len(i) == 5000 and not (i == j).any()
    i, j = random_pairs(5, 100)  # fewer pairs than asked: each once
    assert len(i) == 10 and (i < j).all()


def test_neighbour_recall_by_hand():
    # four directions at angles 0, 0.10, 0.29 and 1.57 rad
    t = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.1], [1.0, 0.3], [0.0, 1.0]], dtype=torch.float64), dim=-1)
    assert neighbour_recall(t, t, k=1) == 1.0
    m = t[[3, 2, 1, 0]]  # the model scrambles which text is where
    # teacher top-1: 0->1, 1->0, 2->1, 3->2; model top-1 (of its own rows): 0->1, 1->2, 2->3, 3->2
    assert neighbour_recall(m, t, k=1) == pytest.approx(2 / 4)


def test_sentence_embeddings_ignore_padding():
    states = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    e = sentence_embeddings(states, mask)
    assert torch.allclose(e[0], F.normalize(states[0, :3].double().mean(0), dim=-1))
    assert torch.allclose(e[1], sentence_embeddings(states[1:]).squeeze(0))
