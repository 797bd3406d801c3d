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


def test_pkd_depth_follows_the_latency_share():
    assert bl.pkd_layers(4.0, 16.0, 6) == 2
    assert bl.pkd_layers(0.1, 16.0, 6) == 1
    assert bl.pkd_layers(15.9, 16.0, 6) == 5  # never the whole teacher


def test_truncated_teacher_is_the_teachers_first_layers(tiny_teacher):
    teacher = load_teacher(str(tiny_teacher))
    ids = torch.randint(0, 1000, (2, 12))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        full = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        got = Encoder(truncated_teacher(teacher, 2))(ids, mask)
    torch.testing.assert_close(got, full[2], rtol=1e-5, atol=1e-5)
