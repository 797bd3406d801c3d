import json
import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pipeline.errors import PipelineError
from pipeline.model.student import Student, example_inputs
from pipeline.space import (
    Architecture,
    Block,
    SearchSpace,
    architecture_from_dict,
    count_flops,
    count_params,
    load_architecture,
    save_architecture,
)

MINILM = SearchSpace.from_teacher(384, 6)


def test_space_follows_the_teacher():
    assert MINILM.hidden_sizes == (128, 192, 256, 384)
    assert (MINILM.num_blocks, MINILM.layers_per_block) == (3, 4)
    base = SearchSpace.from_teacher(768, 12)  # NAS-BERT's BERT-base setting: 4 blocks of 6 layers
    assert (base.num_blocks, base.layers_per_block) == (4, 6)
    assert base.hidden_sizes == (128, 192, 256, 384, 512)
    assert len(base.ops()) + 1 == 26  # 26 ops for five hidden sizes, as in DESIGN.md


def test_teacher_smaller_than_the_space_is_an_error():
    with pytest.raises(PipelineError, match="below the smallest"):
        SearchSpace.from_teacher(64, 4)


def test_sample_is_seeded_and_in_the_space():
    a = [MINILM.sample(random.Random(7)) for _ in range(2)]
    assert a[0] == a[1]
    for _ in range(50):
        arch = MINILM.sample(random.Random(_))
        MINILM.check(arch)
        for b in arch.blocks:  # canonical: identities last
            real = [op for op in b.layers if op != "identity"]
            assert list(b.layers[: len(real)]) == real


def good() -> dict:
    return {"teacher_hidden": 384, "embed_dim": 128,
            "blocks": [{"hidden": 256, "layers": ["mha", "identity", "ffn", "sepconv5"]},
                       {"hidden": 192, "layers": ["sepconv3", "ffn", "mha", "ffn"]},
                       {"hidden": 128, "layers": ["ffn", "identity", "identity", "identity"]}]}


def test_roundtrip_and_canonical_identities(tmp_path):
    arch = architecture_from_dict(good())
    assert arch.blocks[0].layers == ("mha", "ffn", "sepconv5", "identity")
    path = save_architecture(arch, tmp_path / "a.json")
    assert load_architecture(path) == arch
    assert json.loads(path.read_text())["blocks"][0]["hidden"] == 256


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("blocks"), "missing key 'blocks'"),
    (lambda d: d["blocks"][0]["layers"].append("lstm"), "unknown op 'lstm'"),
    (lambda d: d["blocks"][1].update(hidden=200), "hidden size 200 is not in the space"),
    (lambda d: d["blocks"][1].update(hidden=512), "above the teacher's 384"),
    (lambda d: d.update(embed_dim="big"), "embed_dim must be a positive integer"),
    (lambda d: d.update(blocks=[]), "non-empty list"),
    (lambda d: d["blocks"][0].update(extra=1), "exactly 'hidden' and 'layers'"),
    (lambda d: d.update(colour="red"), "unknown key"),
])
def test_validation_names_the_problem(mutate, message):
    d = good()
    mutate(d)
    with pytest.raises(PipelineError, match=message):
        architecture_from_dict(d)


def test_load_errors(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        load_architecture(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PipelineError, match="not valid JSON"):
        load_architecture(bad)


def test_space_membership():
    arch = architecture_from_dict(good())
    MINILM.check(arch)
    short = Architecture(384, 128, arch.blocks[:2])
    with pytest.raises(PipelineError, match="2 blocks, space has 3"):
        MINILM.check(short)
    with pytest.raises(PipelineError, match="hidden size 384 is not in the space"):
        SearchSpace.from_teacher(256, 6).check(Architecture(256, 128, (Block(384, ("mha",) * 4),) * 3))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shapes", [False, True], ids=["nas", "teacher-shapes"])
def test_params_and_flops_match_the_module(seed, shapes):
    extra = {"heads": 12, "inner": 1536} if shapes else {}
    space = SearchSpace.from_teacher(384, 6, vocab_size=500, max_positions=64, **extra)
    arch = space.sample(random.Random(seed + 100 * shapes))
    model = Student(arch).eval()
    assert count_params(arch) == sum(p.numel() for p in model.parameters())
    inputs = example_inputs(2, 32, arch.vocab_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**inputs)
    assert count_flops(arch, seq=32, batch=2) == counter.get_total_flops()


INHERIT = SearchSpace.from_teacher(384, 6, vocab_size=500, max_positions=64, heads=12, inner=1536)


def test_the_teachers_shapes_are_a_grid_of_its_heads_and_neurons():
    assert INHERIT.teacher_attention == ("att3x32", "att6x32", "att9x32", "att12x32")
    assert INHERIT.teacher_ffn == ("ffn384", "ffn768", "ffn1152", "ffn1536")
    assert ("att6x32", 384) in INHERIT.ops() and ("ffn768", 384) in INHERIT.ops()
    assert not MINILM.teacher_ops and len(INHERIT.ops()) == len(MINILM.ops()) + 8
    tiny = SearchSpace.from_teacher(128, 4, heads=2, inner=256)
    assert tiny.teacher_attention == ("att1x64", "att2x64")  # a quarter of 2 heads is still one


def test_teacher_shaped_blocks_keep_their_positions_and_sit_at_the_teachers_width():
    layers = ["identity", "ffn768", "att12x32", "ffn1536"]
    arch = architecture_from_dict({"teacher_hidden": 384, "embed_dim": 256,
                                   "blocks": [{"hidden": 384, "layers": layers}] * 3})
    assert arch.blocks[0].layers == tuple(layers)  # no identity moved: positions name teacher layers
    INHERIT.check(arch)
    with pytest.raises(PipelineError, match="not one of the teacher's FFN shapes"):
        INHERIT.check(Architecture(384, 256, (Block(384, ("att6x32", "ffn100", "mha", "ffn")),) * 3))
    with pytest.raises(PipelineError, match="attention shapes"):
        INHERIT.check(Architecture(384, 256, (Block(384, ("ffn768", "ffn768", "mha", "ffn")),) * 3))
    with pytest.raises(PipelineError, match="none in this space"):
        MINILM.check(arch)
    with pytest.raises(PipelineError, match="unknown op 'att0x32'"):
        architecture_from_dict({"teacher_hidden": 384, "embed_dim": 256,
                                "blocks": [{"hidden": 384, "layers": ["att0x32"] * 4}] * 3})


def test_sampling_draws_teacher_blocks_only_where_the_space_has_them():
    rng = random.Random(0)
    archs = [INHERIT.sample(rng) for _ in range(20)]
    for a in archs:
        INHERIT.check(a)
    assert any(op.startswith("att") for a in archs for b in a.blocks for op in b.layers)
    # without the teacher's shapes, sampling is what it always was (the calibration students of old tables)
    assert [MINILM.sample(random.Random(s)) for s in range(3)] == \
        [SearchSpace.from_teacher(384, 6).sample(random.Random(s)) for s in range(3)]


def test_the_teachers_attention_counts_as_attention():
    block = Block(384, ("att6x32", "ffn768", "identity", "ffn384"))
    assert block.attention == 1 and Block(384, ("mha", "ffn", "mha", "sepconv3")).attention == 2
    assert Architecture(384, 256, (block, Block(256, ("mha",) * 4))).attention_layers == 5
