import pytest
import torch

from pipeline.model.ops import Sublayer, masks
from pipeline.space import OPS


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("hidden", [128, 192])
def test_shape_and_padding_never_leaks_into_tokens(op, hidden):
    torch.manual_seed(0)
    layer = Sublayer(op, hidden).eval()
    x = torch.randn(2, 12, hidden)  # [B, S, H]
    mask = torch.ones(2, 12, dtype=torch.int64)
    mask[:, 9:] = 0  # last 3 positions are padding
    keep, bias = masks(mask, x.dtype)
    y = layer(x, keep, bias)
    assert y.shape == x.shape
    x2 = x.clone()
    x2[:, 9:] = torch.randn(2, 3, hidden) * 100  # whatever sits in the padding ...
    y2 = layer(x2, keep, bias)
    torch.testing.assert_close(y[:, :9], y2[:, :9])  # ... real tokens do not see it


def test_identity_is_nothing():
    x = torch.randn(1, 4, 128)
    keep, bias = masks(torch.ones(1, 4, dtype=torch.int64), x.dtype)
    assert Sublayer("identity", 128)(x, keep, bias) is x
    assert not list(Sublayer("identity", 128).parameters())


def test_heads_of_size_64():
    assert Sublayer("mha", 384).op.heads == 6
    assert Sublayer("mha", 128).op.heads == 2  # at least 2 heads


def test_fp16_mask_bias_is_finite():
    keep, bias = masks(torch.tensor([[1, 0]]), torch.float16)
    assert torch.isfinite(bias).all() and bias.dtype == torch.float16
