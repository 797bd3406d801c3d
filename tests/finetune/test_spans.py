"""Short padded spans of the training text and their loss."""

import pytest
import torch

from pipeline.finetune.distill import DistillConfig, distill
from pipeline.finetune.spans import SpanSampler, pooled, span_loss
from pipeline.model.student import Student
from pipeline.space import Architecture, Block

CLS, SEP, PAD = 1, 2, 0


def _chunks(n=20, seq=16, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    body = torch.randint(3, vocab, (n, seq - 2), generator=g)
    return torch.cat([torch.full((n, 1), CLS), body, torch.full((n, 1), SEP)], dim=1)  # [N, S]


class _Echo(torch.nn.Module):
    """A 'teacher' whose states show which tokens it read: embedding of the id, zero where masked."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 4)

    def forward(self, ids, mask):
        return self.emb(ids) * mask[..., None]


def test_spans_are_pieces_of_one_chunk_wrapped_and_padded_like_sentences():
    ids = _chunks()
    teacher = _Echo()
    sampler = SpanSampler(ids, teacher, CLS, SEP, PAD, tokens=(3, 9))
    spans, mask, states = sampler(64, torch.Generator().manual_seed(1))
    assert spans.shape == mask.shape and states.shape == (*spans.shape, 4)
    bodies = [" ".join(map(str, row[1:-1].tolist())) for row in ids]
    lengths = mask.sum(1) - 2
    assert lengths.min() >= 3 and lengths.max() <= 9 and spans.shape[1] == lengths.max() + 2
    assert len(set(lengths.tolist())) > 3  # lengths vary within a batch: there is padding
    for row, m, n in zip(spans, mask, lengths.tolist(), strict=True):
        assert row[0] == CLS and row[n + 1] == SEP and (row[n + 2:] == PAD).all()
        assert m[: n + 2].all() and not m[n + 2:].any()
        piece = " ".join(map(str, row[1:n + 1].tolist()))
        assert any(piece in b for b in bodies)  # contiguous text of one chunk's body
    torch.testing.assert_close(states, teacher(spans, mask))
    again = sampler(64, torch.Generator().manual_seed(1))
    assert torch.equal(again[0], spans)  # the generator decides: the same spans on any device


def test_spans_shrink_to_fit_short_chunks():
    sampler = SpanSampler(_chunks(seq=8), _Echo(), CLS, SEP, PAD, tokens=(3, 64))
    assert sampler.tokens == (3, 6)
    spans, mask, _ = sampler(16, torch.Generator().manual_seed(0))
    assert spans.shape[1] <= 8 and (mask.sum(1) >= 5).all()
    assert SpanSampler(_chunks(seq=4), _Echo(), CLS, SEP, PAD, tokens=(6, 64)).tokens == (2, 2)
    with pytest.raises(ValueError, match="no spans"):
        SpanSampler(_chunks(seq=8), _Echo(), CLS, SEP, PAD, tokens=(0, 7))


def test_span_loss_is_zero_at_the_target_and_blind_to_padding():
    torch.manual_seed(0)
    target = torch.randn(4, 6, 8)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2, [1] * 3 + [0] * 3, [1] * 5 + [0]])
    assert span_loss(target, target, mask, 10.0).item() == pytest.approx(0.0, abs=1e-6)
    out = target + 0.3 * torch.randn_like(target)
    noisy = out.clone()
    noisy[mask == 0] = 100.0  # whatever the student says at padded positions
    assert span_loss(noisy, target, mask, 10.0).item() == pytest.approx(span_loss(out, target, mask, 10.0).item())
    assert span_loss(out, target, mask, 10.0).item() > span_loss(out, target, mask, 0.0).item() > 0


def test_pooled_embeddings_average_only_real_tokens():
    states = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])   # [1, 3, 2]
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(pooled(states, mask), torch.tensor([[0.5, 0.5]]) / 0.5 ** 0.5)


def test_distill_with_spans_brings_short_texts_closer_to_the_teacher():
    torch.manual_seed(0)
    arch = Architecture(32, 16, (Block(64, ("mha", "ffn")),), vocab_size=50, max_positions=16)
    teacher, student = Student(arch, dropout=0.0).eval(), Student(arch, dropout=0.0)
    ids = _chunks()
    with torch.no_grad():
        targets = teacher(ids, torch.ones_like(ids))
    sampler = SpanSampler(ids, teacher, CLS, SEP, PAD, tokens=(3, 9))
    probe = sampler(32, torch.Generator().manual_seed(7))

    def loss():
        with torch.no_grad():
            return span_loss(student.eval()(probe[0], probe[1]), probe[2], probe[1], 10.0).item()

    before = loss()
    record = distill(student, ids, targets, DistillConfig(steps=40, batch_size=4, span_rows=8, lr=3e-3,
                                                          device="cpu"), spans=sampler)
    assert record["span_rows"] == 8 and loss() < 0.6 * before
