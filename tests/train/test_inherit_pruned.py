"""The supernet's teacher-shaped paths start as the teacher pruned: exactly, whole or sliced."""

from __future__ import annotations

import random

import pytest
import torch

from pipeline.model.importance import importance
from pipeline.model.pruned import Shape, pruned_teacher
from pipeline.space import Block, SearchSpace
from pipeline.train.inherit import inherit
from pipeline.train.supernet import SuperBlock

CONFIG = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
              vocab_size=300, max_position_embeddings=32)


@pytest.fixture(scope="module")
def setup():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    teacher = BertModel(BertConfig(**CONFIG), add_pooling_layer=False).eval()
    ids = torch.randint(5, 300, (6, 20), generator=torch.Generator().manual_seed(2))
    imp = importance(teacher, "activation", ids)
    space = SearchSpace.from_teacher(128, 2, 300, 32, heads=4, inner=256)
    block = SuperBlock.for_space(space)
    orders = [(imp.head_order(i), imp.neuron_order(i)) for i in range(2)]
    record = inherit(block, list(teacher.encoder.layer), 4, orders)
    return teacher, ids, imp, space, block.eval(), record


def _run(block: SuperBlock, teacher, ids, mask, path: Block) -> torch.Tensor:
    block.set(path)
    with torch.no_grad():
        return block(teacher.embeddings(input_ids=ids), mask)


def test_the_whole_teacher_path_is_the_teachers_block_exactly(setup):
    teacher, ids, _, space, block, record = setup
    assert record["from"] == "teacher"
    mask = torch.ones_like(ids)
    mask[:3, 15:] = 0
    got = _run(block, teacher, ids, mask, Block(128, ("att4x32", "ffn256", "att4x32", "ffn256")))
    with torch.no_grad():
        want = teacher(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(got[real], want[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("heads,neurons", [((2, 1), (128, 64)), ((3, 4), (256, 192)), ((1, 1), (64, 64))])
def test_a_narrower_path_is_the_teacher_pruned_by_the_same_importance(setup, heads, neurons):
    teacher, ids, imp, _, block, _ = setup
    mask = torch.ones_like(ids)
    path = Block(128, (f"att{heads[0]}x32", f"ffn{neurons[0]}", f"att{heads[1]}x32", f"ffn{neurons[1]}"))
    got = _run(block, teacher, ids, mask, path)
    with torch.no_grad():
        want = pruned_teacher(teacher, Shape(heads, neurons), imp)(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(got, want.last_hidden_state, atol=1e-5, rtol=1e-5)
    net = block.get()  # the standalone path extracted from the supernet computes the same
    with torch.no_grad():
        torch.testing.assert_close(net(teacher.embeddings(input_ids=ids), mask), got, atol=1e-6, rtol=1e-6)


def test_candidates_hold_every_teacher_shape_once(setup):
    *_, space, block, _ = setup
    cands = block.candidates()
    teacher_paths = [c for c in cands if any(op.startswith("att") or op[3:].isdigit() for op in c.layers)]
    assert len(teacher_paths) == 5 ** 4 - 1  # 4 shapes or dropped, per position, not all dropped
    assert len(set(cands)) == len(cands)
    rng = random.Random(0)
    for c in rng.sample(teacher_paths, 20):
        space.check(type("A", (), {"teacher_hidden": 128, "blocks": (c,)})())  # a member of the space
    assert SuperBlock.for_space(SearchSpace.from_teacher(128, 2)).candidates() == \
        [c for c in cands if c not in teacher_paths]  # without the shapes: NAS-BERT's paths as before


def test_without_the_teachers_shapes_the_state_dict_is_unchanged():
    old = SuperBlock.for_space(SearchSpace.from_teacher(128, 2))
    new = SuperBlock.for_space(SearchSpace.from_teacher(128, 2, heads=4, inner=256))
    assert set(old.state_dict()) < set(new.state_dict())
    assert all(k.split(".")[3] in ("att4x32", "ffn256") for k in set(new.state_dict()) - set(old.state_dict()))
