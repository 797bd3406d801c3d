"""Hand-designed baselines: matched to a latency, built from the teacher as PKD does."""

import torch

from pipeline.benchmark import baselines as bl
from pipeline.model.teacher import Encoder, load_teacher, truncated_teacher
from pipeline.space import Architecture, Block, count_flops


def test_narrow_is_the_slowest_uniform_student_within_the_target():
    frame = Architecture(384, 128, (Block(128, ("identity",) * 4),) * 3)
    cands = bl.narrow_candidates(frame, (128, 192, 256, 384), 4)
    assert len(cands) == 8 and all(len({b for b in a.blocks}) == 1 for a in cands)
    predict = lambda a: count_flops(a) / 1e9  # noqa: E731 - a monotone stand-in for latency
    assert cands[2].blocks[0] == Block(192, ("mha", "ffn", "mha", "ffn"))
    target = predict(cands[2]) * 1.01
    b = bl.pick_narrow(target, cands, predict)
    fitting = [predict(a) for a in cands if predict(a) <= target * bl.TOLERANCE]
    assert predict(b.arch) == max(fitting) and b.name.startswith("narrow_")
    tiny = bl.pick_narrow(1e-9, cands, predict)  # nothing fits: the fastest
    assert tiny.name == "narrow_128x3"


def test_truncated_teacher_is_the_teachers_first_layers(tiny_teacher):
    teacher = load_teacher(str(tiny_teacher))
    ids = torch.randint(0, 1000, (2, 12))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        full = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        got = Encoder(truncated_teacher(teacher, 2))(ids, mask)
    torch.testing.assert_close(got, full[2], rtol=1e-5, atol=1e-5)


def test_narrow_starts_from_berts_draws_and_the_fitted_embeddings():
    arch = Architecture(64, 32, (Block(32, ("mha", "ffn", "mha", "ffn")),) * 3, vocab_size=100, max_positions=16)
    b = bl.Baseline("narrow_32x6", "narrow", 1.0, arch=arch)
    fitted = bl.build_narrow(b, seed=1)  # stands in for the fitted embeddings: any student's tables
    with torch.no_grad():
        fitted.embeddings.word.weight.normal_()
    student = bl.build_narrow(b, fitted, seed=0)
    linears = [m for m in student.modules() if isinstance(m, torch.nn.Linear)]
    weights = torch.cat([m.weight.detach().flatten() for m in linears])
    biases = torch.cat([m.bias.detach() for m in linears])
    # PyTorch's default (kaiming-uniform) draws of these 32-64 wide layers have std ~0.05-0.1
    assert abs(float(weights.std()) - bl.BERT_INIT_STD) < 0.002 and float(biases.abs().max()) == 0.0
    torch.testing.assert_close(student.embeddings.word.weight, fitted.embeddings.word.weight)
    torch.testing.assert_close(bl.build_narrow(b, fitted, seed=0).in_proj.weight, student.in_proj.weight)  # seeded
