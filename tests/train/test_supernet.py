import random

import pytest
import torch

from pipeline.space import Block
from pipeline.train.supernet import SuperBlock, slice_param


@pytest.fixture(scope="module")
def sb() -> SuperBlock:
    torch.manual_seed(0)
    return SuperBlock(teacher_hidden=256, hidden_sizes=(128, 192, 256), num_layers=4).eval()


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 12, 256, generator=g)
    mask = torch.ones(2, 12, dtype=torch.int64)
    mask[1, 9:] = 0
    return x, mask


def test_candidates_are_canonical_and_distinct(sb):
    c = sb.candidates()
    assert len(c) == 3 * (1 + 5 + 25 + 125 + 625)
    assert len(set(c)) == len(c)
    for b in c:
        real = [op for op in b.layers if op != "identity"]
        assert list(b.layers) == real + ["identity"] * (4 - len(real))


def test_qkv_slice_keeps_whole_heads():
    full = torch.arange(3 * 4 * 4, dtype=torch.float32).view(12, 4)  # q, k, v of width 4 stacked
    part = slice_param("op.qkv.weight", full, torch.Size([6, 2]))
    assert torch.equal(part, torch.cat([full[0:2, :2], full[4:6, :2], full[8:10, :2]]))
    assert torch.equal(slice_param("op.up.weight", full, torch.Size([3, 2])), full[:3, :2])


@pytest.mark.parametrize("block", [
    Block(256, ("mha", "ffn", "sepconv3", "sepconv7")),
    Block(192, ("sepconv5", "mha", "identity", "identity")),
    Block(128, ("ffn", "identity", "identity", "identity")),
    Block(128, ("identity",) * 4),
])
def test_get_is_the_active_path(sb, block):
    x, mask = inputs()
    sb.set(block)
    net = sb.get()
    assert net.block == block
    with torch.no_grad():
        y = sb(x, mask)
        assert y.shape == x.shape
        torch.testing.assert_close(net(x, mask), y, rtol=1e-5, atol=1e-5)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params < sum(p.numel() for p in sb.parameters())


def test_widths_share_weights_and_get_copies():
    torch.manual_seed(1)
    sb = SuperBlock(256, (128, 192, 256), 2)
    x, mask = inputs()
    sb.set(Block(128, ("ffn", "identity")))
    sb(x, mask).pow(2).mean().backward()
    up = sb.layers[0].full["ffn"].op.up.weight.grad  # [4*256, 256]
    assert up[:512, :128].abs().sum() > 0          # the width-128 path trained its leading slice
    assert up[512:].abs().sum() == 0 and up[:, 128:].abs().sum() == 0  # and nothing else
    assert sb.layers[0].full["mha"].op.qkv.weight.grad is None  # ops off the path get nothing

    sb.set(Block(192, ("ffn", "identity")))
    before = sb.get()
    with torch.no_grad():
        sb.layers[0].full["ffn"].op.up.weight[:10, :10] += 1.0  # change the shared weights
    after = sb.get()
    assert not torch.allclose(before.layers[0].op.up.weight, after.layers[0].op.up.weight)
    sb.set(Block(128, ("ffn", "identity")))
    torch.testing.assert_close(sb.get().layers[0].op.up.weight, after.layers[0].op.up.weight[:512, :128])


def test_sample_draws_from_given_candidates(sb):
    rng = random.Random(0)
    pool = [Block(128, ("mha",) + ("identity",) * 3), Block(256, ("ffn",) * 4)]
    seen = {sb.sample(rng, pool) for _ in range(20)}
    assert seen == set(pool) and sb.active in pool
    with pytest.raises(ValueError):
        sb.set(Block(512, ("ffn",) * 4))
