"""How the distillation steps run (distill.Loop): cached span labels, length buckets, fused AdamW, bf16.
Each must learn what the plain loop learns; these compare them on a tiny student."""

import copy

import pytest
import torch

from pipeline.compute import adamw, train_dtype
from pipeline.errors import PipelineError
from pipeline.finetune import labels as labels_mod
from pipeline.finetune.distill import PLAIN, DistillConfig, Loop, bucketed, distill
from pipeline.finetune.labels import SpanLabels
from pipeline.finetune.spans import SpanSampler
from pipeline.model.student import Student
from pipeline.space import Architecture, Block

CLS, SEP, PAD = 1, 2, 0
ARCH = Architecture(32, 16, (Block(64, ("mha", "sepconv3", "ffn")),), vocab_size=50, max_positions=24)


def _chunks(n=30, seq=24, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    body = torch.randint(3, vocab, (n, seq - 2), generator=g)
    return torch.cat([torch.full((n, 1), CLS), body, torch.full((n, 1), SEP)], dim=1)  # [N, S]


def _setup(key="t0"):
    torch.manual_seed(0)
    teacher, student = Student(ARCH, dropout=0.0).eval(), Student(ARCH, dropout=0.0)
    ids = _chunks()
    with torch.no_grad():
        targets = teacher(ids, torch.ones_like(ids))
    return teacher, student, ids, targets, SpanSampler(ids, teacher, CLS, SEP, PAD, (3, 18), teacher_key=key)


def _plan(sampler, steps, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([sampler.draw(n, g) for _ in range(steps)])


def test_cached_labels_are_the_teachers_states_of_the_same_spans(monkeypatch):
    monkeypatch.setattr(labels_mod, "SHARD_STEPS", 4)
    teacher, _, _, _, sampler = _setup("labels-a")
    plan = _plan(sampler, 12)
    store = SpanLabels(sampler, plan, {**sampler.source_key(), "seed": 0}, torch.device("cpu"))
    for step in range(10):
        ids, mask, target = store.at(step)
        ref_ids, ref_mask = sampler.build(plan[step])
        assert torch.equal(ids, ref_ids) and torch.equal(mask, ref_mask)
        ref = sampler.label(ids, mask) * mask[..., None]
        torch.testing.assert_close(target, ref, atol=2e-3, rtol=2e-3)  # fp16 storage
        assert (target[mask == 0] == 0).all()
    assert store.labelled == 3  # blocks of 4 steps: 0-3, 4-7, 8-11
    with pytest.raises(ValueError, match="whole blocks"):
        SpanLabels(sampler, plan[:6], {}, torch.device("cpu"))
    # A shorter schedule with the same draws reads the same blocks from the cache.
    again = SpanLabels(sampler, plan[:8], {**sampler.source_key(), "seed": 0}, torch.device("cpu"))
    torch.testing.assert_close(again.at(5)[2], store.at(5)[2])
    assert again.labelled == 0


def test_a_damaged_block_is_labelled_again(monkeypatch, tmp_path):
    monkeypatch.setenv("PIPELINE_CACHE", str(tmp_path))
    _, _, _, _, sampler = _setup("labels-b")
    plan = _plan(sampler, labels_mod.SHARD_STEPS)
    key = {**sampler.source_key(), "seed": 0}
    first = SpanLabels(sampler, plan, key, torch.device("cpu"))
    first.at(0)
    for f in (tmp_path / "span-labels").glob("*.pt"):
        f.write_bytes(b"cut off")
    second = SpanLabels(sampler, plan, key, torch.device("cpu"))
    torch.testing.assert_close(second.at(2)[2], first.at(2)[2])
    assert second.labelled == 1


def test_buckets_give_the_model_outputs_on_real_tokens():
    torch.manual_seed(0)
    model = Student(ARCH, dropout=0.0).eval()
    _, _, _, _, sampler = _setup()
    ids, mask = sampler.build(sampler.draw(9, torch.Generator().manual_seed(3)))
    order = mask.sum(1).argsort(stable=True)
    ids, mask = ids[order], mask[order]
    with torch.no_grad():
        whole = model(ids, mask) * mask[..., None]
        for buckets in (1, 2, 3, 20):
            torch.testing.assert_close(bucketed(model, ids, mask, buckets) * mask[..., None], whole,
                                       atol=1e-5, rtol=1e-5)


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_every_exact_variant_learns_what_the_plain_loop_learns():
    teacher, student, ids, targets, sampler = _setup("labels-c")
    cfg = DistillConfig(steps=20, batch_size=4, span_rows=8, lr=3e-3, device="cpu")
    plain = copy.deepcopy(student)
    ref = distill(plain, ids, targets, cfg, spans=sampler, loop=PLAIN)
    assert ref["span_labels"] == "on the fly" and ref["precision"] == "float32"
    for loop in (Loop(cached_labels=True, buckets=1, fused=False, precision="fp32"),
                 Loop(cached_labels=False, buckets=3, fused=False, precision="fp32"),
                 Loop(cached_labels=False, buckets=1, fused=True, precision="fp32"),
                 Loop(precision="fp32")):
        model = copy.deepcopy(student)
        record = distill(model, ids, targets, cfg, spans=sampler, loop=loop)
        assert record["span_labels"] == ("cached" if loop.cached_labels else "on the fly")
        # Adam turns rounding into steps of lr on near-zero gradients: compared by norm, the fp16 labels
        # differ by ~0.1% of how far the weights moved, buckets and the fused kernel by ~0.02%.
        moved = (_params(plain) - _params(student)).norm()
        assert (_params(model) - _params(plain)).norm() < 0.005 * moved, loop
        assert record["loss_last"] == pytest.approx(ref["loss_last"], rel=1e-3)


def test_bf16_learns_about_what_fp32_learns():
    teacher, student, ids, targets, sampler = _setup("labels-d")
    cfg = DistillConfig(steps=40, batch_size=4, span_rows=8, lr=3e-3, device="cpu")
    fp32 = distill(copy.deepcopy(student), ids, targets, cfg, spans=sampler, loop=Loop(precision="fp32"))
    bf16 = distill(copy.deepcopy(student), ids, targets, cfg, spans=sampler, loop=Loop(precision="bf16"))
    assert bf16["precision"] == "bfloat16"
    assert bf16["loss_last"] < 0.7 * bf16["loss_first"]
    assert bf16["loss_last"] == pytest.approx(fp32["loss_last"], rel=0.1)


def test_loop_settings_and_precision_are_checked():
    with pytest.raises(PipelineError, match="buckets"):
        Loop(buckets=0)
    with pytest.raises(PipelineError, match="precision"):
        Loop(precision="fp8")
    with pytest.raises(PipelineError, match="precision"):
        train_dtype("half", torch.device("cpu"))
    assert train_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert train_dtype("fp32", torch.device("cpu")) == torch.float32


def test_fused_adamw_steps_like_the_loop():
    torch.manual_seed(0)
    a = torch.nn.Linear(8, 4)
    b = copy.deepcopy(a)
    fused, loop = adamw(a.parameters(), 1e-2, 0.01), adamw(b.parameters(), 1e-2, 0.01, fused=False)
    assert fused.defaults["fused"] and not loop.defaults["fused"]
    x = torch.randn(16, 8)
    for _ in range(5):
        for m, opt in ((a, fused), (b, loop)):
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            opt.step()
    torch.testing.assert_close(a.weight, b.weight, atol=1e-6, rtol=1e-5)
